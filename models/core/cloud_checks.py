"""Refuse point clouds no proposer can work with, before any optimisation starts."""

from __future__ import annotations

import torch
from torch import Tensor

MIN_POINTS = 50
MAX_EXTENT_M = 0.5  # a graspable object for this hand spans well under half a metre
MIN_EXTENT_M = 0.005  # below this the cloud is a point (e.g. one point sent many times), not an object
MIN_THICKNESS_RATIO = 1e-3  # smallest/largest principal std: below this the cloud is a plane


def check_object_cloud(points: Tensor) -> None:
    """Raise ValueError with a message saying what to fix."""
    if points.dim() != 2 or points.shape[-1] != 3:
        raise ValueError(f"object points must have shape (N, 3), got {tuple(points.shape)}")
    if not torch.isfinite(points).all():
        bad = int((~torch.isfinite(points)).any(dim=-1).sum())
        raise ValueError(f"object points contain NaN or infinite values ({bad} points); drop or fix them")
    n = points.shape[0]
    if n < MIN_POINTS:
        raise ValueError(f"object cloud has {n} points; at least {MIN_POINTS} are needed")
    p = points.double()
    extent = float((p.max(0).values - p.min(0).values).max())
    if extent > MAX_EXTENT_M:
        raise ValueError(
            f"object cloud spans {extent:.2f} m; at most {MAX_EXTENT_M} m is graspable by this hand "
            "(is the table or background still in the cloud, or are the units millimetres?)"
        )
    if extent < MIN_EXTENT_M:
        raise ValueError(
            f"object cloud spans {extent * 1e3:.2f} mm; at least {MIN_EXTENT_M * 1e3:g} mm is needed "
            "(are all points the same point, or are the units not metres?)"
        )
    c = p - p.mean(0)
    std = torch.linalg.svdvals(c / max(n - 1, 1) ** 0.5)
    if float(std[-1]) <= MIN_THICKNESS_RATIO * float(std[0]):
        raise ValueError("object cloud is flat (all points on one plane); remove the table plane or send the object")
