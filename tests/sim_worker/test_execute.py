"""Goal-conditioned execution (approach, close, squeeze, lift) on MuJoCo with the scripted policy."""

from __future__ import annotations

import base64
import io
import json

import mujoco
import numpy as np
import pytest

from models.core.rotations_np import matrix_to_quat as mat_to_quat
from models.core.rotations_np import quat_to_matrix as quat_to_mat
from models.core.rotations_np import slerp
from sim_worker.arrays import GraspArrays
from sim_worker.backends import get_backend
from sim_worker.config import SimConfig
from sim_worker.execute import GIF_SIZE, KEYFRAME_SIZE, execute_grasp
from sim_worker.policies import (
    Action,
    Goal,
    Observation,
    Policy,
    available_policies,
    get_policy,
    min_jerk,
    register_policy,
)
from sim_worker.scene import build_scene, object_from_primitive

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


# ----------------------------------------------------------------------------- a hand-built top-down box grasp
# The box (5 x 5 x 8 cm) stands on the table. Palm above it facing down (palm -y -> world -z), fingers
# pointing along +x over the top and curling down the +x face, the thumb (palm +x -> world +y side)
# opposing them on the -x side. Tuned by scanning the palm offset and looking at the keyframes: it lifts
# for palm shifts of +-5 mm and object masses 0.05-0.3 kg, without the fingertips touching the table.
BOX = (0.025, 0.025, 0.04)
TOP_DOWN_ROT = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # columns: palm x, y, z in the world


def _box_grasp(open_fingers: bool = False, shift: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> GraspArrays:
    from models.hands import load_spec

    names = load_spec("shadow").joints
    q = dict.fromkeys(names, 0.0)
    if not open_fingers:
        for f in ("FF", "MF", "RF", "LF"):
            q[f + "J2"], q[f + "J1"], q[f + "J0"] = 1.1, 0.6, 0.6 * 0.876  # J0 as its tendon couples it to J1
        q.update(THJ4=0.8, THJ3=1.0, THJ1=0.3, THJ0=-0.3)
    joints = np.array([q[n] for n in names])
    pos = np.array([-0.075, -0.011, BOX[2] + 0.016]) + np.asarray(shift)
    return GraspArrays(pos, mat_to_quat(TOP_DOWN_ROT), joints)


@pytest.fixture(scope="module")
def box_scene():
    e = CFG.execution
    sc = build_scene(object_from_primitive("box", BOX), CFG.physics, table_z=e.table_z, gravity=e.gravity)
    return sc, mujoco.MjData(sc.model)


def test_top_down_box_grasp_lifts(box_scene):
    sc, data = box_scene
    r = execute_grasp(sc, data, _box_grasp(), CFG)
    assert r.success, r.reason
    assert np.linalg.norm(np.subtract(r.object_end, r.target)) < CFG.execution.success_radius_m
    assert r.lift_height_m > 0.25
    assert not r.table_contact
    assert r.object_displacement_before_lift_m is not None and r.object_displacement_before_lift_m < 0.03
    assert r.mpe_m is not None and r.mpe_m < 0.03
    assert r.object_start[2] == pytest.approx(BOX[2], abs=0.002)  # resting on the table
    assert r.sim_steps == round(r.sim_time_s / sc.model.opt.timestep)


def test_top_down_box_grasp_with_open_fingers_leaves_the_box(box_scene):
    sc, data = box_scene
    r = execute_grasp(sc, data, _box_grasp(open_fingers=True), CFG)
    assert not r.success
    assert abs(r.lift_height_m) < 0.02  # still on the table
    assert "from the target" in r.reason


def test_box_grasp_10cm_beside_the_object_fails(box_scene):
    sc, data = box_scene
    r = execute_grasp(sc, data, _box_grasp(shift=(0.0, 0.10, 0.0)), CFG)
    assert not r.success
    assert abs(r.lift_height_m) < 0.02


def test_box_rollout_is_deterministic(box_scene):
    sc, data = box_scene
    a = execute_grasp(sc, data, _box_grasp(), CFG, seed=7)
    b = execute_grasp(sc, mujoco.MjData(sc.model), _box_grasp(), CFG, seed=7)
    assert a.object_end == b.object_end and a.mpe_m == b.mpe_m and a.success == b.success


def test_rotated_object_pose_moves_the_grasp_with_it(box_scene):
    sc, data = box_scene
    yaw = np.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])  # 90 deg about z
    r = execute_grasp(sc, data, _box_grasp(), CFG, object_pose=(np.array([0.05, -0.03, 1.0]), yaw))
    assert r.success, r.reason
    assert r.object_start[:2] == pytest.approx([0.05, -0.03], abs=0.005)
    assert r.object_start[2] == pytest.approx(BOX[2], abs=0.002)  # the given z is ignored: it rests on the table


