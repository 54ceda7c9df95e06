"""The Isaac Gym backend without Isaac Gym: registration, the clear error, and its pure parts
checked against the MuJoCo backend's functions on the same inputs ("identical criteria")."""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from dataclasses import replace

import mujoco
import numpy as np
import pytest

from sim_worker.backends import available_backends, get_backend
from sim_worker.backends import isaacgym_backend as ig
from sim_worker.config import SimConfig
from sim_worker.scene import build_scene, object_from_primitive
from sim_worker.validate import DIRECTIONS, validate_grasp

from .helpers import backed_off, trust_case

HAS_ISAACGYM = importlib.util.find_spec("isaacgym") is not None


def test_registered_and_importable_without_isaacgym() -> None:
    assert "isaacgym" in available_backends()
    assert ig.IsaacGymBackend.name == "isaacgym"


@pytest.mark.skipif(HAS_ISAACGYM, reason="Isaac Gym is installed here")
def test_constructing_without_isaacgym_names_the_install_step() -> None:
    with pytest.raises(ig.IsaacGymUnavailable) as info:
        get_backend("isaacgym")
    msg = str(info.value)
    assert "Isaac Gym" in msg and "pip install -e isaacgym/python" in msg and "--backend mujoco" in msg
    assert isinstance(info.value, ImportError) and isinstance(info.value, RuntimeError)


def test_sim_params_map_every_physics_field() -> None:
    p = SimConfig.preset("pinned").physics
    d = ig.sim_params_dict(p, (0.0, 0.0, -9.81))
    assert d["dt"] == p.timestep_s and d["physx"]["num_position_iterations"] == p.solver_iterations
    assert d["gravity"] == (0.0, 0.0, -9.81) and d["up_axis"] == "z"
    fr = ig.shape_friction(p)
    assert (fr["friction"], fr["torsion_friction"], fr["rolling_friction"]) == (
        p.friction_sliding, p.friction_torsional, p.friction_rolling)
    used_elsewhere = {"timestep_s", "solver_iterations", "friction_sliding", "friction_torsional", "friction_rolling",
                      "object_density_kg_m3", "object_mass_kg", "finger_kp", "finger_force_scale", "weld_solref"}
    assert set(ig.physics_fields()) == used_elsewhere | set(ig.UNMAPPED_PHYSICS), "map or document every new field"


def test_scene_description_matches_the_mujoco_scene() -> None:
    obj, _ = trust_case("cylinder_power")
    phys = SimConfig.preset("pinned").physics
    sc = build_scene(obj, phys)
    d = ig.describe_scene(obj, phys, sc=sc)
    m = sc.model
    assert d.object_mass == pytest.approx(sc.object_mass)
    assert d.object_mass == pytest.approx(obj.mass(phys))
    assert np.allclose(np.linalg.eigvalsh(d.object_inertia), np.sort(m.body_inertia[sc.object_body]))
    assert d.actuated.sum() == m.nu and np.allclose(d.joint_stiffness[d.actuated], phys.finger_kp)
    assert (d.joint_effort[d.actuated] > 0).all()
    assert d.joint_names == tuple(sc.spec.full_name(j) for j in sc.spec.joints)
    # the Isaac hand: same kinematics as the MuJoCo scene's, palm carried by the six root joints
    hm = mujoco.MjModel.from_xml_string(d.hand_mjcf)
    hd = mujoco.MjData(hm)
    rng = np.random.default_rng(0)
    pos = np.array([0.03, -0.02, 0.1])
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    joints = np.asarray(sc.spec.init_pose, dtype=np.float64)
    for name, val in zip(ig.ROOT_JOINTS, ig.root_dofs(pos, q)):
        hd.qpos[hm.jnt_qposadr[mujoco.mj_name2id(hm, mujoco.mjtObj.mjOBJ_JOINT, name)]] = val
    for name, val in zip(d.joint_names, joints):
        hd.qpos[hm.jnt_qposadr[mujoco.mj_name2id(hm, mujoco.mjtObj.mjOBJ_JOINT, name)]] = val
    mujoco.mj_kinematics(hm, hd)
    md = mujoco.MjData(m)
    from sim_worker.validate import set_hand

    set_hand(sc, md, pos, q, joints)
    mujoco.mj_kinematics(m, md)
    for link in ("palm", "ffdistal", "thdistal", "lfdistal"):
        full = sc.spec.full_name(link)
        a = hd.xpos[mujoco.mj_name2id(hm, mujoco.mjtObj.mjOBJ_BODY, full)]
        b = md.xpos[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, full)]
        assert np.allclose(a, b, atol=1e-9), link


