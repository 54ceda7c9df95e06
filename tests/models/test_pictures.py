"""Grasp pictures: real offscreen MuJoCo renders (EGL, else OSMesa); skipped only without any GL backend."""

from __future__ import annotations

import os
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from models.grasp import GraspSet, make_grasp
from models.hands import get_hand
from models.physics.init_poses import frame_from_approach
from models.tools import pictures as render

W, H = 160, 120  # small tiles keep the module well under 20 s on software GL


@pytest.fixture(scope="module")
def gl() -> str:
    try:
        return render.ensure_gl_backend()
    except render.RenderBackendError as err:
        pytest.skip(f"no offscreen OpenGL backend could be initialised for MuJoCo: {err}")


@pytest.fixture(scope="module")
def scene(shadow64):
    """A 4 cm box 5 cm in front of the palm (palm faces -y) and the hand in its init pose."""
    h = shadow64
    centre = h.palm_center.numpy() + np.array([0.0, -0.05, 0.0])
    box = trimesh.creation.box(extents=[0.04, 0.04, 0.04])
    box.apply_translation(centre)
    pos = np.zeros((1, 3))
    rot = np.eye(3)[None]
    q = h.init_pose.numpy()[None]
    return box, pos, rot, q


def _changed(a: np.ndarray, b: np.ndarray, tol: int = 30) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).max(axis=2) > tol


def test_box_and_hand(gl, scene):
    box, pos, rot, q = scene
    img = render.render_grasps("shadow", pos, rot, q, mesh=box, width=W, height=H)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    assert img.std() > 10  # not a blank frame
    # same camera (framing includes the hand either way), hand left out
    alone = render.render_grasps("shadow", pos, rot, q, mesh=box, width=W, height=H, show_hand=False)
    diff = _changed(img, alone)
    assert diff.mean() > 0.03, "the hand should cover a visible part of the tile"
    ys, xs = np.nonzero(diff)
    assert np.ptp(ys) > H // 5 and np.ptp(xs) > W // 10  # a region, not a few stray pixels
    # the object is drawn in the object-only picture: bluish pixels
    blue = (alone[..., 2].astype(int) - alone[..., 0] > 60).mean()
    assert blue > 0.005


def test_points_change_pixels(gl, scene):
    box, pos, rot, q = scene
    pts = trimesh.sample.sample_surface(box, 5000, seed=1)[0]  # inside the box's bbox: same framing
    plain = render.render_grasps("shadow", pos, rot, q, mesh=box, width=W, height=H)
    dotted = render.render_grasps("shadow", pos, rot, q, mesh=box, points=pts, width=W, height=H)
    assert _changed(plain, dotted).mean() > 0.005
    orange = lambda im: ((im[..., 0].astype(int) > 150) & (im[..., 2] < 90)).sum()  # noqa: E731
    assert orange(dotted) > orange(plain) + 20


def test_points_only_and_nothing(gl, scene):
    _, pos, rot, q = scene
    pts = np.random.default_rng(0).normal(size=(8000, 3)) * 0.02 + [0.0, -0.06, 0.05]
    img = render.render_grasps("shadow", pos, rot, q, points=pts, width=W, height=H)
    assert img.shape == (H, W, 3) and img.std() > 10
    bare = render.render_grasps("shadow", pos, rot, q, width=W, height=H)  # no mesh, no points
    assert bare.shape == (H, W, 3) and bare.std() > 10


