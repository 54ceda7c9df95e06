"""The ``dexgrasp`` command line, run as a user would (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.grasp import GraspSet, make_grasp
from models.hands import get_hand
from models.physics.init_poses import frame_from_approach


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def grasp_file(tmp_path_factory) -> Path:
    """Two palm-down grasps above a 6 cm box: one touching its top, one 10 cm away."""
    h = get_hand("shadow", dtype="float64")
    rot = frame_from_approach(torch.tensor([[0.0, 0, -1]], dtype=torch.float64), h.approach_direction,
                              torch.zeros(1, dtype=torch.float64))[0]
    # the thumb base sticks out past the palm face: put the hand's lowest surface point at the gap
    frames = h.forward_kinematics(torch.zeros(1, 3, dtype=torch.float64), rot[None], h.open_pose[None])
    lowest = h.surface_points(frames, n=4096)[0, :, 2].min()
    grasps = []
    for gap in (0.001, 0.1):
        pos = torch.tensor([0, 0, 0.03 + gap - float(lowest)], dtype=torch.float64)
        grasps.append(make_grasp("shadow", rot, pos, h.open_pose, rot, pos + torch.tensor([0, 0, 0.1]), h.open_pose))
    path = tmp_path_factory.mktemp("cli") / "grasps.json"
    path.write_text(GraspSet(grasps=grasps).model_dump_json())
    return path


@pytest.fixture(scope="module")
def box_mesh(tmp_path_factory) -> Path:
    import trimesh

    path = tmp_path_factory.mktemp("mesh") / "box.obj"
    trimesh.creation.box(extents=(0.06, 0.06, 0.06)).export(path)
    return path


def test_eval_prints_metrics_json(grasp_file: Path, box_mesh: Path, tmp_path: Path):
    r = _run("eval", str(grasp_file), "--object", str(box_mesh), "--points", "6000", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["num_grasps"] == 2
    q = report["quality"]
    assert {"mean_q1", "eta_np", "eta_tb", "mean_max_penetration_cm"} <= set(q)
    per = report["per_grasp"]
    assert per[0]["contact_count"] > 0 and per[1]["contact_count"] == 0  # the far grasp touches nothing
    assert per[0]["max_penetration_m"] < 0.002
    assert "delta_t" in report["diversity"]


def test_eval_refuses_bad_file_with_message(box_mesh: Path, tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hand": "shadow", "grasps": [{"hand": "shadow", "pose": {"position": [0, 0, 0],
                   "quaternion_wxyz": [2, 0, 0, 0]}, "joints": {}, "pregrasp": {"pose": {"position": [0, 0, 0],
                   "quaternion_wxyz": [1, 0, 0, 0]}, "joints": {}}}]}))
    r = _run("eval", str(bad), "--object", str(box_mesh), cwd=tmp_path)
    assert r.returncode != 0
    assert "unit quaternion" in r.stderr


def test_objects_list_and_cloud(tmp_path: Path):
    r = _run("objects", "list", "--split", "test", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) >= 30 and all(row["split"] == "test" for row in rows)
    oid = rows[0]["id"]
    out = tmp_path / "c.ply"
    r = _run("objects", "cloud", oid, "--out", str(out), "--partial", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    from models.objects import read_ply

    pts, _ = read_ply(out)
    assert pts.shape[0] > 100 and abs(float(pts[:, 2].min())) < 0.02  # table at z = 0 is in view


def test_render_writes_png(grasp_file: Path, box_mesh: Path, tmp_path: Path):
    from PIL import Image

    out = tmp_path / "g.png"
    r = _run("render", str(grasp_file), "--object", str(box_mesh), "--out", str(out), cwd=tmp_path)
    if r.returncode != 0 and "GL" in r.stderr:
        pytest.skip(f"no OpenGL backend: {r.stderr[-200:]}")
    assert r.returncode == 0, r.stderr
    img = Image.open(out)
    assert img.size[0] >= 320 and img.size[1] >= 240
