"""Latency and throughput of POST /v1/grasps over real HTTP.

Starts ``dexgrasp serve`` (uvicorn, its own process) on a free port, warms it up, then:
  1. latency: ``--requests`` sequential requests (16 grasps, a 2048-point object cloud of a
     validation object), p50/p99 end to end and per pipeline stage;
  2. throughput: requests/s with 1, 4 and 16 concurrent clients (each sends ``--per-client``),
     and the batch sizes the server formed.
Prints the hardware and writes JSON (default docs/bench/service.json).

    .venv/bin/python bench/service.py --requests 100 [--method dgtr --out docs/bench/service_dgtr.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

from bench.foundation import hardware
from service.client import GraspClient


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def cloud(n: int) -> np.ndarray:
    from models.objects import complete_cloud, list_objects, load_mesh

    obj = next(r for r in list_objects("validation") if r["family"] == "cylinder")
    pts, _ = complete_cloud(load_mesh(obj["id"]), n, seed=0)
    return np.asarray(pts, dtype=np.float32) + np.array([0.5, 0.0, 0.8], dtype=np.float32)


def run_clients(url: str, pts: np.ndarray, clients: int, per_client: int, grasps: int, method: str = "auto") -> dict[str, float]:
    """``clients`` threads, each sending ``per_client`` requests back to back."""
    done: list[float] = []
    batches: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        cl = GraspClient(url, timeout_s=600, retries=8)
        for j in range(per_client):
            t = time.perf_counter()
            try:
                r = cl.propose(pts, num_grasps=grasps, seed=k * 100 + j, method=method)
            except Exception as e:  # counted, reported
                with lock:
                    errors.append(str(e))
                continue
            with lock:
                done.append((time.perf_counter() - t) * 1e3)
                batches.append(r.timings_ms.get("batch_size", 1.0))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {
        "clients": clients, "requests": len(done), "errors": len(errors), "wall_s": wall,
        "requests_per_s": len(done) / wall, "grasps_per_s": len(done) * grasps / wall,
        "latency_p50_ms": pct(done, 50), "latency_p99_ms": pct(done, 99),
        "mean_batch_size": statistics.fmean(batches) if batches else float("nan"),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--per-client", type=int, default=4)
    ap.add_argument("--points", type=int, default=2048)
    ap.add_argument("--grasps", type=int, default=16)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--method", default="auto", help="proposer: auto, fast, optimize, dgtr")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench" / "service.json"))
    a = ap.parse_args()

    port = free_port()
    env = {**os.environ, "DEXGRASP_PORT": str(port), "DEXGRASP_HOST": "127.0.0.1", "DEXGRASP_MAX_QUEUE": "256",
           "DEXGRASP_LOG_LEVEL": "warning", "DEXGRASP_DEFAULT_TIMEOUT_MS": "120000"}
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    client = GraspClient(url, timeout_s=600, retries=8)
    try:
        client.wait_ready(300)
        pts = cloud(a.points)
        for i in range(3):  # warm-up
            client.propose(pts, num_grasps=a.grasps, seed=1000 + i, method=a.method)
        hw: dict[str, object] = {**hardware(), "load_avg_1m_at_start": os.getloadavg()[0]}
        print(f"hardware: {hw}", flush=True)

        lat: list[float] = []
        stages: dict[str, list[float]] = {}
        for i in range(a.requests):
            t = time.perf_counter()
            r = client.propose(pts, num_grasps=a.grasps, seed=i, method=a.method)
            lat.append((time.perf_counter() - t) * 1e3)
            for k, v in r.timings_ms.items():
                if k.endswith("_ms"):
                    stages.setdefault(k, []).append(v)
            if (i + 1) % 10 == 0:
                print(f"  latency {i + 1}/{a.requests}: p50 {pct(lat, 50):.0f} ms", flush=True)
        latency = {
            "requests": a.requests, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "mean_ms": statistics.fmean(lat),
            "stages_p50_ms": {k: pct(v, 50) for k, v in stages.items()},
            "stages_p99_ms": {k: pct(v, 99) for k, v in stages.items()},
        }
        print(json.dumps(latency, indent=1), flush=True)

        throughput = {}
        for c in [int(x) for x in a.concurrency.split(",")]:
            throughput[str(c)] = run_clients(url, pts, c, a.per_client, a.grasps, a.method)
            print(json.dumps(throughput[str(c)]), flush=True)
        base = throughput.get("1", {}).get("requests_per_s")
        if base:
            for v in throughput.values():
                v["speedup_vs_1_client"] = v["requests_per_s"] / base
        report = {"hardware": hw, "points": a.points, "grasps": a.grasps, "method": a.method, "proposer": r.proposer,
                  "latency": latency, "throughput": throughput, "load_avg_1m_at_end": os.getloadavg()[0]}
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {a.out}")
    finally:
        proc.terminate()
        proc.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
