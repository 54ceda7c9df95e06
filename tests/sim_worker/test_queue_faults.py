"""Fault and load tests of the rollout queue: real redis-server processes, real worker processes.

kill -9 of a worker in the middle of a batch (every job still finishes exactly once, on the other
worker); Redis stopped or killed and restarted with AOF persistence (queued jobs survive; a live
worker reconnects); 1000 jobs from 8 concurrent clients through 3 workers (none lost, none
duplicated); a long job is never stolen from a live worker; repeated simulator failures end in
the dead-letter stream. No wall-clock assertions: timeouts only bound how long a test may hang."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim_worker.embedded import EmbeddedRedis
from sim_worker.jobs import JobConsumer, JobQueue
from sim_worker.worker import Worker, WorkerConfig

from .test_worker import FAST, cli_worker, pid_alive, put_trust_object, trust_doc, wait_for, wait_workers


def statuses(q: JobQueue, ids: list[str]) -> list[dict[str, str]]:
    """status, attempts and worker of many jobs in one round trip."""
    with q.redis.pipeline(transaction=False) as p:
        for j in ids:
            p.hmget(q.keys.job(j), "status", "attempts", "worker")
        rows = p.execute()
    return [{"status": (s or b"").decode(), "attempts": (a or b"0").decode(), "worker": (w or b"").decode()}
            for s, a, w in rows]


def all_terminal(q: JobQueue, ids: list[str]) -> bool:
    return all(r["status"] in ("succeeded", "failed", "canceled") for r in statuses(q, ids))


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ------------------------------------------------------------------------------------- kill -9
def test_kill_9_mid_batch_every_job_finishes_exactly_once_on_the_other_worker(tmp_path: Path) -> None:
    ns = "kill"
    doc = trust_doc()
    with EmbeddedRedis() as server, JobQueue(server.url, namespace=ns) as q:
        logs = [open(tmp_path / f"{n}.log", "wb") for n in "AB"]
        a = cli_worker(server.url, ns, "--name", "A", "--batch", "4", "--procs", "2", stderr=logs[0])
        b = cli_worker(server.url, ns, "--name", "B", "--batch", "4", stderr=logs[1])
        try:
            workers = wait_workers(q, 2, [a, b])
            pool_a = next(w for w in workers if w["name"] == "A")["pool_pids"]
            assert len(pool_a) == 2
            h = put_trust_object(q, doc)
            ids = [q.enqueue({"mode": "validate", "grasps": doc["grasps"] * 4, "object_hash": h}).id for _ in range(12)]

            def a_is_busy() -> list[str]:
                return [j for j, r in zip(ids, statuses(q, ids)) if r["worker"] == "A" and r["status"] == "running"]

            on_a = wait_for(a_is_busy, 60, "a job running on worker A")
            a.send_signal(signal.SIGKILL)
            a.wait(10)
            wait_for(lambda: all_terminal(q, ids), 120, "all jobs to finish")
            rows = statuses(q, ids)
            assert [r["status"] for r in rows] == ["succeeded"] * 12
            assert q.stats()["results_written"] == 12  # one result per job: no duplicate write ever landed
            for j in on_a:  # interrupted mid-simulation: redone by B as a second attempt
                st = q.get(j)
                assert st is not None and (st.worker, st.attempts) == ("B", 2)
                lost = [e for e in q.read_events(j) if e.status == "queued" and e.error]
                assert lost and lost[0].error == "worker A stopped heartbeating during attempt 1"
            results = [q.get(j).result for j in ids]  # type: ignore[union-attr]
            assert all(r is not None and r["completed"] == 12 for r in results)
            assert len({str(r["grasps"]) for r in results}) == 1  # type: ignore[index]  # identical physics
            s = q.stats()
            assert s["dead_letter"] == 0 and s["backends"]["mujoco"]["normal"] == {"length": 0, "pending": 0, "waiting": 0}
            wait_for(lambda: not any(pid_alive(p) for p in pool_a), 30, "A's simulator processes to die")
            b_metrics = q.redis.hgetall(q.keys.metrics("B"))
            assert int(b_metrics.get(b"jobs_duplicate", b"0")) == 0
        finally:
            stop([a, b])
            for f in logs:
                f.close()


# ------------------------------------------------------------------------------------- Redis restart
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_redis_restart_with_persistence_keeps_queued_jobs(tmp_path: Path, how: str) -> None:
    ns = "restart"
    doc = trust_doc()
    server = EmbeddedRedis(data_dir=tmp_path / "redis", persistence="aof", appendfsync="always").start()
    try:
        q = JobQueue(server.url, namespace=ns)
        h = put_trust_object(q, doc)
        done_id = q.enqueue({"mode": "noop"}).id
        c = JobConsumer(server.url, namespace=ns, name="early")
        c.ensure_groups()
        [d] = c.fetch(1)
        c.start([d])
        c.finish(d, "succeeded", {"kept": True})
        c.close()
        queued = [q.enqueue({"mode": "noop", "priority": ("high", "normal", "low")[i % 3]}).id for i in range(20)]
        queued.append(q.enqueue({"mode": "validate", "grasps": doc["grasps"][:1], "object_hash": h}).id)
        port = server.port
        if how == "sigterm":
            server.stop()
        else:
            server.kill()
        assert not server.alive
        server.start()
        assert server.port == port and q.ping()  # the same client reconnects by itself
        assert [r["status"] for r in statuses(q, queued)] == ["queued"] * 21
        assert q.get(done_id).result == {"kept": True}  # type: ignore[union-attr]
        assert q.has_object(h) and 0 < q.ttl(queued[0])
        assert sum(v["waiting"] for v in q.stats()["backends"]["mujoco"].values()) == 21
        with Worker(server.url, WorkerConfig(namespace=ns, batch=8, **FAST)) as w:  # type: ignore[arg-type]
            t = threading.Thread(target=w.run, kwargs={"install_signals": False}, daemon=True)
            t.start()
            wait_for(lambda: all_terminal(q, queued), 60, "queued jobs to finish after the restart")
            w.request_stop()
            t.join(30)
        assert [r["status"] for r in statuses(q, queued)] == ["succeeded"] * 21
        assert q.stats()["results_written"] == 22
        q.close()
    finally:
        server.stop()


def test_a_live_worker_rides_out_a_redis_crash(tmp_path: Path) -> None:
    """Redis is killed (SIGKILL) while a worker is mid-way through a queue of jobs and comes back on
    the same port with its AOF: the worker reconnects, every job finishes, each with one result."""
    ns = "crash"
    server = EmbeddedRedis(data_dir=tmp_path / "redis", persistence="aof", appendfsync="always").start()
    try:
        q = JobQueue(server.url, namespace=ns)
        ids = [q.enqueue({"mode": "noop", "sleep_s": 0.1}).id for _ in range(30)]
        cfg = WorkerConfig(namespace=ns, batch=2, write_retry_s=120.0, **FAST)  # type: ignore[arg-type]
        with Worker(server.url, cfg) as w:
            t = threading.Thread(target=w.run, kwargs={"install_signals": False}, daemon=True)
            t.start()
            wait_for(lambda: sum(r["status"] == "succeeded" for r in statuses(q, ids)) >= 4, 60, "a few jobs done")
            server.kill()
            time.sleep(1.0)  # the worker sees connection errors and backs off
            server.start()
            wait_for(lambda: all_terminal(q, ids), 120, "all jobs after the crash")
            w.request_stop()
            t.join(30)
        assert [r["status"] for r in statuses(q, ids)] == ["succeeded"] * 30
        assert q.stats()["results_written"] == 30
        assert w.metrics.redis_errors > 0
        q.close()
    finally:
        server.stop()


# ------------------------------------------------------------------------------------- a fleet of 3
@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[JobQueue, list[subprocess.Popen[bytes]]]]:
    ns = "fleet"
    log_dir = tmp_path_factory.mktemp("fleet")
    with EmbeddedRedis() as server:
        logs = [open(log_dir / f"w{i}.log", "wb") for i in range(3)]
        procs = [cli_worker(server.url, ns, "--name", f"w{i}", "--batch", "16", stderr=logs[i]) for i in range(3)]
        q = JobQueue(server.url, namespace=ns)
        try:
            wait_workers(q, 3, procs)
            yield q, procs
        finally:
            stop(procs)
            q.close()
            for f in logs:
                f.close()


def test_1000_jobs_from_8_clients_through_3_workers_none_lost_none_duplicated(
    fleet: tuple[JobQueue, list[subprocess.Popen[bytes]]],
) -> None:
    q, procs = fleet
    ids: list[list[str]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            with JobQueue(q.url, namespace=q.keys.ns) as mine:
                for i in range(125):
                    ids[k].append(mine.enqueue({"mode": "noop", "priority": ("high", "normal", "low")[(k + i) % 3]}).id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    before = q.stats()["results_written"]
    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    every = [j for part in ids for j in part]
    assert len(every) == len(set(every)) == 1000
    wait_for(lambda: q.stats()["results_written"] - before >= 1000, 180, "1000 results")
    rows = statuses(q, every)
    assert Counter(r["status"] for r in rows) == {"succeeded": 1000}
    assert Counter(r["attempts"] for r in rows) == {"1": 1000}  # nothing redelivered, nothing run twice
    assert q.stats()["results_written"] - before == 1000
    per_worker = Counter(r["worker"] for r in rows)
    assert set(per_worker) <= {"w0", "w1", "w2"}
    s = q.stats()
    assert s["dead_letter"] == 0
    assert all(v == {"length": 0, "pending": 0, "waiting": 0} for v in s["backends"]["mujoco"].values())
    assert all(p.poll() is None for p in procs)


def test_a_long_job_is_never_stolen_from_a_live_worker(fleet: tuple[JobQueue, list[subprocess.Popen[bytes]]]) -> None:
    """A 5 s job on workers that reclaim entries idle for 2 s from dead owners: the two idle workers'
    janitors run every 0.3 s the whole time and never take it."""
    q, _ = fleet
    st = q.wait(q.enqueue({"mode": "noop", "sleep_s": 5.0}).id, 60)
    assert st.status == "succeeded" and st.attempts == 1
    running = [e for e in q.read_events(st.id) if e.status == "running" and e.type == "status"]
    assert len(running) == 1 and running[0].worker == st.worker
    assert not [e for e in q.read_events(st.id) if e.status == "queued" and e.error]


def test_repeated_simulator_failures_end_in_the_dead_letter_stream(
    fleet: tuple[JobQueue, list[subprocess.Popen[bytes]]],
) -> None:
    q, _ = fleet
    doc = trust_doc()
    h = put_trust_object(q, doc)
    st = q.wait(q.enqueue({"mode": "validate", "grasps": doc["grasps"][:1], "object_hash": h, "max_attempts": 3,
                           "sim": {"physics": {"cone": "bogus"}}}).id, 120)
    assert (st.status, st.attempts) == ("failed", 3)
    assert st.error is not None and st.error.startswith("failed 3 times; last error: simulation failed on grasp 0")
    [dl] = [d for d in q.dead_letters() if d["job"] == st.id]
    assert dl["attempts"] == "3" and "bogus" in dl["error"]