def test_two_grasps_two_tiles_with_table_labels_pregrasp(gl, scene, shadow64):
    box, pos, rot, q = scene
    # second grasp: hand turned 90 degrees about z and backed off
    c, s = 0.0, 1.0
    rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    pos2 = np.concatenate([pos, [[0.02, 0.0, 0.0]]])
    rot2 = torch.tensor(np.stack([rot[0], rz]))  # torch input is accepted too
    q2 = np.concatenate([q, shadow64.open_pose.numpy()[None]])
    img = render.render_grasps("shadow", pos2, rot2, q2, mesh=box, table_z=-0.05, width=W, height=H)
    assert img.shape == (H, 2 * W, 3)
    left, right = img[:, :W], img[:, W:]
    assert _changed(left, right).mean() > 0.05
    first = render.render_grasps("shadow", pos, rot, q, mesh=box, table_z=-0.05, width=W, height=H)
    np.testing.assert_array_equal(left, first)  # tiles are independent and deterministic

    labelled = render.render_grasps(
        "shadow", pos2, rot2, q2, mesh=box, table_z=-0.05, width=W, height=H, labels=["one", "two"]
    )
    assert _changed(labelled[:20, :60], img[:20, :60]).any()
    assert not _changed(labelled[H // 2 :], img[H // 2 :]).any()  # text only at the top

    pre = (pos2 + np.array([0.0, 0.05, 0.0]), rot2, np.stack([shadow64.open_pose.numpy()] * 2))
    ghost = render.render_grasps("shadow", pos2, rot2, q2, mesh=box, width=W, height=H, pregrasp=pre)
    assert ghost.shape == img.shape


def test_grid_shape(gl, scene):
    _, pos, rot, q = scene
    n = 5
    img = render.render_grasps(
        "shadow", np.repeat(pos, n, 0), np.repeat(rot, n, 0), np.repeat(q, n, 0), width=64, height=48
    )
    assert img.shape == (2 * 48, 4 * 64, 3)  # rows of 4
    assert (img[48:, 64:] == 255).all()  # empty cells stay white


def test_collision_view_differs(gl, scene):
    box, pos, rot, q = scene
    a = render.render_grasps("shadow", pos, rot, q, mesh=box, width=W, height=H)
    b = render.render_grasps("shadow", pos, rot, q, mesh=box, width=W, height=H, show_collision=True)
    assert _changed(a, b).mean() > 0.01


def test_degenerate_mesh_drawn_as_points(gl, scene):
    _, pos, rot, q = scene
    tri = trimesh.Trimesh(vertices=[[0, -0.05, 0], [0.05, -0.05, 0], [0, -0.05, 0.05]], faces=[[0, 1, 2]])
    img = render.render_grasps("shadow", pos, rot, q, mesh=tri, width=W, height=H)
    assert img.shape == (H, W, 3)


def test_png_roundtrip(gl, scene, tmp_path: Path):
    box, pos, rot, q = scene
    img = render.render_grasps("shadow", pos, rot, q, mesh=box, width=W, height=H)
    out = render.save_png(img, tmp_path / "sub" / "grasp.png")
    back = np.asarray(Image.open(out).convert("RGB"))
    np.testing.assert_array_equal(back, img)


def test_render_grasp_file(gl, scene, shadow64, tmp_path: Path):
    box, pos, rot, q = scene
    g = make_grasp(
        "shadow", torch.tensor(rot[0]), torch.tensor(pos[0]), torch.tensor(q[0]),
        torch.tensor(rot[0]), torch.tensor(pos[0]) + torch.tensor([0.0, 0.05, 0.0]), shadow64.open_pose,
        scores={"energy": 1.5},
    )
    gfile = tmp_path / "grasps.json"
    gfile.write_text(GraspSet(grasps=[g, g]).model_dump_json())
    mesh_file = tmp_path / "box.stl"
    box.export(mesh_file)
    npy = tmp_path / "cloud.npy"
    np.save(npy, trimesh.sample.sample_surface(box, 2000, seed=0)[0])
    ply = tmp_path / "cloud.ply"
    trimesh.PointCloud(np.load(npy)).export(ply)

    mesh, pts = render.load_object(mesh_file)
    assert mesh is not None and pts is None
    for cloud in (npy, ply):
        mesh, pts = render.load_object(cloud)
        assert mesh is None and pts is not None and pts.shape == (2000, 3)

    out = tmp_path / "grasp.png"
    img = render.render_grasp_file(gfile, mesh_file, out, width=W, height=H, show_pregrasp=True)
    assert img.shape == (H, 2 * W, 3)
    assert Image.open(out).size == (2 * W, H)
    img = render.render_grasp_file(gfile, ply, out, width=W, height=H)
    assert img.shape == (H, 2 * W, 3)


def _side_grasp(offset: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hand approaching the origin along +x from 8 cm (plus ``offset``) away."""
    h = get_hand("shadow", dtype="float64")
    rot = frame_from_approach(
        torch.tensor([[1.0, 0, 0]], dtype=torch.float64), h.approach_direction, torch.zeros(1, dtype=torch.float64)
    )[0]
    pos = torch.tensor([-0.08 - offset, 0.0, -0.04], dtype=torch.float64)
    return pos[None].numpy(), rot[None].numpy(), h.init_pose[None].numpy()


def test_hand_is_visible_next_to_the_object(gl, tmp_path: Path):
    box = trimesh.creation.box((0.05, 0.05, 0.05))
    pos, rot, q = _side_grasp()
    with_hand = render.render_grasps("shadow", pos, rot, q, mesh=box, width=320, height=240)
    assert with_hand.shape == (240, 320, 3) and with_hand.dtype == np.uint8
    assert with_hand.std() > 5  # not a blank image
    far = _side_grasp(offset=5.0)  # the hand far outside the frame of the object
    alone = render.render_grasps("shadow", *far, mesh=box, width=320, height=240)
    assert np.abs(with_hand.astype(int) - alone.astype(int)).mean() > 1.0
    out = render.save_png(with_hand, tmp_path / "g.png")
    assert Image.open(out).size == (320, 240)


def test_points_change_pixels_and_tiles_grow(gl):
    box = trimesh.creation.box((0.05, 0.05, 0.05))
    pos, rot, q = _side_grasp()
    plain = render.render_grasps("shadow", pos, rot, q, mesh=box, width=200, height=150)
    pts = np.random.default_rng(0).uniform(-0.03, 0.03, size=(500, 3))
    dotted = render.render_grasps("shadow", pos, rot, q, mesh=box, points=pts, width=200, height=150)
    assert np.abs(plain.astype(int) - dotted.astype(int)).sum() > 0
    two = render.render_grasps(
        "shadow", np.repeat(pos, 2, 0), np.repeat(rot, 2, 0), np.repeat(q, 2, 0), mesh=box, width=200, height=150
    )
    assert two.shape == (150, 400, 3)


# ------------------------------------------------------------------ no GL needed
def test_input_errors(shadow64):
    q = shadow64.init_pose.numpy()
    with pytest.raises(ValueError, match="B = 0"):
        render.render_grasps("shadow", np.zeros((0, 3)), np.zeros((0, 3, 3)), np.zeros((0, 22)))
    with pytest.raises(ValueError, match="joints"):
        render.render_grasps("shadow", np.zeros((1, 3)), np.eye(3)[None], q[None, :10])
    with pytest.raises(ValueError, match="batch sizes"):
        render.render_grasps("shadow", np.zeros((2, 3)), np.eye(3)[None], q[None])
    with pytest.raises(ValueError, match="labels"):
        render.render_grasps("shadow", np.zeros((2, 3)), np.stack([np.eye(3)] * 2), np.stack([q] * 2), labels=["a"])
    with pytest.raises(ValueError, match="uint8"):
        render.save_png(np.zeros((4, 4, 3)), "/tmp/never.png")


@pytest.fixture
def fake_gl(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """ensure_gl_backend against a fake mujoco GL module: nothing real is created."""
    glfw_cls = type("GLContext", (), {"__module__": "mujoco.glfw"})
    fake = types.SimpleNamespace(GLContext=glfw_cls)
    monkeypatch.setattr(render, "_chosen_backend", None)
    monkeypatch.setattr(render, "_gl_module", lambda: fake)
    monkeypatch.setattr(render, "_smoke_test", lambda: None)
    monkeypatch.setenv("MUJOCO_GL", "glfw")
    return fake


def test_backend_falls_back_to_osmesa(fake_gl, monkeypatch: pytest.MonkeyPatch):
    osmesa_cls = type("GLContext", (), {"__module__": "mujoco.osmesa"})
    monkeypatch.setattr(render, "_probe_in_subprocess", lambda name: "no EGL device" if name == "egl" else None)
    monkeypatch.setattr(render, "_context_class", lambda name: osmesa_cls)
    assert render.ensure_gl_backend() == "osmesa"
    assert fake_gl.GLContext is osmesa_cls
    assert os.environ["MUJOCO_GL"] == "osmesa"


def test_backend_error_is_clear(fake_gl, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(render, "_probe_in_subprocess", lambda name: f"{name} library missing")
    with pytest.raises(render.RenderBackendError, match=r"egl: egl library missing.*osmesa: osmesa library missing"):
        render.ensure_gl_backend()
