"""The rollout worker end to end: real redis-server, real MuJoCo, real worker processes.

Validate and execute jobs (with PNG keyframes) through the queue, batching of same-object jobs,
cancellation of a running simulation, simulator errors -> retries -> dead letter, objects from
content hashes, metrics, the CLI's refusals, SIGTERM within and past the grace period, and the
embedded system (its children die with their parent)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sim_worker.embedded import EmbeddedRedis, EmbeddedSystem
from sim_worker.jobs import JobQueue, JobStatus, MeshObject, PointsObject, PrimitiveObject
from sim_worker.worker import Worker, WorkerConfig

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "sim"
FAST = {"heartbeat_s": 0.3, "heartbeat_ttl_s": 2.0, "reclaim_idle_s": 2.0, "janitor_s": 0.3, "block_ms": 200}


def trust_doc(name: str = "box_pinch") -> dict[str, Any]:
    return json.loads((DATA / f"{name}.json").read_text())


def put_trust_object(q: JobQueue, doc: dict[str, Any]) -> str:
    prim = doc["primitive"]
    return q.put_object(PrimitiveObject(shape=prim["kind"], size=tuple(prim["size"])))


def cli_worker(url: str, ns: str, *extra: str, stderr: Any = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """``dexgrasp worker`` as a real child process, with short heartbeats."""
    args = [sys.executable, "-m", "sim_worker.cli", "worker", "--redis", url, "--namespace", ns,
            "--heartbeat-s", "0.3", "--heartbeat-ttl-s", "2.0", "--reclaim-after-s", "2.0", "--janitor-s", "0.3",
            "--block-ms", "200", *extra]
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def wait_for(pred: Any, timeout_s: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_workers(q: JobQueue, n: int, procs: list[subprocess.Popen[bytes]] | None = None) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        for p in procs or []:
            assert p.poll() is None, f"worker {p.pid} exited with {p.returncode}"
        w = q.workers()
        return w if len(w) >= n else None

    return list(wait_for(ready, 120, f"{n} workers"))


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except OSError:
        return False


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as r:
        yield r


@pytest.fixture(scope="module")
def q(server: EmbeddedRedis) -> Iterator[JobQueue]:
    with JobQueue(server.url, namespace="tw", ttl_s=600) as queue:
        yield queue


@pytest.fixture(scope="module")
def worker(server: EmbeddedRedis) -> Iterator[Worker]:
    """One in-process worker (thread) for the module's namespace."""
    w = Worker(server.url, WorkerConfig(namespace="tw", batch=4, metrics_port=0, **FAST))  # type: ignore[arg-type]
    w.start()
    t = threading.Thread(target=w.run, kwargs={"install_signals": False}, daemon=True)
    t.start()
    yield w
    w.request_stop(0)
    t.join(30)
    w.close()


# ------------------------------------------------------------------------------------- simulation
def test_validate_job_matches_the_simulator_run_directly(q: JobQueue, worker: Worker) -> None:
    from sim_worker.config import SimConfig
    from sim_worker.parallel import SimPool

    from .helpers import trust_case

    doc = trust_doc()
    # the pinch holds under the earlier protocol, asked for by name in the job
    st = q.wait(q.enqueue({"mode": "validate", "grasps": doc["grasps"], "object_hash": put_trust_object(q, doc),
                           "sim": {"preset": "pinned"}}).id)
    assert st.status == "succeeded" and st.attempts == 1 and st.progress == 1.0, st.error
    assert st.result is not None and st.result["summary"]["n"] == 3 and st.result["completed"] == 3
    obj, grasps = trust_case("box_pinch")
    with SimPool("mujoco", procs=1, cfg=SimConfig.preset("pinned")) as pool:
        ref = pool.validate(obj, grasps)
    got = st.result["grasps"]
    assert [g["index"] for g in got] == [0, 1, 2]
    assert [{k: v for k, v in g.items() if k != "index"} for g in got] == ref  # same numbers as a direct run
    assert all(g["success"] and g["protocol"] == "pinned" for g in got)


