"""The refine stage (AB-TTA style): it never makes a grasp worse by its own loss, keeps the palm
translation fixed with beta_t = 0, and pulls a hand pushed into the object back out."""

from __future__ import annotations

import math

import torch

from models.core.geometry import ObjectCloud
from models.proposers import get_proposer
from models.proposers.optimize import OptimizeConfig
from models.stages.refine import RefineConfig, refine_grasps


def _sphere(n: int = 600, r: float = 0.035):
    i = torch.arange(n, dtype=torch.float32) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    th = math.pi * (1 + 5**0.5) * i
    nrm = torch.stack([torch.cos(th) * torch.sin(phi), torch.sin(th) * torch.sin(phi), torch.cos(phi)], -1)
    return nrm * r, nrm


def _grasps():
    from models.grasp import grasps_to_tensors

    p, n = _sphere()
    # a fixed fixture: the optimiser settings these refine tests were written against
    prop = get_proposer("optimize", cfg=OptimizeConfig(steps=40, oversample=1.0, pen_margin_m=0.0, contact_links=(),
                                                       min_squeeze_fingers=0))
    res = prop.propose(p, n, 6, seed=0)
    return prop.hand, ObjectCloud(p, n), grasps_to_tensors(res.grasps)


def test_refine_never_worse_and_translation_fixed():
    hand, obj, (pos, rot, q) = _grasps()
    cfg = RefineConfig(steps=15)
    out = refine_grasps(hand, pos, rot, q, obj, cfg=cfg)
    w = {"pen": cfg.w_pen, "dist": cfg.w_dist, "spen": cfg.w_spen, "joints": cfg.w_joints}
    before = sum(w[k] * out.before[k] for k in w)
    after = sum(w[k] * out.after[k] for k in w)
    assert (after <= before + 1e-6).all()
    torch.testing.assert_close(out.root_pos, pos)  # beta_t = 0
    r = out.root_rot
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3).expand_as(r), atol=1e-5, rtol=0)


def test_refine_reduces_penetration_of_a_hand_pushed_into_the_object():
    hand, obj, (pos, rot, q) = _grasps()
    # push every palm 1.5 cm towards the object centre: the fingers sink into the sphere
    towards = -pos / pos.norm(dim=-1, keepdim=True)
    pushed = pos + 0.015 * towards
    out = refine_grasps(hand, pushed, rot, q, obj, cfg=RefineConfig(steps=30))
    assert float(out.after["pen"].sum()) < 0.8 * float(out.before["pen"].sum())
