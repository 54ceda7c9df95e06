"""Goal-conditioned execution of one grasp on MuJoCo (UniDexGrasp's setting, ``evaluation.md``).

The object rests on the table; the hand starts ``start_height_m`` above the
object's top, palm down, fingers open. A policy from :mod:`sim_worker.policies`
drives the palm (through the mocap body it is welded to) and the finger
actuators to the goal grasp and lifts. Per rollout:

1. the object is put down on the table: its lowest point (exact support
   function of its collision geoms) at ``table_z``, identity rotation unless
   ``object_pose`` says otherwise; the grasp, given in the object frame, is
   moved to the world. A grasp whose hand reaches more than
   ``ExecutionConfig.table_tolerance_m`` under the table fails at once ("grasp under the
   table"), nothing is simulated;
2. the object settles for ``ExecutionConfig.object_settle_s`` with gravity on, the hand held at the
   start; the goal is re-placed on the settled object;
3. the policy acts (every physics step unless it asks for a slower rate):
   mocap pose = its root target, finger ``ctrl`` = its joint targets
   (22 spec-order joints mapped to the 18 actuators by ``scene.actuator_joint``;
   the coupled J0 joints follow their tendons);
4. measurements. *Success*: the object's centre of mass is within
   ``success_radius_m`` of its settled position raised by ``lift_height_m``,
   at the end. *Object displacement before lift*: how far the centre moved
   between the end of settling and the start of the ``lift`` phase (the hand
   should not push the object away). *MPE*: mean distance over the finger
   keypoints (origins of the proximal, middle and distal links: the ShadowHand's 15,
   :func:`models.physics.diversity.keypoint_links`) between the simulated hand at the
   end of the squeeze phase and the goal grasp placed on the object where the
   object is at that moment; it is reported for every rollout, consumers
   average it over successes only (UniDexGrasp). *Table contact*: any hand
   collision geom touched the table before the lift.

Policies mark their phases with ``Action.phase``; the executor reacts to two
labels: entering ``approach`` takes the ``pregrasp`` keyframe, entering
``lift`` takes the ``grasp`` keyframe and the pre-lift measurements. A policy
without a ``lift`` label gets MPE measured at the end and no displacement.

With ``render=True`` the result carries PNG keyframes (``pregrasp``,
``grasp``, ``lifted``; 320x240, a fixed camera in front of and above the
object); with ``render_gif=True`` also an animated GIF (160x120, one frame
every ``GIF_FRAME_S``). ``ExecutionResult.to_dict`` encodes both as base64
strings so the dict is JSON-safe. Build the scene with ``with_visual=True``
for pictures of the real hand meshes (otherwise its collision shapes are drawn).
"""

from __future__ import annotations

import base64
import io
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np
from numpy.typing import NDArray

from models.core.rotations_np import matrix_to_quat, quat_mul, quat_to_matrix
from models.hands.mjcf import subtree_bodies
from models.physics.diversity import keypoint_links

from .arrays import GraspArrays
from .config import SimConfig
from .policies import Goal, Observation, Policy, get_policy
from .scene import Scene
from .validate import check_stable, closing_direction, failure_reason_key, mean_or_none, set_hand

F64 = NDArray[np.float64]

POINT_CLOUD_SIZE = 1024  # surface samples for policies that observe the object's cloud
STOP_CHECK_STEPS = 50  # poll ``should_stop`` this often (steps)
KEYFRAME_SIZE = (320, 240)  # width, height
GIF_SIZE = (160, 120)
GIF_FRAME_S = 0.1
# fixed free camera: in front of (-y) and above the object, aimed above it so the lifted hand stays in view
CAMERA_AZIMUTH_DEG = 90.0
CAMERA_ELEVATION_DEG = -15.0
CAMERA_DISTANCE_M = 0.7


