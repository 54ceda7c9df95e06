"""The ``optimize`` proposer: input refusals, determinism, time budget, schema of its output.
(Quality is measured by a benchmark, not asserted here.)"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from models.core.geometry import Plane as SupportPlane
from models.proposers import available_proposers, get_proposer
from models.proposers.optimize import OptimizeConfig


def _sphere(n: int = 600, r: float = 0.035, z0: float = 0.0):
    i = torch.arange(n, dtype=torch.float32) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    th = math.pi * (1 + 5**0.5) * i
    nrm = torch.stack([torch.cos(th) * torch.sin(phi), torch.sin(th) * torch.sin(phi), torch.cos(phi)], -1)
    return nrm * r + torch.tensor([0, 0, z0]), nrm


@pytest.fixture(scope="module")
def proposer():
    return get_proposer("optimize", cfg=OptimizeConfig(steps=12))


def test_registry():
    assert "optimize" in available_proposers()
    with pytest.raises(ValueError, match=r"unknown proposer .nope.; available: dgtr, fast, optimize"):
        get_proposer("nope")


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (torch.randn(20, 3) * 0.03, "at least 50"),
        (torch.cat([torch.randn(100, 3) * 0.03, torch.tensor([[math.nan, 0, 0]])]), "NaN"),
        (torch.randn(200, 3) * 1.0, "spans"),
        (torch.cat([torch.rand(300, 2) * 0.1, torch.zeros(300, 1)], 1), "flat"),
    ],
)
def test_degenerate_clouds_are_refused(proposer, points, message):
    with pytest.raises(ValueError, match=message):
        proposer.propose(points, torch.nn.functional.normalize(torch.randn_like(points), dim=-1), 4)


def test_deterministic_for_a_seed(proposer):
    p, n = _sphere()
    a = proposer.propose(p, n, 4, seed=3)
    b = proposer.propose(p, n, 4, seed=3)
    assert [g.pose.position for g in a.grasps] == [g.pose.position for g in b.grasps]
    c = proposer.propose(p, n, 4, seed=4)
    assert [g.pose.position for g in a.grasps] != [g.pose.position for g in c.grasps]


def test_time_budget_returns_best_so_far():
    prop = get_proposer("optimize", cfg=OptimizeConfig(steps=10_000))
    p, n = _sphere()
    res = prop.propose(p, n, 4, time_budget_s=0.5)
    assert 1 <= res.steps_run < 10_000 and len(res.grasps) == 4


def test_output_schema_pregrasp_and_squeeze(proposer):
    from models.grasp import grasps_to_tensors
    from models.hands import get_hand

    p, n = _sphere(z0=0.05)
    plane = SupportPlane(torch.tensor([0.0, 0.0, 1.0]), 0.0)  # table at z = 0 under the sphere
    seen = []
    res = proposer.propose(p, n, 6, plane=plane, progress=lambda s, t, e: seen.append(s))
    assert seen and seen[-1] % 12 == 0 and seen == sorted(seen)  # a round's end (an extra round counts on)
    h = get_hand("shadow", dtype="float32")
    assert len(res.grasps) == 6 and res.energy["total"].shape == (6,)
    for g in res.grasps:
        assert g.squeeze is not None and "energy" in g.scores
    # the pregrasp (models/stages/squeeze.py): the squeeze's closing mirrored, or opened further towards
    # the open pose, the palm at one of the candidate backoffs (1 cm back first)
    from models.stages.squeeze import SqueezeConfig

    pos, rot, q = grasps_to_tensors(res.grasps)
    sq = torch.tensor([[g.squeeze[k] for k in h.joint_names] for g in res.grasps])
    pre_q = torch.tensor([[g.pregrasp.joints[k] for k in h.joint_names] for g in res.grasps])
    closing = torch.sign(h.init_pose - h.open_pose)
    mirrored = torch.maximum(torch.minimum(q - ((sq - q) * closing).clamp_min(0) * closing, h.upper), h.lower)
    assert ((mirrored - pre_q) * closing >= -1e-5).all()  # at least as open as the mirror
    pre_pos, pre_rot, _ = grasps_to_tensors([g.model_copy(update={"pose": g.pregrasp.pose}) for g in res.grasps])
    assert torch.allclose(pre_rot, rot, atol=1e-5)
    back = ((pos - pre_pos) * (rot @ h.approach_direction)).sum(-1)
    allowed = torch.tensor(sorted({b for b, _ in SqueezeConfig().pregrasp_candidates}))
    assert ((back[:, None] - allowed[None]).abs().min(1).values < 1e-5).all()
    # the referee fails a pregrasp that penetrates the object by more than 1 cm
    frames = h.forward_kinematics(pre_pos, pre_rot, pre_q)
    assert h.signed_distance(frames, p.expand(6, -1, -1)).min() > -0.01


def test_oversample_returns_the_requested_count_ranked():
    prop = get_proposer("optimize", cfg=OptimizeConfig(steps=8, oversample=2.0))
    p, n = _sphere()
    res = prop.propose(p, n, 3)
    assert len(res.grasps) == 3 and res.energy["total"].shape == (3,)
    pen_ok = (res.energy["pen"] <= prop.cfg.max_pen_rank).tolist()
    assert pen_ok == sorted(pen_ok, reverse=True)  # non-penetrating candidates come first


def test_batch_of_problems_matches_each_problem_alone():
    """Concurrent requests are optimised in one batch; each must get what it would get alone
    (own random stream, own cloud padded to the common size, own table or none)."""
    prop = get_proposer("optimize", cfg=OptimizeConfig(steps=15))
    from models.proposers.base import Problem

    p1, n1 = _sphere(600, 0.035)
    p2, n2 = _sphere(450, 0.03, z0=0.05)
    plane = SupportPlane(torch.tensor([0.0, 0.0, 1.0]), 0.0)
    problems = [Problem(p1, n1, 3, None, seed=1), Problem(p2, n2, 5, plane, seed=2)]
    batched = prop.propose_batch(problems)
    assert [len(r.grasps) for r in batched] == [3, 5]
    for pr, res in zip(problems, batched):
        alone = prop.propose(pr.points, pr.normals, pr.num_grasps, pr.plane, pr.seed)
        a = torch.tensor([g.pose.position for g in alone.grasps])
        b = torch.tensor([g.pose.position for g in res.grasps])
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)
        torch.testing.assert_close(res.energy["total"], alone.energy["total"], atol=1e-4, rtol=1e-4)
    assert "table" not in prop.propose(p1, n1, 2, None, 1).energy


def test_single_view_turns_on_the_unseen_side_term():
    """E_inside runs on single views only: as the problem says, or told by the normals' lean."""
    from models.proposers.base import Problem
    from models.proposers.optimize import _is_single_view

    p, n = _sphere()
    front = p[:, 0] > 0  # a hemisphere facing +x: what one camera sees
    pf, nf = p[front], n[front]
    assert not _is_single_view(Problem(p, n))
    assert _is_single_view(Problem(pf, nf))
    assert not _is_single_view(Problem(pf, nf, single_view=False))
    prop = get_proposer("optimize", cfg=OptimizeConfig(steps=4))
    alone_view = prop.propose(pf, nf, 2, seed=0)
    alone_full = prop.propose(p, n, 2, seed=0)
    assert "inside" in alone_view.energy and "inside" not in alone_full.energy
    # a view and a complete cloud in one batch: each gets its own weight
    batched = prop.propose_batch([Problem(pf, nf, 2, seed=0), Problem(p, n, 2, seed=0)])
    torch.testing.assert_close(batched[0].energy["total"], alone_view.energy["total"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batched[1].energy["total"], alone_full.energy["total"], atol=1e-4, rtol=1e-4)


def test_contact_qp_is_off_for_problems_on_a_table():
    """E_qp (0.8.0) weighs grasps of problems without a table; with one, ``qp_with_table`` (0: off)."""
    from models.proposers.base import Problem

    p, n = _sphere(z0=0.04)
    table = SupportPlane(torch.tensor([0.0, 0.0, 1.0]), 0.0)
    prop = get_proposer("optimize", cfg=OptimizeConfig(steps=4))
    assert prop.cfg.weights.qp > 0
    free = prop.propose(p, n, 2, seed=0)
    on_table = prop.propose(p, n, 2, plane=table, seed=0)
    assert "qp" in free.energy and "qp" not in on_table.energy
    # in one batch each problem keeps its own weight: the totals match the problems alone
    batched = prop.propose_batch([Problem(p, n, 2, table, seed=0), Problem(p, n, 2, seed=0)])
    torch.testing.assert_close(batched[0].energy["total"], on_table.energy["total"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batched[1].energy["total"], free.energy["total"], atol=1e-4, rtol=1e-4)


def test_contact_links_restrict_the_active_contacts():
    """With ``contact_links`` the optimiser only activates contact candidates on those links (an
    intent's allowed set is narrowed, not replaced); unknown link names are refused."""
    from models.hands import get_hand
    from models.proposers.optimize import _narrow

    h = get_hand("shadow", dtype="float32")
    on = torch.tensor([h.link_names[int(li)] in ("ffdistal", "thdistal") for li in h.contact_link])
    picked = _narrow(None, on)
    assert picked.numel() == int(on.sum()) > 0 and bool(on[picked].all())
    region = torch.nonzero(on)[:3, 0]
    assert _narrow(torch.cat([region, torch.nonzero(~on)[:5, 0]]), on).tolist() == region.tolist()
    elsewhere = torch.nonzero(~on)[:4, 0]
    assert _narrow(elsewhere, on).tolist() == elsewhere.tolist()  # no overlap: the intent's region wins
    p, n = _sphere()
    res = get_proposer("optimize", cfg=OptimizeConfig(steps=6, contact_links=("ffdistal", "thdistal"))).propose(p, n, 2)
    assert len(res.grasps) == 2
    with pytest.raises(ValueError, match="nodistal"):
        get_proposer("optimize", cfg=OptimizeConfig(steps=2, contact_links=("nodistal",))).propose(p, n, 2)


def test_q1_ranking_orders_the_kept_grasps_by_their_q1_on_the_cloud():
    """``rank_by="q1"``: among the grasps not ranked last for penetration, Q1 on the input cloud (checked
    against :func:`models.physics.quality.grasp_quality` on the returned grasps) never rises down the list,
    and it is at least that of every candidate left out."""
    from models.core.geometry import ObjectCloud
    from models.grasp import grasps_to_tensors
    from models.hands import get_hand
    from models.physics.quality import grasp_quality

    p, n = _sphere()
    q1_only = {"rank_residual_per_n": 0.0, "extra_rounds": 0}
    prop = get_proposer("optimize", cfg=OptimizeConfig(steps=30, oversample=2.0, max_pen_rank=1e9, densify_above_m=None, **q1_only))
    res = prop.propose(p, n, 6, seed=1)
    q1 = [g.scores["q1_cloud"] for g in res.grasps]
    assert q1 == sorted(q1, reverse=True) and q1[0] > 0
    pos, rot, q = grasps_to_tensors(res.grasps, dtype=torch.float64)
    ref = grasp_quality(get_hand("shadow", dtype="float64"), pos, rot, q, ObjectCloud(p.double(), n.double()), center=p.double().mean(0))
    torch.testing.assert_close(torch.tensor(q1, dtype=torch.float64), ref["q1"], rtol=1e-5, atol=1e-6)
    everything = get_proposer("optimize", cfg=OptimizeConfig(steps=30, oversample=1.0, max_pen_rank=1e9, densify_above_m=None, **q1_only)).propose(p, n, 12, seed=1)
    assert min(q1) >= max(sorted(g.scores["q1_cloud"] for g in everything.grasps)[:6]) - 1e-9


@pytest.mark.parametrize("weight", [0.01, 10.0])
def test_q1_ranking_charges_the_squeeze_residual(weight):
    """``rank_residual_per_n``: the score ranked by is Q1 less the weight x the squeeze residual (both in
    each grasp's scores): it never rises down the list, the kept grasps are the candidates with the best
    scores, and a heavy weight puts the best-balanced first where Q1 alone would not."""
    p, n = _sphere()
    base = {"steps": 30, "max_pen_rank": 1e9, "densify_above_m": None, "extra_rounds": 0}
    res = get_proposer("optimize", cfg=OptimizeConfig(**base, oversample=2.0, rank_residual_per_n=weight)).propose(p, n, 6, seed=1)
    score = [g.scores["q1_cloud"] - weight * g.scores["squeeze_residual_n"] for g in res.grasps]
    assert score == sorted(score, reverse=True)
    everything = get_proposer("optimize", cfg=OptimizeConfig(**base, oversample=1.0)).propose(p, n, 12, seed=1)
    all_scores = sorted((g.scores["q1_cloud"] - weight * g.scores["squeeze_residual_n"] for g in everything.grasps), reverse=True)
    assert score == pytest.approx(all_scores[:6], abs=1e-9)
    if weight == 10.0:
        q1_first = get_proposer("optimize", cfg=OptimizeConfig(**base, oversample=2.0, rank_residual_per_n=0.0)).propose(p, n, 6, seed=1)
        res_order = [g.scores["squeeze_residual_n"] for g in res.grasps]
        assert res_order != [g.scores["squeeze_residual_n"] for g in q1_first.grasps]


def test_extra_rounds_add_candidates_for_objects_short_of_promising_ones():
    """``extra_rounds``: an object with fewer than num_grasps candidates at Q1 >= ``round_min_q1`` gets
    another round (its seed + 7919); the grasps kept are the best of both rounds' candidates. When
    enough are promising, no round is added and the grasps are those of a single round."""
    p, n = _sphere()
    base = {"steps": 20, "max_pen_rank": 1e9, "densify_above_m": None, "max_fc": 1e9, "max_dis": 1e9, "max_pen": 1e9}  # none ranked last
    two = get_proposer("optimize", cfg=OptimizeConfig(**base, oversample=2.0, extra_rounds=1, round_min_q1=10.0)).propose(p, n, 4, seed=1)
    every = get_proposer("optimize", cfg=OptimizeConfig(**base, oversample=1.0, extra_rounds=0))
    union = []
    for seed in (1, 1 + 7919):
        r = every.propose(p, n, 8, seed=seed)
        union += [(not bool(v), -(g.scores["q1_cloud"] - 0.01 * g.scores["squeeze_residual_n"]), g.scores["q1_cloud"]) for g, v in zip(r.grasps, r.valid)]
    expected = [q for _, _, q in sorted(union)[:4]]
    got = [g.scores["q1_cloud"] for g in two.grasps]
    assert got == pytest.approx(expected, abs=1e-9) and len(got) == 4
    one = get_proposer("optimize", cfg=OptimizeConfig(**base, oversample=2.0, extra_rounds=0)).propose(p, n, 4, seed=1)
    met = get_proposer("optimize", cfg=OptimizeConfig(**base, oversample=2.0, extra_rounds=1, round_min_q1=-1.0)).propose(p, n, 4, seed=1)
    assert [g.joints for g in met.grasps] == [g.joints for g in one.grasps]
    assert got != [g.scores["q1_cloud"] for g in one.grasps]  # the second round contributed
    # the energy filter does not decide: with every candidate filtered out (as the default thresholds do
    # on the validation objects) and enough at Q1 >= round_min_q1, no round is added
    strict = base | {"max_fc": -1.0}
    one_f = get_proposer("optimize", cfg=OptimizeConfig(**strict, oversample=2.0, extra_rounds=0)).propose(p, n, 4, seed=1)
    assert not bool(one_f.valid.any())
    met_f = get_proposer("optimize", cfg=OptimizeConfig(**strict, oversample=2.0, extra_rounds=1, round_min_q1=-1.0)).propose(p, n, 4, seed=1)
    assert [g.joints for g in met_f.grasps] == [g.joints for g in one_f.grasps]


def test_progress_never_goes_back_across_rounds():
    """With an extra round, progress counts the steps of both rounds: (step, total) never decreases and the
    total stays the same; with no extra round it is the plain (step, steps)."""
    p, n = _sphere()
    seen: list[tuple[int, int]] = []
    cfg = OptimizeConfig(steps=20, oversample=1.0, densify_above_m=None, extra_rounds=1, round_min_q1=10.0)
    get_proposer("optimize", cfg=cfg).propose(p, n, 4, seed=1, progress=lambda s, t, e: seen.append((s, t)))
    steps = [s for s, _ in seen]
    assert {t for _, t in seen} == {40} and steps == sorted(steps) and max(steps) > 20
    one: list[tuple[int, int]] = []
    get_proposer("optimize", cfg=replace(cfg, extra_rounds=0)).propose(p, n, 4, seed=1, progress=lambda s, t, e: one.append((s, t)))
    assert {t for _, t in one} == {20} and max(s for s, _ in one) <= 20


class _AboveCheck:
    """A :class:`models.stages.check.GraspCheck` with a plain rule (the palm above the equator holds), to test
    how the optimiser ranks by a check; the simulated one is tested in tests/sim_worker/test_cloud_check.py."""

    def __init__(self, verdict: bool | None = None) -> None:
        self.verdict = verdict  # None: the rule; True / False: every grasp
        self.calls: list[int] = []

    def __call__(self, points, normals, grasps):
        import numpy as np

        self.calls.append(len(points))
        holds = np.array([g.pose.position[2] > 0 if self.verdict is None else self.verdict for g in grasps], dtype=bool)
        return {"holds": holds, "shift_m": np.where(holds, 0.001, 0.1)}


def test_a_check_ranks_the_candidates_that_hold_first():
    """With a check, the kept grasps are the candidates that hold there first (by score), then the rest; the
    check sees the cloud as given (not densified) and its verdicts are in the grasps' scores."""
    p, n = _sphere()
    base = {"steps": 20, "max_pen_rank": 1e9, "densify_above_m": None, "max_fc": 1e9, "max_dis": 1e9, "max_pen": 1e9, "extra_rounds": 0}
    check = _AboveCheck()
    got = get_proposer("optimize", cfg=OptimizeConfig(**base, oversample=2.0), check=check).propose(p, n, 4, seed=1)
    assert check.calls == [len(p)]
    everything = get_proposer("optimize", cfg=OptimizeConfig(**base, oversample=1.0)).propose(p, n, 8, seed=1)
    key = sorted((g.pose.position[2] <= 0, -(g.scores["q1_cloud"] - 0.01 * g.scores["squeeze_residual_n"]), g.scores["q1_cloud"])
                 for g in everything.grasps)
    assert [g.scores["q1_cloud"] for g in got.grasps] == pytest.approx([k[2] for k in key[:4]], abs=1e-9)
    held = [g.scores["cloud_check_holds"] for g in got.grasps]
    assert held == sorted(held, reverse=True) and set(held) <= {0.0, 1.0}
    assert all((g.pose.position[2] > 0) == bool(h) for g, h in zip(got.grasps, held))
    no_check = get_proposer("optimize", cfg=OptimizeConfig(**base, oversample=2.0)).propose(p, n, 4, seed=1)
    assert "cloud_check_holds" not in no_check.grasps[0].scores


def test_with_a_check_the_extra_round_goes_to_objects_short_of_candidates_that_hold():
    """``round_by_check``: enough candidates hold -> one round (the same grasps as without extra rounds);
    none hold -> another round, whatever their Q1."""
    p, n = _sphere()
    base = {"steps": 12, "max_pen_rank": 1e9, "densify_above_m": None, "oversample": 2.0}
    one = get_proposer("optimize", cfg=OptimizeConfig(**base, extra_rounds=0), check=_AboveCheck(True)).propose(p, n, 4, seed=1)
    enough = _AboveCheck(True)
    met = get_proposer("optimize", cfg=OptimizeConfig(**base, extra_rounds=1, round_min_q1=10.0), check=enough).propose(p, n, 4, seed=1)
    assert len(enough.calls) == 1 and [g.joints for g in met.grasps] == [g.joints for g in one.grasps]
    short = _AboveCheck(False)
    more = get_proposer("optimize", cfg=OptimizeConfig(**base, extra_rounds=1, round_min_q1=-1.0), check=short).propose(p, n, 4, seed=1)
    assert len(short.calls) == 2 and len(more.grasps) == 4
    by_q1 = _AboveCheck(False)
    get_proposer("optimize", cfg=OptimizeConfig(**base, extra_rounds=1, round_min_q1=-1.0, round_by_check=False), check=by_q1).propose(p, n, 4, seed=1)
    assert len(by_q1.calls) == 1  # the Q1 count was met: no second round


def test_extra_rounds_stop_once_a_round_adds_too_few_that_hold():
    """``round_min_gain``: the first extra round always runs for a short object; a later one only if the round
    before added at least ``round_min_gain`` candidates that hold. ``rounds_held`` counts them per round run."""
    p, n = _sphere()
    base = {"steps": 12, "max_pen_rank": 1e9, "densify_above_m": None, "oversample": 2.0, "extra_rounds": 3}
    every = _AboveCheck(False)
    res = get_proposer("optimize", cfg=OptimizeConfig(**base), check=every).propose(p, n, 4, seed=1)
    assert len(every.calls) == 4 and res.rounds_held == (0, 0, 0, 0)
    stop = _AboveCheck(False)
    res = get_proposer("optimize", cfg=OptimizeConfig(**base, round_min_gain=1), check=stop).propose(p, n, 4, seed=1)
    assert len(stop.calls) == 2 and res.rounds_held == (0, 0)
    rule = _AboveCheck()  # about half the candidates hold: every round adds some, so the stop never bites
    a = get_proposer("optimize", cfg=OptimizeConfig(**base, round_min_gain=1), check=rule).propose(p, n, 8, seed=1)
    b = get_proposer("optimize", cfg=OptimizeConfig(**base), check=_AboveCheck()).propose(p, n, 8, seed=1)
    assert a.rounds_held == b.rounds_held and len(a.rounds_held) > 1 and min(a.rounds_held) >= 1
    assert [g.joints for g in a.grasps] == [g.joints for g in b.grasps]
    assert (sum(a.rounds_held[:-1]) < 8) and (sum(a.rounds_held) >= 8 or len(a.rounds_held) == 4)  # rounds ran while short
    no_check = get_proposer("optimize", cfg=OptimizeConfig(**{**base, "extra_rounds": 0})).propose(p, n, 4, seed=1)
    assert no_check.rounds_held == ()


@pytest.mark.parametrize("verdict", [True, None])
def test_the_check_stops_once_enough_hold_and_keeps_the_same_grasps(verdict):
    """``check_chunk``: candidates are checked a chunk at a time in rank order until num_grasps hold; the grasps
    kept are those of checking every candidate at once."""
    p, n = _sphere()
    base = {"steps": 12, "max_pen_rank": 1e9, "densify_above_m": None, "oversample": 4.0, "extra_rounds": 0}
    few, every = _AboveCheck(verdict), _AboveCheck(verdict)
    a = get_proposer("optimize", cfg=OptimizeConfig(**base, check_chunk=2), check=few).propose(p, n, 3, seed=2)
    b = get_proposer("optimize", cfg=OptimizeConfig(**base, check_chunk=1000), check=every).propose(p, n, 3, seed=2)
    assert [g.joints for g in a.grasps] == [g.joints for g in b.grasps]
    assert len(every.calls) == 1
    if verdict:  # all hold: the first two chunks (4 candidates) give the 3 needed
        assert len(few.calls) == 2


def test_the_check_respects_the_time_budget():
    """Past the time budget no candidate is checked: the grasps come back ranked without it."""
    p, n = _sphere()
    check = _AboveCheck()
    res = get_proposer("optimize", cfg=OptimizeConfig(steps=10_000, extra_rounds=0), check=check).propose(p, n, 2, time_budget_s=0.05)
    assert check.calls == [] and len(res.grasps) == 2 and "cloud_check_holds" not in res.grasps[0].scores


def test_single_views_get_fewer_extra_rounds_triggered_by_q1():
    """``single_view_extra_rounds``: a single view gets at most that many extra rounds, asked for by the Q1 count
    (not the check, whose proxy lacks the unseen side); a complete cloud up to ``extra_rounds``."""
    p, n = _sphere()
    base = {"steps": 6, "max_pen_rank": 1e9, "densify_above_m": None, "oversample": 2.0, "extra_rounds": 2,
            "single_view_extra_rounds": 1, "round_min_q1": 10.0}
    view, full = _AboveCheck(True), _AboveCheck(False)
    get_proposer("optimize", cfg=OptimizeConfig(**base), check=view).propose(p, n, 2, seed=1, single_view=True)
    get_proposer("optimize", cfg=OptimizeConfig(**base), check=full).propose(p, n, 2, seed=1, single_view=False)
    assert len(view.calls) == 2  # every candidate held, yet Q1 asked for the one extra round a view may have
    assert len(full.calls) == 3
