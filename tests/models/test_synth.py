"""Dataset synthesis: shards, resume after a kill, the summary card."""

from __future__ import annotations

import os

import numpy as np
import pytest

from models.tools.synth import SynthConfig, load_dataset, scene_diversity, scene_order, shard_name
from sim_worker.synth import run_synth

from ..conftest import DEVICES


def test_tiny_run_writes_shards_and_resumes(tmp_path):
    cfg = SynthConfig(split="validation", poses_per_object=1, grasps_per_scene=4, steps=10, max_objects=2,
                      procs=1, simulate=True)
    summary = run_synth(tmp_path, cfg, progress=False)
    shards = sorted((tmp_path / "shards").glob("*.npz"))
    assert len(shards) == 2 and summary["scenes"] == 2
    assert summary["grasps_optimised"] == 2 * 12  # ceil(oversample 3 x 4) candidates per scene
    assert summary["grasps_sim_validated"] <= min(8, summary["grasps_passing_penetration"])
    from models.proposers.optimize import OptimizeProposer

    # each shard names the optimizer that made it; the card splits its counts by that
    (version, part), = summary["by_optimizer"].items()
    assert version == f"optimize {OptimizeProposer.version}, every candidate refereed"
    assert part["scenes"] == 2 and part["grasps_sim_validated"] == summary["grasps_sim_validated"]
    rows = load_dataset(tmp_path)
    for r in rows:
        n = int(r["stats"][2])
        assert r["joints"].shape == (n, 22) and r["palm_quaternion_wxyz"].shape == (n, 4)
        assert r["rest_pose"].shape == (4, 4)
        if n:
            assert np.allclose(np.linalg.norm(r["palm_quaternion_wxyz"], axis=1), 1, atol=1e-5)
    # a killed run resumes: delete one shard, re-run, only that one is rebuilt
    first = shards[0]
    mtime_other = shards[1].stat().st_mtime_ns
    first.unlink()
    run_synth(tmp_path, cfg, progress=False)
    assert first.exists() and shards[1].stat().st_mtime_ns == mtime_other
    assert (tmp_path / "summary.json").exists()
    assert shard_name("pb/random/0001", 3) == "pb_random_0001__p3.npz"


def test_summary_diversity_known_values():
    """16 grasps, one towards each of the 16 Fibonacci directions, fill every delta_t bin; 16 copies
    of one grasp fill one bin of each occupancy; scenes with fewer than two grasps are not counted."""

    from models.hands import get_hand
    from models.physics.diversity import fibonacci_sphere

    h = get_hand("shadow", dtype="float64")
    mid = ((h.lower + h.upper) / 2).numpy()
    quat = np.tile([1.0, 0.0, 0.0, 0.0], (16, 1))
    spread = {"palm_position": 0.1 * fibonacci_sphere(16).numpy(), "palm_quaternion_wxyz": quat, "joints": np.tile(mid, (16, 1))}
    same = {"palm_position": np.tile([0.1, 0.0, 0.0], (16, 1)), "palm_quaternion_wxyz": quat, "joints": np.tile(mid, (16, 1))}
    single = {k: v[:1] for k, v in same.items()}
    d = scene_diversity([spread, same, single])
    assert d["scenes"] == 2 and d["grasps_per_scene"] == 16
    assert d["delta_t"] == round((1.0 + 1 / 16) / 2, 4)
    assert d["delta_r"] == d["delta_q"] == round(1 / 16, 4)
    assert scene_diversity([single])["delta_t"] is None


def test_simulation_filter_comes_from_the_caller(tmp_path):
    """``models.tools.synth`` never runs a simulator itself: with ``simulate`` it needs a filter, and the
    filter it is given sees each scene's object mesh and its penetration-filtered grasps."""
    from models.tools.synth import run_synth as synthesise  # the core, without the simulator

    cfg = SynthConfig(split="validation", poses_per_object=1, grasps_per_scene=4, steps=10, max_objects=1, procs=1)
    with pytest.raises(ValueError, match="sim_filter"):
        synthesise(tmp_path, cfg, progress=False)
    calls = []

    def reject_all(vertices, faces, grasps, source):
        calls.append((vertices.shape[1], faces.shape[1], len(grasps), source))
        return [False] * len(grasps)

    summary = synthesise(tmp_path, cfg, progress=False, sim_filter=reject_all)
    assert summary["scenes"] == 1 and summary["grasps_sim_validated"] == 0
    assert sum(n for _, _, n, _ in calls) == summary["grasps_passing_penetration"]
    assert all(v == 3 and f == 3 and isinstance(src, str) for v, f, _, src in calls)