@dataclass
class ExecutionResult:
    success: bool
    reason: str = ""
    policy: str = ""
    seed: int = 0
    lift_height_m: float = 0.0  # object centre rise from its settled position, at the end
    object_displacement_before_lift_m: float | None = None
    mpe_m: float | None = None  # consumers average it over successful rollouts only
    table_contact: bool = False  # a hand geom touched the table before the lift
    sim_time_s: float = 0.0
    wall_time_s: float = 0.0
    sim_steps: int = 0
    object_start: list[float] = field(default_factory=list)  # settled centre of mass, world
    object_end: list[float] = field(default_factory=list)
    target: list[float] = field(default_factory=list)
    keyframes: dict[str, bytes] = field(default_factory=dict)  # name -> PNG
    gif: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: keyframes (PNG) and the GIF are base64 (standard alphabet) strings."""
        return {
            "success": self.success,
            "reason": self.reason,
            "policy": self.policy,
            "seed": self.seed,
            "lift_height_m": self.lift_height_m,
            "object_displacement_before_lift_m": self.object_displacement_before_lift_m,
            "mpe_m": self.mpe_m,
            "table_contact": self.table_contact,
            "sim_time_s": self.sim_time_s,
            "wall_time_s": self.wall_time_s,
            "sim_steps": self.sim_steps,
            "object_start": self.object_start,
            "object_end": self.object_end,
            "target": self.target,
            "keyframes": {k: base64.b64encode(v).decode("ascii") for k, v in self.keyframes.items()},
            "gif": None if self.gif is None else base64.b64encode(self.gif).decode("ascii"),
        }


# ----------------------------------------------------------------------------- geometry helpers
def _geom_support(m: mujoco.MjModel, d: mujoco.MjData, g: int, direction: F64) -> float:
    """max over the geom's points of p . direction (world), exact for MuJoCo primitives and meshes."""
    c = d.geom_xpos[g]
    r = d.geom_xmat[g].reshape(3, 3)
    s = m.geom_size[g]
    local = r.T @ direction  # the direction in the geom frame
    base = float(c @ direction)
    t = int(m.geom_type[g])
    if t == mujoco.mjtGeom.mjGEOM_SPHERE:
        return base + float(s[0])
    if t == mujoco.mjtGeom.mjGEOM_BOX:
        return base + float(np.abs(local) @ s[:3])
    if t == mujoco.mjtGeom.mjGEOM_CAPSULE:
        return base + float(s[1] * abs(local[2]) + s[0])
    if t == mujoco.mjtGeom.mjGEOM_CYLINDER:
        return base + float(s[1] * abs(local[2]) + s[0] * math.hypot(local[0], local[1]))
    if t == mujoco.mjtGeom.mjGEOM_ELLIPSOID:
        return base + float(np.linalg.norm(s[:3] * local))
    if t == mujoco.mjtGeom.mjGEOM_MESH:
        mid = int(m.geom_dataid[g])
        a, n = int(m.mesh_vertadr[mid]), int(m.mesh_vertnum[mid])
        return base + float(np.max(m.mesh_vert[a : a + n] @ local))
    raise ValueError(f"no support function for geom type {t}")


def _lowest_z(m: mujoco.MjModel, d: mujoco.MjData, geoms: NDArray[np.int64]) -> float:
    down = np.array([0.0, 0.0, -1.0])
    return -max(_geom_support(m, d, int(g), down) for g in geoms)


def _highest_z(m: mujoco.MjModel, d: mujoco.MjData, geoms: NDArray[np.int64]) -> float:
    return max(_geom_support(m, d, int(g), np.array([0.0, 0.0, 1.0])) for g in geoms)


def _hand_geoms(scene: Scene) -> NDArray[np.int64]:
    """Hand collision geoms that have a support function (all the ShadowHand's do)."""
    ok = {int(mujoco.mjtGeom.mjGEOM_PLANE), int(mujoco.mjtGeom.mjGEOM_HFIELD), int(mujoco.mjtGeom.mjGEOM_SDF)}
    return np.array([g for g in scene.hand_geoms if int(scene.model.geom_type[g]) not in ok], dtype=np.int64)


