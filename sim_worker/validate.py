"""The six-direction disturbance test, on MuJoCo, under two named protocols.

``fc_mocap`` (the default, the referee of record: ``docs/simulation.md``, DexGraspBench's
fc-mocap test). The object is a free body from the start. If the hand penetrates the object or
itself by more than ``max_initial_penetration_m`` at the pregrasp, the grasp fails. Otherwise the
hand starts at the pregrasp, the object's pose is recorded, and the hand is driven pregrasp ->
grasp (``approach_s``) and grasp -> squeeze (``squeeze_s``), the palm through its welded mocap body
and the finger targets linearly, in ``waypoints`` steps each. Then, for each of +-x, +-y, +-z of the
object frame, a constant force of ``force_per_kg_n * m`` for ``disturb_s``, checked every
``check_every_s``: a direction passes while the object stays within ``max_translation_m`` and
``max_rotation_deg`` of the pose recorded before the approach (movement during the approach and
the squeeze counts). The grasp succeeds only if all six pass. The approach and squeeze are the same
for every direction, so they are simulated once and each direction starts from that state
(identical to replaying them: the run is deterministic).

``pinned`` (the earlier validator, lenient; report it only labelled): the palm welded at the grasp,
fingers driven to the squeeze while the object is pinned, then the six forces from that state.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np
from numpy.typing import NDArray

from models.core.rotations_np import quat_angle_deg, quat_to_matrix, slerp

from .config import SimConfig, ValidationConfig
from .scene import Scene

F64 = NDArray[np.float64]
DIRECTIONS = ("+x", "-x", "+y", "-y", "+z", "-z")
_DIR_VEC = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64)


@dataclass
class ValidationResult:
    success: bool
    initial_penetration_m: float
    passed: dict[str, bool] = field(default_factory=dict)
    translation_m: dict[str, float] = field(default_factory=dict)
    rotation_deg: dict[str, float] = field(default_factory=dict)
    contact_count: int = 0  # hand-object contacts after squeezing
    reason: str = ""
    protocol: str = "fc_mocap"
    phase_translation_m: dict[str, float] = field(default_factory=dict)  # fc_mocap: after approach / squeeze
    phase_rotation_deg: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "success": self.success,
            "initial_penetration_m": self.initial_penetration_m,
            "passed": self.passed,
            "translation_m": self.translation_m,
            "rotation_deg": self.rotation_deg,
            "contact_count": self.contact_count,
            "reason": self.reason,
            "protocol": self.protocol,
            "phase_translation_m": self.phase_translation_m,
            "phase_rotation_deg": self.phase_rotation_deg,
        }


def closing_direction(scene: Scene) -> F64:
    """+1/-1/0 per joint: the sign that closes the hand, the spec's ``closing_direction`` (for a hand that
    gives none, the ShadowHand, the sign from its open to its init pre-shape); 0 on sideways joints."""
    s: F64 = np.array(scene.spec.closing_direction, dtype=np.float64)
    return s


def squeeze_targets(scene: Scene, joints: F64, squeeze_rad: float) -> F64:
    """Actuator targets of a blanket squeeze: every joint ``squeeze_rad`` towards closing, within
    its limits (the fallback when a grasp carries no squeeze)."""
    target = np.clip(joints + squeeze_rad * closing_direction(scene), scene.joint_range[:, 0], scene.joint_range[:, 1])
    return scene.ctrl(target)


def hand_object_penetration(scene: Scene, data: mujoco.MjData) -> tuple[float, int]:
    """Deepest hand-object penetration (m, >= 0) and the number of hand-object contacts."""
    hand = set(scene.hand_geoms.tolist())
    obj = set(scene.object_geoms.tolist())
    depth, count = 0.0, 0
    for i in range(data.ncon):
        c = data.contact[i]
        g1, g2 = int(c.geom1), int(c.geom2)
        if (g1 in hand and g2 in obj) or (g2 in hand and g1 in obj):
            count += 1
            depth = max(depth, -float(c.dist))
    return depth, count


def hand_self_penetration(scene: Scene, data: mujoco.MjData) -> float:
    """Deepest hand-hand penetration (m, >= 0)."""
    hand = set(scene.hand_geoms.tolist())
    depth = 0.0
    for i in range(data.ncon):
        c = data.contact[i]
        if int(c.geom1) in hand and int(c.geom2) in hand:
            depth = max(depth, -float(c.dist))
    return depth


def set_hand(scene: Scene, data: mujoco.MjData, pos: F64, quat_wxyz: F64, joints: F64) -> None:
    a = scene.hand_qpos
    data.qpos[a : a + 3] = pos
    data.qpos[a + 3 : a + 7] = quat_wxyz
    data.mocap_pos[scene.mocap] = pos
    data.mocap_quat[scene.mocap] = quat_wxyz
    data.qpos[scene.joint_qpos] = joints
    data.ctrl[:] = scene.ctrl(joints)


def _displacement(scene: Scene, data: mujoco.MjData, p0: F64, q0: F64) -> tuple[float, float]:
    """The object's translation (m) and rotation (deg) from the pose (p0, q0)."""
    p = data.qpos[scene.object_qpos : scene.object_qpos + 3]
    q = data.qpos[scene.object_qpos + 3 : scene.object_qpos + 7]
    return float(np.linalg.norm(p - p0)), quat_angle_deg(q0, q)


