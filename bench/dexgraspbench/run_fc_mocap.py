"""Run DexGraspBench's own fc-mocap evaluation on a job file of grasps; write verdicts as JSON.

This script is run with the Python of a DexGraspBench virtual environment (mujoco 3.3.2,
numpy 1.26, trimesh, transforms3d, scipy, torch, imageio, qpsolvers, pyyaml, coacd), never the
project's: it imports the evaluation classes from a checkout given by ``--dgb`` and imports
nothing from the project. It owns only the plumbing around their code: the job file format,
the temporary object folders and grasp files their classes read, and the verdict file. The
simulation, the thresholds and the verdict are theirs (``src/task/eval_func/fc_mocap.py`` and
``base.py``, settings from ``config/task/eval.yaml`` and ``config/hand/shadow.yaml``).

Set-up, outside the project (tested with commit 1e7a5a6)::

    git clone <JYChen18/DexGraspBench on GitHub> ~/dgb/DexGraspBench   # no submodules needed
    python3 -m venv ~/dgb/venv && ~/dgb/venv/bin/pip install mujoco==3.3.2 numpy==1.26.4 \
        trimesh transforms3d scipy coacd imageio qpsolvers pyyaml torch   # torch: CPU wheel is enough
    # the menagerie Shadow E3M5 meshes its right_hand.xml wants ship in the mujoco-mjx wheel:
    pip download --no-deps mujoco-mjx==3.3.2 -d ~/dgb && unzip ~/dgb/mujoco_mjx-3.3.2-*.whl \
        'mujoco/mjx/test_data/shadow_hand/*' -d ~/dgb/mjx
    mkdir -p ~/dgb/DexGraspBench/third_party/mujoco_menagerie && ln -s \
        ~/dgb/mjx/mujoco/mjx/test_data/shadow_hand ~/dgb/DexGraspBench/third_party/mujoco_menagerie/shadow_hand
    ~/dgb/venv/bin/python bench/dexgraspbench/run_fc_mocap.py --dgb ~/dgb/DexGraspBench --examples --out ex.json
    # calibration: 281 of 400 pass (70.25 %), about 1 s per grasp on one core

(numpy 2 breaks one call in their ``hand_util.py``; torch is imported, never used, by their
``rot_util.py``; qpsolvers by their analytic metrics, which this driver does not run.)

Job file (JSON, no pickles)::

    {"objects": {NAME: {"pieces": [OBJ, ...]}        # convex pieces, used as they are
                     | {"mesh": OBJ}                  # one mesh, split by CoACD (threshold 0.05)
                     | {"dgb_dir": DIR},              # a DexGraspBench object folder, as is
                    "scale": 1.0,                     # mesh scale (their obj_scale)
                    "volume": V},                     # m^3 of the unscaled mesh; default: computed
     "grasps": [{"id": ID, "object": NAME, "obj_pose": [x y z qw qx qy qz],   # default identity
                 "pregrasp": [29], "grasp": [29], "squeeze": [29]}]}
                 # 29 = root xyz + root wxyz + 22 joints in DexGraspBench's Shadow order

``--examples`` builds the job from the 400 grasps the checkout ships
(``output/example_shadow/graspdata``), the calibration set; its output also holds that job.
``--fk`` answers forward-kinematics queries on their hand model instead (used by the project's
``--check-fk``).

Output: ``{"verdicts": [{"id", "succ_flag", "delta_pos", "delta_angle", "pregrasp_ho_pene",
"pregrasp_hh_pene", "pregrasp_pene_fail", "seconds"}], "summary": {...}}``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

HAND_XML = "assets/hand/shadow/right_hand.xml"
COACD_THRESHOLD = 0.05
EXAMPLE_DIR = "output/example_shadow/graspdata"


# --------------------------------------------------------------------------- their code
def import_dgb(dgb: Path) -> type:
    """fcMocapEval from the checkout, without running ``src/task/__init__.py``.

    That file (and ``eval_func/__init__.py``) imports hydra, USD and arm tasks the fc
    evaluation never uses; registering the two packages by path lets the evaluation modules
    import as they do in their own runs.
    """
    src = dgb / "src"
    sys.path.insert(0, str(src))
    for name, folder in (("task", src / "task"), ("task.eval_func", src / "task" / "eval_func")):
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(folder)]
        sys.modules[name] = pkg
    from task.eval_func.fc_mocap import fcMocapEval  # type: ignore[import-not-found]

    return fcMocapEval


class _Cfg(types.SimpleNamespace):
    """Attribute access over their YAML settings (the part of an OmegaConf config they read)."""


def _ns(d: Any) -> Any:
    if isinstance(d, dict):
        return _Cfg(**{k: _ns(v) for k, v in d.items()})
    return d


def load_configs(dgb: Path, work: Path) -> Any:
    """Their eval + shadow-hand settings, with the paths made absolute and debug output off."""
    import yaml

    task = yaml.safe_load((dgb / "config/task/eval.yaml").read_text())
    hand = yaml.safe_load((dgb / "config/hand/shadow.yaml").read_text())
    task["debug_render"] = task["debug_viewer"] = False
    hand["xml_path"] = str(dgb / hand["xml_path"])
    return _ns(
        {
            "setting": "fc",
            "task": task,
            "hand": hand,
            "grasp_dir": str(work / "graspdata"),
            "eval_dir": str(work / "evaluation"),
            "succ_dir": str(work / "succgrasp"),
        }
    )


# --------------------------------------------------------------------------- objects
def _write_obj(path: Path, verts: np.ndarray, faces: np.ndarray) -> None:
    lines = [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in verts]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def coacd_pieces(mesh_path: str) -> list[tuple[np.ndarray, np.ndarray]]:
    import coacd
    import trimesh

    m = trimesh.load(mesh_path, force="mesh", process=False)
    coacd.set_log_level("error")
    parts = coacd.run_coacd(coacd.Mesh(np.asarray(m.vertices), np.asarray(m.faces)), threshold=COACD_THRESHOLD, seed=0)
    return [(np.asarray(v), np.asarray(f)) for v, f in parts]


def prepare_object(name: str, spec: dict[str, Any], root: Path) -> str:
    """A DexGraspBench object folder (urdf/meshes/convex_piece_*.obj + info/simplified.json)."""
    if "dgb_dir" in spec:
        return str(Path(spec["dgb_dir"]).resolve())
    import trimesh

    folder = root / "objects" / name.replace("/", "_")
    (folder / "urdf/meshes").mkdir(parents=True, exist_ok=True)
    (folder / "info").mkdir(parents=True, exist_ok=True)
    if "pieces" in spec:
        parts = []
        for p in spec["pieces"]:
            m = trimesh.load(p, force="mesh", process=False)
            parts.append((np.asarray(m.vertices), np.asarray(m.faces)))
    else:
        parts = coacd_pieces(spec["mesh"])
    for i, (v, f) in enumerate(parts):
        _write_obj(folder / f"urdf/meshes/convex_piece_{i:03d}.obj", v, f)
    volume = spec.get("volume")
    if volume is None:
        if "mesh" in spec:
            volume = float(trimesh.load(spec["mesh"], force="mesh").volume)
        else:
            volume = float(sum(trimesh.Trimesh(v, f).convex_hull.volume for v, f in parts))
    # their density rule: obj_mass / (mass / (density * scale^3) * obj_scale^3)
    info = {"mass": float(volume), "density": 1.0, "scale": 1.0}
    (folder / "info/simplified.json").write_text(json.dumps(info))
    return str(folder)


# --------------------------------------------------------------------------- evaluation
def evaluate(dgb: Path, job: dict[str, Any], progress: bool = True) -> dict[str, Any]:
    fc_mocap_eval = import_dgb(dgb)
    with tempfile.TemporaryDirectory(prefix="dgb_job_") as tmp:
        root = Path(tmp)
        configs = load_configs(dgb, root)
        folders = {n: prepare_object(n, s, root) for n, s in job["objects"].items()}
        verdicts = []
        t_all = time.perf_counter()
        for k, g in enumerate(job["grasps"]):
            t0 = time.perf_counter()
            spec = job["objects"][g["object"]]
            data = {
                "obj_path": folders[g["object"]],
                "obj_scale": float(spec.get("scale", 1.0)),
                "obj_pose": np.asarray(g.get("obj_pose", [0, 0, 0, 1, 0, 0, 0]), dtype=np.float64),
                "pregrasp_qpos": np.asarray(g["pregrasp"], dtype=np.float64),
                "grasp_qpos": np.asarray(g["grasp"], dtype=np.float64),
                "squeeze_qpos": np.asarray(g["squeeze"], dtype=np.float64),
            }
            # their class reads one pickled-dict .npy per grasp; it lives only in the temp dir
            npy = root / "graspdata" / f"{k}.npy"
            npy.parent.mkdir(parents=True, exist_ok=True)
            np.save(npy, data, allow_pickle=True)
            ev = fc_mocap_eval(str(npy), configs)
            ho, hh = ev.mj_ho.get_contact_info(data["pregrasp_qpos"], data["obj_pose"])
            ho_pene = max([0.0] + [-float(c["contact_dist"]) for c in ho])
            hh_pene = max([0.0] + [-float(c["contact_dist"]) for c in hh])
            succ, dpos, dang = ev._eval_simulate_under_extforce()
            max_pene = configs.task.simulation_metrics.max_pene
            verdicts.append(
                {
                    "id": g.get("id", k),
                    "succ_flag": bool(succ),
                    "delta_pos": float(dpos),
                    "delta_angle": float(dang),
                    "pregrasp_ho_pene": ho_pene,
                    "pregrasp_hh_pene": hh_pene,
                    "pregrasp_pene_fail": bool(ho_pene > max_pene or hh_pene > max_pene),
                    "seconds": time.perf_counter() - t0,
                }
            )
            if progress:
                n_ok = sum(v["succ_flag"] for v in verdicts)
                print(f"[{k + 1}/{len(job['grasps'])}] {g.get('id', k)}: {bool(succ)} "
                      f"({n_ok} pass so far, {verdicts[-1]['seconds']:.2f} s)", file=sys.stderr, flush=True)
    n = len(verdicts)
    n_ok = sum(v["succ_flag"] for v in verdicts)
    summary = {"n": n, "succ": n_ok, "rate": n_ok / n if n else 0.0,
               "seconds_per_grasp": (time.perf_counter() - t_all) / n if n else 0.0}
    return {"verdicts": verdicts, "summary": summary}


# --------------------------------------------------------------------------- calibration set
def example_job(dgb: Path, every: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checkout's shipped example grasps as a job (every ``every``-th, sorted by path),
    plus statistics of their squeeze and pregrasp relative to the grasp."""
    paths = sorted(glob.glob(str(dgb / EXAMPLE_DIR / "**/*.npy"), recursive=True))[::every]
    objects: dict[str, Any] = {}
    grasps = []
    sq, pre, root_back, root_squeeze = [], [], [], []
    for p in paths:
        d = np.load(p, allow_pickle=True).item()  # their own file, read in their venv
        obj_dir = str((dgb / str(d["obj_path"])).resolve())
        key = f"{Path(obj_dir).name}@{float(d['obj_scale']):g}"
        objects[key] = {"dgb_dir": obj_dir, "scale": float(d["obj_scale"])}
        grasps.append({"id": os.path.relpath(p, dgb / EXAMPLE_DIR), "object": key,
                       "obj_pose": np.asarray(d["obj_pose"]).tolist(),
                       **{k: np.asarray(d[f"{k}_qpos"]).tolist() for k in ("pregrasp", "grasp", "squeeze")}})
        g, s, q = (np.asarray(d[f"{k}_qpos"], dtype=np.float64) for k in ("grasp", "squeeze", "pregrasp"))
        sq.append(s[7:] - g[7:])
        pre.append(q[7:] - g[7:])
        root_back.append(float(np.linalg.norm(q[:3] - g[:3])))
        root_squeeze.append(float(np.abs(s[:7] - g[:7]).max()))
    sq_a, pre_a = np.abs(np.array(sq)), np.array(pre)
    stats = {
        "squeeze_minus_grasp_mean_abs": float(sq_a.mean()),
        "squeeze_minus_grasp_max_per_grasp_mean": float(sq_a.max(axis=1).mean()),
        "fraction_joints_over_0.05": float((sq_a > 0.05).mean()),
        "pregrasp_mirror_max_err": float(np.abs(pre_a + np.array(sq)).max()),
        "pregrasp_root_offset_mean_m": float(np.mean(root_back)),
        "squeeze_root_max_diff": float(max(root_squeeze)),
    }
    return {"objects": objects, "grasps": grasps}, stats


