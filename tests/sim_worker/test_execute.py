"""Goal-conditioned execution (approach, close, squeeze, lift) on MuJoCo with the scripted policy."""

from __future__ import annotations

import base64
import io

import pytest

from sim_worker.backends import get_backend
from sim_worker.backends.base import GraspArrays
from sim_worker.config import SimConfig
from sim_worker.policies import available_policies, get_policy

from .helpers import backed_off, trust_case

CFG = SimConfig()


@pytest.fixture(scope="module")
def backend():
    with get_backend("mujoco") as be:
        yield be


@pytest.fixture(scope="module")
def top_grasps():
    """Cylinder power grasps that are reachable from above (the palm above the table)."""
    obj, grasps = trust_case("cylinder_power")
    return obj, grasps[:2]


def test_power_grasp_lifts_the_cylinder(backend, top_grasps):
    obj, grasps = top_grasps
    results = backend.execute(obj, grasps, CFG)
    assert any(r["success"] for r in results), [r["reason"] for r in results]
    for r in results:
        if r["success"]:
            assert r["lift_height_m"] > 0.25
            assert r["mpe_m"] is not None and r["mpe_m"] < 0.02
            assert r["object_displacement_before_lift_m"] < 0.02


def test_open_fingers_do_not_lift(backend, top_grasps):
    obj, grasps = top_grasps
    import numpy as np

    from models.hands import get_hand

    open_q = get_hand("shadow", dtype="float64").open_pose.numpy()
    g = grasps[0]
    opened = GraspArrays(g.position, g.quaternion_wxyz, open_q, squeeze=open_q)
    r = backend.execute(obj, [opened], CFG)[0]
    assert not r["success"]
    assert r["lift_height_m"] < 0.05
    assert np.isfinite(r["sim_time_s"])


def test_grasp_beside_the_object_fails(backend, top_grasps):
    obj, grasps = top_grasps
    r = backend.execute(obj, [backed_off(grasps[0], 0.10)], CFG)[0]
    assert not r["success"]
    assert r["lift_height_m"] < 0.05


def test_deterministic(backend, top_grasps):
    obj, grasps = top_grasps
    a = backend.execute(obj, grasps[:1], CFG, seed=3)[0]
    b = backend.execute(obj, grasps[:1], CFG, seed=3)[0]
    assert a["object_end"] == b["object_end"] and a["success"] == b["success"]


def test_keyframes_are_pngs(backend, top_grasps):
    from PIL import Image

    obj, grasps = top_grasps
    r = backend.execute(obj, grasps[:1], CFG, render=True)[0]
    assert set(r["keyframes"]) >= {"pregrasp", "grasp", "lifted"}
    for png in r["keyframes"].values():
        img = Image.open(io.BytesIO(base64.b64decode(png)))
        assert img.format == "PNG" and img.size[0] > 0


def test_grasp_under_the_table_is_refused_without_simulating(backend, top_grasps):
    obj, grasps = top_grasps
    g = grasps[0]
    sunk = GraspArrays(g.position - [0.0, 0.0, 0.2], g.quaternion_wxyz, g.joints, g.squeeze)
    r = backend.execute(obj, [sunk], CFG)[0]
    assert not r["success"]
    assert "under the table" in r["reason"] and r["sim_steps"] == 0


def test_policy_registry():
    assert "scripted" in available_policies()
    with pytest.raises(ValueError, match="scripted"):
        get_policy("no_such_policy")