def _object_cloud(scene: Scene, n: int, seed: int) -> F64:
    """(n, 3) area-uniform samples of the object's collision surface, in the object (body) frame."""
    import trimesh

    m = scene.model
    parts = []
    for g in scene.object_geoms:
        t, s = int(m.geom_type[g]), m.geom_size[g]
        if t == mujoco.mjtGeom.mjGEOM_BOX:
            mesh = trimesh.creation.box(extents=2 * s[:3])
        elif t == mujoco.mjtGeom.mjGEOM_SPHERE:
            mesh = trimesh.creation.icosphere(subdivisions=3, radius=s[0])
        elif t == mujoco.mjtGeom.mjGEOM_CYLINDER:
            mesh = trimesh.creation.cylinder(radius=s[0], height=2 * s[1], sections=48)
        elif t == mujoco.mjtGeom.mjGEOM_CAPSULE:
            mesh = trimesh.creation.capsule(height=2 * s[1], radius=s[0], count=[24, 24])
        elif t == mujoco.mjtGeom.mjGEOM_ELLIPSOID:
            mesh = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
            mesh.apply_scale(s[:3])
        elif t == mujoco.mjtGeom.mjGEOM_MESH:
            mid = int(m.geom_dataid[g])
            va, vn = int(m.mesh_vertadr[mid]), int(m.mesh_vertnum[mid])
            fa, fn = int(m.mesh_faceadr[mid]), int(m.mesh_facenum[mid])
            mesh = trimesh.Trimesh(m.mesh_vert[va : va + vn].copy(), m.mesh_face[fa : fa + fn].copy(), process=False)
        else:
            continue
        tf = np.eye(4)
        tf[:3, :3] = quat_to_matrix(m.geom_quat[g])
        tf[:3, 3] = m.geom_pos[g]
        mesh.apply_transform(tf)
        parts.append(mesh)
    if not parts:
        return np.zeros((0, 3))
    merged = trimesh.util.concatenate(parts)
    pts, _ = trimesh.sample.sample_surface(merged, n, seed=seed)
    return np.asarray(pts, dtype=np.float64)


def _joint_ranges(scene: Scene) -> tuple[F64, F64]:
    m = scene.model
    by_qpos = {int(m.jnt_qposadr[j]): j for j in range(m.njnt)}
    r = np.array([m.jnt_range[by_qpos[int(a)]] for a in scene.joint_qpos])
    return r[:, 0], r[:, 1]


def _keypoint_bodies(scene: Scene) -> NDArray[np.int64]:
    """The bodies of the hand's keypoint links (:func:`models.physics.diversity.keypoint_links`), in link order."""
    m = scene.model
    prefix = scene.spec.mjcf.name_prefix
    names = keypoint_links([m.body(b).name.removeprefix(prefix) for b in subtree_bodies(m, scene.palm_body)])
    if not names:
        raise ValueError(f"hand {scene.spec.name!r} has no keypoint links (proximal / middle / distal)")
    return np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, prefix + n) for n in names], dtype=np.int64)


# ----------------------------------------------------------------------------- goal placement
@dataclass(frozen=True)
class _WorldGrasp:
    pos: F64
    quat: F64
    pre_pos: F64
    pre_quat: F64


def _to_world(g: GraspArrays, scene: Scene, obj_pos: F64, obj_quat: F64, backoff_m: float) -> _WorldGrasp:
    """The grasp and its pre-grasp (given or backed off along -approach) moved from the object frame."""
    r = quat_to_matrix(obj_quat)
    pos = r @ np.asarray(g.position, dtype=np.float64) + obj_pos
    quat = quat_mul(obj_quat, np.asarray(g.quaternion_wxyz, dtype=np.float64))
    if g.pre_position is not None:
        pre_pos = r @ np.asarray(g.pre_position, dtype=np.float64) + obj_pos
    else:
        approach = quat_to_matrix(quat) @ np.asarray(scene.spec.approach_direction, dtype=np.float64)
        pre_pos = pos - backoff_m * approach
    pre_quat = quat if g.pre_quaternion_wxyz is None else quat_mul(obj_quat, np.asarray(g.pre_quaternion_wxyz))
    return _WorldGrasp(pos, quat, pre_pos, pre_quat)


