"""Goal-conditioned execution policies behind a registry, and the scripted waypoint controller.

Every policy sees the same things and answers the same way, so a learned
policy (UniDexGrasp-style, point cloud + proprioception + goal) can replace the
scripted one without touching the executor (:mod:`sim_worker.execute`):

* :class:`Observation`: time, the object's point cloud in the world (only when
  the policy asks for it with ``needs_point_cloud``), palm pose, joint
  positions and velocities, object pose;
* :class:`Goal`: the grasp to reach, in the world frame (palm pose, 22 joints
  in the hand spec's order, squeeze targets, pre-grasp pose and joints), the
  lift height and the object-centre target, the table height;
* :class:`Action`: palm (root) pose target, which the executor applies to the
  mocap body the palm is welded to, 22 joint targets in spec order, ``done``,
  and an optional ``phase`` label. The executor takes its pre-lift measurements
  (object displacement, keypoint error, keyframes) at phase changes, so a
  policy that wants those numbers labels its ``"lift"`` phase.

Register a policy with ``@register_policy("name")`` on a class whose
constructor takes ``(cfg: ExecutionConfig, seed: int)``; ``get_policy(name)``
builds one.

``scripted`` is a time-parameterised waypoint controller (minimum-jerk timing,
quaternion slerp). It keeps the hand away from the table by travelling at the
start height (which is above the object's top) until it is right above the
pre-grasp, and only then descending; see :class:`ScriptedPolicy`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from models.core.rotations_np import quat_normalize, slerp

from .config import ExecutionConfig

F64 = NDArray[np.float64]


# ----------------------------------------------------------------------------- timing
def min_jerk(u: float) -> float:
    """Minimum-jerk time scaling: 0 -> 1 with zero velocity and acceleration at both ends."""
    u = min(1.0, max(0.0, u))
    return u * u * u * (10.0 + u * (-15.0 + 6.0 * u))


# ----------------------------------------------------------------------------- interface
@dataclass(frozen=True)
class Observation:
    """What a policy sees at one control step (world frame, metres, radians)."""

    time_s: float  # since the policy started (after the object settled)
    palm_pos: F64  # (3,)
    palm_quat_wxyz: F64  # (4,)
    joint_pos: F64  # (22,) spec order
    joint_vel: F64  # (22,) spec order
    object_pos: F64  # (3,) object frame origin
    object_quat_wxyz: F64  # (4,)
    object_points: F64 | None = None  # (N, 3) surface samples in the world; None unless the policy asks


@dataclass(frozen=True)
class Goal:
    """The grasp to reach, in the world frame at the start of the rollout, and what to do with it."""

    palm_pos: F64  # (3,)
    palm_quat_wxyz: F64  # (4,)
    joints: F64  # (22,) spec order
    squeeze: F64  # (22,) spec order: joints pushed towards closing (what the fingers are driven to)
    pre_palm_pos: F64  # (3,) pre-grasp, backed off along the approach
    pre_palm_quat_wxyz: F64  # (4,)
    pre_joints: F64  # (22,)
    lift_height_m: float
    lift_target: F64  # (3,) where the object centre should end
    table_z: float


@dataclass(frozen=True)
class Action:
    """Targets for one control step: the palm pose (mocap weld target) and the 22 joints (spec order)."""

    root_pos: F64
    root_quat_wxyz: F64
    joint_targets: F64
    done: bool = False
    phase: str = ""  # optional label; the executor measures pre-lift numbers when "lift" begins


class Policy:
    """Base class. Subclasses set the class attributes they need and implement ``reset`` and ``act``."""

    name: ClassVar[str] = ""
    needs_point_cloud: ClassVar[bool] = False  # the executor samples the object's surface only when asked
    control_dt_s: ClassVar[float] = 0.0  # 0: act every physics step; else hold each action this long

    def __init__(self, cfg: ExecutionConfig | None = None, seed: int = 0) -> None:
        self.cfg = cfg if cfg is not None else ExecutionConfig()
        self.rng = np.random.default_rng(seed)

    @property
    def horizon_s(self) -> float:
        """Longest rollout the executor runs for this policy (it stops earlier on ``done``)."""
        e = self.cfg
        return e.pregrasp_s + e.approach_s + e.close_s + e.squeeze_s + e.lift_s + e.hold_s + 1.0

    def reset(self, obs0: Observation, goal: Goal) -> None:
        raise NotImplementedError

    def act(self, obs: Observation, t: float) -> Action:
        raise NotImplementedError


PolicyFactory = Callable[[ExecutionConfig, int], Policy]
_REGISTRY: dict[str, PolicyFactory] = {}


def register_policy(name: str) -> Callable[[type[Policy]], type[Policy]]:
    """Class decorator: ``@register_policy("mine")`` makes ``get_policy("mine")`` build that class."""

    def deco(cls: type[Policy]) -> type[Policy]:
        if name in _REGISTRY:
            raise ValueError(f"policy {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_policies() -> list[str]:
    return sorted(_REGISTRY)


def get_policy(name: str, cfg: ExecutionConfig | None = None, seed: int = 0) -> Policy:
    if name not in _REGISTRY:
        raise ValueError(f"unknown execution policy {name!r}; available: {', '.join(available_policies())}")
    return _REGISTRY[name](cfg if cfg is not None else ExecutionConfig(), seed)


# ----------------------------------------------------------------------------- scripted controller
@dataclass(frozen=True)
class _Segment:
    """One phase: palm pose and joints go from (p0, q0, j0) to (p1, q1, j1) over [t0, t1]."""

    phase: str
    t0: float
    t1: float
    p0: F64
    p1: F64
    q0: F64
    q1: F64
    j0: F64
    j1: F64

    def at(self, t: float) -> tuple[F64, F64, F64]:
        s = min_jerk((t - self.t0) / max(self.t1 - self.t0, 1e-9))
        return self.p0 + s * (self.p1 - self.p0), slerp(self.q0, self.q1, s), self.j0 + s * (self.j1 - self.j0)


# share of ``pregrasp_s`` spent travelling at the safe height (the rest descends onto the pre-grasp)
TRAVEL_SHARE = 0.5


@register_policy("scripted")
class ScriptedPolicy(Policy):
    """Waypoints, each reached with minimum-jerk timing (durations from :class:`ExecutionConfig`):

    1. ``travel`` (``TRAVEL_SHARE`` of ``pregrasp_s``): from the start pose to right above the pre-grasp,
       at the start height (or the pre-grasp's height if that is higher), turning (slerp) to the
       pre-grasp orientation and shaping the fingers to the pre-grasp joints. The start height is
       ``start_height_m`` above the object's top, more than the hand's reach, so nothing on the table
       can be touched while the hand moves sideways and turns;
    2. ``descend`` (rest of ``pregrasp_s``): straight down to the pre-grasp (only the height changes);
    3. ``approach`` (``approach_s``): pre-grasp to grasp pose along the line between them (the approach);
    4. ``close`` (``close_s``): pre-grasp joints to the goal joints, the palm still;
    5. ``squeeze`` (``squeeze_s``): goal joints to the squeeze targets, so the fingers press;
    6. ``lift`` (``lift_s``): the palm rises by ``lift_height_m``, fingers held at the squeeze targets;
    7. ``hold`` (``hold_s``): nothing moves; then ``done``.
    """

    def __init__(self, cfg: ExecutionConfig | None = None, seed: int = 0) -> None:
        super().__init__(cfg, seed)
        self._segments: list[_Segment] = []

    @property
    def horizon_s(self) -> float:
        return self._segments[-1].t1 if self._segments else super().horizon_s

    def reset(self, obs0: Observation, goal: Goal) -> None:
        e = self.cfg
        p_start, q_start, j_start = obs0.palm_pos.copy(), obs0.palm_quat_wxyz.copy(), obs0.joint_pos.copy()
        travel_z = max(float(p_start[2]), float(goal.pre_palm_pos[2]))
        above_pre = np.array([goal.pre_palm_pos[0], goal.pre_palm_pos[1], travel_z])
        lifted = goal.palm_pos + np.array([0.0, 0.0, goal.lift_height_m])
        t_travel = TRAVEL_SHARE * e.pregrasp_s
        # (phase, duration, end position, end orientation, end joints); each starts where the last ended
        plan = [
            ("travel", t_travel, above_pre, goal.pre_palm_quat_wxyz, goal.pre_joints),
            ("descend", e.pregrasp_s - t_travel, goal.pre_palm_pos, goal.pre_palm_quat_wxyz, goal.pre_joints),
            ("approach", e.approach_s, goal.palm_pos, goal.palm_quat_wxyz, goal.pre_joints),
            ("close", e.close_s, goal.palm_pos, goal.palm_quat_wxyz, goal.joints),
            ("squeeze", e.squeeze_s, goal.palm_pos, goal.palm_quat_wxyz, goal.squeeze),
            ("lift", e.lift_s, lifted, goal.palm_quat_wxyz, goal.squeeze),
            ("hold", e.hold_s, lifted, goal.palm_quat_wxyz, goal.squeeze),
        ]
        self._segments = []
        t, p, q, j = 0.0, p_start, q_start, j_start
        for phase, dur, p1, q1, j1 in plan:
            p1, q1, j1 = np.asarray(p1, dtype=np.float64), quat_normalize(q1), np.asarray(j1, dtype=np.float64)
            self._segments.append(_Segment(phase, t, t + max(dur, 0.0), p, p1, q, q1, j, j1))
            t, p, q, j = t + max(dur, 0.0), p1, q1, j1

    def act(self, obs: Observation, t: float) -> Action:
        if not self._segments:
            raise RuntimeError("ScriptedPolicy.act called before reset")
        seg = next((s for s in self._segments if t < s.t1), self._segments[-1])
        pos, quat, joints = seg.at(t)
        return Action(pos, quat, joints, done=t >= self._segments[-1].t1, phase=seg.phase)
