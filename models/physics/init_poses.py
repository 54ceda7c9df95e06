"""Initial palm placements around an object: the palm faces the object, fingers pre-shaped.

Used by the demo and (later) by the optimiser: directions are spread over the
sphere (Fibonacci), the palm centre is put ``standoff_m`` outside the cloud
along each direction, the palm's approach direction points at the object,
with a random roll about it and a jitter of the direction inside a cone.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..hands.model import HandModel


def fibonacci_directions(n: int, dtype: torch.dtype = torch.float64) -> Tensor:
    i = torch.arange(n, dtype=dtype) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    return torch.stack([torch.cos(theta) * torch.sin(phi), torch.sin(theta) * torch.sin(phi), torch.cos(phi)], -1)


def frame_from_approach(approach_world: Tensor, hand_approach: Tensor, roll: Tensor) -> Tensor:
    """Rotations R (B,3,3) with R @ hand_approach = approach_world, rolled by ``roll`` about it."""
    a = approach_world / approach_world.norm(dim=-1, keepdim=True)
    h = hand_approach / hand_approach.norm()
    # rotation taking h to a (Rodrigues on the cross product; antiparallel handled by a fixed axis)
    v = torch.cross(h.expand_as(a), a, dim=-1)
    c = (a * h).sum(-1)
    s = v.norm(dim=-1)
    axis = torch.where(s[:, None] > 1e-8, v / s.clamp_min(1e-12)[:, None], _perp(h).expand_as(a))
    ang = torch.atan2(s, c)
    from ..core.rotations import axis_angle_to_matrix

    r_align = axis_angle_to_matrix(axis, ang)
    r_roll = axis_angle_to_matrix(a, roll)
    out: Tensor = r_roll @ r_align
    return out


def _perp(v: Tensor) -> Tensor:
    e = torch.zeros_like(v)
    e[int(v.abs().argmin())] = 1.0
    p = torch.cross(v, e, dim=-1)
    out: Tensor = p / p.norm()
    return out


def palm_placements(
    hand: HandModel,
    points: Tensor,
    n: int,
    standoff_m: float = 0.02,
    cone_deg: float = 20.0,
    up: Tensor | None = None,
    min_elevation_deg: float | None = -30.0,
    generator: torch.Generator | None = None,
    approach_dirs: Tensor | None = None,
    region_center: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """n palm poses (position (n,3), rotation (n,3,3)) around the cloud ``points`` (N,3).

    ``approach_dirs`` (M, 3), optional: object -> palm unit directions to draw from instead of the
    whole sphere; they are used as given (no elevation filter, no cone jitter), so a caller such as
    a text intent can confine the palm to a cone. ``region_center`` (3,), optional: the point the
    palm aims at instead of the cloud's centroid.
    """
    dt = points.dtype
    center = points.mean(0) if region_center is None else region_center.to(points.device, dt)
    if approach_dirs is not None:
        given = approach_dirs.to(points.device, dt)
        given = given / given.norm(dim=-1, keepdim=True)
        m = given.shape[0]
        pick = torch.randperm(m, generator=generator)[:n] if m >= n else torch.randint(m, (n,), generator=generator)
        d = given[pick.to(points.device)]
    else:
        dirs = fibonacci_directions(4 * n, dt).to(points.device)
        if up is not None and min_elevation_deg is not None:  # keep the palm off the table side
            upn = up / up.norm()
            dirs = dirs[(dirs @ upn) > math.sin(math.radians(min_elevation_deg))]
        pick = torch.randperm(dirs.shape[0], generator=generator)[:n].to(points.device)
        d = dirs[pick]
        # jitter inside a cone
        jit = torch.randn(n, 3, generator=generator, dtype=dt).to(points.device) * math.radians(cone_deg) / 2
        d = d + jit - (jit * d).sum(-1, keepdim=True) * d
        d = d / d.norm(dim=-1, keepdim=True)
    # distance of the cloud's outermost point along each direction, plus the standoff
    extent = ((points - center) @ d.T).max(0).values
    palm_center_local = hand.palm_center.to(points.device, dt)
    roll = torch.rand(n, generator=generator, dtype=dt).to(points.device) * 2 * math.pi
    rot = frame_from_approach(-d, hand.approach_direction.to(points.device, dt), roll)
    target = center + d * (extent + standoff_m)[:, None]
    pos = target - (rot @ palm_center_local)
    return pos, rot
