"""Which of a synthesis scene's candidates to referee: the optimiser's best ``grasps_per_scene`` (until session 15)
or every candidate that passes the penetration filters, in rank order, until ``grasps_per_scene`` pass (now,
``models.tools.synth``). Both on the same candidates of each scene (train objects, one resting pose, ``optimize``
with 3 x 32 candidates, no extra round), the object's CoACD decomposition made before either is timed.

  .venv/bin/python bench/synth_selection.py --objects 10 --out docs/bench/synth_selection.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=10)
    ap.add_argument("--sample-seed", type=int, default=5, help="which train objects (random.sample seed)")
    ap.add_argument("--grasps", type=int, default=32)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import numpy as np
    import torch
    from tqdm import tqdm

    from bench.foundation import hardware
    from models import objects
    from models.core.geometry import ObjectCloud, Plane
    from models.grasp import grasps_to_tensors
    from models.hands import get_hand
    from models.physics.quality import grasp_quality
    from models.proposers.optimize import OptimizeConfig, OptimizeProposer
    from sim_worker.synth import pool_filter

    ids = random.Random(a.sample_seed).sample([e.id for e in objects.objects("train")], a.objects)
    hand = get_hand("shadow", dtype="float64")
    rows = []
    with pool_filter(2) as sim:
        for oid in tqdm(ids, desc="scenes", unit="scene"):
            mesh = objects.load_mesh(oid)
            V, F = np.asarray(mesh.vertices), np.asarray(mesh.faces)
            _, pose, _ = objects.place_on_table(mesh, seed=0)
            rot, trans = pose[:3, :3], pose[:3, 3]
            plane = Plane(torch.tensor(rot.T @ np.array([0.0, 0.0, 1.0]), dtype=torch.float32), float(trans[2]))
            p, n = objects.complete_cloud(mesh, n=1024, seed=0)
            dp, dn = objects.complete_cloud(mesh, n=12000, seed=99)
            surf = ObjectCloud(torch.tensor(dp, dtype=torch.float64), torch.tensor(dn, dtype=torch.float64))
            prop = OptimizeProposer(cfg=OptimizeConfig(steps=a.steps, extra_rounds=0, oversample=1.0))
            t = time.perf_counter()
            res = prop.propose(torch.tensor(p), torch.tensor(n), 3 * a.grasps, plane=plane, seed=0)
            opt_s = time.perf_counter() - t
            pos, rotm, q = grasps_to_tensors(res.grasps, dtype=torch.float64)
            per = grasp_quality(hand, pos, rotm, q, surf, table=(plane.normal.double(), plane.offset))
            idx = np.nonzero(((per["max_penetration_m"] < 0.005) & (per["table_penetration_m"] < 0.01)).numpy())[0].tolist()
            if idx:  # the decomposition (CoACD, cached) before either policy is timed
                sim(V, F, [res.grasps[idx[0]]], oid)
            t = time.perf_counter()
            best = [i for i in idx if i < a.grasps]
            old_valid = int(sum(sim(V, F, [res.grasps[i] for i in best], oid))) if best else 0
            old_s = time.perf_counter() - t
            t = time.perf_counter()
            passed, refereed = 0, 0
            for lo in range(0, len(idx), a.chunk):
                chunk = idx[lo:lo + a.chunk]
                passed += int(sum(sim(V, F, [res.grasps[i] for i in chunk], oid)))
                refereed += len(chunk)
                if passed >= a.grasps:
                    break
            new_s = time.perf_counter() - t
            rows.append({"object": oid, "opt_s": round(opt_s, 2), "kept": len(idx),
                         "best_only": {"refereed": len(best), "valid": old_valid, "referee_s": round(old_s, 2)},
                         "every_candidate": {"refereed": refereed, "valid": min(a.grasps, passed), "referee_s": round(new_s, 2)}})
    opt = sum(r["opt_s"] for r in rows)
    total = {}
    for k in ("best_only", "every_candidate"):
        v, s = sum(r[k]["valid"] for r in rows), sum(r[k]["referee_s"] for r in rows)
        total[k] = {"valid": v, "refereed": sum(r[k]["refereed"] for r in rows), "referee_s": round(s, 1),
                    "valid_per_min_opt_and_referee": round(60 * v / (opt + s), 2)}
    out = {"hardware": hardware(), "protocol": "fc_mocap (referee of record)", "objects": ids, "grasps": a.grasps,
           "steps": a.steps, "optimizer_s_total": round(opt, 1), "total": total, "per_scene": rows}
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(total, indent=1))


if __name__ == "__main__":
    main()