def _hand_lowest(scene: Scene, kin: mujoco.MjData, pos: F64, quat: F64, joints: F64, geoms: NDArray[np.int64]) -> float:
    """Lowest point of the hand posed at (pos, quat, joints), computed on the scratch data ``kin``."""
    set_hand(scene, kin, pos, quat, joints)
    mujoco.mj_kinematics(scene.model, kin)
    return _lowest_z(scene.model, kin, geoms)


def _start_pose(scene: Scene, pre_quat: F64, centre: F64, top_z: float, height: float) -> tuple[F64, F64]:
    """Palm down (approach direction -> world -z), fingers pointing where the pre-grasp's point
    (projected on the table plane, so the travel only needs a small turn), the palm centre above the
    object's centre, ``height`` above the object's top."""
    a = np.asarray(scene.spec.approach_direction, dtype=np.float64)
    a /= np.linalg.norm(a)
    b = np.array([0.0, 0.0, 1.0]) - a[2] * a  # fingers axis, made orthogonal to the approach
    if np.linalg.norm(b) < 1e-6:
        b = np.array([1.0, 0.0, 0.0]) - a[0] * a
    b /= np.linalg.norm(b)
    c = np.cross(a, b)
    rp = quat_to_matrix(pre_quat)
    fwd = rp @ b
    fwd[2] = 0.0
    if np.linalg.norm(fwd) < 0.2:  # fingers of the pre-grasp point (nearly) vertically: use its side axis
        fwd = rp @ c
        fwd[2] = 0.0
        fwd = np.cross(np.array([0.0, 0.0, 1.0]), fwd) if np.linalg.norm(fwd) > 1e-6 else np.array([1.0, 0.0, 0.0])
    fwd /= np.linalg.norm(fwd)
    down = np.array([0.0, 0.0, -1.0])
    world = np.stack([down, fwd, np.cross(down, fwd)], axis=1)
    rot = world @ np.stack([a, b, c], axis=1).T
    quat = matrix_to_quat(rot)
    palm_centre = rot @ np.asarray(scene.spec.palm_center, dtype=np.float64)
    pos = np.array([centre[0] - palm_centre[0], centre[1] - palm_centre[1], top_z + height])
    return pos, quat


# ----------------------------------------------------------------------------- rendering
class _Camera:
    """A fixed free camera and one offscreen renderer for the rollout."""

    def __init__(self, model: mujoco.MjModel, lookat: F64) -> None:
        from models.tools.pictures import ensure_gl_backend

        ensure_gl_backend()
        w, h = KEYFRAME_SIZE
        self.renderer = mujoco.Renderer(model, h, w)
        self.cam = mujoco.MjvCamera()
        self.cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        self.cam.lookat[:] = lookat
        self.cam.azimuth = CAMERA_AZIMUTH_DEG
        self.cam.elevation = CAMERA_ELEVATION_DEG
        self.cam.distance = CAMERA_DISTANCE_M
        self.opt = mujoco.MjvOption()
        if not np.any(model.geom_group == 1):  # no visual meshes in this scene: draw the collision shapes
            self.opt.geomgroup[4] = 1

    def frame(self, data: mujoco.MjData) -> NDArray[np.uint8]:
        self.renderer.update_scene(data, self.cam, self.opt)
        return np.asarray(self.renderer.render(), dtype=np.uint8)

    def png(self, data: mujoco.MjData) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(self.frame(data)).save(buf, format="PNG")
        return buf.getvalue()

    def close(self) -> None:
        self.renderer.close()


def _gif(frames: list[NDArray[np.uint8]]) -> bytes:
    from PIL import Image

    images = [Image.fromarray(f).resize(GIF_SIZE, Image.Resampling.BILINEAR) for f in frames]
    buf = io.BytesIO()
    images[0].save(
        buf, format="GIF", save_all=True, append_images=images[1:], duration=round(GIF_FRAME_S * 1000), loop=0
    )
    return buf.getvalue()


