"""DGTR: plain-op sampling against the reference ops, matching, training (resume, DSMT, learning),
ONNX against PyTorch, the proposer and its place in the pipeline."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.core.geometry import farthest_point_sample, knn
from models.hands import get_hand
from models.learned.dgtr.data import ViewConfig
from models.learned.dgtr.export import OnnxRunner, TorchRunner, export_onnx
from models.learned.dgtr.model import DGTR, DGTRConfig, farthest_point_indices, fixed_size, knn_indices, model_inputs
from models.learned.dgtr.train import TrainConfig, assignments, hungarian, losses, make_batch, match_cost, train
from models.learned.dgtr.weights import load_weights

DATA = Path(__file__).resolve().parents[2] / "models" / "data" / "shadow_v1"
SMALL = DGTRConfig(num_points=64, sa1_centres=16, sa1_k=8, sa1_mlp=(16, 32), sa2_centres=8, sa2_k=4,
                   sa2_mlp=(32, 32), d_model=32, heads=2, ffn=64, layers=2, queries=4)


def _inputs(b: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pts = torch.randn(b, n, 3, generator=g) * 0.05
    nrm = torch.nn.functional.normalize(torch.randn(b, n, 3, generator=g), dim=-1)
    return model_inputs(pts, nrm, None)


def test_plain_op_fps_matches_the_reference_sampler():
    pts = torch.randn(2, 300, 3, generator=torch.Generator().manual_seed(1))
    ours = farthest_point_indices(pts, 40)
    ref = farthest_point_sample(pts, 40, start=ours[:, 0])
    assert torch.equal(ours, ref)
    # the start is the point farthest from the centroid
    far = ((pts - pts.mean(1, keepdim=True)) ** 2).sum(-1).argmax(-1)
    assert torch.equal(ours[:, 0], far)


def test_plain_op_knn_matches_the_reference():
    g = torch.Generator().manual_seed(2)
    pts, q = torch.randn(2, 200, 3, generator=g), torch.randn(2, 30, 3, generator=g)
    ours = knn_indices(q, pts, 6)
    d_ref, _i_ref = knn(q, pts, 6)
    d_ours = (q[:, :, None] - torch.gather(pts, 1, ours.reshape(2, -1, 1).expand(-1, -1, 3)).reshape(2, 30, 6, 3)).norm(dim=-1)
    torch.testing.assert_close(d_ours.sort(-1).values, d_ref.sort(-1).values, atol=1e-5, rtol=0)


def test_hungarian_is_optimal_and_covers_every_query():
    rng = np.random.default_rng(0)
    cost = torch.tensor(rng.random((5, 5)))
    a = hungarian(cost, 5)
    best = min(sum(float(cost[i, p[i]]) for i in range(5)) for p in itertools.permutations(range(5)))
    assert sum(float(cost[i, a[i]]) for i in range(5)) == pytest.approx(best)
    assert sorted(a.tolist()) == list(range(5))  # one query per ground truth
    # fewer ground truths than queries: tiled, so every query gets one and none is used too often
    cost = torch.tensor(rng.random((16, 3)))
    a = hungarian(cost, 3)
    counts = np.bincount(a.numpy(), minlength=3)
    assert counts.sum() == 16 and counts.max() <= math.ceil(16 / 3) and counts.min() >= 1


def test_match_cost_is_zero_for_the_truth_itself():
    hand = get_hand("shadow", dtype="float32")
    cfg = TrainConfig(model=SMALL)
    g = torch.Generator().manual_seed(0)
    t = torch.randn(4, 3, generator=g) * 0.05
    r = torch.linalg.qr(torch.randn(4, 3, 3, generator=g)).Q
    r = r * torch.linalg.det(r)[:, None, None].sign()
    q = torch.rand(4, hand.num_joints, generator=g)
    pred = {"translation": t, "rot6d": torch.cat([r[..., 0], r[..., 1]], -1), "joints_unit": q}
    cost = match_cost(pred, t, r, q, cfg)
    assert torch.diagonal(cost).abs().max() < 1e-5
    assert (cost + torch.eye(4) * 1e3).min() > 1e-3  # any other pairing costs something
    assert torch.equal(hungarian(cost, 4), torch.arange(4))


def test_onnx_graph_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    model = DGTR(SMALL).eval()
    path = export_onnx(model, tmp_path / "m.onnx")
    x = _inputs(3, SMALL.num_points).numpy()  # batch 3: the graph was traced with 2 (dynamic batch)
    for a, b in zip(TorchRunner(model)(x), OnnxRunner(path)(x)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
    t, r6, q = OnnxRunner(path)(x)
    assert t.shape == (3, SMALL.queries, 3) and r6.shape == (3, SMALL.queries, 6) and q.shape == (3, SMALL.queries, 22)
    assert np.abs(t).max() <= SMALL.translation_scale_m and 0 <= q.min() and q.max() <= 1


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Two real dataset scenes, a small network, trained through every DSMT phase."""
    root = tmp_path_factory.mktemp("dgtr")
    data = root / "data" / "shards"
    data.mkdir(parents=True)
    shards = sorted((DATA / "shards").glob("*.npz"))
    picked = [f for f in shards if "mug" in f.name][:1] + [f for f in shards if "box" in f.name][:1]
    for f in picked:
        shutil.copy(f, data / f.name)
    cfg = TrainConfig(data=str(root / "data"), epochs=4, batch=2, dynamic_share=0.5, static_share=0.25,
                      views=ViewConfig(partial_views=1), model=SMALL)
    run = root / "run"
    first = train(run, cfg, progress=False, stop_after=2)  # a first chunk, as if killed after epoch 2
    assert not (run / "model.safetensors").exists()
    model_after_2 = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    last = train(run, cfg, progress=False)  # resumes at epoch 3
    return {"run": run, "cfg": cfg, "first": first, "last": last, "model_after_2": model_after_2}


