"""Analytic grasp-quality metrics: contacts, Q1 (epsilon), object and table penetration.

Definitions follow ``docs/evaluation.md`` (the DexGraspNet / UniDexGrasp / DGTR
conventions):

* **Contacts.** For every hand link that owns collision geometry, the object
  sample point nearest to that link (distance = signed distance to the union of
  the link's primitives) is a contact when that distance is <= 1 cm; penetrating
  points (negative distance) therefore count. The contact position is the
  object point and the contact normal is the object's *outward* normal there;
  the finger pushes along the inward normal ``-n``.
* **Q1** (Ferrari-Canny epsilon). Each contact's friction cone (mu = 1) is
  approximated by 8 edges ``f_k = -n + mu (cos a_k t1 + sin a_k t2)`` with a
  unit normal component (the usual "sum of normal forces <= 1" convention), the
  wrench is ``[f; 10 * (p - c) x f]`` (torque scale 10 = 1 / 0.1 m, ``c`` the
  object centre = mean of the object points unless given), and Q1 is the radius
  of the largest origin-centred ball inside the convex hull of all wrenches,
  0 when the origin is not strictly inside or the wrench set spans < 6 dims.
  Q1 is then gated to 0 when max penetration > 5 mm or, with a table, the hand
  sinks > 1 cm below it.
* **Max penetration** = max(0, -min over object points of the hand's signed
  distance), i.e. the deepest object point inside the collision primitives.
* **Table penetration** = depth of the lowest point of the collision primitives
  below the table plane, computed in closed form per primitive (sphere/capsule:
  centre or segment end minus radius along the plane normal; box: lowest
  corner). Sampled hand surface points lie on those primitives, so they can
  never be lower than this value.

Everything is batched over B grasps in torch; only the 6-D convex hull (Qhull
via scipy) runs per grasp on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import ConvexHull, QhullError
from torch import Tensor

from ..core.geometry import ObjectCloud, PlaneArg, unit_plane
from ..hands.model import GEOM_BOX, GEOM_CAPSULE, GEOM_SPHERE, HandModel, LinkFrames
from .energy import _within
from .grasp_batch import GraspBatch

CONTACT_THRESHOLD_M = 0.01
MAX_PENETRATION_GATE_M = 0.005
TABLE_PENETRATION_GATE_M = 0.01
FRICTION_MU = 1.0
CONE_EDGES = 8
TORQUE_SCALE = 10.0

# Rank tolerance for the wrench set: below this (relative to the largest
# singular value) the set is treated as lying in a < 6-D subspace, where the
# origin cannot be an interior point and Q1 is 0. Qhull with joggling would
# otherwise return a sliver of width ~1e-11 and a meaningless tiny Q1.
_RANK_RTOL = 1e-9


@dataclass(frozen=True)
class Contacts:
    """Per-link contacts of B grasps over the K links that own collision geometry.

    ``link`` (K,) hand link index; ``position``/``normal`` (B, K, 3) the nearest
    object point and its outward normal; ``distance`` (B, K) its signed distance
    to the link; ``mask`` (B, K) whether it is a contact (distance <= threshold).
    """

    link: Tensor
    position: Tensor
    normal: Tensor
    distance: Tensor
    mask: Tensor


# ---------------------------------------------------------------------------- helpers
def collision_links(hand: HandModel) -> tuple[Tensor, list[Tensor]]:
    """The links owning collision geoms (sorted; the K links of :class:`Contacts`) and, for each,
    the indices of its geoms."""
    geom_link = hand.geom_link.cpu()
    links = torch.unique(geom_link)
    groups = [torch.nonzero(geom_link == li).flatten().to(hand.geom_link.device) for li in links.tolist()]
    return links.to(hand.geom_link.device), groups


def _batch_chunks(b: int, g: int, n: int, budget: int = 1 << 22) -> list[slice]:
    """Split the batch so one chunk's (b, G, N) distance tensor stays below ``budget`` elements."""
    step = max(1, budget // max(1, g * n))
    return [slice(i, min(b, i + step)) for i in range(0, b, step)]


def _frames_slice(frames: LinkFrames, sl: slice) -> LinkFrames:
    return LinkFrames(frames.rotation[sl], frames.translation[sl])


def _surface_batch(surface: ObjectCloud, b: int) -> tuple[Tensor, Tensor]:
    pts, nrm = surface.points, surface.normals
    if pts.dim() == 2:
        return pts.expand(b, -1, -1), nrm.expand(b, -1, -1)
    if pts.shape[0] != b:
        raise ValueError(f"batched object surface has {pts.shape[0]} entries for {b} grasps")
    return pts, nrm


# ---------------------------------------------------------------------------- contacts / penetration
def contacts_and_penetration(
    hand: HandModel,
    frames: LinkFrames,
    surface: ObjectCloud,
    threshold: float = CONTACT_THRESHOLD_M,
) -> tuple[Contacts, Tensor]:
    """Per-link contacts (see :class:`Contacts`) and max object penetration (B,) in metres.

    Both come from the same per-geom signed distances, so they are computed together.
    """
    b = frames.rotation.shape[0]
    pts, nrm = _surface_batch(surface, b)
    links, groups = collision_links(hand)
    n_pts = pts.shape[1]
    pos_out, nrm_out, dist_out, pen_out = [], [], [], []
    for sl in _batch_chunks(b, len(hand.geom_type), n_pts):
        sd = hand.signed_distance_per_geom(_frames_slice(frames, sl), pts[sl])  # (b, G, N)
        # Penetration: deepest object point inside the union of primitives.
        pen_out.append((-sd.min(dim=1).values.min(dim=1).values).clamp_min(0.0))
        # Per link: distance of each object point to the union of that link's primitives.
        per_link = torch.stack([sd[:, g].min(dim=1).values for g in groups], 1)  # (b, K, N)
        d, idx = per_link.min(dim=2)  # (b, K)
        gather = idx[..., None].expand(-1, -1, 3)
        pos_out.append(torch.gather(pts[sl], 1, gather))
        nrm_out.append(torch.gather(nrm[sl], 1, gather))
        dist_out.append(d)
    if b == 0:  # keep shapes consistent for an empty batch
        k = len(groups)
        empty = pts.new_zeros((0, k, 3))
        dist_out, pos_out, nrm_out, pen_out = [pts.new_zeros((0, k))], [empty], [empty], [pts.new_zeros(0)]
    dist = torch.cat(dist_out)
    contacts = Contacts(links, torch.cat(pos_out), torch.cat(nrm_out), dist, dist <= threshold)
    return contacts, torch.cat(pen_out)


# a broad phase's pad on top of a primitive's reach: far above the rounding of the squared distances it compares
_NEAR_PAD_M = 1e-3


def _near_pairs(hand: HandModel, frames: LinkFrames, pts: Tensor, reach: float,
                geoms: tuple[int, ...] | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(grasp, primitive, point) triples of the points (B, N, 3) within ``reach`` of a primitive's surface
    (inside included), among ``geoms`` (default: all), and their signed distances: a broad phase on the
    primitives' bounding spheres, then the exact distance of the pairs it lets through."""
    rot, pos = hand.geom_frames(frames)  # (B, G, 3, 3), (B, G, 3)
    sel = torch.arange(len(hand.geom_type), device=pos.device) if geoms is None else torch.tensor(geoms, device=pos.device)
    c = pos[:, sel]
    r = hand.geom_bounding_radius.to(pts)[sel] + reach + _NEAR_PAD_M
    bi, gj, pi = _within(c, pts, r)
    gi = sel[gj]
    return bi, gi, pi, hand.narrow_signed_distance((rot, pos), bi, gi, pts[bi, pi])


def near_contacts_and_penetration(
    hand: HandModel, frames: LinkFrames, surface: ObjectCloud, threshold: float = CONTACT_THRESHOLD_M,
) -> tuple[Contacts, Tensor]:
    """:func:`contacts_and_penetration` for callers that use only the contacts and the penetration: the
    same ``mask`` and penetration, and for every contact (masked link) its nearest point, normal and
    distance, from the (grasp, primitive, point) pairs within ``threshold`` of a primitive instead of
    every pair (a fingertip's reach holds a few percent of a cloud). A link with no point that near is
    not a contact: its position and normal are 0 and its distance is ``threshold``, a lower bound of
    the true one. Distances agree with the dense ones up to float rounding."""
    b = frames.rotation.shape[0]
    pts, nrm = _surface_batch(surface, b)
    links, groups = collision_links(hand)
    k, n = len(groups), pts.shape[1]
    slot = torch.empty(len(hand.geom_type), dtype=torch.long, device=pts.device)
    for i, g in enumerate(groups):
        slot[g] = i
    bi, gi, pi, d = _near_pairs(hand, frames, pts, max(threshold, 0.0))
    pen = pts.new_zeros(b).scatter_reduce(0, bi, (-d).clamp_min(0.0), "amax", include_self=True)
    key = bi * k + slot[gi]
    dmin = torch.full((b * k,), math.inf, dtype=pts.dtype, device=pts.device).scatter_reduce(0, key, d, "amin", include_self=True)
    win = d == dmin[key]  # the nearest point of each (grasp, link): the lowest index among equals, as argmin picks
    nearest = torch.full((b * k,), n, dtype=torch.long, device=pts.device).scatter_reduce(
        0, key[win], pi[win], "amin", include_self=True)
    mask = (dmin <= threshold).reshape(b, k)
    row = torch.arange(b, device=pts.device).repeat_interleave(k).reshape(b, k)
    idx = nearest.reshape(b, k).clamp_max(n - 1)
    m = mask[..., None].to(pts.dtype)
    position = pts[row, idx] * m
    normal = nrm[row, idx] * m
    distance = torch.where(mask, dmin.reshape(b, k), torch.full_like(mask, threshold, dtype=pts.dtype))
    return Contacts(links, position, normal, distance, mask), pen


def near_max_penetration(hand: HandModel, frames: LinkFrames, surface: ObjectCloud,
                         geoms: tuple[int, ...] | None = None) -> Tensor:
    """:func:`max_penetration` through the broad phase of :func:`near_contacts_and_penetration`: only points
    inside a primitive's bounding sphere can be inside it."""
    b = frames.rotation.shape[0]
    pts, _ = _surface_batch(surface, b)
    bi, _, _, d = _near_pairs(hand, frames, pts, 0.0, geoms)
    return pts.new_zeros(b).scatter_reduce(0, bi, (-d).clamp_min(0.0), "amax", include_self=True)


def max_penetration(hand: HandModel, frames: LinkFrames, surface: ObjectCloud, geoms: tuple[int, ...] | None = None) -> Tensor:
    """Deepest object point inside the hand's collision geometry, (B,) metres, >= 0; with ``geoms``,
    inside those primitives only."""
    if geoms is None:
        return contacts_and_penetration(hand, frames, surface)[1]
    b = frames.rotation.shape[0]
    pts, _ = _surface_batch(surface, b)
    out = []
    for sl in _batch_chunks(b, len(geoms), pts.shape[1]):
        sd = hand.signed_distance_per_geom(_frames_slice(frames, sl), pts[sl], geoms)
        out.append((-sd.amin(dim=(1, 2))).clamp_min(0.0))
    return torch.cat(out) if out else pts.new_zeros(0)


def table_penetration(hand: HandModel, frames: LinkFrames, table: PlaneArg) -> Tensor:
    """Depth (B,) in metres of the hand's lowest collision-primitive point below the table plane, >= 0."""
    rot, pos = hand.geom_frames(frames)  # (B, G, 3, 3), (B, G, 3)
    plane = unit_plane(table, pos)
    if plane is None:
        return torch.zeros(pos.shape[0], dtype=pos.dtype, device=pos.device)
    n, d = plane
    size = hand._geom_size  # (G, 3): capsule/sphere (r, half_len, -); box half extents
    centre_h = pos @ n + d  # (B, G) height of each primitive's centre above the plane
    # Component of the plane normal along each primitive's local axes.
    n_local = torch.einsum("bgji,j->bgi", rot, n)  # (B, G, 3)
    lows = []
    for g, t in enumerate(hand.geom_type):
        if t == GEOM_CAPSULE:
            # Lowest point: the segment end lowest along n, minus the radius.
            low = centre_h[:, g] - size[g, 1] * n_local[:, g, 2].abs() - size[g, 0]
        elif t == GEOM_SPHERE:
            low = centre_h[:, g] - size[g, 0]
        elif t == GEOM_BOX:
            # Lowest corner: every half extent pushed against the normal.
            low = centre_h[:, g] - (n_local[:, g].abs() * size[g]).sum(-1)
        else:  # pragma: no cover - HandModel only admits the three types above
            raise ValueError(f"unsupported geom type {t}")
        lows.append(low)
    lowest = torch.stack(lows, 1).min(dim=1).values
    return (-lowest).clamp_min(0.0)


# ---------------------------------------------------------------------------- wrenches and Q1
def friction_cone_edges(normals: Tensor, mu: float = FRICTION_MU, edges: int = CONE_EDGES) -> Tensor:
    """Cone edge forces (..., edges, 3) for outward normals (..., 3): ``-n + mu * tangent_k``.

    The normal component of every edge is 1 (not the edge length) so that the hull
    of all wrenches is the Ferrari-Canny set for a unit total normal force.
    """
    inward = torch.neg(normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    # A helper axis not parallel to the normal: e_x unless the normal is close to it.
    ex = torch.zeros_like(inward)
    ex[..., 0] = 1.0
    ey = torch.zeros_like(inward)
    ey[..., 1] = 1.0
    helper = torch.where(inward[..., :1].abs() < 0.9, ex, ey)
    t1 = torch.cross(inward, helper, dim=-1)
    t1 = t1 / t1.norm(dim=-1, keepdim=True)
    t2 = torch.cross(inward, t1, dim=-1)
    ang = torch.arange(edges, dtype=normals.dtype, device=normals.device) * (2.0 * math.pi / edges)
    tang: Tensor = torch.cos(ang)[:, None] * t1[..., None, :] + torch.sin(ang)[:, None] * t2[..., None, :]
    return inward[..., None, :] + tang * mu


def contact_wrenches(
    positions: Tensor,
    normals: Tensor,
    center: Tensor,
    mu: float = FRICTION_MU,
    edges: int = CONE_EDGES,
    torque_scale: float = TORQUE_SCALE,
) -> Tensor:
    """Wrenches (..., K * edges, 6) = [f; torque_scale * (p - c) x f] for contacts (..., K, 3).

    ``center`` broadcasts against ``positions[..., 0, :]`` (e.g. (3,) or (B, 3)).
    """
    f = friction_cone_edges(normals, mu, edges)  # (..., K, E, 3)
    arm = (positions - center[..., None, :])[..., None, :].expand_as(f)
    tau = torch.cross(arm, f, dim=-1) * torque_scale
    w = torch.cat([f, tau], dim=-1)
    return w.reshape(*w.shape[:-3], w.shape[-3] * w.shape[-2], 6)


def epsilon_quality(wrenches: np.ndarray | Tensor) -> float:
    """Radius of the largest origin-centred ball inside the convex hull of ``wrenches`` (M, 6).

    0 when the origin is not strictly inside, when there are too few wrenches or
    they span fewer than 6 dimensions, or when Qhull fails on a degenerate set.
    """
    if isinstance(wrenches, Tensor):
        wrenches = wrenches.detach().cpu().numpy()
    w = np.asarray(wrenches, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] < w.shape[1] + 1:
        return 0.0
    s = np.linalg.svd(w, compute_uv=False)
    # The origin lies in the interior only if the wrenches' linear span is all of R^6.
    if s[0] <= 0.0 or s[-1] < _RANK_RTOL * s[0]:
        return 0.0
    try:
        hull = ConvexHull(w, qhull_options="QJ")
    except (QhullError, ValueError):
        return 0.0
    # Facet equations: normal . x + offset <= 0 inside, with unit normals, so -offset
    # is the origin's distance to each facet plane when the origin is inside.
    dist = -hull.equations[:, -1]
    q = float(dist.min())
    return q if q > 0.0 else 0.0


def q1_from_contacts(
    contacts: Contacts,
    center: Tensor,
    mu: float = FRICTION_MU,
    edges: int = CONE_EDGES,
    torque_scale: float = TORQUE_SCALE,
) -> Tensor:
    """Ungated Q1 (B,) from per-link contacts; ``center`` (3,) or (B, 3)."""
    b = contacts.mask.shape[0]
    c = center.expand(b, 3) if center.dim() == 1 else center
    w = contact_wrenches(contacts.position, contacts.normal, c, mu, edges, torque_scale)
    w = w.reshape(b, contacts.mask.shape[1], edges, 6)
    mask = contacts.mask.cpu().numpy()
    w_np = w.detach().cpu().numpy()
    out = [epsilon_quality(w_np[i][mask[i]].reshape(-1, 6)) for i in range(b)]
    return torch.tensor(out, dtype=contacts.position.dtype, device=contacts.position.device)


# ---------------------------------------------------------------------------- per grasp / per set
def batch_quality(grasps: GraspBatch, cloud: ObjectCloud, table: PlaneArg = None, center: Tensor | None = None) -> dict[str, Tensor]:
    """Per-grasp metrics of a batch on ``cloud`` (its frame), each a (B,) tensor.

    Keys: ``q1`` (gated), ``q1_ungated``, ``max_penetration_m``,
    ``table_penetration_m`` (0 without a table), ``contact_count`` (links in contact).
    ``center`` (the Q1 torque origin) defaults to the mean of the cloud's points.
    """
    frames = grasps.frames()
    contacts, pen = contacts_and_penetration(grasps.hand, frames, cloud)
    if center is None:
        center = cloud.points.mean(dim=-2)
    center = center.to(dtype=grasps.root_pos.dtype, device=grasps.root_pos.device)
    return metrics_from_contacts(grasps.hand, frames, contacts, pen, center, table)


def grasp_quality(
    hand: HandModel,
    root_pos: Tensor,
    root_rot: Tensor,
    joints: Tensor,
    surface: ObjectCloud,
    table: PlaneArg = None,
    center: Tensor | None = None,
) -> dict[str, Tensor]:
    """:func:`batch_quality` of loose tensors: ``root_pos`` (B, 3), ``root_rot`` (B, 3, 3),
    ``joints`` (B, J) in the object's frame."""
    return batch_quality(GraspBatch(hand, root_pos, root_rot, joints), surface, table, center)


def metrics_from_contacts(
    hand: HandModel, frames: LinkFrames, contacts: Contacts, pen: Tensor, center: Tensor, table: PlaneArg = None
) -> dict[str, Tensor]:
    """:func:`batch_quality`'s metrics from contacts and penetration already computed
    (:func:`contacts_and_penetration`): Q1 about ``center``, gated by penetration and the table."""
    q1_raw = q1_from_contacts(contacts, center)
    table_pen = table_penetration(hand, frames, table)
    gated = (pen > MAX_PENETRATION_GATE_M) | (table_pen > TABLE_PENETRATION_GATE_M)
    q1 = torch.where(gated, torch.zeros_like(q1_raw), q1_raw)
    return {
        "q1": q1,
        "q1_ungated": q1_raw,
        "max_penetration_m": pen,
        "table_penetration_m": table_pen,
        "contact_count": contacts.mask.sum(dim=1),
    }


def summarize(per_grasp: dict[str, Tensor]) -> dict[str, float]:
    """Set-level averages of :func:`grasp_quality` output.

    ``mean_q1``; ``mean_max_penetration_cm``; ``eta_np`` share of grasps with max
    penetration < 5 mm; ``eta_tb`` share with Q1 > 0; ``mean_contact_count``;
    ``mean_table_penetration_cm``; ``n`` the number of grasps. Shares are in [0, 1].
    """
    q1 = per_grasp["q1"].double()
    pen = per_grasp["max_penetration_m"].double()
    n = int(q1.numel())
    if n == 0:
        raise ValueError("cannot summarise an empty grasp set")
    out = {
        "n": float(n),
        "mean_q1": float(q1.mean()),
        "mean_max_penetration_cm": float(pen.mean() * 100.0),
        "eta_np": float((pen < MAX_PENETRATION_GATE_M).double().mean()),
        "eta_tb": float((q1 > 0).double().mean()),
        "mean_contact_count": float(per_grasp["contact_count"].double().mean()),
    }
    if "table_penetration_m" in per_grasp:
        out["mean_table_penetration_cm"] = float(per_grasp["table_penetration_m"].double().mean() * 100.0)
    return out
