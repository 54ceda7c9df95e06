"""Symmetry completion of single-view clouds, so grasps keep out of the object's unseen side.

A depth camera sees the front of an object; a grasp optimised on that cloud alone happily puts
fingers through the back, which is not in the cloud. Most household objects on a table are
mirror-symmetric about a vertical plane (bottles, mugs, bowls, boxes, cans), so we complete the
cloud the way "mind the gap" grasp planners do: reflect the observed points about a vertical
plane through the object's estimated centre, perpendicular to the horizontal viewing direction.

Everything works in the pipeline's canonical frame (up = +z, table below):

* **Is the cloud single-view?** The outward normals of a closed surface sampled uniformly average
  to about zero; a single view's normals lean towards the camera. The score is the length of the
  mean horizontal normal of a farthest-point-uniform subset; above ``partial_threshold`` the
  cloud is treated as a single view (or always, when the client sends its ``viewpoint``).
* **Viewing direction** ``v`` (horizontal, object towards camera): from the viewpoint when given,
  else the direction of that mean horizontal normal.
* **Mirror plane** at depth ``s`` along ``v``. A smooth surface symmetric about the plane
  crosses it where its normal is perpendicular to the plane's normal, so ``s`` is the depth of
  the observed points whose normal is horizontal and perpendicular to ``v`` (an upright can's
  sides, a ball's or a lying capsule's outline seen from the camera, at any height), extrapolated
  from those within 15 degrees of it. When
  there are none (a box seen face-on or from a corner), the plane goes halfway between the front
  and the rearmost observed point. Either way it lies no shallower than that halfway depth (the
  mirrored front must reach behind everything observed) and at least ``min_half_depth_m`` behind
  the front.
* Mirrored points within ``dedupe_m`` of an observed point are dropped (a top face seen whole
  maps onto itself), and normals are reflected with the points.

Limits: an object that is not mirror-symmetric about such a plane (a mug's handle seen from the
side, a lying banana) gets a wrong back; an object deeper than it is wide is completed too thin.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.geometry import farthest_point_sample

MODES = ("auto", "mirror", "off")


@dataclass(frozen=True)
class CompletionConfig:
    mode: str = "auto"  # auto: mirror single-view clouds only; mirror: always; off: never
    partial_threshold: float = 0.15  # mean horizontal normal length above which a cloud is single-view
    # lean above which a cloud counts as a single view for the optimisers' unseen-side term (E_inside): lower,
    # since a wrong call there costs time, not quality (validation: 27 of 30 views >= 0.08, 1 of 30 complete clouds)
    single_view_threshold: float = 0.08
    score_points: int = 512  # farthest-point-uniform subset the score is computed on
    outline_cos: float = 0.26  # a normal within asin(0.26) = 15 deg of perpendicular to the view is on the outline
    outline_points: int = 8  # fewer outline points than this: the halfway rule decides the plane
    dedupe_m: float = 0.004  # mirrored points closer than this to an observed point are dropped
    min_half_depth_m: float = 0.01  # the mirror plane lies at least this far behind the front

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"completion mode must be one of {', '.join(MODES)}, got {self.mode!r}")


@dataclass
class Completion:
    """The cloud to grasp: the observed points first, then the mirrored ones."""

    points: Tensor  # (M, 3)
    normals: Tensor  # (M, 3)
    observed: int  # the first ``observed`` rows are the input points
    partial_score: float  # length of the mean horizontal normal
    view_dir: Tensor | None  # (3,) horizontal unit vector, object towards camera; None: not completed
    plane_depth: float | None  # mirror plane: {x : x . view_dir = plane_depth}

    @property
    def completed(self) -> bool:
        return self.view_dir is not None


def partial_score(points: Tensor, normals: Tensor, n: int = 512) -> tuple[float, Tensor]:
    """Length of the mean horizontal (x, y) component of the outward normals of a uniform subset,
    and that mean (2,). About 0 for a closed surface, 0.4-0.7 for a single view."""
    if points.shape[0] > n:
        idx = farthest_point_sample(points[None].float(), n)[0]
        normals = normals[idx]
    m = normals[:, :2].double().mean(0)
    return float(m.norm()), m


def _outline_depth(points: Tensor, normals: Tensor, v: Tensor, min_points: int, max_cos: float) -> float | None:
    """Depth along ``v`` where the surface's horizontal normal turns perpendicular to ``v``: over
    the points whose normal is at most 60 degrees from horizontal and whose horizontal part has
    ``|cos|`` to ``v`` below ``max_cos``, the intercept at ``cos = 0`` of a line fitted to depth
    against that cosine (on a round section of radius r, depth = centre + r cos exactly; a camera
    sees only the ``cos > 0`` side, so a plain median would sit in front of the axis). The median
    when the fit is degenerate; None when fewer than ``min_points`` qualify."""
    nh = normals[:, :2].double()
    length = nh.norm(dim=-1)
    cos = (nh @ v[:2].double()) / length.clamp_min(1e-9)
    ok = (length > 0.5) & (cos.abs() < max_cos)
    if int(ok.sum()) < min_points:
        return None
    x, y = cos[ok], points[ok].double() @ v.double()
    xc = x - x.mean()
    var = float((xc * xc).mean())
    if var > 1e-4:
        slope = float((xc * (y - y.mean())).mean()) / var
        if 0.0 <= slope <= 1.0:  # a radius between 0 and 1 m
            return float(y.mean() - slope * x.mean())
    return float(y.median())


def mirror_complete(
    points: Tensor,
    normals: Tensor,
    viewpoint: Tensor | None = None,
    cfg: CompletionConfig | None = None,
) -> Completion:
    """Complete a canonical-frame cloud ((N, 3) points and outward normals, up = +z) by mirroring
    when it is a single view (see the module text). ``viewpoint`` (3,): the camera position in
    the same frame, when the client knows it."""
    c = cfg or CompletionConfig()
    score, mean_h = partial_score(points, normals, c.score_points)
    none = Completion(points, normals, points.shape[0], score, None, None)
    if c.mode == "off":
        return none
    if viewpoint is not None:
        v2 = (viewpoint.to(points.dtype)[:2] - points[:, :2].mean(0)).double()
    elif c.mode == "mirror" or score >= c.partial_threshold:
        v2 = mean_h
    else:
        return none
    if float(v2.norm()) < 1e-6:  # camera straight above (or no lean at all): no horizontal direction
        return none
    v = torch.zeros(3, dtype=points.dtype)
    v[:2] = (v2 / v2.norm()).to(points.dtype)
    depth = points @ v
    front, rear = float(depth.max()), float(depth.min())
    mid = (front + rear) / 2
    axis = _outline_depth(points, normals, v, c.outline_points, c.outline_cos)
    s = min(mid if axis is None else axis, mid, front - c.min_half_depth_m)
    off = (depth - s)[:, None] * v  # reflect: x' = x - 2 ((x . v) - s) v
    mp = points - 2 * off
    mn = normals - 2 * (normals @ v)[:, None] * v
    d = torch.cdist(mp.float(), points.float()).min(dim=1).values
    keep = d > c.dedupe_m
    return Completion(
        torch.cat([points, mp[keep]]), torch.cat([normals, mn[keep]]), points.shape[0], score, v, s
    )


__all__ = ["MODES", "Completion", "CompletionConfig", "mirror_complete", "partial_score"]
