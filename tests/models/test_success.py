"""The learned grasp-success ranker: features on a real hand and cloud, the shipped weights, the
learned path of ``score_grasps`` and its place in the pipeline."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models import objects
from models.core.geometry import ObjectCloud as ObjectSurface
from models.core.rotations import quat_to_matrix
from models.hands import get_hand
from models.learned.success import (
    FitConfig,
    SuccessRanker,
    feature_names,
    fit_ranker,
    grasp_features,
    load_ranker,
    roc_auc,
    top_k_success,
)
from models.physics.quality import grasp_quality
from models.stages.scoring import RankConfig, score_grasps

ROOT = Path(__file__).resolve().parents[2]
SHARD = ROOT / "models" / "data" / "shadow_v1" / "shards" / "comp_bottle_0000__p0.npz"
SHIPPED = "ranker_shadow"


@pytest.fixture(scope="module")
def hand():
    return get_hand("shadow", dtype="float32")


@pytest.fixture(scope="module")
def scene():
    """Sim-validated grasps of one training object (object frame), its cloud and table plane."""
    with np.load(SHARD, allow_pickle=False) as d:
        oid = str(d["object_id"])
        pos = torch.tensor(d["palm_position"], dtype=torch.float32)
        rot = quat_to_matrix(torch.tensor(d["palm_quaternion_wxyz"], dtype=torch.float64)).float()
        q = torch.tensor(d["joints"], dtype=torch.float32)
        rest = d["rest_pose"]
    mesh = objects.load_mesh(oid)
    pts, nrm = objects.complete_cloud(mesh, n=1024, seed=0)
    surface = ObjectSurface(torch.tensor(pts), torch.tensor(nrm))
    # world table z = 0 in the object frame: x_w = R x_o + t, so n = R^T e_z and d = t_z
    table = (torch.tensor(rest[2, :3], dtype=torch.float32), float(rest[2, 3]))
    return pos, rot, q, surface, table


def test_features_are_finite_and_named(hand, scene):
    pos, rot, q, surface, table = scene
    x = grasp_features(hand, pos, rot, q, surface, table)
    names = feature_names(hand)
    assert x.shape == (pos.shape[0], len(names)) and len(set(names)) == len(names)
    assert torch.isfinite(x).all()
    col = {n: x[:, i] for i, n in enumerate(names)}
    # validated grasps touch the object and barely penetrate it; joints are range-normalised
    assert (col["contact_count"] >= 2).all() and (col["max_penetration"] < 0.006).all()
    assert (col["joint_FFJ3"] >= 0).all() and (col["joint_FFJ3"] <= 1).all()
    # the analytic metrics in the features are those of grasp_quality
    m = grasp_quality(hand, pos, rot, q, surface, table)
    torch.testing.assert_close(col["q1"], m["q1"].float(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(col["contact_count"], m["contact_count"].float())
    # invariant to a rotation about up and a translation of the whole scene
    ang = 0.7
    rz = torch.tensor([[np.cos(ang), -np.sin(ang), 0], [np.sin(ang), np.cos(ang), 0], [0, 0, 1]], dtype=torch.float32)
    up = table[0] / table[0].norm()
    # rotate about the table normal: R = exp(ang [up]x) built from rz in a frame whose z is up
    e1 = torch.linalg.cross(up, torch.tensor([1.0, 0.0, 0.0]))
    e1 = e1 / e1.norm()
    frame = torch.stack([e1, torch.linalg.cross(up, e1), up], 1)
    r = frame @ rz @ frame.T
    shift = torch.tensor([0.3, -0.2, 0.1])
    moved = ObjectSurface(surface.points @ r.T + shift, surface.normals @ r.T)
    table2 = (up, table[1] / float(table[0].norm()) - float(up @ shift))
    x2 = grasp_features(hand, pos @ r.T + shift, r @ rot, q, moved, table2)
    # Q1's 8-edge friction cones are built on a fixed helper axis, so Q1 itself is only nearly invariant
    exact = [i for i, n in enumerate(names) if not n.startswith("q1")]
    torch.testing.assert_close(x2[:, exact], x[:, exact], atol=2e-4, rtol=1e-3)
    q1_cols = [names.index("q1"), names.index("q1_ungated")]
    torch.testing.assert_close(x2[:, q1_cols], x[:, q1_cols], atol=0.01, rtol=0.2)


def test_shipped_ranker_loads_and_gives_probabilities(hand, scene):
    ranker = load_ranker(SHIPPED)
    assert ranker.features == tuple(feature_names(hand))
    pos, rot, q, surface, table = scene
    p = ranker.predict(grasp_features(hand, pos, rot, q, surface, table))
    assert p.shape == (pos.shape[0],) and ((p >= 0) & (p <= 1)).all()
    assert (ranker.meta["data"]["train"]["objects"] > 0) and "validation" in ranker.meta
    assert (ROOT / "models" / "weights" / SHIPPED / "ranker.json").stat().st_size < 1 << 20


def test_grasp_away_from_the_object_scores_lower(hand, scene):
    ranker = load_ranker(SHIPPED)
    pos, rot, q, surface, table = scene
    on = ranker.predict(grasp_features(hand, pos, rot, q, surface, table))
    # the same hands 15 cm further back along their approach direction: no contact at all
    approach = rot @ hand.approach_direction.to(rot)
    off = ranker.predict(grasp_features(hand, pos - 0.15 * approach, rot, q, surface, table))
    assert (off < on).all()
    assert float(off.max()) < float(on.mean())


def test_without_learned_the_quality_is_the_analytic_one(hand, scene):
    pos, rot, q, surface, table = scene
    c = RankConfig()
    sc = score_grasps(hand, pos, rot, q, surface, table, c)
    m = grasp_quality(hand, pos, rot, q, surface, table=table)
    fc = (m["q1"] / c.q1_full).clamp(0, 1)
    contact = (m["contact_count"].to(fc.dtype) / c.contacts_full).clamp(0, 1)
    pen = torch.exp(-(m["max_penetration_m"] + m["table_penetration_m"]) / c.penetration_scale_m)
    assert torch.equal(sc["quality"], c.w_force_closure * fc + c.w_contacts * contact + c.w_penetration * pen)
    assert "success_probability" not in sc
    learned = score_grasps(hand, pos, rot, q, surface, table, replace(c, learned=SHIPPED, learned_blend=0.5))
    assert set(learned) == set(sc) | {"success_probability", "analytic_quality"}
    # the learned path takes the analytic metrics from its own contact pass: the same values
    for k in set(sc) - {"quality"}:
        assert torch.equal(learned[k], sc[k]), k
    assert torch.equal(learned["analytic_quality"], sc["quality"])
    torch.testing.assert_close(learned["quality"], 0.5 * learned["success_probability"] + 0.5 * sc["quality"])


def test_fit_and_json_round_trip_on_separable_data(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = x[:, 0] + 0.5 * x[:, 1] > 0
    model = fit_ranker(x, y, ["a", "b", "c"], FitConfig(hidden=(8,), epochs=200))
    p = model.predict(torch.from_numpy(x)).numpy()
    assert roc_auc(p, y) > 0.97
    again = SuccessRanker.from_json(json.loads(model.save(tmp_path).read_text()))
    np.testing.assert_allclose(again.predict(torch.from_numpy(x)).numpy(), p, atol=1e-12)
    groups = np.repeat(np.arange(40), 10)
    assert top_k_success(y.astype(float), y, groups, 4) >= top_k_success(p, y, groups, 4) >= top_k_success(-p, y, groups, 4)
    assert roc_auc(np.array([0.1, 0.2, 0.2, 0.9]), np.array([0, 0, 1, 1])) == pytest.approx(0.875)


def test_dgtr_pipeline_reports_success_probability():
    from models.pipeline import GraspPipeline, GraspQuery
    from models.proposers.dgtr import weights_dir

    meta = json.loads((weights_dir("shadow") / "model.json").read_text())
    if not meta.get("rank", {}).get("learned"):
        pytest.skip("the shipped dgtr model card does not use the learned ranker")
    mesh = objects.load_mesh(str(np.load(SHARD)["object_id"]))
    pts, _ = objects.complete_cloud(mesh, n=2048, seed=0)
    res = GraspPipeline().run(GraspQuery(points=pts, num_grasps=4, method="dgtr", refine=False, remove_table=False))
    probs = [g.scores["success_probability"] for g in res.grasps]
    assert len(probs) == 4 and all(0.0 <= p <= 1.0 for p in probs)
    # returned in order of the score the ranking uses
    overall = [g.scores["overall"] for g in res.grasps]
    assert overall == sorted(overall, reverse=True)