def test_box_grasp_under_the_table_is_refused(box_scene):
    sc, data = box_scene
    r = execute_grasp(sc, data, _box_grasp(shift=(0.0, 0.0, -0.08)), CFG)
    assert not r.success and r.reason.startswith("grasp under the table") and r.sim_steps == 0


def test_render_gives_png_keyframes_and_gif(box_scene):
    from PIL import Image

    e = CFG.execution
    sc = build_scene(object_from_primitive("box", BOX), CFG.physics, table_z=e.table_z, gravity=e.gravity, with_visual=True)
    r = execute_grasp(sc, mujoco.MjData(sc.model), _box_grasp(), CFG, render=True, render_gif=True)
    assert set(r.keyframes) == {"pregrasp", "grasp", "lifted"}
    d = json.loads(json.dumps(r.to_dict()))  # JSON-safe
    for name, b64 in d["keyframes"].items():
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        img.load()
        assert img.format == "PNG" and img.size == KEYFRAME_SIZE, name
        assert np.asarray(img).std() > 5  # not a blank frame
    gif = Image.open(io.BytesIO(base64.b64decode(d["gif"])))
    assert gif.format == "GIF" and gif.size == GIF_SIZE and gif.n_frames > 10
    assert r.success == execute_grasp(sc, mujoco.MjData(sc.model), _box_grasp(), CFG).success  # pictures change nothing


def test_should_stop_cancels(box_scene):
    sc, data = box_scene
    r = execute_grasp(sc, data, _box_grasp(), CFG, should_stop=lambda: True)
    assert not r.success and r.reason == "canceled"


# ----------------------------------------------------------------------------- the policy interface
class _HoldStill(Policy):
    """Keeps the hand where it starts; records what it saw (a stand-in for a learned policy)."""

    needs_point_cloud = True
    control_dt_s = 0.02

    def reset(self, obs0: Observation, goal: Goal) -> None:
        self.obs0, self.goal, self.seen = obs0, goal, 0

    def act(self, obs: Observation, t: float) -> Action:
        self.seen += 1
        return Action(self.obs0.palm_pos, self.obs0.palm_quat_wxyz, self.obs0.joint_pos, done=t >= 0.2)


