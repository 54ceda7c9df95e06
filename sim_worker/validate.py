"""The disturbance test of ``evaluation.md``, on MuJoCo.

Per grasp: the palm is welded at the grasp pose (gravity off), the fingers start
at the grasp joints and are driven by position control to the squeeze targets
(grasp joints pushed towards closing), then, from that same settled state, a
constant force of ``force_g * m * g`` is applied to the object along each of
+-x, +-y, +-z of the object frame in turn. A direction passes when the object
moved less than ``max_translation_m`` and rotated less than ``max_rotation_deg``
from its initial pose; the grasp succeeds only if all six pass. An initial
hand-object penetration deeper than ``max_initial_penetration_m`` fails at once.
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

from models.core.rotations_np import quat_angle_deg, quat_to_matrix

from .config import SimConfig
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

    def to_dict(self) -> dict[str, object]:
        return {
            "success": self.success,
            "initial_penetration_m": self.initial_penetration_m,
            "passed": self.passed,
            "translation_m": self.translation_m,
            "rotation_deg": self.rotation_deg,
            "contact_count": self.contact_count,
            "reason": self.reason,
        }


def closing_direction(scene: Scene) -> F64:
    """+1/-1/0 per joint: the sign that closes the hand, from the spec's open and init pre-shapes."""
    s: F64 = np.sign(np.array(scene.spec.init_pose) - np.array(scene.spec.open_pose)).astype(np.float64)
    return s


def squeeze_targets(scene: Scene, joints: F64, squeeze_rad: float) -> F64:
    lo = scene.model.jnt_range[scene.model.actuator_trnid[:, 0]][:, 0]
    hi = scene.model.jnt_range[scene.model.actuator_trnid[:, 0]][:, 1]
    target = joints + squeeze_rad * closing_direction(scene)
    act = target[scene.actuator_joint]
    return np.clip(act, lo, hi)


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


def set_hand(scene: Scene, data: mujoco.MjData, pos: F64, quat_wxyz: F64, joints: F64) -> None:
    a = scene.hand_qpos
    data.qpos[a : a + 3] = pos
    data.qpos[a + 3 : a + 7] = quat_wxyz
    data.mocap_pos[scene.mocap] = pos
    data.mocap_quat[scene.mocap] = quat_wxyz
    data.qpos[scene.joint_qpos] = joints
    data.ctrl[:] = joints[scene.actuator_joint]


def _holds(scene: Scene, data: mujoco.MjData, p0: F64, q0: F64, v: object) -> bool:
    from .config import ValidationConfig

    assert isinstance(v, ValidationConfig)
    p = data.qpos[scene.object_qpos : scene.object_qpos + 3]
    q = data.qpos[scene.object_qpos + 3 : scene.object_qpos + 7]
    return bool(np.linalg.norm(p - p0) < v.max_translation_m and quat_angle_deg(q0, q) < v.max_rotation_deg)


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
) -> ValidationResult:
    """Run the six-direction test for one grasp. The object starts at the origin with orientation
    ``object_quat_wxyz`` (identity by default); poses are in that world frame and the disturbance
    directions are the object's own axes."""
    m = scene.model
    v = cfg.validation
    mujoco.mj_resetData(m, data)
    oq = np.array([1.0, 0, 0, 0]) if object_quat_wxyz is None else np.asarray(object_quat_wxyz, dtype=np.float64)
    data.qpos[scene.object_qpos : scene.object_qpos + 3] = 0.0
    data.qpos[scene.object_qpos + 3 : scene.object_qpos + 7] = oq
    set_hand(scene, data, pos, quat_wxyz, joints)
    mujoco.mj_forward(m, data)
    pen, _ = hand_object_penetration(scene, data)
    res = ValidationResult(success=False, initial_penetration_m=pen)
    if pen > v.max_initial_penetration_m:
        res.reason = f"initial penetration {pen * 100:.1f} cm > {v.max_initial_penetration_m * 100:.1f} cm"
        return res
    start_ctrl = joints[scene.actuator_joint].copy()
    if squeeze is None:
        end_ctrl = squeeze_targets(scene, joints, v.squeeze_rad)
    else:
        end_ctrl = np.asarray(squeeze, dtype=np.float64)[scene.actuator_joint]
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
    _, res.contact_count = hand_object_penetration(scene, data)
    state_size = mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_INTEGRATION)
    settled = np.empty(state_size)
    mujoco.mj_getState(m, data, settled, mujoco.mjtState.mjSTATE_INTEGRATION)
    p0 = np.zeros(3)
    rot0 = quat_to_matrix(oq)
    force = v.force_g * scene.object_mass * 9.81
    n_dist = max(1, round(v.disturb_s / m.opt.timestep))
    all_ok = True
    for name, d in zip(DIRECTIONS, _DIR_VEC):
        if should_stop is not None and should_stop():
            res.reason = "canceled"
            return res
        mujoco.mj_setState(m, data, settled, mujoco.mjtState.mjSTATE_INTEGRATION)
        data.xfrc_applied[:] = 0.0
        data.xfrc_applied[scene.object_body, :3] = rot0 @ d * force
        check_every = max(1, n_dist // 10)
        for k in range(n_dist):
            mujoco.mj_step(m, data)
            # fail fast: once the object is past the thresholds the verdict cannot change back
            if v.fail_fast and (k + 1) % check_every == 0 and not _holds(scene, data, p0, oq, v):
                break
        p = data.qpos[scene.object_qpos : scene.object_qpos + 3]
        q = data.qpos[scene.object_qpos + 3 : scene.object_qpos + 7]
        moved = float(np.linalg.norm(p - p0))
        turned = quat_angle_deg(oq, q)
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
