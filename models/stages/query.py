"""A grasp query as a client sends it, and the error that says why one cannot be served.

:class:`GraspQuery` is the input of :class:`models.pipeline.GraspPipeline` (the service builds it
from ``POST /v1/grasps``, the CLI from its flags); :class:`QueryError` is raised by every stage
for inputs it cannot work with, with a message that says what to fix (the service maps it to a 4xx).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class QueryError(ValueError):
    """The query cannot be served as sent; the message says what to fix."""


@dataclass
class GraspQuery:
    """One proposal request, in the client's frame."""

    points: np.ndarray  # (N, 3) float
    normals: np.ndarray | None = None  # (N, 3) outward normals, optional
    up: Sequence[float] = (0.0, 0.0, 1.0)  # opposite to gravity
    table: tuple[Sequence[float], float] | None = None  # plane n.x + d = 0, n roughly along up
    hand: str = "shadow"
    num_grasps: int = 16
    text: str | None = None
    method: str = "auto"
    refine: bool | None = None
    seed: int = 0
    timeout_s: float | None = None
    remove_table: bool = True
    viewpoint: Sequence[float] | None = None  # camera position (request frame) of a single-view cloud, when known
    completion: str = "auto"  # auto | mirror | off: mirror a single view about its estimated symmetry plane
    queued_s: float = 0.0  # seconds the query waited before the pipeline took it (a queue); charged to timeout_s


__all__ = ["GraspQuery", "QueryError"]
