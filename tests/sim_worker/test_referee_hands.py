"""The referee of record for the Allegro and LEAP hands: the same protocol as the ShadowHand's, each hand driven by
its own actuators with the gains of its spec's ``sim`` block (``models/hands/<hand>.json``). Trust grasps the
optimiser found on the objects registry's box ``prim/box/0006`` (``bench/make_hand_trust_grasps.py``, fixed seed)
hold, and fail backed off 5 cm or with fingers too weak to grip; the ShadowHand's scene keeps its values."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources

import mujoco
import numpy as np
import pytest

from models.hands import load_spec
from sim_worker.arrays import GraspArrays
from sim_worker.config import PhysicsConfig, SimConfig
from sim_worker.scene import build_scene, object_from_primitive
from sim_worker.validate import closing_direction, squeeze_targets, validate_grasp
from tests.sim_worker.helpers import backed_off, trust_case

HANDS = ("allegro", "leap")
CFG = SimConfig()
SIM_KEYS = ("finger_kp", "finger_force_limit", "joint_damping", "joint_armature", "joint_frictionloss")


def _raw_sim(hand: str) -> dict[str, float]:
    """The ``sim`` block as the hand's JSON file states it."""
    doc = json.loads((resources.files("models.hands") / f"{hand}.json").read_text())
    return {k: float(doc["sim"][k]) for k in SIM_KEYS}


def _run(hand: str, g: GraspArrays, cfg: SimConfig = CFG) -> dict[str, object]:
    obj, _ = trust_case(f"{hand}_box")
    sc = build_scene(obj, cfg.physics, hand=hand)
    data = mujoco.MjData(sc.model)
    pre = None if g.pre_position is None else (g.pre_position, g.pre_quaternion_wxyz, g.pre_joints)
    return validate_grasp(sc, data, g.position, g.quaternion_wxyz, g.joints, g.squeeze, cfg, pregrasp=pre).to_dict()


def _finger_dofs(sc) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.asarray(sc.joint_dof)


@pytest.mark.parametrize("hand", HANDS)
def test_scene_takes_the_hands_own_actuation(hand):
    """Gains, torque limits, damping, armature and friction loss of the referee's scene are the numbers the hand's
    JSON states (Allegro kp 1 N m/rad +-0.7 N m, LEAP kp 3 +-0.95 N m); one position actuator per joint, no tendon."""
    raw = _raw_sim(hand)
    spec = load_spec(hand)
    assert spec.sim.values() == raw and spec.sim.note
    sc = build_scene(object_from_primitive("sphere", (0.03,)), CFG.physics, hand=hand)
    m = sc.model
    assert m.nu == spec.num_joints == 16 and m.ntendon == 0
    assert all(m.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT for a in range(m.nu))
    assert np.allclose(m.actuator_gainprm[:, 0], raw["finger_kp"])
    assert np.allclose(m.actuator_biasprm[:, 1], -raw["finger_kp"])
    assert np.allclose(m.actuator_forcerange, [[-raw["finger_force_limit"], raw["finger_force_limit"]]] * m.nu)
    dofs = _finger_dofs(sc)
    assert np.allclose(m.dof_damping[dofs], raw["joint_damping"])
    assert np.allclose(m.dof_armature[dofs], raw["joint_armature"])
    assert np.allclose(m.dof_frictionloss[dofs], raw["joint_frictionloss"])
    assert sc.finger_physics == raw
    # the protocol is the ShadowHand's: friction, contact softness, mass
    assert np.allclose(m.geom_friction[sc.hand_geoms, :2], [0.6, 0.02])
    assert np.allclose(m.geom_solref[sc.hand_geoms], [0.005, 1.0])
    assert abs(sc.object_mass - 0.1) < 1e-12
    # a number set in the config applies to every hand; "mjcf" keeps the MJCF's own (the earlier validator's way)
    forced = build_scene(object_from_primitive("sphere", (0.03,)), replace(CFG.physics, finger_kp=2.0), hand=hand)
    assert np.allclose(forced.model.actuator_gainprm[:, 0], 2.0) and forced.finger_physics["finger_kp"] == 2.0
    mjcf = build_scene(object_from_primitive("sphere", (0.03,)), replace(CFG.physics, finger_defaults="mjcf"), hand=hand)
    assert all(v is None for v in mjcf.finger_physics.values())


def test_scene_reads_the_sim_block_not_the_mjcf(tmp_path):
    """The Allegro's and LEAP's sim blocks state their MJCFs' own numbers; a spec whose block says otherwise gets
    those in the referee's scene (and in the squeeze's gain), so the numbers come from the hand's data."""
    doc = json.loads((resources.files("models.hands") / "allegro.json").read_text())
    doc["sim"] = {**doc["sim"], "finger_kp": 2.5, "finger_force_limit": 0.4, "joint_damping": 0.2}
    path = tmp_path / "allegro_stiffer.json"
    path.write_text(json.dumps(doc))
    sc = build_scene(object_from_primitive("sphere", (0.03,)), CFG.physics, hand=str(path))
    m = sc.model
    assert np.allclose(m.actuator_gainprm[:, 0], 2.5) and np.allclose(m.actuator_forcerange, [[-0.4, 0.4]] * m.nu)
    assert np.allclose(m.dof_damping[_finger_dofs(sc)], 0.2)
    assert np.allclose(m.dof_armature[_finger_dofs(sc)], doc["sim"]["joint_armature"])