def test_object_urdf_parts(tmp_path) -> None:
    for kind, size, n in [("box", (0.02, 0.03, 0.04), 1), ("capsule", (0.02, 0.05), 3), ("ellipsoid", (0.02, 0.03, 0.04), 1)]:
        obj = object_from_primitive(kind, size)  # type: ignore[arg-type]
        d = ig.describe_scene(obj, SimConfig.preset("pinned").physics)
        hand_file, urdf_file = ig.write_assets(d, str(tmp_path / kind))
        root = ET.parse(tmp_path / kind / urdf_file).getroot()
        assert len(root.findall("./link/collision")) == n
        assert float(root.find("./link/inertial/mass").attrib["value"]) == pytest.approx(obj.mass(SimConfig.preset("pinned").physics))
        assert (tmp_path / kind / hand_file).is_file()
    box = ig.object_parts(object_from_primitive("box", (0.02, 0.03, 0.04)))[0]
    assert box.size == pytest.approx((0.04, 0.06, 0.08))


def test_env_assignment_and_batches() -> None:
    assert ig.env_objects(7, 3) == [0, 1, 2, 0, 1, 2, 0]
    batches = ig.grasp_batches(5, 1, 6, 3)
    assert batches == [[(1, 0), (4, 1)], [(1, 2), (4, 3)], [(1, 4)]]
    assert sorted(g for b in batches for _, g in b) == list(range(5))


def test_disturbance_forces_are_the_mujoco_ones() -> None:
    v = SimConfig.preset("pinned").validation
    q = np.array([0.9, 0.1, -0.3, 0.2])
    q /= np.linalg.norm(q)
    f = ig.disturbance_forces(0.1, v, q)
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, q)
    for i, name in enumerate(DIRECTIONS):
        axis = "xyz".index(name[1])
        sign = 1.0 if name[0] == "+" else -1.0
        assert np.allclose(f[i], sign * rot.reshape(3, 3)[:, axis] * v.force_per_kg_n * 0.1)


def test_quaternion_conventions_round_trip() -> None:
    q = np.array([0.1, 0.2, 0.3, 0.4])
    assert np.array_equal(ig.xyzw_to_wxyz(ig.wxyz_to_xyzw(q)), q)
    assert np.array_equal(ig.wxyz_to_xyzw(q), [0.2, 0.3, 0.4, 0.1])
    a = ig.root_dofs(np.zeros(3), np.array([1.0, 0, 0, 0]), current=np.array([0, 0, 0, 2 * np.pi, 0, 0]))
    assert np.allclose(a[3:], [2 * np.pi, 0, 0])


def _recorded_validation(sc, g, cfg, monkeypatch):
    """validate_grasp with every step's object pose recorded while a disturbance is applied."""
    real = mujoco.mj_step
    rec: list[tuple[np.ndarray, np.ndarray]] = []

    def step(m, d):
        real(m, d)
        if np.any(d.xfrc_applied[sc.object_body]):
            a = sc.object_qpos
            rec.append((d.qpos[a : a + 3].copy(), d.qpos[a + 3 : a + 7].copy()))

    monkeypatch.setattr(mujoco, "mj_step", step)
    data = mujoco.MjData(sc.model)
    res = validate_grasp(sc, data, g.position, g.quaternion_wxyz, g.joints, g.squeeze, cfg)
    monkeypatch.setattr(mujoco, "mj_step", real)
    return res, rec


