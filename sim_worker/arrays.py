"""One grasp as plain numpy arrays: what every simulator backend, the validation and the
execution consume (object frame, the hand spec's joint order)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class GraspArrays:
    """One grasp as plain arrays (object frame): palm position, palm quaternion wxyz, joints in
    the hand spec's order, optional squeeze targets, optional pre-grasp pose and joints."""

    position: F64
    quaternion_wxyz: F64
    joints: F64
    squeeze: F64 | None = None
    pre_position: F64 | None = None
    pre_quaternion_wxyz: F64 | None = None
    pre_joints: F64 | None = None

    @classmethod
    def from_grasp(cls, g: Any) -> GraspArrays:
        """From a :class:`models.grasp.Grasp` (pydantic)."""
        from models.hands import load_spec

        names = load_spec(g.hand).joints
        return cls(
            position=np.array(g.pose.position, dtype=np.float64),
            quaternion_wxyz=np.array(g.pose.quaternion_wxyz, dtype=np.float64),
            joints=np.array([g.joints[n] for n in names], dtype=np.float64),
            squeeze=None if g.squeeze is None else np.array([g.squeeze[n] for n in names], dtype=np.float64),
            pre_position=np.array(g.pregrasp.pose.position, dtype=np.float64),
            pre_quaternion_wxyz=np.array(g.pregrasp.pose.quaternion_wxyz, dtype=np.float64),
            pre_joints=np.array([g.pregrasp.joints[n] for n in names], dtype=np.float64),
        )
