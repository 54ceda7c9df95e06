"""Differentiable, batched grasp energy terms (DexGraspNet-style synthesis objective).

Every term maps a batch of B hand configurations to a (B,) tensor; all are
smooth almost everywhere so the optimiser and the test-time refinement can
use autograd. The object is a point cloud with outward normals (complete or
partial), optionally with a support plane.

E = w_fc E_fc + w_dis E_dis + w_pen E_pen + w_spen E_spen + w_joints E_joints + w_table E_table
with DexGraspNet's weights (1, 100, 100, 10, 1) and a table weight of our own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from ..core.geometry import ObjectCloud, Plane, cloud_neighbours, knn, object_signed_distance
from ..hands.model import HandModel, LinkFrames
from .contact_qp import ContactQPConfig, QPWarmStart, contact_qp_energy


@dataclass(frozen=True)
class EnergyWeights:
    """Weights of the synthesis energy (dimensionless multipliers of the terms below)."""

    fc: float = 1.0  # force closure residual ||sum n_i||^2 + ||sum x_i x n_i||^2
    dis: float = 100.0  # sum of |signed distance| of the active contacts to the object (m)
    pen: float = 100.0  # sum of depths (m) of object points inside the hand
    spen: float = 10.0  # sum of overlaps (m) of penetration-keypoint spheres on non-adjacent links
    joints: float = 1.0  # sum of limit and tendon-band violations (rad)
    table: float = 100.0  # sum of depths (m) of keypoint spheres below the support plane
    # sum of depths (m) of keypoint spheres inside the object by the cloud's signed distance; a (B,) tensor
    # weights each grasp (the optimiser: single views only); 0 everywhere: the term is not computed
    inside: float | Tensor = 0.0
    # E_qp (contact_qp.py): residual of the contact-force QP over six task forces; a (B,) tensor weights each
    # grasp (the optimiser: none with a table); 0 everywhere: not computed
    qp: float | Tensor = 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def force_closure(contact_points: Tensor, contact_normals: Tensor, center: Tensor | None = None) -> Tensor:
    """E_fc = || n^T G ||^2 with G = [I; [x_i]x] stacked (Liu et al. 2021), i.e.
    ||sum_i n_i||^2 + ||sum_i x_i x n_i||^2 for contacts (B, C, 3) with inward/outward normals (B, C, 3).

    Zero when unit contact forces along the normals balance both force and torque.
    """
    if center is not None and center.dim() == 2:  # one centre per grasp
        center = center[:, None, :]
    x = contact_points if center is None else contact_points - center
    f = contact_normals.sum(dim=1)
    tau = torch.cross(x, contact_normals, dim=-1).sum(dim=1)
    return (f * f).sum(-1) + (tau * tau).sum(-1)


def contact_distance(contact_points: Tensor, obj: ObjectCloud, k: int = 8) -> Tensor:
    """E_dis = sum_i |d(contact_i, object)| (m)."""
    d = object_signed_distance(contact_points, obj.points, obj.normals, k=k)
    return d.abs().sum(dim=-1)


def contact_normals(contact_points: Tensor, obj: ObjectCloud) -> Tensor:
    """Outward object normal at the cloud point nearest to each contact (no gradient through the choice)."""
    b = contact_points.shape[0]
    pts = obj.points.expand(b, *obj.points.shape) if obj.points.dim() == 2 else obj.points
    _, idx = knn(contact_points, pts, 1)
    return (
        obj.normals[idx[..., 0]]
        if obj.normals.dim() == 2
        else torch.gather(obj.normals, 1, idx[..., 0:1].expand(-1, -1, 3))
    )


def object_penetration(
    hand: HandModel, frames: LinkFrames, obj: ObjectCloud, margin: float | Tensor = 0.0, pairs: PenetrationPairs | None = None
) -> Tensor:
    """E_pen = sum over object points of their depth inside the hand's collision primitives (m),
    the primitives inflated by ``margin`` (m): a cloud samples the surface every few mm, so a
    finger can sink between samples; a margin of about half the spacing keeps it out. ``margin``
    may be one value per primitive (G,): links meant to stay clear of the object get a larger one.

    Sparse: every (grasp, primitive, point) distance is computed once without a graph, and only the
    points inside the (inflated) hand are differentiated, each against the primitive it is deepest
    in. The value and the gradient are those of the dense sum (the min picks that primitive, the
    relu zeroes every other point); the graph, and so the backward pass, shrinks from
    B x G x P entries to the few that penetrate (:func:`object_penetration_dense` is the reference).
    ``pairs`` keeps the broad phase's candidates from one call to the next (an optimiser's steps move
    the hand a few mm; the object cloud does not move): see :class:`PenetrationPairs`."""
    b = frames.translation.shape[0]
    pts = obj.points.expand(b, *obj.points.shape) if obj.points.dim() == 2 else obj.points
    m = torch.as_tensor(margin, dtype=pts.dtype, device=pts.device)
    m_g = m.expand(len(hand.geom_type)) if m.dim() == 0 else m
    with torch.no_grad():
        bi, gi, pi = _deepest_inside(hand, LinkFrames(frames.rotation.detach(), frames.translation.detach()), pts.detach(), m_g,
                                     pairs)
    d = hand.signed_distance_to_geom(frames, bi, gi, pts[bi, pi]) - m_g[gi]
    return torch.zeros(b, dtype=d.dtype, device=d.device).index_add(0, bi, torch.relu(-d))


class PenetrationPairs:
    """The broad phase of :func:`object_penetration` kept between calls: a neighbour list with a skin.

    For each grasp, the list holds every (primitive, point) pair whose point lay within the
    primitive's bounding radius + margin + ``skin_m`` of its centre when the grasp's pairs were last
    found, and those centres. A later call searches again only for the grasps one of whose primitive
    centres has moved ``skin_m`` or more since (rotation about the centre moves no bounding sphere):
    for the others a point outside the enlarged sphere then cannot be within reach now. So the result
    is that of a fresh broad phase over every point, which runs once every few steps per grasp
    instead of every step. A new cloud, batch size or margin starts afresh. One per optimisation run;
    not thread-safe."""

    def __init__(self, skin_m: float = 0.01) -> None:
        self.skin_m = skin_m
        self.searched = 0  # grasps whose pairs were searched again (for the tests and the benches)
        self.calls = 0
        self._key: tuple[object, ...] | None = None
        self._centre: Tensor | None = None
        self._triples: tuple[Tensor, Tensor, Tensor] | None = None

    def candidates(self, centre: Tensor, pts: Tensor, reach: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(grasp, primitive, point) triples that may be within ``reach`` (G,) of ``centre`` (B, G, 3): each grasp's
        in (primitive, point) order, the grasps in no particular order."""
        self.calls += 1
        key = (pts.data_ptr(), tuple(pts.shape), pts.dtype, tuple(centre.shape), tuple(reach.tolist()))
        if self._key != key or self._centre is None or self._triples is None:
            self._triples = _within(centre, pts, reach + self.skin_m)
            self._centre, self._key = centre.clone(), key
            self.searched += centre.shape[0]
            return self._triples
        moved = (centre - self._centre).norm(dim=-1).amax(dim=-1) >= self.skin_m  # (B,)
        if bool(moved.any()):
            rows = torch.nonzero(moved)[:, 0]
            bi, gi, pi = self._triples
            keep = ~moved[bi]
            nb, ng, np_ = _within(centre[rows], pts[rows], reach + self.skin_m)
            # appended, not sorted back into (grasp, primitive, point) order: a grasp's triples all come from one
            # search, in that search's order, and nothing downstream mixes grasps (the deepest primitive and the
            # sums are per grasp), so the result is bit for bit that of the sorted list (until session 20 an
            # argsort per step restored the global order: 3 % of a step)
            self._triples = (torch.cat([bi[keep], rows[nb]]), torch.cat([gi[keep], ng]), torch.cat([pi[keep], np_]))
            self._centre[rows] = centre[rows]
            self.searched += int(rows.numel())
        return self._triples