@pytest.mark.parametrize("case,back", [("box_pinch", 0.0), ("cylinder_power", 0.0), ("cylinder_power", 0.05)])
def test_verdict_from_trajectories_equals_validate_grasp(case, back, monkeypatch) -> None:
    """The Isaac path's success criteria, fed MuJoCo's own trajectories, give validate_grasp's results
    exactly, with fail-fast on and off."""
    obj, grasps = trust_case(case)
    g = grasps[0] if back == 0 else backed_off(grasps[0], back)
    pinned = SimConfig.preset("pinned")
    full = replace(pinned, validation=replace(pinned.validation, fail_fast=False))
    sc = build_scene(obj, full.physics)
    ref_full, rec = _recorded_validation(sc, g, full, monkeypatch)
    n = max(1, round(full.validation.disturb_s / sc.model.opt.timestep))
    assert len(rec) == 6 * n
    assert ref_full.success == (back == 0)
    pos = np.array([p for p, _ in rec]).reshape(6, n, 3)
    quat = np.array([q for _, q in rec]).reshape(6, n, 4)
    p0, q0 = np.zeros(3), np.array([1.0, 0, 0, 0])
    for cfg in (full, SimConfig.preset("pinned")):
        data = mujoco.MjData(sc.model)
        ref = ref_full if cfg is full else validate_grasp(sc, data, g.position, g.quaternion_wxyz, g.joints, g.squeeze, cfg)
        outcomes = [ig.direction_outcome(pos[d], quat[d], p0, q0, cfg.validation) for d in range(6)]
        mine = ig.validation_result(ref.initial_penetration_m, ref.contact_count, outcomes, cfg.validation)
        assert mine.to_dict() == ref.to_dict()


def test_initial_penetration_verdict_equals_validate_grasp() -> None:
    obj, grasps = trust_case("box_pinch")
    g = backed_off(grasps[0], -0.03)
    cfg = SimConfig.preset("pinned")
    sc = build_scene(obj, cfg.physics)
    ref = validate_grasp(sc, mujoco.MjData(sc.model), g.position, g.quaternion_wxyz, g.joints, g.squeeze, cfg)
    assert not ref.success and "penetration" in ref.reason
    assert ig.validation_result(ref.initial_penetration_m, 0, [], cfg.validation).to_dict() == ref.to_dict()


def test_settle_targets_and_ramp_are_validate_grasps() -> None:
    obj, grasps = trust_case("cylinder_power")
    cfg = SimConfig.preset("pinned")
    sc = build_scene(obj, cfg.physics)
    g = grasps[0]
    start, end, n = ig.settle_targets(sc, g.joints, None, cfg.validation)
    from sim_worker.validate import squeeze_targets

    assert np.array_equal(end[sc.actuator_joint], squeeze_targets(sc, g.joints, cfg.validation.squeeze_rad))
    assert n == max(1, round(cfg.validation.settle_s / sc.model.opt.timestep))
    assert np.allclose(ig.ramp(start, end, n - 1, n), end)
    assert np.allclose(ig.ramp(start, end, 0, n), start + (end - start) * 2 / n)


def test_execution_verdict_matches_execute() -> None:
    from sim_worker.config import ExecutionConfig

    e = ExecutionConfig()
    target = np.array([0.0, 0.0, 0.33])
    assert ig.execution_verdict(target + np.array([0.0, 0.01, 0.0]), target, True, False, e) == (True, "")
    ok, why = ig.execution_verdict(np.array([0.0, 0.0, 0.03]), target, False, False, e)
    assert not ok and why == "object centre 30.0 cm from the target (> 5 cm); the policy did not finish within its horizon"
    assert ig.execution_verdict(np.array([np.nan, 0, 0]), target, True, False, e) == (False, "simulation became unstable")


def test_weld_gains() -> None:
    k, b = ig.weld_gains((0.005, 1.0))
    assert k == pytest.approx(40000.0) and b == pytest.approx(400.0)


def test_backend_runs_on_isaacgym() -> None:
    pytest.importorskip("isaacgym", reason="needs NVIDIA Isaac Gym (Python <= 3.8); see docs/simulation.md")
    obj, grasps = trust_case("box_pinch")
    with get_backend("isaacgym", envs_per_object=4) as be:
        out = be.validate(obj, grasps[:2], SimConfig.preset("pinned"))
    assert len(out) == 2 and all(r["success"] for r in out)
