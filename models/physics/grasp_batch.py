"""B hand configurations as tensors: the unit that refinement, scoring and ranking work on.

A :class:`GraspBatch` is a hand and, per grasp, the palm (grasp root) position (B, 3) in metres,
its rotation (B, 3, 3) and the joint angles (B, J) in radians in the hand spec's joint order, all
in one frame (the object's). :class:`models.grasp.Grasp` is the same thing as a record that crosses
boundaries; :meth:`GraspBatch.from_grasps` converts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..grasp import Grasp, grasps_to_tensors
from ..hands.model import HandModel, LinkFrames


@dataclass(frozen=True)
class GraspBatch:
    """B grasps of one hand: palm position (B, 3) m, rotation (B, 3, 3), joints (B, J) rad."""

    hand: HandModel
    root_pos: Tensor
    root_rot: Tensor
    joints: Tensor

    @classmethod
    def from_grasps(
        cls, hand: HandModel, grasps: Sequence[Grasp], dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
    ) -> GraspBatch:
        pos, rot, q = grasps_to_tensors(grasps, dtype=dtype, device=device)
        return cls(hand, pos, rot, q)

    def __len__(self) -> int:
        return int(self.root_pos.shape[0])

    def frames(self) -> LinkFrames:
        """Every link's pose (forward kinematics)."""
        return self.hand.forward_kinematics(self.root_pos, self.root_rot, self.joints)

    def normalised_joints(self) -> Tensor:
        """Joints as a share of each joint's range, (B, J) in [0, 1] within the limits."""
        span = (self.hand.upper - self.hand.lower).to(self.joints).clamp_min(1e-6)
        return (self.joints - self.hand.lower.to(self.joints)) / span


__all__ = ["GraspBatch"]