def test_execute_job_stores_png_keyframes(q: JobQueue, worker: Worker) -> None:
    from PIL import Image

    doc = trust_doc()
    h = put_trust_object(q, doc)
    st = q.wait(q.enqueue({"mode": "execute", "grasps": doc["grasps"][:1], "object_hash": h, "render": True,
                           "seed": 3, "priority": "high"}).id, 120)
    assert st.status == "succeeded", st.error
    assert st.result is not None and st.result["seed"] == 3
    [g] = st.result["grasps"]
    assert g["seed"] == 3 and "gif" not in g and isinstance(g["success"], bool)
    names = g["keyframes"]
    assert names == ["pregrasp", "grasp", "lifted"]
    assert q.keyframe_index(st.id) == {0: names}
    for i, name in enumerate(names):
        png = q.keyframe_png(st.id, 0, i)
        assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n" and q.keyframe_png(st.id, 0, name) == png
        assert Image.open(io.BytesIO(png)).size == (320, 240)
    assert q.keyframe_png(st.id, 0, 3) is None


def test_same_object_validate_jobs_run_as_one_pool_call(server: EmbeddedRedis) -> None:
    ns = "tw-batch"
    doc = trust_doc("cylinder_power")
    with JobQueue(server.url, namespace=ns) as q2:
        h = put_trust_object(q2, doc)
        ids = [q2.enqueue({"mode": "validate", "grasps": doc["grasps"][i:], "object_hash": h}).id for i in range(3)]
        w = Worker(server.url, WorkerConfig(namespace=ns, batch=8, **FAST))  # type: ignore[arg-type]
        with w:
            t = threading.Thread(target=w.run, kwargs={"install_signals": False}, daemon=True)
            t.start()
            sts = [q2.wait(i, 60) for i in ids]
            w.request_stop()
            t.join(30)
        assert [s.status for s in sts] == ["succeeded"] * 3
        assert [len(s.result["grasps"]) for s in sts] == [3, 2, 1]  # type: ignore[index]
        # each job got its own grasps back: job 1's first result is job 0's second
        assert sts[1].result["grasps"][0]["translation_m"] == sts[0].result["grasps"][1]["translation_m"]  # type: ignore[index]
        assert (w.metrics.batches, w.metrics.batch_size.sum, w.metrics.grasps) == (1, 3, 6)


def test_cancel_running_validate_job_stops_between_chunks(q: JobQueue, worker: Worker) -> None:
    doc = trust_doc()
    h = put_trust_object(q, doc)
    jid = q.enqueue({"mode": "validate", "grasps": doc["grasps"] * 20, "object_hash": h}).id
    for ev in q.events(jid, block_s=1.0):
        if ev.type == "progress":
            break
    assert q.cancel(jid).cancel_requested
    st = q.wait(jid, 60)
    assert st.status == "canceled", st.error
    assert st.result is not None and 0 < st.result["completed"] < 60 == st.result["n_grasps"]
    assert len(st.result["grasps"]) == st.result["completed"] and st.progress < 1.0
    assert [e.status for e in q.read_events(jid) if e.type == "status"][-1] == "canceled"


def test_simulator_error_is_retried_then_dead_lettered(q: JobQueue, worker: Worker) -> None:
    doc = trust_doc()
    h = put_trust_object(q, doc)
    jid = q.enqueue({"mode": "validate", "grasps": doc["grasps"][:1], "object_hash": h, "max_attempts": 2,
                     "sim": {"physics": {"cone": "bogus"}}}).id  # MuJoCo refuses the model
    st = q.wait(jid, 60)
    assert st.status == "failed" and st.attempts == 2
    assert st.error is not None and st.error.startswith("failed 2 times; last error: simulation failed on grasp 0")
    assert "invalid keyword: 'bogus'" in st.error
    assert any(d["job"] == jid for d in q.dead_letters())
    retried = [e for e in q.read_events(jid) if e.status == "queued" and e.error]
    assert len(retried) == 1 and "bogus" in (retried[0].error or "")


