"""Extra rounds of ``optimize``, measured: every candidate of R rounds per validation object (complete
clouds, rounds r = 0..R-1 with seeds 0 + 7919 r, as ``OptimizeConfig.extra_rounds`` draws them) is run
through the referee of record (``fc_mocap``), then round policies are replayed on those verdicts: which
16 of the pooled candidates each policy keeps, how many hold, eta_np, and the optimiser time of the rounds
it runs. A paired comparison: every policy chooses among the same simulated candidates.

Run:
  .venv/bin/python bench/optimize_rounds.py run --objects 10 [--skip 10] --rounds 3 --out rounds.json   # resumable
  .venv/bin/python bench/optimize_rounds.py replay rounds.json [rounds_set_b.json] [--residual-weights 0,0.01]
  .venv/bin/python bench/optimize_rounds.py time --objects 10 [--only bowl/0001] [--code OTHER_CHECKOUT]
``time`` gives the optimiser-only time of one round per object (no simulation), from this checkout or
from ``--code`` (another checkout's ``models``, e.g. a ``git worktree`` of an earlier commit), to time
two versions alternately on one machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (name, extra rounds at most, Q1 threshold, how many must reach it; None: every object gets its rounds)
POLICIES: list[tuple[str, int, float | None, int]] = [
    ("one round", 0, None, 16),
    ("one more round when fewer than 16 reach Q1 0.15", 1, 0.15, 16),
    ("up to two more, when fewer than 16 reach Q1 0.15", 2, 0.15, 16),
    ("one more for every object", 1, None, 16),
    ("two more for every object", 2, None, 16),
    ("one more when fewer than 16 reach Q1 0.10", 1, 0.10, 16),
]


def replay(obj: dict, extra: int, min_q1: float | None, need: int, keep: int = 16, residual_per_n: float = 0.0) -> dict:
    """One object under one policy: the rounds it runs, and its kept candidates' verdicts. Ranked as the
    optimiser ranks: Q1 less ``residual_per_n`` x the squeeze residual (``OptimizeConfig.rank_residual_per_n``)."""
    import numpy as np
    import torch

    from models.proposers.optimize import rank_order

    def pooled(rs):
        return {k: np.concatenate([np.asarray(obj["rounds"][r][k], dtype=float) for r in rs])
                for k in ("major", "q1", "minor", "total", "ok", "pen", "residual")}

    rs = [0]
    for r in range(1, extra + 1):
        if r >= len(obj["rounds"]):
            raise ValueError(f"{obj['object']}: the policy needs {extra + 1} rounds, the file has {len(obj['rounds'])}")
        c = pooled(rs)
        if min_q1 is not None and int(((c["major"] < 8) & (c["q1"] >= min_q1)).sum()) >= need:
            break
        rs.append(r)
    c = pooled(rs)
    t = {k: torch.from_numpy(v) for k, v in c.items()}
    ii = rank_order(t["major"], t["q1"] - residual_per_n * t["residual"], t["minor"], t["total"])[:keep].numpy()  # the optimiser's order
    return {"success": float(c["ok"][ii].mean()), "eta_np": float((c["pen"][ii] < 0.005).mean()),
            "ok": int(c["ok"][ii].sum()), "time_s": float(sum(obj["rounds"][r]["time_s"] for r in rs)), "rounds": len(rs)}


def cmd_replay(files: list[str], residual_weights: list[float]) -> None:
    import numpy as np

    loaded = [json.loads(Path(f).read_text()) for f in files]
    sets = [d["objects"] if isinstance(d, dict) else d for d in loaded]
    out = []
    have = min(len(o["rounds"]) for objs in sets for o in objs)
    for (name, extra, min_q1, need), w in itertools.product(POLICIES, residual_weights):
        if extra + 1 > have:  # the files hold fewer rounds than this policy may run
            continue
        row: dict = {"policy": name, "rank_residual_per_n": w}
        for f, objs in zip(files, sets):
            per = [replay(o, extra, min_q1, need, residual_per_n=w) for o in objs]
            t = sum(p["time_s"] for p in per)
            row[Path(f).name] = {
                "sim_success": round(float(np.mean([p["success"] for p in per])), 4),
                "eta_np": round(float(np.mean([p["eta_np"] for p in per])), 4),
                "optimizer_s": round(t, 1), "valid_per_min": round(60 * sum(p["ok"] for p in per) / t, 1),
                "objects_with_extra_rounds": sum(p["rounds"] > 1 for p in per),
                "per_object": {o["object"]: round(p["success"], 4) for o, p in zip(objs, per)},
            }
        out.append(row)
    print(json.dumps({"protocol": "fc_mocap (referee of record)", "policies": out}, indent=1))


def _objects(n: int, skip: int, split: str = "validation") -> list[str]:
    from bench.proposer_quality import pick_objects

    return pick_objects(split, skip + n)[skip:]


def cmd_run(a: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from tqdm import tqdm

    from bench.foundation import hardware
    from models import objects
    from models.core.geometry import ObjectCloud
    from models.grasp import grasps_to_tensors
    from models.hands import get_hand
    from models.physics.quality import grasp_quality
    from models.proposers import get_proposer
    from models.proposers.base import Problem
    from models.proposers.optimize import _ROUND_SEED_STRIDE, OptimizeConfig
    from sim_worker.arrays import GraspArrays
    from sim_worker.config import SimConfig
    from sim_worker.parallel import SimPool
    from sim_worker.scene import object_from_mesh

    out = Path(a.out)
    done = json.loads(out.read_text()) if out.exists() else {
        "hardware": hardware(), "protocol": "fc_mocap (referee of record)", "split": a.split, "cloud": "complete",
        "steps": a.steps, "rounds": a.rounds, "objects": []}
    seen = {o["object"] for o in done["objects"]}
    prop = get_proposer("optimize", cfg=OptimizeConfig(steps=a.steps, extra_rounds=0))
    hand = get_hand("shadow", dtype="float64")
    with SimPool("mujoco", procs=a.procs, cfg=SimConfig()) as pool:
        for oid in tqdm([o for o in _objects(a.objects, a.skip, a.split) if o not in seen], desc="objects"):
            mesh = objects.load_mesh(oid)
            dp, dn = objects.complete_cloud(mesh, n=20000, seed=1)
            surface = ObjectCloud(torch.tensor(dp, dtype=torch.float64), torch.tensor(dn, dtype=torch.float64))
            p, n = objects.complete_cloud(mesh, n=1024, seed=0)
            sim_obj = object_from_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), source=oid)
            rounds = []
            for r in range(a.rounds):
                problem = Problem(torch.tensor(p), torch.tensor(n), 16, None, _ROUND_SEED_STRIDE * r, single_view=False)
                t0 = time.perf_counter()
                pool_r = prop._round([problem], None, None, t0)[0][0]
                dt = time.perf_counter() - t0
                assert pool_r.q1 is not None and pool_r.minor is not None
                pos, rot, q = grasps_to_tensors(pool_r.grasps, dtype=torch.float64)
                per = grasp_quality(hand, pos, rot, q, surface)
                sim = pool.validate(sim_obj, [GraspArrays.from_grasp(g) for g in pool_r.grasps], diverged_fails=True)
                rounds.append({"time_s": round(dt, 3), "major": pool_r.major.tolist(), "q1": pool_r.q1.tolist(),
                               "residual": [g.scores["squeeze_residual_n"] for g in pool_r.grasps],
                               "minor": pool_r.minor.tolist(), "total": pool_r.total.tolist(),
                               "ok": [bool(s["success"]) for s in sim], "pen": per["max_penetration_m"].tolist()})
            done["objects"].append({"object": oid, "rounds": rounds})
            out.write_text(json.dumps(done))  # after every object: a stopped run resumes


def cmd_time(a: argparse.Namespace) -> None:
    import dataclasses

    import torch

    from models import objects
    from models.proposers import get_proposer
    from models.proposers.optimize import OptimizeConfig

    kw = {"extra_rounds": 0} if "extra_rounds" in {f.name for f in dataclasses.fields(OptimizeConfig)} else {}
    prop = get_proposer("optimize", cfg=OptimizeConfig(steps=a.steps, **kw))
    per = {}
    for oid in _objects(a.objects, a.skip, a.split):
        if a.only and a.only not in oid:
            continue
        p, n = objects.complete_cloud(objects.load_mesh(oid), n=1024, seed=0)
        t0 = time.perf_counter()
        prop.propose(torch.tensor(p), torch.tensor(n), 16, seed=0, single_view=False)
        per[oid] = round(time.perf_counter() - t0, 2)
    print(json.dumps({"code": str(a.code or ROOT), "optimizer_s": per, "total_s": round(sum(per.values()), 2)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="every candidate of R rounds through the referee (resumable)")
    t = sub.add_parser("time", help="optimiser-only time of one round per object")
    for p in (r, t):
        p.add_argument("--objects", type=int, default=10)
        p.add_argument("--skip", type=int, default=0, help="leave out the first N validation objects (a second set)")
        p.add_argument("--steps", type=int, default=200)
        p.add_argument("--split", choices=["validation", "test"], default="validation", help="test: report only, never tune")
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--procs", type=int, default=2)
    r.add_argument("--out", required=True)
    t.add_argument("--only", default="", help="only the objects whose id contains this")
    t.add_argument("--code", default=None, help="a checkout whose models/ to time (default: this one)")
    p = sub.add_parser("replay", help="the round policies on a run's verdicts")
    p.add_argument("files", nargs="+")
    p.add_argument("--residual-weights", default="0,0.01", help="comma-separated rank_residual_per_n values to replay")
    a = ap.parse_args()
    sys.path.insert(0, str(Path(a.code).resolve() if getattr(a, "code", None) else ROOT))
    if a.cmd == "run":
        cmd_run(a)
    elif a.cmd == "time":
        cmd_time(a)
    else:
        cmd_replay(a.files, [float(x) for x in a.residual_weights.split(",")])


if __name__ == "__main__":
    main()