def test_a_plugged_in_policy_sees_cloud_proprioception_and_goal(box_scene):
    sc, data = box_scene
    pol = _HoldStill(CFG.execution, seed=0)
    r = execute_grasp(sc, data, _box_grasp(), CFG, policy=pol)
    assert not r.success and r.object_displacement_before_lift_m is None  # no "lift" phase label
    assert r.mpe_m is not None and r.mpe_m > 0.05  # measured at the end, hand far from the goal
    assert pol.seen == 11  # 0.2 s at 50 Hz, plus the step that says done
    pts = pol.obs0.object_points
    assert pts is not None and pts.shape == (1024, 3)
    assert pts.min(axis=0) == pytest.approx([-BOX[0], -BOX[1], 0.0], abs=2e-3)  # the box on the table
    assert pts.max(axis=0) == pytest.approx([BOX[0], BOX[1], 2 * BOX[2]], abs=2e-3)
    # start: palm down (approach direction -> world -z), start_height above the box top, fingers open
    approach = quat_to_mat(pol.obs0.palm_quat_wxyz) @ np.array(sc.spec.approach_direction)
    assert approach == pytest.approx([0.0, 0.0, -1.0], abs=1e-3)
    assert pol.obs0.palm_pos[2] == pytest.approx(2 * BOX[2] + CFG.execution.start_height_m, abs=2e-3)
    assert np.abs(pol.obs0.joint_pos - np.array(sc.spec.open_pose)).max() < 0.05
    # goal in the world: the object-frame grasp on the box resting at the origin; pre-grasp backed off upwards
    assert pol.goal.palm_pos == pytest.approx(_box_grasp().position + np.array([0.0, 0.0, BOX[2]]), abs=2e-3)
    assert pol.goal.pre_palm_pos - pol.goal.palm_pos == pytest.approx([0.0, 0.0, CFG.execution.pregrasp_backoff_m], abs=1e-6)
    assert pol.goal.lift_target[2] - r.object_start[2] == pytest.approx(CFG.execution.lift_height_m)


def test_scripted_waypoints_are_smooth_and_avoid_the_table():
    pol = get_policy("scripted", CFG.execution)
    q_down = mat_to_quat(TOP_DOWN_ROT)
    z = np.zeros(22)
    obs0 = Observation(0.0, np.array([0.0, 0.0, 0.4]), q_down, z, z, np.zeros(3), np.array([1.0, 0, 0, 0]))
    goal = Goal(
        palm_pos=np.array([0.2, 0.0, 0.05]), palm_quat_wxyz=q_down, joints=np.full(22, 0.5), squeeze=np.full(22, 0.6),
        pre_palm_pos=np.array([0.2, 0.0, 0.15]), pre_palm_quat_wxyz=q_down, pre_joints=z, lift_height_m=0.3,
        lift_target=np.array([0.2, 0.0, 0.34]), table_z=0.0,
    )
    pol.reset(obs0, goal)
    ts = np.arange(0.0, pol.horizon_s + 0.01, 0.004)
    acts = [pol.act(obs0, float(t)) for t in ts]
    p = np.array([a.root_pos for a in acts])
    phases = [a.phase for a in acts]
    # sideways motion happens only at the start height; the descent starts right above the pre-grasp
    travel = np.array([ph == "travel" for ph in phases])
    assert np.allclose(p[travel, 2], 0.4)
    first_descend = phases.index("descend")
    assert p[first_descend, :2] == pytest.approx([0.2, 0.0], abs=1e-6)
    assert np.max(np.linalg.norm(np.diff(p, axis=0), axis=1)) < 0.005  # no jumps (min-jerk peak: 1.875x the mean speed)
    assert [ph for i, ph in enumerate(phases) if i == 0 or phases[i - 1] != ph] == [
        "travel", "descend", "approach", "close", "squeeze", "lift", "hold",
    ]
    assert acts[-1].done and acts[-1].root_pos == pytest.approx([0.2, 0.0, 0.35])
    assert acts[-1].joint_targets == pytest.approx(np.full(22, 0.6))


def test_quaternion_helpers():
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.normal(size=4)
        q = q / np.linalg.norm(q) * (1 if q[0] >= 0 else -1)
        assert mat_to_quat(quat_to_mat(q)) == pytest.approx(q, abs=1e-9)
    a, b = mat_to_quat(np.eye(3)), mat_to_quat(TOP_DOWN_ROT)
    assert slerp(a, b, 0.0) == pytest.approx(a) and slerp(a, b, 1.0) == pytest.approx(b)
    assert min_jerk(0.0) == 0.0 and min_jerk(1.0) == 1.0 and min_jerk(0.5) == pytest.approx(0.5)


def test_registry_decorator_and_unknown_names():
    assert "scripted" in available_policies()
    with pytest.raises(ValueError, match=r"available: .*scripted"):
        get_policy("learned-someday")
    with pytest.raises(ValueError, match="already registered"):
        register_policy("scripted")(_HoldStill)