def test_object_expiring_before_the_worker_reads_it(server: EmbeddedRedis) -> None:
    ns = "tw-expire"
    doc = trust_doc()
    with JobQueue(server.url, namespace=ns) as q2:
        h = q2.put_object(PrimitiveObject(shape="box", size=(0.015, 0.015, 0.015)))
        jid = q2.enqueue({"mode": "validate", "grasps": doc["grasps"][:1], "object_hash": h, "max_attempts": 1}).id
        q2.redis.delete(q2.keys.object(h))  # expires while the job waits (no worker yet)
        with Worker(server.url, WorkerConfig(namespace=ns, **FAST)) as w:  # type: ignore[arg-type]
            t = threading.Thread(target=w.run, kwargs={"install_signals": False}, daemon=True)
            t.start()
            st = q2.wait(jid, 30)
            w.request_stop()
            t.join(30)
    assert st.status == "failed"
    assert st.error is not None and f"object {h} is not stored" in st.error and "put_object" in st.error


def test_points_and_mesh_objects_are_built_once_per_worker(q: JobQueue, worker: Worker) -> None:
    import trimesh

    doc = trust_doc()
    cube = trimesh.creation.box(extents=(0.03, 0.03, 0.03))
    buf = io.BytesIO()
    cube.export(buf, file_type="obj")
    cloud = np.asarray(cube.sample(400, seed=0), dtype=np.float32)
    hashes = [q.put_object(MeshObject(format="obj", data=buf.getvalue())), q.put_object(PointsObject.from_array(cloud))]
    jobs = [q.enqueue({"mode": "validate", "grasps": doc["grasps"][:1], "object_hash": h, "sim": {"preset": "pinned"}}).id
            for h in hashes * 2]
    sts: list[JobStatus] = [q.wait(j, 60) for j in jobs]
    assert [s.status for s in sts] == ["succeeded"] * 4, [s.error for s in sts]
    assert all(h in worker._objects for h in hashes)
    assert worker._objects[hashes[1]].source.startswith("object:")
    # the same 1.5 cm cube three ways: the pinch holds on each (pinned protocol)
    assert [s.result["grasps"][0]["success"] for s in sts] == [True] * 4  # type: ignore[index]


def test_metrics_endpoint_and_redis_hash(q: JobQueue, worker: Worker) -> None:
    q.wait(q.enqueue({"mode": "noop"}).id)
    base = f"http://127.0.0.1:{worker.metrics_port}"
    text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    assert f'dexgrasp_worker_jobs_total{{worker="{worker.name}",backend="mujoco",outcome="succeeded"}}' in text
    assert "dexgrasp_worker_batch_size_bucket" in text and "dexgrasp_worker_job_seconds_count" in text
    assert urllib.request.urlopen(base + "/healthz", timeout=5).read() == b"ok\n"
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(base + "/nope", timeout=5)
    h = wait_for(lambda: q.redis.hgetall(q.keys.metrics(worker.name)), 10, "metrics hash")
    assert int(h[b"jobs_succeeded"]) >= 1 and 0 < q.redis.ttl(q.keys.metrics(worker.name))
    [info] = [w for w in q.workers() if w["name"] == worker.name]
    assert info["metrics_port"] == worker.metrics_port and info["batch"] == 4