# ----------------------------------------------------------------------------- the rollout
def _object_com(scene: Scene, data: mujoco.MjData) -> F64:
    return np.array(data.xipos[scene.object_body], dtype=np.float64)


def _table_touched(scene: Scene, data: mujoco.MjData, hand: NDArray[np.int64]) -> bool:
    if scene.table_geom is None or data.ncon == 0:
        return False
    pairs = data.contact.geom[: data.ncon]
    with_table = (pairs[:, 0] == scene.table_geom) | (pairs[:, 1] == scene.table_geom)
    if not with_table.any():
        return False
    other = np.where(pairs[with_table, 0] == scene.table_geom, pairs[with_table, 1], pairs[with_table, 0])
    return bool(np.isin(other, hand).any())


def execute_grasp(
    scene: Scene,
    data: mujoco.MjData,
    g: GraspArrays,
    cfg: SimConfig,
    policy: str | Policy = "scripted",
    render: bool = False,
    seed: int = 0,
    should_stop: Callable[[], bool] | None = None,
    object_pose: tuple[F64, F64] | None = None,
    render_gif: bool = False,
) -> ExecutionResult:
    """Roll out one grasp (object frame) with a goal-conditioned policy; see the module docstring.

    ``object_pose`` = (position, quaternion wxyz) of the object in the world: the rotation is used
    and the position's x, y; z is always chosen so the object's lowest point touches the table.
    ``policy`` is a registered name or a ready :class:`Policy` instance.
    """
    wall0 = time.perf_counter()
    m = scene.model
    e = cfg.execution
    pol = get_policy(policy, e, seed) if isinstance(policy, str) else policy
    res = ExecutionResult(success=False, policy=pol.name or type(pol).__name__, seed=seed)
    dt = float(m.opt.timestep)
    hand_geoms = _hand_geoms(scene)
    kin = mujoco.MjData(m)  # scratch data for kinematic checks; the rollout's ``data`` is left alone
    open_joints = np.asarray(scene.spec.open_pose, dtype=np.float64)
    joints = np.asarray(g.joints, dtype=np.float64)
    pre_joints = open_joints if g.pre_joints is None else np.asarray(g.pre_joints, dtype=np.float64)
    if g.squeeze is not None:
        squeeze = np.asarray(g.squeeze, dtype=np.float64)
    else:
        # the validation's blanket fallback: every joint pushed towards closing, within its limits
        lo, hi = _joint_ranges(scene)
        squeeze = np.clip(joints + cfg.validation.squeeze_rad * closing_direction(scene), lo, hi)

    # 1. put the object down: rotation as asked, lowest point on the table
    oq = np.array([1.0, 0.0, 0.0, 0.0]) if object_pose is None else np.asarray(object_pose[1], dtype=np.float64)
    oq = oq / np.linalg.norm(oq)
    oxy = np.zeros(2) if object_pose is None else np.asarray(object_pose[0], dtype=np.float64)[:2]
    mujoco.mj_resetData(m, kin)
    kin.qpos[scene.object_qpos : scene.object_qpos + 3] = 0.0
    kin.qpos[scene.object_qpos + 3 : scene.object_qpos + 7] = oq
    mujoco.mj_kinematics(m, kin)
    low = _lowest_z(m, kin, scene.object_geoms)
    height = _highest_z(m, kin, scene.object_geoms) - low
    opos = np.array([oxy[0], oxy[1], e.table_z - low])
    centre = kin.xipos[scene.object_body] + opos  # centre of mass once put down (kin has the object at 0)

    def place(obj_pos: F64, obj_quat: F64) -> tuple[_WorldGrasp, str]:
        """World grasp on the object at this pose, pre-grasp kept off the table; or a refusal reason."""
        wg = _to_world(g, scene, obj_pos, obj_quat, e.pregrasp_backoff_m)
        depth = e.table_z - _hand_lowest(scene, kin, wg.pos, wg.quat, joints, hand_geoms)
        if depth > e.table_tolerance_m:
            return wg, f"grasp under the table ({depth * 100:.1f} cm below its surface)"
        pre_low = _hand_lowest(scene, kin, wg.pre_pos, wg.pre_quat, pre_joints, hand_geoms)
        lift = e.table_z + e.pregrasp_clearance_m - pre_low
        if lift > 0:  # the pre-grasp would touch the table: raise it (the approach then comes slightly from above)
            wg = _WorldGrasp(wg.pos, wg.quat, wg.pre_pos + np.array([0.0, 0.0, lift]), wg.pre_quat)
        return wg, ""

    wg, refusal = place(opos, oq)
    if refusal:
        res.reason = refusal
        res.wall_time_s = time.perf_counter() - wall0
        return res

    # 2. the hand at the start, the object settles
    start_pos, start_quat = _start_pose(scene, wg.pre_quat, centre, e.table_z + height, e.start_height_m)
    mujoco.mj_resetData(m, data)
    data.qpos[scene.object_qpos : scene.object_qpos + 3] = opos
    data.qpos[scene.object_qpos + 3 : scene.object_qpos + 7] = oq
    set_hand(scene, data, start_pos, start_quat, open_joints)
    mujoco.mj_forward(m, data)
    steps = max(1, round(e.object_settle_s / dt))
    for _ in range(steps):
        mujoco.mj_step(m, data)
    obj_pos = np.array(data.xpos[scene.object_body])
    obj_quat = np.array(data.xquat[scene.object_body])
    wg, refusal = place(obj_pos, obj_quat)  # the object may have shifted a little while settling
    if refusal:
        res.reason = refusal
        res.sim_time_s, res.sim_steps = steps * dt, steps
        res.wall_time_s = time.perf_counter() - wall0
        return res
    com0 = _object_com(scene, data)
    target = com0 + np.array([0.0, 0.0, e.lift_height_m])
    res.object_start, res.target = com0.tolist(), target.tolist()
    goal = Goal(
        palm_pos=wg.pos, palm_quat_wxyz=wg.quat, joints=joints, squeeze=squeeze,
        pre_palm_pos=wg.pre_pos, pre_palm_quat_wxyz=wg.pre_quat, pre_joints=pre_joints,
        lift_height_m=e.lift_height_m, lift_target=target, table_z=e.table_z,
    )
    cloud = _object_cloud(scene, POINT_CLOUD_SIZE, seed) if pol.needs_point_cloud else None

    def observe(t: float) -> Observation:
        pts = None
        if cloud is not None:
            pts = cloud @ data.xmat[scene.object_body].reshape(3, 3).T + data.xpos[scene.object_body]
        return Observation(
            time_s=t,
            palm_pos=np.array(data.xpos[scene.palm_body]),
            palm_quat_wxyz=np.array(data.xquat[scene.palm_body]),
            joint_pos=np.array(data.qpos[scene.joint_qpos]),
            joint_vel=np.array(data.qvel[scene.joint_dof]),
            object_pos=np.array(data.xpos[scene.object_body]),
            object_quat_wxyz=np.array(data.xquat[scene.object_body]),
            object_points=pts,
        )

    kp_bodies = _keypoint_bodies(scene)

    def mpe() -> float:
        """Keypoint error to the goal grasp placed on the object where it is now."""
        here = _to_world(
            g, scene, np.array(data.xpos[scene.object_body]), np.array(data.xquat[scene.object_body]),
            e.pregrasp_backoff_m,
        )
        set_hand(scene, kin, here.pos, here.quat, joints)
        mujoco.mj_kinematics(m, kin)
        return float(np.linalg.norm(data.xpos[kp_bodies] - kin.xpos[kp_bodies], axis=1).mean())

    camera = _Camera(m, com0 + np.array([0.0, 0.0, 0.6 * e.lift_height_m])) if render or render_gif else None
    frames: list[NDArray[np.uint8]] = []
    gif_every = max(1, round(GIF_FRAME_S / dt))
    ctrl_lo, ctrl_hi = scene.ctrl_limits()
    ctrl_every = max(1, round(pol.control_dt_s / dt)) if pol.control_dt_s > 0 else 1
    try:
        # 3. the policy acts
        pol.reset(observe(0.0), goal)
        phase, lifting, finished, k = "", False, False, 0
        horizon = math.ceil(pol.horizon_s / dt) + 1  # +1: a policy that is done exactly at its horizon says so
        action = None
        while k < horizon:
            if should_stop is not None and k % STOP_CHECK_STEPS == 0 and should_stop():
                res.reason = "canceled"
                break
            t = k * dt
            if k % ctrl_every == 0 or action is None:
                action = pol.act(observe(t), t)
                if action.phase != phase:
                    if action.phase == "approach" and camera is not None and render:
                        res.keyframes["pregrasp"] = camera.png(data)
                    if action.phase == "lift" and not lifting:
                        lifting = True
                        res.object_displacement_before_lift_m = float(np.linalg.norm(_object_com(scene, data) - com0))
                        res.mpe_m = mpe()
                        if camera is not None and render:
                            res.keyframes["grasp"] = camera.png(data)
                    phase = action.phase
                if action.done:
                    finished = True
                    break
                data.mocap_pos[scene.mocap] = action.root_pos
                data.mocap_quat[scene.mocap] = action.root_quat_wxyz
                data.ctrl[:] = np.clip(scene.ctrl(np.asarray(action.joint_targets)), ctrl_lo, ctrl_hi)
            mujoco.mj_step(m, data)
            k += 1
            if not lifting and not res.table_contact:
                res.table_contact = _table_touched(scene, data, hand_geoms)
            if render_gif and camera is not None and k % gif_every == 0:
                frames.append(camera.frame(data))
        steps += k
        # 4. measure
        com1 = _object_com(scene, data)
        res.object_end = com1.tolist()
        res.lift_height_m = float(com1[2] - com0[2])
        if res.mpe_m is None:
            res.mpe_m = mpe()
        if camera is not None and render:
            res.keyframes["lifted"] = camera.png(data)
        if frames:
            res.gif = _gif(frames)
    finally:
        if camera is not None:
            camera.close()
    miss = float(np.linalg.norm(com1 - target))
    if res.reason != "canceled":
        check_stable(data, "during execution")
        res.success = miss <= e.success_radius_m
        if not res.success:
            why = f"object centre {miss * 100:.1f} cm from the target (> {e.success_radius_m * 100:.0f} cm)"
            if not finished:
                why += "; the policy did not finish within its horizon"
            res.reason = why
    res.sim_steps = steps
    res.sim_time_s = steps * dt
    res.wall_time_s = time.perf_counter() - wall0
    return res