def test_candidates_refereed_in_rank_order_until_enough_pass(tmp_path):
    """Every candidate that passes the penetration filters may go to the referee, ``referee_chunk`` at a time in
    the optimiser's order; refereeing stops once ``grasps_per_scene`` have passed, and those first passing are stored."""
    from models.tools.synth import run_synth as synthesise

    cfg = SynthConfig(split="validation", poses_per_object=1, grasps_per_scene=3, steps=30, max_objects=1, procs=1,
                      oversample=4.0, referee_chunk=2)
    seen: list[list[float]] = []
    calls: list[int] = []

    def reject_first_three(vertices, faces, grasps, source):
        calls.append(len(grasps))
        out = []
        for g in grasps:
            seen.append(list(g.pose.position))
            out.append(len(seen) > 3)
        return out

    summary = synthesise(tmp_path, cfg, progress=False, sim_filter=reject_first_three)
    (row,) = load_dataset(tmp_path)
    kept = int(row["stats"][1])
    assert int(row["stats"][0]) == 12 and summary["grasps_optimised"] == 12
    assert sum(calls) == int(row["refereed"]) == len(seen) <= kept
    assert all(c == 2 for c in calls[:-1])
    accepted = seen[3:]
    assert int(row["stats"][2]) == min(3, len(accepted))
    if len(accepted) >= 3:  # stopped at the first chunk that brought the third pass
        assert len(accepted) - calls[-1] < 3
    else:  # ran out of candidates
        assert len(seen) == kept
    np.testing.assert_allclose(row["palm_position"], np.array(accepted[:3]).reshape(-1, 3), atol=1e-6)


