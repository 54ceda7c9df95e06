"""Offscreen pictures of grasps (real MuJoCo rendering through EGL/OSMesa)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from models.hands import get_hand
from models.init_poses import frame_from_approach


@pytest.fixture(scope="module")
def render():
    from models import render as r

    try:
        r.ensure_gl_backend()
    except RuntimeError as exc:  # no GL backend at all on this machine
        pytest.skip(f"no offscreen OpenGL backend: {exc}")
    return r


def _grasp(offset: float = 0.0):
    h = get_hand("shadow", dtype="float64")
    rot = frame_from_approach(torch.tensor([[1.0, 0, 0]], dtype=torch.float64), h.approach_direction,
                              torch.zeros(1, dtype=torch.float64))[0]
    pos = torch.tensor([-0.08 - offset, 0.0, -0.04], dtype=torch.float64)
    return pos[None].numpy(), rot[None].numpy(), h.init_pose[None].numpy()


def test_hand_is_visible_next_to_the_object(render, tmp_path):
    box = trimesh.creation.box((0.05, 0.05, 0.05))
    pos, rot, q = _grasp()
    with_hand = render.render_grasps("shadow", pos, rot, q, mesh=box, width=320, height=240)
    far = _grasp(offset=5.0)  # the hand far outside the frame of the object
    assert with_hand.shape == (240, 320, 3) and with_hand.dtype == np.uint8
    assert with_hand.std() > 5  # not a blank image
    alone = render.render_grasps("shadow", *far, mesh=box, width=320, height=240)
    assert np.abs(with_hand.astype(int) - alone.astype(int)).mean() > 1.0
    out = render.save_png(with_hand, tmp_path / "g.png")
    from PIL import Image

    assert Image.open(out).size == (320, 240)


def test_points_change_pixels_and_tiles_grow(render):
    box = trimesh.creation.box((0.05, 0.05, 0.05))
    pos, rot, q = _grasp()
    plain = render.render_grasps("shadow", pos, rot, q, mesh=box, width=200, height=150)
    pts = np.random.default_rng(0).uniform(-0.03, 0.03, size=(500, 3))
    dotted = render.render_grasps("shadow", pos, rot, q, mesh=box, points=pts, width=200, height=150)
    assert np.abs(plain.astype(int) - dotted.astype(int)).sum() > 0
    two = render.render_grasps("shadow", np.repeat(pos, 2, 0), np.repeat(rot, 2, 0), np.repeat(q, 2, 0),
                               mesh=box, width=200, height=150)
    assert two.shape == (150, 400, 3)


def test_empty_batch_is_refused(render):
    with pytest.raises(ValueError):
        render.render_grasps("shadow", np.zeros((0, 3)), np.zeros((0, 3, 3)), np.zeros((0, 22)))
