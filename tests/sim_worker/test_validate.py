"""Trust checks for the ``pinned`` protocol (the earlier validator, kept as a named option): known-good
grasps pass, broken ones fail, results are deterministic and do not depend on how the whole scene is
oriented. The referee of record (``fc_mocap``) has its own checks in ``test_referee.py``."""

from __future__ import annotations

import json
from pathlib import Path

import mujoco
import numpy as np
import pytest

from models.grasp import GraspSet
from models.hands import get_hand
from sim_worker.arrays import GraspArrays
from sim_worker.backends import get_backend
from sim_worker.config import SimConfig
from sim_worker.scene import build_scene, object_from_mesh, object_from_primitive
from sim_worker.validate import validate_grasp

DATA = Path(__file__).resolve().parents[1] / "data" / "sim"
CFG = SimConfig.preset("pinned")


def _case(name: str):
    doc = json.loads((DATA / f"{name}.json").read_text())
    prim = doc.pop("primitive")
    gs = GraspSet.model_validate(doc)
    obj = object_from_primitive(prim["kind"], tuple(prim["size"]))
    return obj, [GraspArrays.from_grasp(g) for g in gs.grasps]


@pytest.fixture(scope="module")
def backend():
    with get_backend("mujoco") as be:
        yield be


def _run(be, obj, g: GraspArrays, **kw):
    sc, data = be.scene(obj, CFG, "shadow", None, (0.0, 0.0, 0.0))
    args = dict(pos=g.position, quat_wxyz=g.quaternion_wxyz, joints=g.joints, squeeze=g.squeeze)
    args.update(kw)
    return validate_grasp(sc, data, args["pos"], args["quat_wxyz"], args["joints"], args["squeeze"], CFG,
                          object_quat_wxyz=kw.get("object_quat"))


@pytest.mark.parametrize("name", ["cylinder_power", "box_pinch"])
def test_known_good_grasps_pass(backend, name):
    obj, grasps = _case(name)
    assert len(grasps) >= 1
    for g in grasps:
        r = _run(backend, obj, g)
        assert r.success, r.reason
        assert r.contact_count >= 2
        assert max(r.translation_m.values()) < CFG.validation.max_translation_m


@pytest.mark.parametrize("name", ["cylinder_power", "box_pinch"])
def test_grasp_moved_away_fails(backend, name):
    obj, grasps = _case(name)
    h = get_hand("shadow", dtype="float64")
    g = grasps[0]
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, g.quaternion_wxyz)
    back = -rot.reshape(3, 3) @ h.approach_direction.numpy()  # away from the object
    r = _run(backend, obj, g, pos=g.position + 0.05 * back)
    assert not r.success
    assert r.contact_count == 0


@pytest.mark.parametrize("name", ["cylinder_power", "box_pinch"])
def test_open_fingers_fail(backend, name):
    obj, grasps = _case(name)
    h = get_hand("shadow", dtype="float64")
    g = grasps[0]
    r = _run(backend, obj, g, joints=h.open_pose.numpy(), squeeze=h.open_pose.numpy())
    assert not r.success


def test_deterministic(backend):
    obj, grasps = _case("cylinder_power")
    a = _run(backend, obj, grasps[0]).to_dict()
    b = _run(backend, obj, grasps[0]).to_dict()
    assert a == b


def test_outcome_invariant_to_scene_rotation(backend):
    """Rotate object, grasp and disturbance axes together: same verdicts, near-identical motion."""
    from scipy.spatial.transform import Rotation

    r_world = Rotation.from_euler("xyz", [0.7, -1.1, 2.3])
    qw = r_world.as_quat(scalar_first=True)
    for name in ("cylinder_power", "box_pinch"):
        obj, grasps = _case(name)
        for g in grasps[:2]:
            ref = _run(backend, obj, g)
            pos = r_world.apply(g.position)
            quat = (r_world * Rotation.from_quat(g.quaternion_wxyz, scalar_first=True)).as_quat(scalar_first=True)
            rot = _run(backend, obj, g, pos=pos, quat_wxyz=quat, object_quat=qw)
            assert rot.success == ref.success
            assert rot.passed == ref.passed
            for k in ref.translation_m:
                assert abs(rot.translation_m[k] - ref.translation_m[k]) < 2e-3


def test_deep_initial_penetration_fails_without_simulating(backend):
    obj, grasps = _case("cylinder_power")
    g = grasps[0]
    h = get_hand("shadow", dtype="float64")
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, g.quaternion_wxyz)
    into = rot.reshape(3, 3) @ h.approach_direction.numpy()
    r = _run(backend, obj, g, pos=g.position + 0.03 * into)
    assert not r.success
    assert r.initial_penetration_m > CFG.validation.max_initial_penetration_m
    assert "initial penetration" in r.reason and not r.passed


def test_nonconvex_mesh_is_decomposed(tmp_path, monkeypatch):
    """A mug-like open cylinder collides as several convex parts, cached by content hash."""
    import trimesh

    monkeypatch.setenv("DEXGRASP_CACHE", str(tmp_path))
    mesh = trimesh.creation.annulus(r_min=0.025, r_max=0.032, height=0.08)
    obj = object_from_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces))
    assert len(obj.parts) >= 4
    cached = list((tmp_path / "convex").glob("*.npz"))
    assert len(cached) == 1
    again = object_from_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces))
    assert again.digest == obj.digest
    sc = build_scene(obj, CFG.physics)
    assert len(sc.object_geoms) == len(obj.parts)
    # the cavity stays empty: the axis point is inside no convex part (a single hull would fill it)
    from scipy.spatial import Delaunay

    centre = np.zeros((1, 3))
    assert all(Delaunay(p.vertices).find_simplex(centre)[0] < 0 for p in obj.parts)
    wall = np.array([[0.0285, 0.0, 0.0]])
    assert any(Delaunay(p.vertices).find_simplex(wall)[0] >= 0 for p in obj.parts)


def test_primitive_sizes_are_checked():
    with pytest.raises(ValueError, match="box needs 3 positive sizes"):
        object_from_primitive("box", (0.1, 0.1))
    with pytest.raises(ValueError, match="unknown primitive"):
        object_from_primitive("cone", (0.1,))  # type: ignore[arg-type]


@pytest.mark.parametrize("preset", ["fc_mocap", "pinned"])
@pytest.mark.parametrize("what", ["position", "joints"])
def test_absurd_grasp_values_raise_instead_of_a_verdict(backend, preset, what):
    # MuJoCo resets a blown-up state (or zeroes a huge control) and the object then "slips": that
    # verdict would be about a simulation that never happened
    from sim_worker.validate import SimulationDiverged

    obj, grasps = _case("box_pinch")
    g = grasps[0]
    cfg = SimConfig.preset(preset)
    sc, data = backend.scene(obj, cfg, "shadow", None, (0.0, 0.0, 0.0))
    pos = g.position + (np.array([1e30, 0.0, 0.0]) if what == "position" else 0.0)
    joints = g.joints + (1e30 if what == "joints" else 0.0)
    with pytest.raises(SimulationDiverged, match="non-finite or huge"):
        validate_grasp(sc, data, pos, g.quaternion_wxyz, joints, g.squeeze, cfg)
