"""Scoring and diversity-aware selection of grasp candidates.

``score_grasps`` turns the quality metrics of :mod:`models.physics.quality` into per-grasp scores in
[0, 1] and an ``overall`` score; ``select_diverse`` picks K of N candidates by a greedy max-min
rule that trades a candidate's score against its distance to the grasps already picked (in palm
position, palm rotation and joint space), so the K grasps cover the object instead of clustering
on its best spot. Selection decides which grasps are returned; the order returned is by
``(satisfies the intent, overall)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.geometry import ObjectCloud, PlaneArg
from ..hands.model import HandModel
from ..physics.grasp_batch import GraspBatch
from ..physics.quality import batch_quality


@dataclass(frozen=True)
class RankConfig:
    """How scores combine and how much diversity counts."""

    q1_full: float = 0.1  # Q1 at which the force-closure score saturates to 1
    contacts_full: int = 5  # links in contact at which the contact score saturates to 1
    penetration_scale_m: float = 0.003  # penetration score = exp(-depth / scale)
    w_force_closure: float = 0.45
    w_contacts: float = 0.2
    w_penetration: float = 0.35
    w_intent: float = 0.3  # with an instruction: overall = (1 - w) * quality + w * intent match
    diversity: float = 0.35  # 0: top-K by score; 1: pure max-min coverage
    position_scale_m: float = 0.05  # palm distance that counts as "one unit" of difference
    rotation_scale_rad: float = math.pi / 2
    joint_scale: float = 0.5  # mean |dq| over the range-normalised joints that counts as one unit
    # Learned success predictor (models/learned/success.py): a folder under models/weights holding
    # ranker.json. When set, ``quality`` = learned_blend * P(success) + (1 - learned_blend) * the
    # analytic quality above; None keeps the analytic quality alone.
    learned: str | None = None
    learned_blend: float = 1.0


def score_grasps(
    hand: HandModel,
    root_pos: Tensor,
    root_rot: Tensor,
    joints: Tensor,
    surface: ObjectCloud,
    table: PlaneArg = None,
    cfg: RankConfig | None = None,
) -> dict[str, Tensor]:
    """:func:`score_batch` of loose tensors (palm position (B, 3), rotation (B, 3, 3), joints (B, J))."""
    return score_batch(GraspBatch(hand, root_pos, root_rot, joints), surface, table, cfg)


def score_batch(grasps: GraspBatch, cloud: ObjectCloud, table: PlaneArg = None, cfg: RankConfig | None = None) -> dict[str, Tensor]:
    """Per-grasp scores (B,): ``force_closure`` (Q1, gated by penetration), ``contact_count``,
    ``penetration_m``, ``table_penetration_m``, their [0, 1] forms and ``quality`` in [0, 1].

    With ``cfg.learned`` also ``success_probability`` (the learned predictor's), and ``quality``
    becomes its blend with the analytic quality (``analytic_quality``)."""
    c = cfg or RankConfig()
    prob: Tensor | None = None
    if c.learned is None:
        m = batch_quality(grasps, cloud, table)
    else:  # the features need the same contacts: the metrics come out of the same pass
        from ..learned.success import load_ranker, predict_success

        with torch.no_grad():
            prob, m = predict_success(load_ranker(c.learned), grasps, cloud, table)
    fc = (m["q1"] / c.q1_full).clamp(0, 1)
    contact = (m["contact_count"].to(fc.dtype) / c.contacts_full).clamp(0, 1)
    pen = torch.exp(-(m["max_penetration_m"] + m["table_penetration_m"]) / c.penetration_scale_m)
    quality = c.w_force_closure * fc + c.w_contacts * contact + c.w_penetration * pen
    out = {
        "force_closure": m["q1"],
        "contact_count": m["contact_count"].to(fc.dtype),
        "penetration_m": m["max_penetration_m"],
        "table_penetration_m": m["table_penetration_m"],
        "force_closure_score": fc,
        "contact_score": contact,
        "penetration_score": pen,
        "quality": quality,
    }
    if prob is not None:
        p = prob.to(quality)
        out["analytic_quality"] = quality
        out["success_probability"] = p
        out["quality"] = c.learned_blend * p + (1 - c.learned_blend) * quality
    return out


def grasp_distances(
    root_pos: Tensor, root_rot: Tensor, joints_normalised: Tensor, cfg: RankConfig | None = None
) -> Tensor:
    """Pairwise (B, B) distance: palm position / scale + rotation angle / scale + joint |dq| / scale."""
    c = cfg or RankConfig()
    dp = torch.cdist(root_pos, root_pos) / c.position_scale_m
    rel = root_rot[:, None].transpose(-1, -2) @ root_rot[None]
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    dr = torch.acos(cos) / c.rotation_scale_rad
    dq = torch.cdist(joints_normalised, joints_normalised, p=1) / joints_normalised.shape[-1] / c.joint_scale
    return dp + dr + dq


def select_diverse(scores: Tensor, distances: Tensor, k: int, diversity: float, priority: Tensor | None = None) -> list[int]:
    """Greedy max-min selection of ``k`` indices.

    The first pick is the best score; each next maximises
    ``(1 - diversity) * score + diversity * min_distance_to_picked / max_distance``. With
    ``priority`` (B,) bool or integer tiers, the candidates of the highest tier are exhausted first (e.g.
    those satisfying the instruction), so diversity never trades a satisfying grasp for one that does not.
    """
    b = scores.shape[0]
    k = min(k, b)
    if k <= 0:
        return []
    prio = torch.zeros(b, dtype=torch.int64) if priority is None else priority.cpu().long()
    s = scores.detach().cpu().double()
    d = distances.detach().cpu().double()
    dmax = float(d.max()) if b > 1 else 1.0
    dmax = dmax if dmax > 0 else 1.0
    picked: list[int] = []
    free = torch.ones(b, dtype=torch.bool)
    mind = torch.full((b,), math.inf, dtype=torch.float64)
    while len(picked) < k:
        pool = free & (prio == prio[free].max())
        if picked:
            value = (1 - diversity) * s + diversity * (mind.clamp(max=dmax) / dmax)
        else:
            value = s.clone()
        value[~pool] = -math.inf
        i = int(torch.argmax(value))
        picked.append(i)
        free[i] = False
        mind = torch.minimum(mind, d[i])
    return picked


__all__ = ["RankConfig", "grasp_distances", "score_batch", "score_grasps", "select_diverse"]