# --------------------------------------------------------------------------- kinematics
def forward_kinematics(dgb: Path, query: dict[str, Any]) -> dict[str, Any]:
    """World positions and rotations of the named bodies of their hand for each 29-vector."""
    import mujoco

    m = mujoco.MjModel.from_xml_path(str(dgb / HAND_XML))
    d = mujoco.MjData(m)
    bodies = query["bodies"]
    out = []
    for qpos in np.asarray(query["qpos"], dtype=np.float64):
        d.qpos[:] = qpos[7:]
        mujoco.mj_kinematics(m, d)
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, qpos[3:7] / np.linalg.norm(qpos[3:7]))
        r = rot.reshape(3, 3)
        rows = {}
        for b in bodies:
            bid = m.body(b).id
            rows[b] = {"pos": (r @ d.xpos[bid] + qpos[:3]).tolist(),
                       "rot": (r @ d.xmat[bid].reshape(3, 3)).tolist()}
        out.append(rows)
    return {"joints": [m.joint(j).name for j in range(m.njnt)], "frames": out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dgb", required=True, type=Path, help="DexGraspBench checkout")
    ap.add_argument("--job", type=Path, help="job file (JSON)")
    ap.add_argument("--examples", action="store_true", help="evaluate the checkout's shipped example grasps")
    ap.add_argument("--every", type=int, default=1, help="with --examples: take every N-th grasp")
    ap.add_argument("--fk", type=Path, help="FK query file: {bodies: [...], qpos: [[29], ...]}")
    ap.add_argument("--out", type=Path, required=True, help="output JSON")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    dgb = a.dgb.resolve()
    if a.fk:
        result = forward_kinematics(dgb, json.loads(a.fk.read_text()))
    elif a.examples:
        job, stats = example_job(dgb, a.every)
        result = evaluate(dgb, job, progress=not a.quiet)
        result["example_stats"] = stats
        result["job"] = job  # so a caller can pair each verdict with its grasp and object
    elif a.job:
        result = evaluate(dgb, json.loads(a.job.read_text()), progress=not a.quiet)
    else:
        ap.error("give --job, --examples or --fk")
    a.out.write_text(json.dumps(result, indent=1))
    if "summary" in result:
        print(json.dumps(result["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