# ---------------------------------------------------------------------------------------- summaries
def summarize_execution(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts, success rate, MPE, lift heights, displacement, table contacts and failure reasons of
    :meth:`ExecutionResult.to_dict` results (the ``summary`` of CLI reports and job results)."""
    n = len(results)
    succ = [r for r in results if r.get("success")]
    mpe = [float(r["mpe_m"]) for r in succ if r.get("mpe_m") is not None]
    disp = [float(r["object_displacement_before_lift_m"]) for r in results
            if r.get("object_displacement_before_lift_m") is not None]
    return {
        "n": n,
        "succeeded": len(succ),
        "failed": n - len(succ),
        "success_rate": len(succ) / n if n else None,
        "mean_mpe_m_successes": mean_or_none(mpe),
        "mean_lift_height_m": mean_or_none([float(r.get("lift_height_m", 0.0)) for r in results]),
        "mean_lift_height_m_successes": mean_or_none([float(r.get("lift_height_m", 0.0)) for r in succ]),
        "mean_object_displacement_before_lift_m": mean_or_none(disp),
        "table_contacts": sum(bool(r.get("table_contact")) for r in results),
        "failure_reasons": dict(Counter(failure_reason_key(str(r.get("reason", ""))) for r in results if not r.get("success"))),
    }