# ------------------------------------------------------------------------------------- processes
def test_worker_cli_refuses_no_redis_and_a_missing_backend(server: EmbeddedRedis) -> None:
    from service.cli import build_parser

    a = build_parser().parse_args(["worker", "--redis", "redis://x:1/0", "--batch", "3", "--procs", "2"])
    assert (a.cmd, a.batch, a.procs, a.backend) == ("worker", 3, 2, "mujoco")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    p1 = subprocess.Popen([sys.executable, "-m", "sim_worker.cli", "worker"], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p2 = cli_worker(server.url, "tw-isaac", "--backend", "isaacgym")
    _, e1 = p1.communicate(timeout=60)
    _, e2 = p2.communicate(timeout=120)
    assert p1.returncode == 2 and b"give --redis" in e1
    assert p2.returncode == 2 and b"Isaac Gym" in e2 and b"--backend mujoco" in e2


def _log_events(stderr: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]


def test_sigterm_finishes_within_grace_or_releases_the_job(server: EmbeddedRedis) -> None:
    ns_a, ns_b = "tw-term-a", "tw-term-b"
    qa, qb = JobQueue(server.url, namespace=ns_a), JobQueue(server.url, namespace=ns_b)
    pa = cli_worker(server.url, ns_a, "--grace-s", "30")
    pb = cli_worker(server.url, ns_b, "--grace-s", "0.3")
    try:
        wait_workers(qa, 1, [pa])
        wait_workers(qb, 1, [pb])
        ja = qa.enqueue({"mode": "noop", "sleep_s": 1.5}).id
        jb = qb.enqueue({"mode": "noop", "sleep_s": 2.0}).id
        wait_for(lambda: qa.get(ja).status == "running" and qb.get(jb).status == "running", 30, "running")  # type: ignore[union-attr]
        pa.send_signal(signal.SIGTERM)
        pb.send_signal(signal.SIGTERM)
        _, ea = pa.communicate(timeout=30)
        _, eb = pb.communicate(timeout=30)
        # within the grace period: the batch is finished, then a clean exit
        assert pa.returncode == 0
        sa = qa.get(ja)
        assert sa is not None and sa.status == "succeeded" and sa.attempts == 1
        events = [e["event"] for e in _log_events(ea)]
        assert events[0] == "worker_started" and events[-1] == "worker_stopped"
        assert events.index("signal") < events.index("job_finished")
        # past the grace period: the job is released (attempt not counted) and another worker finishes it
        assert pb.returncode == 0
        sb = qb.get(jb)
        assert sb is not None and (sb.status, sb.attempts) == ("queued", 0)
        assert "job_released" in [e["event"] for e in _log_events(eb)]
        assert qb.workers() == []  # heartbeat removed on a clean exit
        with Worker(server.url, WorkerConfig(namespace=ns_b, name="rescuer", **FAST)) as w:  # type: ignore[arg-type]
            t = threading.Thread(target=w.run, kwargs={"install_signals": False}, daemon=True)
            t.start()
            sb = qb.wait(jb, 30)
            w.request_stop()
            t.join(30)
        assert (sb.status, sb.attempts, sb.worker) == ("succeeded", 1, "rescuer")
    finally:
        for p in (pa, pb):
            if p.poll() is None:
                p.kill()
        qa.close()
        qb.close()


_PARENT = """
import json, sys, time
from sim_worker.embedded import EmbeddedSystem
from sim_worker.jobs import JobQueue
s = EmbeddedSystem(workers=1, procs=2, namespace="emb")
url = s.start()
q = JobQueue(url, namespace="emb")
st = q.wait(q.enqueue({"mode": "noop"}).id, 60)
[w] = q.workers()
print(json.dumps({"url": url, "redis": s.redis.pid, "workers": s.worker_pids, "pool": w["pool_pids"],
                  "status": st.status, "dir": str(s.redis.data_dir)}), flush=True)
time.sleep(600)
"""


def test_embedded_system_children_die_with_their_parent() -> None:
    """``dexgrasp serve``'s embedded mode: Redis, a worker process and its two simulator processes,
    all gone after the parent is killed with SIGKILL (nothing left to clean up by hand)."""
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        info = json.loads(line)
        assert info["status"] == "succeeded" and info["url"].startswith("redis://:")  # a generated password
        assert "@127.0.0.1:" in info["url"]
        pids = [info["redis"], *info["workers"], *info["pool"]]
        assert len(pids) == 4 and all(pid_alive(p) for p in pids)
    finally:
        parent.kill()
        parent.wait()
    wait_for(lambda: not any(pid_alive(p) for p in pids), 30, "children to die")
    shutil.rmtree(info["dir"], ignore_errors=True)  # a SIGKILLed parent cannot remove its temporary Redis dir


def test_embedded_system_with_thread_workers_runs_and_cleans_up() -> None:
    s = EmbeddedSystem(workers=1, worker_mode="thread", namespace="emb-t", worker_config=WorkerConfig(**FAST))  # type: ignore[arg-type]
    with s:
        with JobQueue(s.redis_url, namespace="emb-t") as q:
            assert q.wait(q.enqueue({"mode": "noop"}).id, 30).status == "succeeded"
        data_dir = s.redis.data_dir
    assert not s.redis.alive and not data_dir.exists()
