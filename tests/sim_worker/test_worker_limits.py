"""What one job can cost the others, with real ``dexgrasp worker`` processes, a real redis-server and
MuJoCo: a job past the worker's time limit is stopped and failed (its simulators killed when they
hang), and low priorities are served
while higher ones keep coming."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from sim_worker.embedded import EmbeddedRedis
from sim_worker.jobs import JobQueue

from .test_worker import cli_worker, pid_alive, put_trust_object, trust_doc, wait_for, wait_workers


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as r:
        yield r


def test_a_job_past_the_time_limit_is_stopped_and_failed(server: EmbeddedRedis) -> None:
    q = JobQueue(server.url, namespace="tl-time", ttl_s=600)
    p = cli_worker(server.url, "tl-time", "--job-timeout-s", "2")
    try:
        wait_workers(q, 1, [p])
        doc = trust_doc("cylinder_power")
        slow = q.enqueue({"mode": "execute", "grasps": doc["grasps"] * 40, "object_hash": put_trust_object(q, doc)}).id
        st = q.wait(slow, timeout_s=300)
        assert st.status == "failed" and st.attempts == 1, st
        assert "job time limit of 2 s" in st.error and "fewer grasps" in st.error, st.error
        assert st.result is not None and len(st.result["grasps"]) < len(doc["grasps"]) * 40
        # the worker is free again: the next job runs
        assert q.wait(q.enqueue({"mode": "noop"}).id, timeout_s=60).status == "succeeded"
        assert p.poll() is None
    finally:
        p.terminate()
        p.wait(60)
        q.close()


def test_low_priority_jobs_are_served_while_high_ones_keep_coming(server: EmbeddedRedis) -> None:
    q = JobQueue(server.url, namespace="tl-fair", ttl_s=600)
    # queued before any worker exists: one low-priority job behind many high-priority ones
    low = q.enqueue({"mode": "noop", "priority": "low"}).id
    high = [q.enqueue({"mode": "noop", "priority": "high", "sleep_s": 0.05}).id for _ in range(9)]
    p = cli_worker(server.url, "tl-fair", "--batch", "1", "--fair-every", "3")
    try:
        wait_workers(q, 1, [p])
        done = {j: q.wait(j, timeout_s=120) for j in [*high, low]}
        assert all(st.status == "succeeded" for st in done.values()), done
        finished = sorted(done, key=lambda j: done[j].finished_at or 0.0)
        # strict priority would run it last; the third read starts at the lower priorities
        assert finished.index(low) < len(high) // 2, [done[j].priority for j in finished]
    finally:
        p.terminate()
        p.wait(60)
        q.close()


def test_a_hung_simulator_is_killed_past_the_limit_and_the_job_failed(server: EmbeddedRedis) -> None:
    q = JobQueue(server.url, namespace="tl-hung", ttl_s=600)
    p = cli_worker(server.url, "tl-hung", "--procs", "2", "--job-timeout-s", "2", "--job-kill-after-s", "1")
    try:
        (info,) = wait_workers(q, 1, [p])
        doc = trust_doc("cylinder_power")
        h = put_trust_object(q, doc)
        jid = q.enqueue({"mode": "execute", "grasps": doc["grasps"] * 40, "object_hash": h}).id
        wait_for(lambda: q.get(jid).status == "running", 60, "running")  # type: ignore[union-attr]
        for pid in info["pool_pids"]:  # the simulators hang: they never reach a stop check again
            os.kill(pid, signal.SIGSTOP)
        st = q.wait(jid, timeout_s=120)
        assert st.status == "failed" and st.attempts == 1 and "job time limit of 2 s" in (st.error or ""), st
        assert not any(pid_alive(pid) for pid in info["pool_pids"])
        # fresh simulators: the next job runs
        assert q.wait(q.enqueue({"mode": "validate", "grasps": doc["grasps"][:1], "object_hash": h}).id,
                      timeout_s=120).status == "succeeded"
        assert p.poll() is None
    finally:
        p.terminate()
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:  # stuck behind stopped simulators: they die with it (lifeline)
            p.kill()
            p.wait(60)
        q.close()
