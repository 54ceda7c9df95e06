"""The proposal pipeline: validation messages, table handling, frames, batching, selection."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from models.pipeline import GraspPipeline, GraspQuery, PipelineConfig, QueryError
from models.stages.scoring import select_diverse
from tests.clouds import box_on_table as shared_box


def box_on_table(seed: int = 0) -> np.ndarray:
    return shared_box(seed, face_points=300, table_points=1200)


@pytest.fixture(scope="module")
def pipe():
    from dataclasses import replace

    from models.proposers.optimize import FastProposer, fast_config

    p = GraspPipeline(PipelineConfig(model_points=512))
    p._proposers[("fast", "shadow")] = FastProposer(cfg=replace(fast_config(), steps=12))  # short, for test time
    return p


def test_translation_moves_the_grasps_with_the_cloud(pipe):
    # unrefined: the refinement moves grasps by float rounding (< 2 mm, the frames differ in the
    # last bits) and the discrete scores (contact counts) may then prefer another grasp of equal merit
    cloud = box_on_table()
    a = pipe.run(GraspQuery(points=cloud, num_grasps=3, seed=5, refine=False))
    shift = np.array([0.7, -0.3, 0.9], dtype=np.float32)
    b = pipe.run(GraspQuery(points=cloud + shift, num_grasps=3, seed=5, refine=False))
    pa = np.array([g.pose.position for g in a.grasps])
    pb = np.array([g.pose.position for g in b.grasps])
    np.testing.assert_allclose(pb - pa, np.broadcast_to(shift, pa.shape), atol=2e-3)
    qa = np.array([g.pose.quaternion_wxyz for g in a.grasps])
    qb = np.array([g.pose.quaternion_wxyz for g in b.grasps])
    np.testing.assert_allclose(np.abs((qa * qb).sum(1)), 1.0, atol=1e-3)
    assert any("table detected and removed" in w for w in a.warnings)


def test_given_table_and_up_axis(pipe):
    # the same scene with y up: points (x, z, -y) and up = +y
    cloud = box_on_table(1)
    rot = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float32)
    res = pipe.run(GraspQuery(points=cloud @ rot.T, up=(0, 1, 0), table=((0, 1, 0), 0.0), num_grasps=2))
    assert any("given table removed" in w for w in res.warnings)
    assert all(g.pose.position[1] > 0 for g in res.grasps)  # the palm is above the table (y up)
    assert all(g.pregrasp.pose.position[1] > 0 for g in res.grasps)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (dict(points=np.zeros((0, 3), np.float32)), "empty"),
        (dict(points=np.zeros((10, 3), np.float32)), "at least 50"),
        (dict(points=np.zeros((100, 2), np.float32)), "shape (N, 3)"),
        (dict(points=np.full((100, 3), np.nan, np.float32)), "NaN"),
        (dict(points=box_on_table(), hand="allegro"), "unknown hand"),
        (dict(points=box_on_table(), method="nope"), "unknown method"),
        (dict(points=box_on_table(), num_grasps=0), "num_grasps"),
        (dict(points=box_on_table(), up=(0, 0, 0)), "up must be"),
        (dict(points=np.c_[np.random.default_rng(0).uniform(-0.1, 0.1, (400, 2)), np.zeros(400)].astype(np.float32)), "left after removing the table"),
    ],
)
def test_refusals_say_what_to_fix(pipe, query, message):
    with pytest.raises(QueryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pipe.run(GraspQuery(**query))


def test_a_bad_query_in_a_batch_fails_alone(pipe):
    good = GraspQuery(points=box_on_table(2), num_grasps=2, seed=1)
    bad = GraspQuery(points=np.zeros((5, 3), np.float32))
    out = pipe.run_batch([good, bad, good])
    assert isinstance(out[1], QueryError)
    assert len(out[0].grasps) == 2 and len(out[2].grasps) == 2  # type: ignore[union-attr]
    pa = [g.pose.position for g in out[0].grasps]  # type: ignore[union-attr]
    alone = pipe.run(good)
    np.testing.assert_allclose(pa, [g.pose.position for g in alone.grasps], atol=1e-5)


def test_refine_flag_runs_the_refine_stage(pipe):
    # the refinement keeps each grasp's best state of its weighted objective (test_refine), in which penetration
    # may be traded for contact; here: the stage ran, reported its terms, and the returned grasps were finished
    # where it left them (they differ from the unrefined query's)
    q = GraspQuery(points=box_on_table(3), num_grasps=2, refine=True, method="fast")
    res = pipe.run(q)
    plain = pipe.run(dataclasses.replace(q, refine=False))
    assert all(math.isfinite(g.scores["refine_pen_after"]) and math.isfinite(g.scores["refine_pen_before"]) for g in res.grasps)
    assert res.timings_ms["refine_ms"] > 0 and "finish_ms" in res.timings_ms and "finish_ms" not in plain.timings_ms
    assert all(g.squeeze is not None for g in res.grasps)
    assert [g.joints for g in res.grasps] != [g.joints for g in plain.grasps]


def test_select_diverse():
    scores = torch.tensor([0.9, 0.89, 0.5, 0.1])
    # candidates 0 and 1 are the same grasp, 2 and 3 far away
    d = torch.tensor([[0, 0, 5, 5], [0, 0, 5, 5], [5, 5, 0, 5], [5, 5, 5, 0.0]])
    assert select_diverse(scores, d, 2, diversity=0.0) == [0, 1]
    assert select_diverse(scores, d, 2, diversity=0.5) == [0, 2]
    # prioritised candidates (e.g. satisfying the instruction) go first, whatever their score
    assert select_diverse(scores, d, 2, diversity=0.0, priority=torch.tensor([False, False, True, True])) == [2, 3]
    # integer tiers (instruction x2 + held in the proposer's check): the highest tier is exhausted first
    assert select_diverse(scores, d, 3, diversity=0.0, priority=torch.tensor([0, 1, 2, 1])) == [2, 1, 3]


def test_instruction_is_parsed_and_satisfying_grasps_rank_first(pipe):
    res = pipe.run(GraspQuery(points=box_on_table(4), num_grasps=4, text="grasp it from the top", seed=2))
    assert res.intent is not None and res.intent["approach"] == "top"
    flags = [g.scores["intent_satisfied"] == 1.0 for g in res.grasps]
    assert res.intent_satisfied == sum(flags)
    assert flags == sorted(flags, reverse=True)  # the satisfying grasps (if any) rank first
    if res.intent_satisfied:
        palm_normal = [np.array(g.pose.matrix)[:3, :3] @ np.array([0.0, -1.0, 0.0]) for g in res.grasps[: res.intent_satisfied]]
        assert all(n[2] < -0.5 for n in palm_normal)  # palms facing down: approached from above
    else:
        assert any("no grasp satisfies" in w for w in res.warnings)


def test_a_pipeline_check_reaches_the_optimiser_and_orders_the_selection():
    """``GraspPipeline(check=...)`` (the service passes sim_worker's MuJoCo check on the cloud): the optimiser
    gets it, ``fast`` does not; the returned grasps carry its verdicts, those that held first."""
    from dataclasses import replace

    from models.proposers.optimize import OptimizeConfig, OptimizeProposer
    from sim_worker.cloud_check import CloudCheck

    with CloudCheck() as check:
        p = GraspPipeline(PipelineConfig(model_points=512), check=check)
        assert p.proposer("optimize", "shadow").check is check  # type: ignore[attr-defined]
        assert getattr(p.proposer("fast", "shadow"), "check", None) is None
        p._proposers[("optimize", "shadow")] = OptimizeProposer(cfg=replace(OptimizeConfig(), steps=12, extra_rounds=0), check=check)
        res = p.run(GraspQuery(points=box_on_table(), num_grasps=4, seed=3, method="optimize"))
    held = [g.scores["cloud_check_holds"] for g in res.grasps]
    assert len(held) == 4 and set(held) <= {0.0, 1.0} and held == sorted(held, reverse=True)
    assert all(g.scores["cloud_check_shift_m"] >= 0 for g in res.grasps)