def _holds(scene: Scene, data: mujoco.MjData, p0: F64, q0: F64, v: ValidationConfig) -> bool:
    moved, turned = _displacement(scene, data, p0, q0)
    return bool(moved < v.max_translation_m and turned < v.max_rotation_deg)


@dataclass(frozen=True)
class HandPath:
    """The three hand configurations a grasp is driven through (object frame, spec joint order)."""

    pre_pos: F64
    pre_quat_wxyz: F64
    pre_joints: F64
    pos: F64
    quat_wxyz: F64
    joints: F64
    squeeze: F64  # squeeze joint targets (the palm stays at the grasp pose)


def derive_pregrasp(scene: Scene, pos: F64, quat_wxyz: F64, joints: F64, squeeze: F64,
                    backoff_m: float = 0.01) -> tuple[F64, F64, F64]:
    """A pregrasp for a grasp that carries none: the joints opened by as much as the squeeze
    closes them (the mirror of the squeeze about the grasp), the palm ``backoff_m`` back along its
    approach direction."""
    approach = quat_to_matrix(np.asarray(quat_wxyz, dtype=np.float64)) @ np.asarray(scene.spec.approach_direction, dtype=np.float64)
    pre_joints = np.clip(2.0 * joints - squeeze, scene.joint_range[:, 0], scene.joint_range[:, 1])
    return np.asarray(pos, dtype=np.float64) - backoff_m * approach, np.asarray(quat_wxyz, dtype=np.float64), pre_joints