def test_training_can_start_from_other_weights(tiny_run, tmp_path):
    """``init``: a run starts from a weights folder (fine-tuning); at lr 0 its weights stay those weights, and
    a folder of another architecture is refused with both architectures named."""
    from dataclasses import replace

    from models.learned.dgtr.weights import load_weights

    cfg = replace(tiny_run["cfg"], init=str(tiny_run["run"]), epochs=1, lr=0.0, lr_final=0.0,
                  views=ViewConfig(partial_views=1))
    train(tmp_path / "tuned", cfg, cache_dir=tiny_run["run"] / "views", progress=False)
    start, tuned = load_weights(tiny_run["run"]).state_dict(), load_weights(tmp_path / "tuned").state_dict()
    assert start.keys() == tuned.keys() and all(torch.equal(start[k], tuned[k]) for k in start)
    assert json.loads((tmp_path / "tuned" / "model.json").read_text())["train"]["init"] == str(tiny_run["run"])
    other = replace(cfg, model=replace(SMALL, d_model=SMALL.d_model * 2))
    with pytest.raises(ValueError, match="architecture"):
        train(tmp_path / "other", other, cache_dir=tiny_run["run"] / "views", progress=False)


def test_training_resumes_and_runs_every_phase(tiny_run):
    lines = [json.loads(x) for x in (tiny_run["run"] / "log.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3, 4]
    assert [x["phase"] for x in lines] == ["dynamic", "dynamic", "static", "static+pen"]
    assert "pen" in lines[3] and "pen" not in lines[1]
    assert all(math.isfinite(x["total"]) for x in lines)
    state = torch.load(tiny_run["run"] / "checkpoint.pt", weights_only=True)
    # the static phases match with the network as it was when dynamic matching ended (survives the resume)
    for k, v in tiny_run["model_after_2"].items():
        assert torch.equal(state["matcher"][k], v), k
    assert any(not torch.equal(state["model"][k], v) for k, v in tiny_run["model_after_2"].items())
    meta = json.loads((tiny_run["run"] / "model.json").read_text())
    assert meta["model"]["queries"] == SMALL.queries and meta["scenes"] == 2


def test_views_rendered_in_processes_are_the_views_rendered_in_one(tiny_run, tmp_path):
    """The training-view cache made by two processes holds the same arrays as the single-process one
    (each scene's views depend on its own seed only), in the same scene order."""
    from models.learned.dgtr.data import build_views

    cfg = tiny_run["cfg"]
    one = build_views(cfg.data, tiny_run["run"] / "views", cfg.views, progress=False)
    two = build_views(cfg.data, tmp_path / "views", cfg.views, progress=False, procs=2)
    assert [f.name for f in one] == [f.name for f in two] and len(one) == 2
    for a, b in zip(one, two):
        za, zb = np.load(a), np.load(b)
        assert sorted(za.files) == sorted(zb.files)
        for k in za.files:
            assert np.array_equal(za[k], zb[k]), k


def test_saved_weights_reload_to_the_same_network(tiny_run):
    model = load_weights(tiny_run["run"])
    state = torch.load(tiny_run["run"] / "checkpoint.pt", weights_only=True)["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_the_losses_train_the_network_on_real_grasps(tiny_run):
    """Overfitting one fixed batch must drive the pose losses down (gradients reach every head)."""
    from models.learned.dgtr.train import load_views

    cfg = replace(tiny_run["cfg"], noise_m=0.0)
    scenes = load_views(sorted((tiny_run["run"] / "views").glob("*.npz")))
    hand = get_hand("shadow", dtype="float32")
    batch = make_batch(scenes, [0, 1], cfg, hand, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = DGTR(SMALL)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for _ in range(60):
        outs = model(batch["inputs"])
        assign = assignments(outs[-1], batch, cfg)
        terms = losses(outs, batch, assign, cfg, hand, with_pen=False)
        pose = float((terms["t"] + terms["joints"] + terms["rot"]).detach())
        first = pose if first is None else first
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
    assert pose < 0.5 * first


def test_fixed_size_orders_and_pads():
    pts = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    nrm = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    p, _n = fixed_size(pts, nrm, 64)
    assert p.shape == (64, 3) and len({tuple(x) for x in p}) == 64  # farthest-point subset, distinct
    p2, n2 = fixed_size(pts[:10], nrm[:10], 64, seed=1)
    assert p2.shape == (64, 3) and {tuple(x) for x in p2} == {tuple(x) for x in pts[:10]}
    np.testing.assert_allclose(n2, p2 / np.linalg.norm(p2, axis=1, keepdims=True), atol=1e-6)


# ---------------------------------------------------------------------------------- the proposer
@pytest.fixture(scope="module")
def tiny_weights(tiny_run):
    from models.learned.dgtr.export import export_weights

    export_weights(tiny_run["run"])
    return tiny_run["run"]


def _mug_problem(n: int, seed: int = 0):
    from models import objects
    from models.proposers.base import Problem

    mesh = objects.load_mesh("comp/mug/0002")
    p, nr = objects.complete_cloud(mesh, n=600, seed=seed)
    return Problem(torch.tensor(p - p.mean(0)), torch.tensor(nr), n, seed=seed)


def test_proposer_passes_batching_and_runtimes_agree(tiny_weights):
    from models.proposers.dgtr import DGTRProposer
    from models.stages.squeeze import SqueezeConfig

    # the network's outputs are compared: the snap onto the surface (a discrete choice of contacts)
    # would turn 1e-5 runtime differences into different joints
    no_snap = SqueezeConfig(snap=False)
    onnx = DGTRProposer(weights=tiny_weights, runtime="onnx", squeeze=no_snap)
    eager = DGTRProposer(weights=tiny_weights, runtime="torch", squeeze=no_snap)
    a, b = _mug_problem(10, seed=0), _mug_problem(3, seed=1)  # 10 > 4 queries: three rotated passes
    together = onnx.propose_batch([a, b])
    assert [len(r.grasps) for r in together] == [10, 3]
    alone = onnx.propose_batch([a])[0]
    by_torch = eager.propose_batch([a])[0]
    for g, h, k in zip(together[0].grasps, alone.grasps, by_torch.grasps):
        np.testing.assert_allclose(g.pose.position, h.pose.position, atol=1e-6)
        np.testing.assert_allclose(g.pose.position, k.pose.position, atol=1e-4)
        np.testing.assert_allclose(list(g.joints.values()), list(k.joints.values()), atol=1e-4)
    pos = np.array([g.pose.position for g in together[0].grasps])
    assert np.isfinite(pos).all() and len({tuple(np.round(x, 6)) for x in pos}) == 10  # passes differ
    from models.stages.squeeze import SqueezeConfig

    backoffs = sorted({b for b, _ in SqueezeConfig().pregrasp_candidates})
    for g in together[0].grasps:  # pre-grasp at one of the candidate distances behind the grasp, squeeze present
        assert g.pregrasp is not None and g.squeeze is not None
        back = np.linalg.norm(np.subtract(g.pregrasp.pose.position, g.pose.position))
        assert min(abs(back - b) for b in backoffs) < 1e-6


def test_proposer_refuses_missing_or_foreign_weights(tmp_path, tiny_weights):
    from models.proposers.dgtr import DGTRProposer

    with pytest.raises(ValueError, match="dexgrasp train dgtr"):
        DGTRProposer(weights=tmp_path)
    meta = json.loads((tiny_weights / "model.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    meta["model"]["hand"] = "allegro"
    (other / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="for hand 'allegro'"):
        DGTRProposer(weights=other)


def test_auto_follows_the_model_cards_serve_by_default(tiny_weights, tmp_path, monkeypatch):
    import models.proposers.dgtr as dgtr_mod
    from models.pipeline import GraspPipeline

    root = tmp_path / "weights"
    shutil.copytree(tiny_weights, root / "dgtr_shadow", ignore=shutil.ignore_patterns("views", "checkpoint*"))
    monkeypatch.setattr(dgtr_mod, "WEIGHTS_ROOT", root)
    assert GraspPipeline().resolve_method("auto") == "dgtr"
    assert GraspPipeline().resolve_method("auto", text="grasp the mug by the handle") == "fast"  # priors need the optimiser
    assert GraspPipeline().resolve_method("auto", text="  ") == "dgtr"
    meta_path = root / "dgtr_shadow" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["serve_by_default"] = False  # withdrawn from the default path: auto falls back, dgtr still serves
    meta_path.write_text(json.dumps(meta))
    assert GraspPipeline().resolve_method("auto") == "fast"
    assert GraspPipeline().resolve_method("dgtr") == "dgtr"
    (root / "dgtr_shadow" / "model.json").unlink()
    assert GraspPipeline().resolve_method("auto") == "fast"


def test_model_card_settings_reach_the_refine_and_rank_stages(tiny_weights, tmp_path):
    from models.pipeline import GraspPipeline, GraspQuery
    from models.proposers.dgtr import DGTRProposer

    d = tmp_path / "w"
    shutil.copytree(tiny_weights, d, ignore=shutil.ignore_patterns("views", "checkpoint*"))
    assert DGTRProposer(weights=d).refine_config is None  # none in the card: the pipeline's defaults
    meta = json.loads((d / "model.json").read_text())
    meta["refine"] = {"steps": 3, "translation_scale": 1.0}
    meta["rank"] = {"w_force_closure": 0.0, "w_contacts": 0.0, "w_penetration": 1.0}
    (d / "model.json").write_text(json.dumps(meta))
    prop = DGTRProposer(weights=d)
    assert prop.refine_config.steps == 3 and prop.refine_config.translation_scale == 1.0
    pipe = GraspPipeline()
    pipe._proposers[("dgtr", "shadow")] = prop
    mesh_problem = _mug_problem(4)
    res = pipe.run(GraspQuery(points=mesh_problem.points.numpy(), num_grasps=4, method="dgtr", seed=0))
    assert res.proposer == "dgtr" and res.timings_ms["refine_ms"] > 0
    # penetration alone decides the score: overall equals the penetration score
    for g in res.grasps:
        assert g.scores["overall"] == pytest.approx(math.exp(-(g.scores["penetration_m"] + g.scores["table_penetration_m"]) / 0.003), abs=1e-6)


def test_refined_queries_finish_only_the_grasps_returned(tiny_weights):
    """A refined query asks the proposer for unfinished candidates and finishes the returned ones where
    refining left them; an unrefined one gets them finished by the proposer."""
    from models.pipeline import GraspPipeline, GraspQuery
    from models.proposers.dgtr import DGTRProposer

    prop = DGTRProposer(weights=tiny_weights)
    asked: list[bool] = []
    real = prop.propose_batch

    def recording(problems, *args, **kwargs):
        asked.extend(pr.finish for pr in problems)
        return real(problems, *args, **kwargs)

    prop.propose_batch = recording  # type: ignore[method-assign]
    pipe = GraspPipeline()
    pipe._proposers[("dgtr", "shadow")] = prop
    pts = _mug_problem(4).points.numpy()
    for refine in (True, False):
        asked.clear()
        res = pipe.run(GraspQuery(points=pts, num_grasps=3, method="dgtr", seed=0, refine=refine))
        assert asked == [not refine]
        # finished: a squeeze (an unfinished grasp has none); refined ones were finished by the pipeline
        assert len(res.grasps) == 3 and all(g.squeeze is not None for g in res.grasps)
        assert ("finish_ms" in res.timings_ms) == refine


def test_timeout_returns_the_grasps_so_far_with_a_warning(tiny_weights):
    """A budget spent before refinement starts: the query still answers with its grasps (finished: a
    squeeze each) and warnings that say what the budget cut; without a budget, no such warning."""
    from models.pipeline import GraspPipeline, GraspQuery
    from models.proposers.dgtr import DGTRProposer

    pipe = GraspPipeline()
    pipe._proposers[("dgtr", "shadow")] = DGTRProposer(weights=tiny_weights)
    pts = _mug_problem(4).points.numpy()
    full = pipe.run(GraspQuery(points=pts, num_grasps=3, method="dgtr", seed=0, refine=True))
    assert not any("timeout_ms" in w for w in full.warnings)
    cut = pipe.run(GraspQuery(points=pts, num_grasps=3, method="dgtr", seed=0, refine=True, timeout_s=1e-4))
    assert len(cut.grasps) == 3 and all(g.squeeze is not None for g in cut.grasps)
    assert any("refinement stopped after 0 of" in w for w in cut.warnings)
    assert any("not snapped" in w for w in cut.warnings)


def test_time_waited_in_the_queue_counts_against_the_budget(tiny_weights):
    """A query that waited longer than its budget in the service's queue is answered at once (no
    refinement steps, fingers not snapped) with a warning that names the wait; the batcher charges the
    wait it measured to the query it hands the pipeline."""
    import threading

    from models.pipeline import GraspPipeline, GraspQuery
    from models.proposers.dgtr import DGTRProposer
    from service.batching import Batcher, charge_queue_wait
    from service.metrics import Metrics

    pipe = GraspPipeline()
    pipe._proposers[("dgtr", "shadow")] = DGTRProposer(weights=tiny_weights)
    pts = _mug_problem(4).points.numpy()
    q = GraspQuery(points=pts, num_grasps=3, method="dgtr", seed=0, refine=True, timeout_s=5.0)
    assert charge_queue_wait(charge_queue_wait(q, 2.0), 4.5).queued_s == 6.5 and q.queued_s == 0.0
    waited = pipe.run(charge_queue_wait(q, 6.0))
    assert len(waited.grasps) == 3 and all(g.squeeze is not None for g in waited.grasps)
    assert any("waited 6000 ms in the queue" in w for w in waited.warnings)
    assert any("refinement stopped after 0 of" in w for w in waited.warnings)

    # through the real compute thread: the first query holds it, the second waits past its budget
    release = threading.Event()
    original = pipe.run_batch
    seen: list[float] = []

    def held(queries, progress=None):
        release.wait(30)
        seen.extend(x.queued_s for x in queries)
        return original(queries, progress)

    pipe.run_batch = held  # type: ignore[method-assign]
    batcher = Batcher(pipe, Metrics(), max_batch=1, window_s=0.0).start()
    try:
        first = batcher.submit(GraspQuery(points=pts, num_grasps=2, method="dgtr", seed=0, refine=False))
        second = batcher.submit(GraspQuery(points=pts, num_grasps=2, method="dgtr", seed=0, refine=True, timeout_s=0.2))
        threading.Timer(0.5, release.set).start()
        first.result(120)
        res, wait_s, _ = second.result(120)
    finally:
        batcher.stop()
    assert wait_s >= 0.2 and seen[1] >= 0.2
    assert any("in the queue" in w for w in res.warnings)
    assert any("refinement stopped after 0 of" in w for w in res.warnings)
