"""Throughput of the ``optimize`` proposer on a workload of objects: referee-valid grasps per minute of wall
time on this machine, with the objects shared by 1, 2, ... processes (``--jobs 1 2``), measured in one run on
the same objects.

One job is what ``bench/optimize_quality.py`` times (one object at a time, the optimiser on every torch thread,
the check on ``--procs`` simulator processes). With N jobs, N processes share the objects, each on
``cores // N`` torch threads with a check of ``procs // N`` simulator processes (at least 1), taking the next
object whenever it is free (a queue: a slow object does not leave a core idle). The optimiser's small batched
ops gain less from a second thread than a second object gains from a core of its own. Latency per object does not improve; the rate does. Timed: from the moment every job is ready
(imports done, its check started) until the last object's grasps are back. Then, untimed, every grasp goes to
the referee of record (``fc_mocap``, on ``--procs`` processes) and a grasp counts when it holds there
(as ``sim_valid_grasps_per_min_optimizer_time`` of ``optimize_quality.py``).

Run: ``.venv/bin/python bench/optimize_throughput.py --objects 10 --steps 200 --jobs 1 2 [--skip 10] [--split test]
[--set KEY=VALUE] [--no-check] [--out FILE]``. Prints (and with ``--out`` writes) one JSON object with the hardware.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _job(jobs: int, a: dict[str, Any], tasks: Any, ready: Any, go: Any, out: Any) -> None:
    """One job: objects taken from ``tasks`` (object id, cloud points, normals; None: no more) one after another,
    results (object, its grasps as :class:`GraspArrays`, optimiser seconds) onto ``out`` (between this run's own
    processes), then None."""
    import torch

    from bench.optimize_quality import parse_overrides
    from models.proposers import get_proposer
    from models.proposers.optimize import OptimizeConfig
    from sim_worker.arrays import GraspArrays
    from sim_worker.cloud_check import CloudCheck, CloudCheckConfig

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))
    with CloudCheck(CloudCheckConfig(procs=max(1, a["procs"] // jobs))) as check:
        if a["check"]:
            check.start()
        cfg = OptimizeConfig(steps=a["steps"], **parse_overrides(a["set"]))
        prop = get_proposer("optimize", device="cpu", cfg=cfg, check=check if a["check"] else None)
        ready.wait()
        go.wait()
        while (task := tasks.get()) is not None:
            oid, p, n = task
            t0 = time.perf_counter()
            res = prop.propose(torch.from_numpy(p), torch.from_numpy(n), a["grasps"], seed=0)
            out.put((oid, [GraspArrays.from_grasp(g) for g in res.grasps], time.perf_counter() - t0, list(res.rounds_held)))
    out.put(None)


def run_jobs(oids: list[str], jobs: int, a: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Wall seconds for ``jobs`` processes to optimise ``oids`` (each job takes the next object when it is free,
    so a slow object does not leave a core idle), and per object its grasps and optimiser seconds."""
    from tqdm import tqdm

    from models import objects

    ctx = mp.get_context("spawn")
    ready, go, out, tasks = ctx.Barrier(jobs + 1), ctx.Barrier(jobs + 1), ctx.Queue(), ctx.Queue()
    for oid in oids:  # the clouds are made before the clock starts, as a caller would send them
        p, n = objects.complete_cloud(objects.load_mesh(oid), n=a["points"], seed=0)
        tasks.put((oid, p, n))
    for _ in range(jobs):
        tasks.put(None)
    procs = [ctx.Process(target=_job, args=(jobs, a, tasks, ready, go, out)) for _ in range(jobs)]
    for p in procs:
        p.start()
    ready.wait(timeout=600)  # every job has its check running (a job that died first breaks the barrier: an error, not a hang)
    t0 = time.perf_counter()
    go.wait(timeout=60)
    results: dict[str, Any] = {}
    done = 0
    with tqdm(total=len(oids), desc=f"{jobs} job(s)", unit="object") as bar:
        while done < jobs:
            try:
                item = out.get(timeout=10)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    raise RuntimeError("every job has exited before finishing its objects") from None
                continue
            if item is None:
                done += 1
                continue
            results[item[0]] = {"grasps": item[1], "opt_s": item[2], "rounds_held": item[3]}
            bar.update(1)
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a job exited with {p.exitcode}")
    return wall, results


def main() -> None:
    import numpy as np

    from bench.foundation import hardware
    from bench.optimize_quality import parse_overrides, pick_objects
    from models import objects
    from sim_worker.config import SimConfig
    from sim_worker.parallel import SimPool
    from sim_worker.scene import object_from_mesh

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=10)
    ap.add_argument("--skip", type=int, default=0, help="leave out the first N objects (a second, disjoint set)")
    ap.add_argument("--split", choices=["validation", "test"], default="validation")
    ap.add_argument("--grasps", type=int, default=16)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--procs", type=int, default=2, help="simulator processes in all (the checks', shared by the jobs; the referee's)")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="process counts to measure, in this order")
    ap.add_argument("--set", action="append", default=[], help="OptimizeConfig override, as optimize_quality.py: --set extra_rounds=0")
    ap.add_argument("--no-check", dest="check", action="store_false",
                    help="no simulated check on the cloud (the optimiser's own ranking, as synthesis runs it)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    a = ap.parse_args()
    if any(j < 1 for j in a.jobs):
        ap.error("--jobs: every count must be >= 1")
    oids = pick_objects(a.skip + a.objects, a.split)[a.skip:]
    parse_overrides(a.set)  # a bad override fails here, not in every job
    settings = {"steps": a.steps, "grasps": a.grasps, "points": a.points, "procs": a.procs, "check": a.check, "set": a.set}
    runs = []
    with SimPool("mujoco", procs=a.procs, cfg=SimConfig()) as pool:
        for jobs in a.jobs:
            wall, res = run_jobs(oids, jobs, settings)
            valid, per_object = 0, []
            for oid in oids:  # untimed: the referee of record on every grasp
                mesh = objects.load_mesh(oid)
                sim_obj = object_from_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), source=oid)
                arrays = res[oid]["grasps"]
                ok = sum(bool(r["success"]) for r in pool.validate(sim_obj, arrays, diverged_fails=True))
                valid += ok
                per_object.append({"object": oid, "sim_ok": ok, "grasps": len(arrays), "opt_s": round(res[oid]["opt_s"], 2),
                                   "rounds_held": res[oid]["rounds_held"]})
            n = sum(r["grasps"] for r in per_object)
            runs.append({"jobs": jobs, "torch_threads_per_job": max(1, (os.cpu_count() or 1) // jobs),
                         "check_procs_per_job": max(1, a.procs // jobs), "wall_s": round(wall, 1),
                         "sim_valid": valid, "grasps": n, "sim_success": round(valid / max(1, n), 4),
                         "sim_valid_grasps_per_min_wall": round(60 * valid / wall, 1),
                         "optimizer_s_sum": round(sum(r["opt_s"] for r in per_object), 1), "per_object": per_object})
    out = {"hardware": hardware(), "protocol": "fc_mocap (referee of record), complete clouds", "split": a.split,
           "objects": len(oids), "skipped_first": a.skip, **settings, "runs": runs,
           "rate_ratio_to_first": [round(r["sim_valid_grasps_per_min_wall"] / max(1e-9, runs[0]["sim_valid_grasps_per_min_wall"]), 2)
                                   for r in runs]}
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