def validate_grasp(
    scene: Scene,
    data: mujoco.MjData,
    pos: F64,
    quat_wxyz: F64,
    joints: F64,
    squeeze: F64 | None,
    cfg: SimConfig,
    object_quat_wxyz: F64 | None = None,
    should_stop: Callable[[], bool] | None = None,
    pregrasp: tuple[F64, F64, F64] | None = None,
) -> ValidationResult:
    """Run the six-direction test for one grasp under ``cfg.validation.protocol``. The object starts
    at the origin with orientation ``object_quat_wxyz`` (identity by default); poses are in that
    world frame and the disturbance directions are the object's own axes. ``pregrasp`` is
    (position, quaternion wxyz, joints); ``fc_mocap`` derives one when it is missing
    (:func:`derive_pregrasp`), ``pinned`` does not use it. A missing ``squeeze`` is the blanket
    ``squeeze_rad`` towards closing."""
    protocol = cfg.validation.protocol
    oq = np.array([1.0, 0, 0, 0]) if object_quat_wxyz is None else np.asarray(object_quat_wxyz, dtype=np.float64)
    if protocol == "pinned":
        return _validate_pinned(scene, data, pos, quat_wxyz, joints, squeeze, cfg, oq, should_stop)
    if protocol != "fc_mocap":
        raise ValueError(f"unknown validation protocol {protocol!r}; use 'fc_mocap' or 'pinned'")
    joints = np.asarray(joints, dtype=np.float64)
    if squeeze is None:
        sq = np.clip(joints + cfg.validation.squeeze_rad * closing_direction(scene),
                     scene.joint_range[:, 0], scene.joint_range[:, 1])
    else:
        sq = np.asarray(squeeze, dtype=np.float64)
    if pregrasp is None:
        pregrasp = derive_pregrasp(scene, pos, quat_wxyz, joints, sq)
    f64 = np.float64
    path = HandPath(np.asarray(pregrasp[0], dtype=f64), np.asarray(pregrasp[1], dtype=f64), np.asarray(pregrasp[2], dtype=f64),
                    np.asarray(pos, dtype=f64), np.asarray(quat_wxyz, dtype=f64), joints, sq)
    return _validate_fc_mocap(scene, data, path, cfg, oq, should_stop)


def _drive(scene: Scene, data: mujoco.MjData, p0: F64, q0: F64, j0: F64, p1: F64, q1: F64, j1: F64,
           duration_s: float, waypoints: int) -> None:
    """Move the mocap-welded palm and the finger targets from (p0, q0, j0) to (p1, q1, j1): ``waypoints``
    evenly spaced targets (the first one step along, the last the end), each held for an equal
    share of ``duration_s``."""
    m = scene.model
    steps = max(1, round(duration_s / m.opt.timestep / waypoints))
    c0, c1 = scene.ctrl(j0), scene.ctrl(j1)
    for w in range(1, waypoints + 1):
        t = w / waypoints
        data.mocap_pos[scene.mocap] = p0 + (p1 - p0) * t
        data.mocap_quat[scene.mocap] = slerp(q0, q1, t)
        data.ctrl[:] = c0 + (c1 - c0) * t
        mujoco.mj_forward(m, data)
        for _ in range(steps):
            mujoco.mj_step(m, data)


def _validate_fc_mocap(
    scene: Scene, data: mujoco.MjData, g: HandPath, cfg: SimConfig, oq: F64,
    should_stop: Callable[[], bool] | None,
) -> ValidationResult:
    m = scene.model
    v = cfg.validation
    mujoco.mj_resetData(m, data)
    data.qpos[scene.object_qpos : scene.object_qpos + 3] = 0.0
    data.qpos[scene.object_qpos + 3 : scene.object_qpos + 7] = oq
    set_hand(scene, data, g.pre_pos, g.pre_quat_wxyz, g.pre_joints)
    mujoco.mj_forward(m, data)
    pen, _ = hand_object_penetration(scene, data)
    self_pen = hand_self_penetration(scene, data)
    res = ValidationResult(success=False, initial_penetration_m=pen, protocol="fc_mocap")
    if pen > v.max_initial_penetration_m or self_pen > v.max_initial_penetration_m:
        what, depth = ("hand-object", pen) if pen > v.max_initial_penetration_m else ("hand-hand", self_pen)
        res.reason = (f"{what} penetration {depth * 100:.1f} cm at the pregrasp > "
                      f"{v.max_initial_penetration_m * 100:.1f} cm")
        return res
    p0 = data.qpos[scene.object_qpos : scene.object_qpos + 3].copy()
    _drive(scene, data, g.pre_pos, g.pre_quat_wxyz, g.pre_joints, g.pos, g.quat_wxyz, g.joints, v.approach_s, v.waypoints)
    check_stable(data, "during the approach")
    res.phase_translation_m["approach"], res.phase_rotation_deg["approach"] = _displacement(scene, data, p0, oq)
    _drive(scene, data, g.pos, g.quat_wxyz, g.joints, g.pos, g.quat_wxyz, g.squeeze, v.squeeze_s, v.waypoints)
    check_stable(data, "during the squeeze")
    res.phase_translation_m["squeeze"], res.phase_rotation_deg["squeeze"] = _displacement(scene, data, p0, oq)
    _, res.contact_count = hand_object_penetration(scene, data)
    return _disturb(scene, data, res, cfg, p0, oq, should_stop)


