"""A referee on the cloud alone, measured against the referee of record. For each object, round ``r`` of
``optimize``'s candidates (as ``bench/optimize_rounds.py run`` draws them: seeds 0 + 7919 r) is run through the
fc_mocap protocol twice: on the object's mesh (the referee of record; its verdicts are read from a rounds file
when given and checked to be the same candidates) and on a proxy built from the 1 024-point cloud the optimiser
saw (``sim_worker.scene.object_from_cloud``: one sphere per point). Reports agreement and what ranking the
proxy's verdicts first would keep.

  .venv/bin/python bench/proxy_referee.py run --objects 10 [--skip 10] [--split test] --out proxy.json   # resumable
  .venv/bin/python bench/proxy_referee.py report proxy.json [more.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cmd_run(a: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from tqdm import tqdm

    from bench.foundation import hardware
    from bench.proposer_quality import pick_objects
    from models import objects
    from models.proposers import get_proposer
    from models.proposers.base import Problem
    from models.proposers.optimize import _ROUND_SEED_STRIDE, OptimizeConfig
    from sim_worker.arrays import GraspArrays
    from sim_worker.config import SimConfig, ValidationConfig
    from sim_worker.parallel import SimPool
    from sim_worker.scene import object_from_cloud, object_from_mesh

    out = Path(a.out)
    done = json.loads(out.read_text()) if out.exists() else {
        "hardware": hardware(), "protocol": "fc_mocap (referee of record) and the same protocol on the cloud proxy",
        "split": a.split, "steps": a.steps, "round": a.round, "objects": []}
    seen = {o["object"] for o in done["objects"]}
    prop = get_proposer("optimize", cfg=OptimizeConfig(steps=a.steps, extra_rounds=0))
    kw = json.loads(a.proxy_kwargs) if a.proxy_kwargs else {}
    done.setdefault("proxy_kwargs", kw)
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(SimPool("mujoco", procs=a.procs, cfg=SimConfig()))
        pools = {ds: stack.enter_context(SimPool("mujoco", procs=a.procs, cfg=SimConfig(
            validation=ValidationConfig(disturb_s=ds, check_every_s=min(0.2, ds))))) for ds in a.disturb_s}
        for oid in tqdm([o for o in pick_objects(a.split, a.skip + a.objects)[a.skip:] if o not in seen], desc="objects"):
            mesh = objects.load_mesh(oid)
            p, n = objects.complete_cloud(mesh, n=1024, seed=0)
            problem = Problem(torch.tensor(p), torch.tensor(n), 16, None, _ROUND_SEED_STRIDE * a.round, single_view=False)
            t0 = time.perf_counter()
            pr = prop._round([problem], None, None, t0)[0][0]
            t_opt = time.perf_counter() - t0
            grasps = [GraspArrays.from_grasp(g) for g in pr.grasps]
            proxies, t_proxy = {}, {}
            for ds in a.disturb_s:
                t0 = time.perf_counter()
                res = pools[ds].validate(object_from_cloud(p, n, **kw), grasps, diverged_fails=True)
                t_proxy[str(ds)] = round(time.perf_counter() - t0, 2)
                proxies[str(ds)] = [{k: s[k] for k in ("success", "phase_translation_m", "phase_rotation_deg", "passed", "reason")}
                                    for s in res]
            truth = pool.validate(object_from_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), source=oid),
                                  grasps, diverged_fails=True)
            done["objects"].append({
                "object": oid, "optimizer_s": round(t_opt, 2), "proxy_s": t_proxy,
                "major": pr.major.tolist(), "q1": pr.q1.tolist(), "minor": pr.minor.tolist(), "total": pr.total.tolist(),
                "residual": [g.scores["squeeze_residual_n"] for g in pr.grasps],
                "ok": [bool(s["success"]) for s in truth],
                "truth": [{k: s[k] for k in ("phase_translation_m", "phase_rotation_deg", "passed", "reason")} for s in truth],
                "proxies": proxies,
            })
            out.write_text(json.dumps(done))


def _criteria(o: dict) -> dict:
    """Per candidate, each proxy verdict (bool arrays): every disturbance duration run, and the approach and
    squeeze alone (the object within 1 cm and 10 degrees of its start after the squeeze, from any run)."""
    import numpy as np

    prox = o.get("proxies") or {"2.0": [dict(p, success=k) for p, k in zip(o["proxy"], o["proxy_ok"])]}  # first file's layout
    out = {f"proxy, {ds} s per direction": np.array([bool(p["success"]) for p in v]) for ds, v in prox.items()}
    any_run = next(iter(prox.values()))
    out["proxy, approach and squeeze only"] = np.array([
        p["phase_translation_m"].get("squeeze", 1.0) < 0.01 and p["phase_rotation_deg"].get("squeeze", 180.0) < 10.0
        for p in any_run])
    return out


def cmd_report(files: list[str]) -> None:
    import numpy as np
    import torch

    from models.proposers.optimize import rank_order

    objs = [o for f in files for o in json.loads(Path(f).read_text())["objects"]]
    names = list(_criteria(objs[0]))
    print(f"{len(objs)} objects, {sum(len(o['ok']) for o in objs)} candidates; referee of record passes "
          f"{np.mean(np.concatenate([o['ok'] for o in objs])):.3f}")
    base = []
    per = {k: [] for k in names}
    conf = {k: np.zeros(4, dtype=int) for k in names}
    for o in objs:
        ok = np.array(o["ok"], dtype=bool)
        t = {k: torch.tensor(o[k], dtype=torch.float64) for k in ("major", "q1", "minor", "total", "residual")}
        order = rank_order(t["major"], t["q1"] - 0.01 * t["residual"], t["minor"], t["total"]).numpy()
        base.append(ok[order[:16]].mean())
        for k, px in _criteria(o).items():
            conf[k] += [int((ok & px).sum()), int((~ok & px).sum()), int((ok & ~px).sum()), int((~ok & ~px).sum())]
            first = np.concatenate([order[px[order]], order[~px[order]]])
            per[k].append(ok[first[:16]].mean())
    print(f"top-16 success, the optimiser's order: {np.mean(base):.3f}")
    for k in names:
        tp, fp, fn, tn = conf[k]
        print(f"{k:38s} top-16 passing first {np.mean(per[k]):.3f}; agreement {(tp + tn) / (tp + fp + fn + tn):.3f}, "
              f"precision {tp / max(tp + fp, 1):.3f}, recall {tp / max(tp + fn, 1):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--objects", type=int, default=10)
    r.add_argument("--skip", type=int, default=0)
    r.add_argument("--split", choices=["validation", "test"], default="validation")
    r.add_argument("--steps", type=int, default=200)
    r.add_argument("--round", type=int, default=0)
    r.add_argument("--procs", type=int, default=2)
    r.add_argument("--disturb-s", type=float, nargs="+", default=[0.2, 2.0], help="proxy disturbance durations (s)")
    r.add_argument("--proxy-kwargs", default="", help="JSON keyword arguments of object_from_cloud")
    r.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("files", nargs="+")
    a = ap.parse_args()
    if a.cmd == "run":
        cmd_run(a)
    else:
        cmd_report(a.files)


if __name__ == "__main__":
    main()