def _within(centre: Tensor, pts: Tensor, reach: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(grasp, primitive, point) indices, in that order, of points (B, P, 3) within ``reach`` (G,) of ``centre`` (B, G, 3)."""
    d2 = (pts * pts).sum(-1)[:, None, :] - 2 * torch.einsum("bpk,bgk->bgp", pts, centre) + (centre * centre).sum(-1)[..., None]
    bi, gi, pi = torch.nonzero(d2 < (reach * reach)[None, :, None], as_tuple=True)
    return bi, gi, pi


def _deepest_inside(
    hand: HandModel, frames: LinkFrames, pts: Tensor, margin: Tensor, pairs: PenetrationPairs | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(grasp, primitive, point) indices of every point inside a primitive inflated by ``margin`` (G,),
    each with the primitive it is deepest in (the lowest index on a tie, as ``min`` picks). A broad
    phase first: a point farther from a primitive's centre than its bounding radius cannot be inside
    (with ``pairs``, among the triples its neighbour list kept)."""
    rot, centre = hand.geom_frames(frames)  # (B, G, 3, 3), (B, G, 3)
    reach = (hand.geom_bounding_radius + margin).clamp_min(0)  # (G,)
    if pairs is None:
        bi, gi, pi = _within(centre, pts, reach)
    else:
        bi, gi, pi = pairs.candidates(centre, pts, reach)
        near = torch.nonzero(((pts[bi, pi] - centre[bi, gi]) ** 2).sum(-1) < (reach * reach)[gi])[:, 0]
        bi, gi, pi = bi[near], gi[near], pi[near]
    sd = hand.narrow_signed_distance((rot, centre), bi, gi, pts[bi, pi]) - margin[gi]
    inside = sd < 0
    bi, gi, pi, sd = bi[inside], gi[inside], pi[inside], sd[inside]
    key = bi * pts.shape[1] + pi
    deepest = torch.full((pts.shape[0] * pts.shape[1],), torch.inf, dtype=sd.dtype, device=sd.device)
    deepest = deepest.scatter_reduce(0, key, sd, "amin")
    order = torch.arange(len(key), device=key.device)
    first = torch.full_like(deepest, len(key), dtype=torch.long).scatter_reduce(
        0, key, torch.where(sd == deepest[key], order, len(key)), "amin")
    keep = order == first[key]  # a grasp's triples come in (primitive, point) order: the lowest primitive wins a tie
    return bi[keep], gi[keep], pi[keep]


def object_penetration_dense(hand: HandModel, frames: LinkFrames, obj: ObjectCloud, margin: float | Tensor = 0.0) -> Tensor:
    """:func:`object_penetration` over every (grasp, primitive, point): the reference its sparse form is tested against."""
    b = frames.translation.shape[0]
    pts = obj.points.expand(b, *obj.points.shape) if obj.points.dim() == 2 else obj.points
    if isinstance(margin, Tensor) and margin.dim() == 1:
        sd = (hand.signed_distance_per_geom(frames, pts) - margin.to(pts)[None, :, None]).min(dim=1).values
        return torch.relu(-sd).sum(dim=-1)
    sd = hand.signed_distance(frames, pts)
    return torch.relu(margin - sd).sum(dim=-1)


def hand_inside_object(hand: HandModel, frames: LinkFrames, obj: ObjectCloud) -> Tensor:
    """E_inside = sum over the hand's penetration-keypoint spheres of their depth inside the object,
    the object's side of a point told by the oriented cloud (:func:`object_signed_distance`) (m).

    E_pen only sees object points inside the hand, so it is blind where the cloud has no points: the
    unseen back of a single-view cloud. The cloud's signed distance counts everything behind the
    observed surface as inside (up to a completed back, when there is one), so this term keeps
    fingers out of the unobserved part of the object. Its nearest-neighbour search costs about as
    much as the rest of the energy, so the optimiser turns it on for single views only.
    """
    c, r = hand.penetration_keypoints(frames)
    d = object_signed_distance(c, obj.points, obj.normals)
    return torch.relu(r - d).sum(dim=-1)


def self_penetration(hand: HandModel, frames: LinkFrames) -> Tensor:
    """E_spen = sum over keypoint sphere pairs on non-adjacent links of relu(r_i + r_j - d_ij) (m).

    Sparse, as :func:`object_penetration`: only the pairs that may overlap enter the graph. The broad phase
    takes squared distances from one batched matmul (|a|^2 + |b|^2 - 2 a.b) against the pairs' reach padded by
    :data:`_SELF_PAD_M`, which covers that formula's rounding; a pair it lets through that does not overlap
    adds relu(...) = 0 exactly, so the value and the gradient are those of the dense sum (session 20: 1.7x
    faster than the exact pairwise distances it replaces, 7.2 -> 4.3 ms on 96 grasps; those were about a tenth of
    an optimiser step)."""
    c, r = hand.penetration_keypoints(frames)
    with torch.no_grad():
        cd = c.detach()
        sq = (cd * cd).sum(-1)
        d2 = torch.baddbmm(sq[:, :, None] + sq[:, None, :], cd, cd.transpose(1, 2), alpha=-2)
        bi, ii, jj = torch.nonzero(d2 < _self_reach2(hand, r.to(cd)), as_tuple=True)
    d = (c[bi, ii] - c[bi, jj]).norm(dim=-1)
    return torch.zeros(c.shape[0], dtype=c.dtype, device=c.device).index_add(0, bi, torch.relu(r[ii] + r[jj] - d))


# added to a pair's reach in self_penetration's broad phase: far above the float32 rounding of squared distances
# of points within a metre of the origin (~1e-7 m^2 at worst, i.e. well under 0.1 mm on a reach of 1-3 cm)
_SELF_PAD_M = 1e-3


def _self_reach2(hand: HandModel, r: Tensor) -> Tensor:
    """(K, K) squared padded reach (r_i + r_j + pad)^2 of the self-collision pairs (i < j) for keypoint radii
    ``r`` (K,), -1 for every other entry (never within reach); cached on the hand per dtype and device."""
    cache: dict[tuple[torch.dtype, str], Tensor] = hand.__dict__.setdefault("_self_reach2_cache", {})
    key = (r.dtype, str(r.device))
    if key not in cache:
        n = r.shape[0]
        i, j = hand.self_pairs[:, 0].to(r.device), hand.self_pairs[:, 1].to(r.device)
        reach = torch.full((n, n), -1.0, dtype=r.dtype, device=r.device)
        reach[i, j] = (r[i] + r[j] + _SELF_PAD_M) ** 2
        cache[key] = reach
    return cache[key]


def joint_limits(hand: HandModel, joints: Tensor) -> Tensor:
    """E_joints = sum of limit violations plus tendon-band violations of coupled joints (rad)."""
    e = torch.relu(joints - hand.upper).sum(-1) + torch.relu(hand.lower - joints).sum(-1)
    for c in hand.couplings:
        v = torch.zeros_like(joints[..., 0])
        for i, k in zip(c.joint_index, c.coef):
            v = v + joints[..., i] * k
        scale = abs(c.coef[c.joint_index.index(c.follower)])  # tendon metres -> follower radians
        e = e + (torch.relu(v - c.hi) + torch.relu(c.lo - v)) / scale
    return e


def table_penetration(hand: HandModel, frames: LinkFrames, plane: Plane) -> Tensor:
    """E_table = sum over penetration-keypoint spheres of their depth below the plane (m)."""
    c, r = hand.penetration_keypoints(frames)
    return torch.relu(r - plane.signed_distance(c)).sum(dim=-1)


def grasp_energy(
    hand: HandModel,
    root_pos: Tensor,
    root_rot: Tensor,
    joints: Tensor,
    contact_index: Tensor,
    obj: ObjectCloud,
    plane: Plane | None = None,
    weights: EnergyWeights | None = None,
    pen_margin: float | Tensor = 0.0,
    qp: ContactQPConfig | None = None,
    qp_warm: QPWarmStart | None = None,
    pen_pairs: PenetrationPairs | None = None,
) -> dict[str, Tensor]:
    """All terms and their weighted sum ``total`` for B grasps with active contacts
    ``contact_index`` (B, C) indexing the hand's contact candidates; ``pen_margin`` (m) inflates
    the hand for the penetration term (see :func:`object_penetration`); ``qp`` configures E_qp and
    ``qp_warm`` carries its forces from one call to the next, ``pen_pairs`` E_pen's broad phase."""
    w = weights or EnergyWeights()
    frames = hand.forward_kinematics(root_pos, root_rot, joints)
    cand = hand.contact_candidates(frames)
    cp = torch.gather(cand, 1, contact_index[..., None].expand(-1, -1, 3))
    # one neighbour search for E_dis and for the nearest point's normal E_fc uses (as contact_distance
    # and contact_normals would, with two)
    nb = cloud_neighbours(cp, obj.points)
    with torch.no_grad():
        nearest = nb[..., 0]
        n = obj.normals[nearest] if obj.normals.dim() == 2 else torch.gather(obj.normals, 1, nearest[..., None].expand(-1, -1, 3))
    terms = {
        "fc": force_closure(cp, n, obj.center),
        "dis": object_signed_distance(cp, obj.points, obj.normals, neighbours=nb).abs().sum(dim=-1),
        "pen": object_penetration(hand, frames, obj, pen_margin, pen_pairs),
        "spen": self_penetration(hand, frames),
        "joints": joint_limits(hand, joints),
    }
    if bool(torch.as_tensor(w.qp).ne(0).any()):
        terms["qp"] = contact_qp_energy(cp, n, obj.center, qp, qp_warm)
    if plane is not None:
        terms["table"] = table_penetration(hand, frames, plane)
    if bool(torch.as_tensor(w.inside).ne(0).any()):
        terms["inside"] = hand_inside_object(hand, frames, obj)
    total = sum(getattr(w, k) * v for k, v in terms.items())  # (B,) weights broadcast per grasp
    assert isinstance(total, Tensor)
    terms["total"] = total
    return terms
