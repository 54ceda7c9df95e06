"""Optimiser variants on the same candidates: one round of ``optimize`` per validation object (complete
clouds, 48 candidates for 16 grasps, round seed 0), once per variant, every candidate through the referee
of record (``fc_mocap``). A variant is a set of ``OptimizeConfig`` overrides (``bench/optimize_quality.py
--set`` syntax). Variants that change only the finishing (``squeeze.*``: snap, squeeze, pregrasp) share
the descent, so they finish the very same poses: a paired comparison, free of the seed-to-seed noise of
whole runs. Others (init, energy) are paired by seed only.

Run (resumable; the file keeps every verdict)::

  .venv/bin/python bench/optimize_variants.py --out v.json --objects 10 [--skip 10] \\
      --variant shipped= --variant snap3=squeeze.snap_target_m=0.003 \\
      --variant start_only='squeeze.pregrasp_path_samples=0;squeeze.snap_target_m=0.001'

Reports, per variant and object, how many of all candidates hold, and how many of the 16 the optimiser's
ranking keeps (its order without the simulated cloud check of ``sim_worker/cloud_check.py``, which the
shipped proposer adds), and the optimiser's time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from tqdm import tqdm

from bench.foundation import hardware
from bench.optimize_quality import parse_overrides, pick_objects

KEEP = 16


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``name=k=v;k=v`` -> (name, ["k=v", ...]); ``name=`` is the shipped configuration."""
    name, _, rest = text.partition("=")
    if not name:
        raise ValueError(f"--variant {text!r}: give it a name, e.g. snap3=squeeze.snap_target_m=0.003")
    return name, [x for x in rest.split(";") if x]


def ranked_held(ok: list[bool], major: list[float], q1: list[float], minor: list[float], total: list[float],
                residual: list[float], residual_per_n: float) -> int:
    """How many of the ``KEEP`` candidates the optimiser ranks first hold (``rank_order``, as ``optimize``)."""
    from models.proposers.optimize import rank_order

    t = {k: torch.tensor(v, dtype=torch.float64) for k, v in
         {"major": major, "q1": q1, "minor": minor, "total": total, "residual": residual}.items()}
    ii = rank_order(t["major"], t["q1"] - residual_per_n * t["residual"], t["minor"], t["total"])[:KEEP].numpy()
    return int(np.asarray(ok)[ii].sum())


def summary(done: dict) -> dict:
    """Per variant: candidates held, ranked 16 held, optimiser time; over the objects every variant has."""
    names = list(done["variants"])
    objs = [o for o in done["objects"] if all(v in done["objects"][o] for v in names)]
    out = {}
    for v in names:
        rows = [done["objects"][o][v] for o in objs]
        held = sum(sum(r["ok"]) for r in rows)
        cands = sum(len(r["ok"]) for r in rows)
        kept = sum(r["ranked_held"] for r in rows)
        out[v] = {"overrides": done["variants"][v], "candidates_held": f"{held} of {cands}",
                  "ranked_16_held": f"{kept} of {KEEP * len(rows)}",
                  "ranked_16_success": round(kept / max(1, KEEP * len(rows)), 4),
                  "optimizer_s": round(sum(r["time_s"] for r in rows), 1),
                  "per_object_held": {o: sum(done["objects"][o][v]["ok"]) for o in objs}}
    # the finishing keeps the palm where the descent left it: variants with the same digests on an object
    # finished the same poses (paired); different digests mean their descents differed
    same = {o: len({done["objects"][o][v].get("palm_digest") for v in names}) == 1 for o in objs}
    return {"objects": len(objs), "same_palm_poses_in_every_variant": f"{sum(same.values())} of {len(objs)} objects",
            "variants": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--variant", action="append", required=True, help="name=k=v;k=v (name= : shipped)")
    ap.add_argument("--objects", type=int, default=10)
    ap.add_argument("--skip", type=int, default=0, help="leave out the first N validation objects (a second set)")
    ap.add_argument("--only", default="", help="only the objects whose id contains one of these (comma-separated)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--summary", action="store_true", help="print the file's summary and stop")
    a = ap.parse_args()
    variants = dict(parse_variant(v) for v in a.variant)
    done = json.loads(a.out.read_text()) if a.out.exists() else {
        "hardware": hardware(), "protocol": "fc_mocap (referee of record)", "split": "validation", "cloud": "complete",
        "steps": a.steps, "variants": {}, "objects": {}}
    if done["steps"] != a.steps:
        raise SystemExit(f"{a.out} was run with --steps {done['steps']}; use another --out")
    for name, items in variants.items():
        if done["variants"].setdefault(name, items) != items:
            raise SystemExit(f"{a.out}: variant {name!r} was run as {done['variants'][name]}, not {items}")
    if a.summary:
        print(json.dumps(summary(done), indent=1))
        return

    from models import objects
    from models.proposers import get_proposer
    from models.proposers.base import Problem
    from models.proposers.optimize import OptimizeConfig
    from sim_worker.arrays import GraspArrays
    from sim_worker.config import SimConfig
    from sim_worker.parallel import SimPool
    from sim_worker.scene import object_from_mesh

    ids = pick_objects(a.skip + a.objects)[a.skip:]
    if a.only:
        ids = [o for o in ids if any(s in o for s in a.only.split(","))]
    todo = [(o, v) for o in ids for v in variants if v not in done["objects"].get(o, {})]
    with SimPool("mujoco", procs=a.procs, cfg=SimConfig()) as pool:
        for oid, name in tqdm(todo, desc="object x variant"):
            mesh = objects.load_mesh(oid)
            p, n = objects.complete_cloud(mesh, n=1024, seed=0)
            cfg = OptimizeConfig(**{"steps": a.steps, "extra_rounds": 0, **parse_overrides(variants[name])})  # a variant may set steps
            prop = get_proposer("optimize", cfg=cfg)
            problem = Problem(torch.tensor(p), torch.tensor(n), KEEP, None, 0, single_view=False)
            t0 = time.perf_counter()
            cand = prop._round([problem], None, None, t0)[0][0]
            dt = time.perf_counter() - t0
            assert cand.q1 is not None and cand.minor is not None
            sim_obj = object_from_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), source=oid)
            sim = pool.validate(sim_obj, [GraspArrays.from_grasp(g) for g in cand.grasps], diverged_fails=True)
            ok = [bool(s["success"]) for s in sim]
            residual = [float(g.scores["squeeze_residual_n"]) for g in cand.grasps]
            palms = np.round([list(g.pose.position) for g in cand.grasps], 5)
            palms = palms[np.lexsort(palms.T[::-1])]  # as a set: the ranking may order the same poses differently
            row = {"ok": ok, "time_s": round(dt, 2), "palm_digest": hashlib.sha1(palms.tobytes()).hexdigest()[:12],
                   "ranked_held": ranked_held(ok, cand.major.tolist(), cand.q1.tolist(), cand.minor.tolist(),
                                              cand.total.tolist(), residual, cfg.rank_residual_per_n)}
            done["objects"].setdefault(oid, {})[name] = row
            a.out.write_text(json.dumps(done))  # after every object and variant: a stopped run resumes
            tqdm.write(f"{oid} {name}: {sum(ok)} of {len(ok)} hold, ranked 16: {row['ranked_held']}")
    print(json.dumps(summary(done), indent=1))


if __name__ == "__main__":
    main()