def test_scene_order_first_poses_then_object_by_object():
    assert scene_order(["a", "b"], 3) == [("a", 0), ("b", 0), ("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert scene_order(["a", "b"], 1) == [("a", 0), ("b", 0)]


@pytest.mark.parametrize("device", DEVICES)
def test_optimiser_device_is_chosen_and_recorded(tmp_path, device):
    """``SynthConfig.device`` (``dexgrasp synth --device``) is where the optimiser runs; every shard records it
    (grasps repeat for a seed on one device only). The referee is the caller's, on CPU, either way."""
    from models.tools.synth import run_synth as synthesise

    cfg = SynthConfig(split="validation", poses_per_object=1, grasps_per_scene=2, steps=10, max_objects=1, procs=1,
                      device=device)
    seen: list[int] = []

    def accept_all(vertices, faces, grasps, source):
        seen.append(len(grasps))
        return [True] * len(grasps)

    summary = synthesise(tmp_path, cfg, progress=False, sim_filter=accept_all)
    (row,) = load_dataset(tmp_path)
    assert str(row["optimizer_device"]) == device
    assert int(row["stats"][2]) == min(2, int(row["stats"][1])) == summary["grasps_sim_validated"]
    assert row["energy"].dtype == np.float32 and np.isfinite(row["energy"]).all()
    assert sum(seen) == int(row["refereed"])


def test_dataset_picture_draws_each_scenes_best_grasp(tmp_path):
    from models.tools import pictures
    from models.tools.synth import FORMAT, dataset_picture

    try:
        pictures.ensure_gl_backend()
    except pictures.RenderBackendError as err:
        pytest.skip(f"no offscreen OpenGL backend: {err}")
    shards = tmp_path / "shards"
    shards.mkdir()
    rest = np.eye(4)
    rest[2, 3] = 0.05
    n = 3
    palm = np.array([[0.0, -0.12, 0.0]] * n, dtype=np.float32)
    common = {"format": np.array(FORMAT), "scale": np.array(1.0), "rest_pose": rest,
              "palm_position": palm, "palm_quaternion_wxyz": np.tile(np.float32([1, 0, 0, 0]), (n, 1)),
              "joints": np.zeros((n, 22), np.float32), "squeeze": np.zeros((n, 22), np.float32),
              "pregrasp_position": palm, "pregrasp_joints": np.zeros((n, 22), np.float32),
              "stats": np.array([n, n, n])}
    np.savez(shards / shard_name("prim/box/0000", 0), object_id=np.array("prim/box/0000"),
             q1=np.float32([0.1, 0.3, 0.2]), **common)
    v1 = {k: v for k, v in common.items() if not k.startswith("pregrasp")}  # a v1 shard: no pregrasp
    np.savez(shards / shard_name("comp/bottle/0000", 0), object_id=np.array("comp/bottle/0000"),
             q1=np.float32([0.05, 0.02, 0.04]), **v1)
    np.savez(shards / shard_name("comp/mug/0000", 0), format=np.array(FORMAT), object_id=np.array("comp/mug/0000"),
             error=np.array("a bad mesh"), stats=np.array([0, 0, 0]))  # no grasps: not drawn
    out = dataset_picture(tmp_path, tmp_path / "look.png", scenes=8)
    # one per family in name order (comp/bottle, prim/box), each with its highest-Q1 grasp
    assert [(s["object_id"], s["q1"]) for s in out["scenes"]] == [("comp/bottle/0000", 0.05), ("prim/box/0000", 0.3)]
    from PIL import Image

    img = np.asarray(Image.open(tmp_path / "look.png"))
    assert img.shape == (480, 2 * 640, 3) and img.std() > 5  # two tiles, not blank
    # newest: the scenes written last, newest first, whatever their family (the mug's, newest, has no grasps)
    for k, oid in enumerate(["prim/box/0000", "comp/bottle/0000", "comp/mug/0000"]):
        os.utime(shards / shard_name(oid, 0), (1_000_000 + k, 1_000_000 + k))
    out = dataset_picture(tmp_path, tmp_path / "new.png", scenes=1, newest=True)
    assert [s["object_id"] for s in out["scenes"]] == ["comp/bottle/0000"]
    out = dataset_picture(tmp_path, tmp_path / "new.png", scenes=8, newest=True)
    assert [s["object_id"] for s in out["scenes"]] == ["comp/bottle/0000", "prim/box/0000"]
    with pytest.raises(ValueError, match="no scene with grasps"):
        empty = tmp_path / "empty"
        (empty / "shards").mkdir(parents=True)
        dataset_picture(empty, tmp_path / "none.png")


def test_parts_split_the_scenes_and_stop_when_asked(tmp_path):
    """``part=(i, n)`` takes the scenes of the objects whose place is i mod n, so n processes share a run and
    together write each scene once; ``should_stop`` ends a part before its next scene; a shard's temporary file
    left by a killed run is removed (that scene is redone) and never read as a shard."""
    from models.tools.synth import part_of, scenes
    from models.tools.synth import run_synth as synthesise

    # an object's resting poses stay with one part (its collision decomposition is computed once)
    three = [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 1), ("c", 2)]
    assert part_of(three, (0, 2)) == [("a", 0), ("c", 0), ("a", 1), ("a", 2), ("c", 1), ("c", 2)]
    assert part_of(three, (1, 2)) == [("b", 0), ("b", 1), ("b", 2)]
    assert part_of(three, (0, 1)) == three

    cfg = SynthConfig(split="validation", poses_per_object=2, grasps_per_scene=2, steps=5, max_objects=2, procs=1,
                      simulate=False)
    order = [shard_name(oid, k) for oid, k in scenes(cfg)]
    assert len(order) == 4
    shards = tmp_path / "shards"
    shards.mkdir()
    stale = shards / (order[2] + ".tmp.npz")
    stale.write_bytes(b"half a shard")
    assert load_dataset(tmp_path) == []  # the temporary file is not a shard
    asked = []
    out = synthesise(tmp_path, cfg, progress=False, part=(0, 2), should_stop=lambda: asked.append(1) or len(asked) > 1,
                     summary=False)
    assert out == {} and not stale.exists()
    assert sorted(p.name for p in shards.glob("*.npz")) == [order[0]]  # stopped before its second scene
    synthesise(tmp_path, cfg, progress=False, part=(0, 2), summary=False)
    assert sorted(p.name for p in shards.glob("*.npz")) == sorted(order[0::2])
    summary = synthesise(tmp_path, cfg, progress=False, part=(1, 2))
    assert sorted(p.name for p in shards.glob("*.npz")) == sorted(order) and summary["scenes"] == 4
    with pytest.raises(ValueError, match="part"):
        synthesise(tmp_path, cfg, progress=False, part=(2, 2))


def test_workers_share_one_run(tmp_path):
    """``workers=2`` (``dexgrasp synth --workers 2``): two processes, each with its own simulator, write every scene
    once, through the real referee; the card counts them all, and a re-run with one worker has nothing left to do."""
    from models.tools.synth import scenes

    cfg = SynthConfig(split="validation", poses_per_object=1, grasps_per_scene=4, steps=10, max_objects=3, procs=2,
                      workers=2)
    summary = run_synth(tmp_path, cfg, progress=False)
    names = sorted(p.name for p in (tmp_path / "shards").glob("*.npz"))
    assert names == sorted(shard_name(oid, k) for oid, k in scenes(cfg))
    assert summary["scenes"] == 3 and summary["grasps_optimised"] == 3 * 12
    assert all("error" not in r for r in load_dataset(tmp_path))
    before = {n: (tmp_path / "shards" / n).stat().st_mtime_ns for n in names}
    again = run_synth(tmp_path, SynthConfig(**{**cfg.__dict__, "workers": 1}), progress=False)
    assert again["scenes"] == 3
    assert {n: (tmp_path / "shards" / n).stat().st_mtime_ns for n in names} == before
    with pytest.raises(ValueError, match="workers"):
        run_synth(tmp_path, SynthConfig(**{**cfg.__dict__, "workers": 0}), progress=False)