def _disturb(
    scene: Scene, data: mujoco.MjData, res: ValidationResult, cfg: SimConfig, p0: F64, oq: F64,
    should_stop: Callable[[], bool] | None,
) -> ValidationResult:
    """The six forces, each from the current (settled / squeezed) state."""
    m = scene.model
    v = cfg.validation
    state_size = mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_INTEGRATION)
    settled = np.empty(state_size)
    mujoco.mj_getState(m, data, settled, mujoco.mjtState.mjSTATE_INTEGRATION)
    rot0 = quat_to_matrix(oq)
    force = v.force_per_kg_n * scene.object_mass
    n_dist = max(1, round(v.disturb_s / m.opt.timestep))
    check_every = max(1, round(v.check_every_s / m.opt.timestep))
    all_ok = True
    for name, d in zip(DIRECTIONS, _DIR_VEC):
        if should_stop is not None and should_stop():
            res.reason = "canceled"
            return res
        mujoco.mj_setState(m, data, settled, mujoco.mjtState.mjSTATE_INTEGRATION)
        data.xfrc_applied[:] = 0.0
        data.xfrc_applied[scene.object_body, :3] = rot0 @ d * force
        for k in range(n_dist):
            mujoco.mj_step(m, data)
            # once the object is past the thresholds at a check, the direction has failed
            if v.fail_fast and (k + 1) % check_every == 0 and not _holds(scene, data, p0, oq, v):
                break
        check_stable(data, f"under the {name} disturbance")
        moved, turned = _displacement(scene, data, p0, oq)
        ok = moved < v.max_translation_m and turned < v.max_rotation_deg
        res.passed[name] = ok
        res.translation_m[name] = moved
        res.rotation_deg[name] = turned
        all_ok &= ok
        if not ok and v.fail_fast:
            break  # the grasp has failed; the remaining directions are not run
    data.xfrc_applied[:] = 0.0
    res.success = all_ok
    if not all_ok:
        failed = [k for k, ok in res.passed.items() if not ok]
        res.reason = f"object slipped under {', '.join(failed)}"
    return res


class SimulationDiverged(RuntimeError):
    """The physics produced non-finite state: an error, not a verdict."""


# MuJoCo zeroes bad controls and resets bad states (auto-reset): afterwards the state looks finite
# and a grasp would get a verdict on a simulation that never happened; its warning counters remember
_UNSTABLE = {
    mujoco.mjtWarning.mjWARN_BADQPOS: "non-finite or huge positions",
    mujoco.mjtWarning.mjWARN_BADQVEL: "non-finite or huge velocities",
    mujoco.mjtWarning.mjWARN_BADQACC: "non-finite or huge accelerations",
    mujoco.mjtWarning.mjWARN_BADCTRL: "non-finite or huge controls",
}


def check_stable(data: mujoco.MjData, where: str) -> None:
    """Raise :class:`SimulationDiverged` if the state is non-finite or MuJoCo has reset it since the
    last ``mj_resetData``."""
    bad = [what for w, what in _UNSTABLE.items() if int(data.warning[w].number) > 0]
    if not np.isfinite(data.qpos).all() or bad:
        raise SimulationDiverged(f"the simulation became non-finite {where} ({', '.join(bad) or 'NaN state'}); "
                                 "check the grasp's pose and joints and the simulation config")


