"""Convert Shadow-hand grasps between the project's convention and DexGraspBench's.

Owns the frame and joint mapping between the two hand models (numpy only, so both the
project's Python and a DexGraspBench environment can import it):

- Project: root = the ``robot0:palm`` body of the gymnasium-robotics OpenAI Shadow MJCF
  (palm-rooted, wrist at zero); quaternions wxyz; 22 joints in ``models/hands/shadow.json``
  order (FFJ3 FFJ2 FFJ1 FFJ0 ... LFJ4 ... THJ4 .. THJ0).
- DexGraspBench (``assets/hand/shadow/right_hand.xml``, the menagerie Shadow E3M5): root =
  the hand's world frame, whose ``rh_palm`` body sits 0.034 m along the root's z axis with the
  same orientation; a 29-vector qpos = root xyz + root wxyz + 22 joints in its MJCF order.

The joints pair up position by position (both lists run FF, MF, RF, LF, TH from the
abduction joint to the tip); four joints turn about opposite axes in the two models and
change sign: FF and MF abduction (DexGraspBench's knuckle axis is -y there) and the two distal
thumb joints (its thmiddle axis is -y; its thdistal frame is turned -90 degrees about z).
``referee_crosscheck.py --check-fk`` verifies the whole mapping by forward kinematics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

PALM_OFFSET_M = 0.034
"""Distance (m) from DexGraspBench's hand root to its ``rh_palm`` along the root's z axis."""

# (project joint, DexGraspBench joint, sign): DexGraspBench value = sign * project value
JOINT_MAP: tuple[tuple[str, str, float], ...] = (
    ("FFJ3", "rh_FFJ4", -1.0), ("FFJ2", "rh_FFJ3", 1.0), ("FFJ1", "rh_FFJ2", 1.0), ("FFJ0", "rh_FFJ1", 1.0),
    ("MFJ3", "rh_MFJ4", -1.0), ("MFJ2", "rh_MFJ3", 1.0), ("MFJ1", "rh_MFJ2", 1.0), ("MFJ0", "rh_MFJ1", 1.0),
    ("RFJ3", "rh_RFJ4", 1.0), ("RFJ2", "rh_RFJ3", 1.0), ("RFJ1", "rh_RFJ2", 1.0), ("RFJ0", "rh_RFJ1", 1.0),
    ("LFJ4", "rh_LFJ5", 1.0), ("LFJ3", "rh_LFJ4", 1.0), ("LFJ2", "rh_LFJ3", 1.0), ("LFJ1", "rh_LFJ2", 1.0),
    ("LFJ0", "rh_LFJ1", 1.0),
    ("THJ4", "rh_THJ5", 1.0), ("THJ3", "rh_THJ4", 1.0), ("THJ2", "rh_THJ3", 1.0), ("THJ1", "rh_THJ2", -1.0),
    ("THJ0", "rh_THJ1", -1.0),
)
PROJECT_JOINTS: tuple[str, ...] = tuple(p for p, _, _ in JOINT_MAP)
DGB_JOINTS: tuple[str, ...] = tuple(d for _, d, _ in JOINT_MAP)
SIGNS: F64 = np.array([s for _, _, s in JOINT_MAP])

# project body -> DexGraspBench body, for kinematic checks. The LF metacarpals are left out: the
# two models put that body's origin at different points of the same joint axis (28 mm apart),
# so its origin is not a shared point even though the finger after it agrees.
BODY_MAP: dict[str, str] = {
    f"robot0:{f}{link}": f"rh_{f}{link}"
    for f in ("ff", "mf", "rf", "lf")
    for link in ("knuckle", "proximal", "middle", "distal")
} | {f"robot0:th{link}": f"rh_th{link}" for link in ("base", "proximal", "hub", "middle", "distal")} | {"robot0:palm": "rh_palm"}


def quat_to_matrix(q: Sequence[float]) -> F64:
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def palm_to_root(position: Sequence[float], quat_wxyz: Sequence[float]) -> F64:
    """DexGraspBench root pose (xyz + wxyz) for a project palm pose: 0.034 m back along palm z."""
    p = np.asarray(position, dtype=np.float64)
    q = np.asarray(quat_wxyz, dtype=np.float64)
    q = q / np.linalg.norm(q)
    return np.concatenate([p - PALM_OFFSET_M * quat_to_matrix(q)[:, 2], q])


def root_to_palm(root: Sequence[float]) -> tuple[F64, F64]:
    """The inverse of :func:`palm_to_root`: (palm position, palm wxyz)."""
    r = np.asarray(root, dtype=np.float64)
    q = r[3:7] / np.linalg.norm(r[3:7])
    return r[:3] + PALM_OFFSET_M * quat_to_matrix(q)[:, 2], q


def joints_to_dgb(joints: Mapping[str, float] | Sequence[float]) -> F64:
    """22 DexGraspBench joint values from project joints (a name->angle map or a vector in
    project order)."""
    if isinstance(joints, Mapping):
        q = np.array([float(joints[n]) for n in PROJECT_JOINTS])
    else:
        q = np.asarray(joints, dtype=np.float64)
    if q.shape != (22,):
        raise ValueError(f"expected 22 Shadow joints, got shape {q.shape}")
    return SIGNS * q


def joints_from_dgb(q: Sequence[float]) -> dict[str, float]:
    """Project joints (name -> angle) from 22 DexGraspBench joint values."""
    v = SIGNS * np.asarray(q, dtype=np.float64)
    return {n: float(x) for n, x in zip(PROJECT_JOINTS, v)}


def to_dgb_qpos(position: Sequence[float], quat_wxyz: Sequence[float],
                joints: Mapping[str, float] | Sequence[float]) -> F64:
    """The 29-vector DexGraspBench reads for one hand configuration."""
    return np.concatenate([palm_to_root(position, quat_wxyz), joints_to_dgb(joints)])


def grasp_to_dgb(grasp: Mapping[str, Any]) -> dict[str, list[float]]:
    """Pregrasp / grasp / squeeze 29-vectors for one grasp in the project's schema (a dict as
    ``models.grasp.Grasp.model_dump()`` gives). The squeeze keeps the grasp's root pose (as
    DexGraspBench's own grasps do); a grasp without a squeeze squeezes to its own joints."""
    pose = grasp["pose"]
    pre = grasp["pregrasp"]
    squeeze = grasp.get("squeeze") or grasp["joints"]
    return {
        "pregrasp": to_dgb_qpos(pre["pose"]["position"], pre["pose"]["quaternion_wxyz"], pre["joints"]).tolist(),
        "grasp": to_dgb_qpos(pose["position"], pose["quaternion_wxyz"], grasp["joints"]).tolist(),
        "squeeze": to_dgb_qpos(pose["position"], pose["quaternion_wxyz"], squeeze).tolist(),
    }


def grasp_from_dgb(pregrasp: Sequence[float], grasp: Sequence[float], squeeze: Sequence[float]) -> dict[str, Any]:
    """A project-schema grasp dict (validate it with ``models.grasp.Grasp``) from DexGraspBench's
    three 29-vectors; the squeeze's root pose is dropped (the project squeezes in place)."""
    def pose(v: Sequence[float]) -> dict[str, list[float]]:
        p, q = root_to_palm(v)
        return {"position": p.tolist(), "quaternion_wxyz": q.tolist()}

    return {
        "hand": "shadow",
        "pose": pose(grasp),
        "joints": joints_from_dgb(np.asarray(grasp)[7:]),
        "pregrasp": {"pose": pose(pregrasp), "joints": joints_from_dgb(np.asarray(pregrasp)[7:])},
        "squeeze": joints_from_dgb(np.asarray(squeeze)[7:]),
    }