def test_shadow_scene_keeps_the_referee_values():
    """The ShadowHand's referee scene is the one it had when these numbers lived in PhysicsConfig's defaults (its
    spec's sim block states them), and the earlier preset still keeps its MJCF's joints."""
    obj = object_from_primitive("sphere", (0.03,))
    old_defaults = replace(CFG.physics, finger_kp=5.0, finger_force_limit=3.0, joint_damping=0.05,
                           joint_armature=0.0002, joint_frictionloss=0.01)
    a, b = build_scene(obj, CFG.physics).model, build_scene(obj, old_defaults).model
    for field in ("actuator_gainprm", "actuator_biasprm", "actuator_forcerange", "actuator_trntype", "dof_damping",
                  "dof_armature", "dof_frictionloss", "tendon_adr", "wrap_objid", "wrap_prm", "jnt_range"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert load_spec("shadow").sim.values() == {"finger_kp": 5.0, "finger_force_limit": 3.0, "joint_damping": 0.05,
                                                "joint_armature": 0.0002, "joint_frictionloss": 0.01}
    pinned = SimConfig.preset("pinned").physics
    assert pinned.finger_kp == 5.0 and pinned.finger_defaults == "mjcf"
    p = build_scene(obj, pinned)
    assert all(v is None for k, v in p.finger_physics.items() if k != "finger_kp")
    assert not np.allclose(p.model.dof_damping[_finger_dofs(p)], 0.05)  # the MJCF's own damping


@pytest.mark.parametrize("hand", HANDS)
def test_trust_grasps_hold(hand):
    """The optimiser's grasps on the box hold under the referee with the hand's own actuation."""
    _, grasps = trust_case(f"{hand}_box")
    assert grasps
    for g in grasps:
        r = _run(hand, g)
        assert r["success"], r["reason"]
        assert r["protocol"] == "fc_mocap" and int(r["contact_count"]) >= 2  # type: ignore[call-overload]


@pytest.mark.parametrize("hand", HANDS)
def test_trust_grasps_fail_backed_off_or_too_weak(hand):
    """The verdict depends on the grasp and on the hand's gains: 5 cm back the hand touches nothing; with fingers
    fifty times weaker than the hand's, the squeeze cannot grip against the 1 N push."""
    _, grasps = trust_case(f"{hand}_box")
    g = grasps[0]
    far = _run(hand, backed_off(g, 0.05, hand=hand))
    assert not far["success"]
    kp = load_spec(hand).sim.finger_kp
    assert kp is not None
    weak = replace(CFG, physics=replace(CFG.physics, finger_kp=kp / 50))
    assert not _run(hand, g, weak)["success"]


@pytest.mark.parametrize("hand", HANDS)
def test_blanket_squeeze_leaves_the_sideways_joints(hand):
    """A grasp without a squeeze closes the flexion joints only: the thumb's opposition and axial rotation and the
    fingers' abduction / rotation joints keep their angle (their closing direction is 0 in the spec)."""
    spec = load_spec(hand)
    sc = build_scene(object_from_primitive("sphere", (0.03,)), CFG.physics, hand=hand)
    c = closing_direction(sc)
    sideways = [j for j in spec.joints if j.endswith(("_rot", "_abd", "_cmc"))]
    assert sideways and all(c[spec.joints.index(j)] == 0 for j in sideways)
    assert all(c[spec.joints.index(j)] == 1 for j in spec.joints if j not in sideways)
    q = np.array(spec.init_pose)
    moved = squeeze_targets(sc, q, 0.08) - sc.ctrl(q)
    assert np.allclose(moved[[spec.joints.index(j) for j in sideways]], 0.0)
    # the ShadowHand keeps its rule, sign(init - open)
    shadow = build_scene(object_from_primitive("sphere", (0.03,)), CFG.physics)
    s = load_spec("shadow")
    assert np.array_equal(closing_direction(shadow), np.sign(np.array(s.init_pose) - np.array(s.open_pose)))


def test_physics_config_field_checks():
    with pytest.raises(ValueError, match="finger_defaults"):
        SimConfig.from_dict({"physics": {"finger_defaults": "urdf"}})
    assert PhysicsConfig().for_hand(load_spec("leap").sim).finger_kp == 3.0
    assert PhysicsConfig(finger_defaults="mjcf").for_hand(load_spec("leap").sim).finger_kp is None