def _validate_pinned(
    scene: Scene, data: mujoco.MjData, pos: F64, quat_wxyz: F64, joints: F64, squeeze: F64 | None,
    cfg: SimConfig, oq: F64, should_stop: Callable[[], bool] | None,
) -> ValidationResult:
    """The earlier validator: the palm welded at the grasp, the fingers settle on a pinned object."""
    m = scene.model
    v = cfg.validation
    mujoco.mj_resetData(m, data)
    data.qpos[scene.object_qpos : scene.object_qpos + 3] = 0.0
    data.qpos[scene.object_qpos + 3 : scene.object_qpos + 7] = oq
    set_hand(scene, data, pos, quat_wxyz, joints)
    mujoco.mj_forward(m, data)
    pen, _ = hand_object_penetration(scene, data)
    res = ValidationResult(success=False, initial_penetration_m=pen, protocol="pinned")
    if pen > v.max_initial_penetration_m:
        res.reason = f"initial penetration {pen * 100:.1f} cm > {v.max_initial_penetration_m * 100:.1f} cm"
        return res
    start_ctrl = scene.ctrl(joints)
    if squeeze is None:
        end_ctrl = squeeze_targets(scene, joints, v.squeeze_rad)
    else:
        end_ctrl = scene.ctrl(np.asarray(squeeze, dtype=np.float64))
    n_settle = max(1, round(v.settle_s / m.opt.timestep))
    oa, od = scene.object_qpos, scene.object_dof
    obj_q0 = data.qpos[oa : oa + 7].copy()
    for k in range(n_settle):
        data.ctrl[:] = start_ctrl + (end_ctrl - start_ctrl) * min(1.0, (k + 1) / (0.5 * n_settle))
        mujoco.mj_step(m, data)
        if v.pin_object_while_settling:
            # the grasp defines where the object sits in the hand: small initial penetrations are
            # resolved by the fingers yielding, not by launching a free, weightless object
            data.qpos[oa : oa + 7] = obj_q0
            data.qvel[od : od + 6] = 0.0
    if v.pin_object_while_settling:
        mujoco.mj_forward(m, data)
    check_stable(data, "while the fingers settled")
    _, res.contact_count = hand_object_penetration(scene, data)
    return _disturb(scene, data, res, cfg, np.zeros(3), oq, should_stop)


# ---------------------------------------------------------------------------------------- summaries
def mean_or_none(xs: Sequence[float]) -> float | None:
    """The mean, or None for no values (JSON null rather than NaN)."""
    return float(sum(xs) / len(xs)) if xs else None


def failure_reason_key(reason: str) -> str:
    """Group failure reasons: numbers replaced so "slipped 1.2 cm" and "slipped 3.4 cm" count together."""
    return re.sub(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", reason) or "unknown"


def summarize_validation(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts, success rate, failure reasons, per-direction pass counts and mean motions of
    :meth:`ValidationResult.to_dict` results (the ``summary`` of CLI reports and job results)."""
    n = len(results)
    ok = sum(bool(r.get("success")) for r in results)
    disturbed = [r for r in results if r.get("translation_m")]
    return {
        "n": n,
        "succeeded": ok,
        "failed": n - ok,
        "success_rate": ok / n if n else None,
        "initial_penetration_failures": sum(1 for r in results if str(r.get("reason", "")).startswith("initial")),
        "failure_reasons": dict(Counter(failure_reason_key(str(r.get("reason", ""))) for r in results if not r.get("success"))),
        "direction_pass_counts": {d: sum(bool(r.get("passed", {}).get(d)) for r in results) for d in DIRECTIONS},
        "mean_translation_m": {d: mean_or_none([r["translation_m"][d] for r in disturbed if d in r["translation_m"]])
                               for d in DIRECTIONS},
        "mean_rotation_deg": {d: mean_or_none([r["rotation_deg"][d] for r in disturbed if d in r.get("rotation_deg", {})])
                              for d in DIRECTIONS},
        "mean_contact_count": mean_or_none([float(r.get("contact_count", 0)) for r in disturbed]),
    }
