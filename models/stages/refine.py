"""The pipeline's ``refine`` stage: a batched, bounded-steps test-time refinement of grasps.

Written from DGTR's description of adversarial-balanced test-time adaptation (AB-TTA, Sec. 3.4):
minimise ``w_pen * L_pen + w_dist * L_tta_dist + w_spen * L_spen`` over the hand's rotation and
joints, with the palm translation's gradient scaled by ``translation_scale`` (the paper's beta_t,
0 there: the hand cannot escape penetration by backing away). ``L_tta_dist`` attracts the contact
keypoints that touched the object in the *initial* grasp, or touch it now, back to the surface, so
a nearly valid grasp is not pulled off the object. We add the table term and the joint limits
(with the J1/J0 tendon band) so refined grasps stay executable. Any proposer's output can go
through it; it returns the refined poses and each term before and after.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.geometry import NeighbourCache, ObjectCloud, Plane, object_signed_distance
from ..core.rotations import matrix_to_rot6d, rot6d_to_matrix
from ..hands.model import HandModel
from ..physics.energy import joint_limits, object_penetration, self_penetration, table_penetration
from ..physics.grasp_batch import GraspBatch


@dataclass(frozen=True)
class RefineConfig:
    """Weights are multipliers of terms in metres (sums over points / keypoints) or radians."""

    steps: int = 20
    lr: float = 0.004  # Adam step on rot6d and joints (rad-like units)
    translation_scale: float = 0.0  # beta_t: gradient scale on the palm translation
    contact_threshold_m: float = 0.01  # tau: a keypoint within this of the object "touches" it
    w_pen: float = 5.0
    w_dist: float = 3.0
    w_spen: float = 5.0
    w_table: float = 5.0
    w_joints: float = 5.0
    max_points: int = 512  # object points used (farthest-point subset): the cost is linear in them
    pen_margin_m: float = 0.0  # the hand inflated by this for L_pen (fingers sink between cloud samples otherwise)


@dataclass
class RefineResult:
    root_pos: Tensor
    root_rot: Tensor
    joints: Tensor
    before: dict[str, Tensor]  # per grasp, each term before refinement
    after: dict[str, Tensor]
    steps_run: int = 0  # fewer than the configured steps when a deadline stopped it


def _terms(
    hand: HandModel, pos: Tensor, rot: Tensor, q: Tensor, obj: ObjectCloud, plane: Plane | None,
    touching: Tensor, cfg: RefineConfig, neighbours: NeighbourCache | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    frames = hand.forward_kinematics(pos, rot, q)
    kp = hand.contact_candidates(frames)  # (B, C, 3)
    nb = None if neighbours is None else neighbours(kp, obj.points)
    d = object_signed_distance(kp, obj.points, obj.normals, neighbours=nb)  # (B, C)
    now = d.abs() < cfg.contact_threshold_m
    mask = (touching | now).to(d.dtype)
    terms = {
        "pen": object_penetration(hand, frames, obj, cfg.pen_margin_m),
        "dist": (d.abs() * mask).sum(-1),
        "spen": self_penetration(hand, frames),
        "joints": joint_limits(hand, q),
    }
    if plane is not None:
        terms["table"] = table_penetration(hand, frames, plane)
    return terms, d


def refine_grasps(
    hand: HandModel,
    root_pos: Tensor,
    root_rot: Tensor,
    joints: Tensor,
    obj: ObjectCloud,
    plane: Plane | None = None,
    cfg: RefineConfig | None = None,
) -> RefineResult:
    """:func:`refine_batch` of loose tensors: palm position (B,3), rotation (B,3,3), joints (B,J)."""
    return refine_batch(GraspBatch(hand, root_pos, root_rot, joints), obj, plane, cfg)


def refine_batch(grasps: GraspBatch, obj: ObjectCloud, plane: Plane | None = None, cfg: RefineConfig | None = None,
                 deadline: float | None = None) -> RefineResult:
    """Refine a batch of grasps on ``obj`` (and above ``plane``); the best state per grasp is kept.
    ``deadline`` (a ``time.perf_counter()`` value): no step starts after it; the best states so far are returned."""
    hand, root_pos, root_rot, joints = grasps.hand, grasps.root_pos, grasps.root_rot, grasps.joints
    c = cfg or RefineConfig()
    if obj.points.dim() == 2 and obj.points.shape[0] > c.max_points:
        from ..core.geometry import farthest_point_sample

        idx = farthest_point_sample(obj.points[None].float(), c.max_points)[0]
        obj = ObjectCloud(obj.points[idx], obj.normals[idx])
    w = {"pen": c.w_pen, "dist": c.w_dist, "spen": c.w_spen, "joints": c.w_joints, "table": c.w_table}
    nb = NeighbourCache()  # the contact keypoints' nearest cloud points, searched again only where they moved far
    with torch.no_grad():
        before, d0 = _terms(hand, root_pos, root_rot, joints, obj, plane, torch.zeros_like(root_pos[:, :1], dtype=torch.bool), c, nb)
        touching = d0.abs() < c.contact_threshold_m
    pos = root_pos.detach().clone().requires_grad_(True)
    r6 = matrix_to_rot6d(root_rot.detach()).clone().requires_grad_(True)
    q = joints.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([pos, r6, q], lr=c.lr)
    best = (root_pos.detach().clone(), root_rot.detach().clone(), joints.detach().clone())
    best_loss = sum(w[k] * v for k, v in before.items())
    assert isinstance(best_loss, Tensor)
    steps_run = 0
    for _ in range(c.steps):
        if deadline is not None and time.perf_counter() >= deadline:
            break
        steps_run += 1
        opt.zero_grad()
        terms, _ = _terms(hand, pos, rot6d_to_matrix(r6), q, obj, plane, touching, c, nb)
        loss = sum(w[k] * v for k, v in terms.items())
        assert isinstance(loss, Tensor)
        with torch.no_grad():  # keep the best state per grasp (the loss is evaluated before the step)
            better = loss.detach() < best_loss
            best = (
                torch.where(better[:, None], pos.detach(), best[0]),
                torch.where(better[:, None, None], rot6d_to_matrix(r6.detach()), best[1]),
                torch.where(better[:, None], q.detach(), best[2]),
            )
            best_loss = torch.where(better, loss.detach(), best_loss)
        loss.sum().backward()  # type: ignore[no-untyped-call]
        assert pos.grad is not None
        pos.grad.mul_(c.translation_scale)
        opt.step()
        with torch.no_grad():
            q.copy_(hand.project_joints(q))
    with torch.no_grad():
        terms, _ = _terms(hand, pos, rot6d_to_matrix(r6), q, obj, plane, touching, c, nb)
        loss = sum(w[k] * v for k, v in terms.items())
        assert isinstance(loss, Tensor)
        better = loss < best_loss
        best = (
            torch.where(better[:, None], pos.detach(), best[0]),
            torch.where(better[:, None, None], rot6d_to_matrix(r6.detach()), best[1]),
            torch.where(better[:, None], q.detach(), best[2]),
        )
        after, _ = _terms(hand, *best, obj, plane, touching, c, nb)
    return RefineResult(best[0], best[1], best[2], before, after, steps_run)


__all__ = ["RefineConfig", "RefineResult", "refine_batch", "refine_grasps"]
