"""A simulated check of candidate grasps on the cloud they were planned on, as the optimiser sees it.

``models`` does not import the simulator: a check is passed in (``sim_worker.cloud_check.CloudCheck``
is the MuJoCo one: the referee's protocol on a proxy of the object built from the cloud). Proposers
that rank with one say so (:attr:`models.proposers.base.Capabilities.ranks_by_check`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from ..grasp import Grasp


class GraspCheck(Protocol):
    def __call__(self, points: np.ndarray, normals: np.ndarray, grasps: Sequence[Grasp]) -> dict[str, np.ndarray]:
        """Per grasp (points, outward normals and grasps in one frame): ``holds`` (bool) and ``shift_m``
        (how far the object moved before any disturbance, m)."""
        ...


__all__ = ["GraspCheck"]
