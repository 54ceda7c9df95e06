"""The producer side of the queue (the HTTP service): objects, enqueue, status, cancel, events,
keyframes and operational stats. See :mod:`sim_worker.jobs` for the protocol."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import redis

from .connection import as_float, as_str, connect, guard
from .errors import BackendUnavailable, JobNotFound, ObjectNotFound, QueueUnavailable
from .keys import DEFAULT_TTL_S, GROUP, PRIORITIES, PROTOCOL_VERSION, Keys
from .records import (
    KNOWN_BACKENDS,
    OBJECT_HASH_RE,
    JobEvent,
    JobRequest,
    JobStatus,
    MeshObject,
    PointsObject,
    PrimitiveObject,
    as_object_spec,
    check_job_id,
    decode_object,
    encode_object,
    encoded_object_hash,
)
from .scripts import source


def _status_from_hash(job_id: str, h: dict[bytes, bytes], with_result: bool = True) -> JobStatus:
    g = {as_str(k): v for k, v in h.items()}
    req = json.loads(g["request"]) if "request" in g else {}
    result = json.loads(g["result"]) if with_result and g.get("result") else None
    err = as_str(g["error"]) if g.get("error") else None
    return JobStatus(
        id=job_id,
        status=as_str(g["status"]),
        mode=as_str(g.get("mode", req.get("mode", b"noop"))),
        backend=as_str(g.get("backend", b"mujoco")),
        priority=as_str(g.get("priority", b"normal")),
        object_hash=as_str(g["object_hash"]) if g.get("object_hash") else None,
        n_grasps=int(as_str(g.get("n_grasps", b"0"))),
        progress=float(as_str(g.get("progress", b"0"))),
        attempts=int(as_str(g.get("attempts", b"0"))),
        max_attempts=int(as_str(g.get("max_attempts", b"1"))),
        result=result,
        error=err,
        created_at=float(as_str(g.get("created_at", b"0"))),
        started_at=as_float(g.get("started_at")),
        first_started_at=as_float(g.get("first_started_at")),
        finished_at=as_float(g.get("finished_at")),
        updated_at=as_float(g.get("updated_at")),
        worker=as_str(g["worker"]) if g.get("worker") else None,
        cancel_requested=g.get("cancel") == b"1",
    )


def _event(job_id: str, eid: Any, fields: dict[bytes, bytes]) -> JobEvent:
    g = {as_str(k): as_str(v) for k, v in fields.items()}
    return JobEvent(
        id=as_str(eid), job_id=job_id, type=g.get("type", "status"), status=g.get("status", "queued"),
        progress=float(g.get("progress", 0.0)), t=float(g.get("t", 0.0)), error=g.get("error") or None,
        worker=g.get("worker") or None,
    )



class JobQueue:
    """The producer side (the HTTP service). Every method raises :class:`QueueUnavailable` when Redis
    cannot be reached. Thread-safe (one connection pool)."""

    def __init__(
        self, redis_url: str, namespace: str = "dexgrasp", ttl_s: int = DEFAULT_TTL_S,
        object_ttl_s: int | None = None, socket_timeout_s: float = 5.0, max_block_s: float = 30.0,
    ) -> None:
        if ttl_s < 1:
            raise ValueError(f"ttl_s must be >= 1 second, got {ttl_s}")
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", namespace):
            raise ValueError(f"namespace must be 1-64 characters of [A-Za-z0-9_.-], got {namespace!r}")
        self.url = redis_url
        self.keys = Keys(namespace)
        self.ttl_s = int(ttl_s)
        self.object_ttl_s = int(object_ttl_s if object_ttl_s is not None else 2 * ttl_s)
        self.max_block_s = max_block_s
        self.redis = connect(redis_url, socket_timeout_s)
        self._blocking = connect(redis_url, max_block_s + 5.0)  # long XREAD BLOCK calls (events)
        self._enqueue = self.redis.register_script(source("enqueue"))
        self._cancel = self.redis.register_script(source("cancel"))

    def close(self) -> None:
        self.redis.close()
        self._blocking.close()

    def __enter__(self) -> JobQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- health
    def ping(self) -> bool:
        """True when Redis answers PING (False, not an exception, when it does not)."""
        try:
            return bool(self.redis.ping())
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ResponseError):
            return False

    def live_backends(self) -> list[str]:
        """The known backends that have at least one live worker (a heartbeat within its TTL)."""
        live = guard(lambda: [bool(self.redis.exists(self.keys.live(b))) for b in KNOWN_BACKENDS])
        return [b for b, ok in zip(KNOWN_BACKENDS, live) if ok]

    def check_backend(self, backend: str) -> None:
        """Raise :class:`BackendUnavailable` unless a live worker serves ``backend``: a job for it would
        stay queued for ever. (:meth:`enqueue` does not check: jobs may be queued before workers start.)"""
        live = self.live_backends()
        if backend in live:
            return
        what = "unknown backend" if backend not in KNOWN_BACKENDS else "no live worker serves backend"
        raise BackendUnavailable(
            f"{what} {backend!r}; backends: {', '.join(KNOWN_BACKENDS)}; with live workers: "
            f"{', '.join(live) or 'none'} (start one with `dexgrasp worker --backend NAME` where it is installed)"
        )

    # ---------------------------------------------------------------- objects
    def put_object(self, spec: MeshObject | PrimitiveObject | PointsObject | dict[str, Any]) -> str:
        """Store an object once under its content hash (idempotent; refreshes its TTL); returns the hash."""
        obj = as_object_spec(spec)
        data = encode_object(obj)
        digest = encoded_object_hash(data)
        key = self.keys.object(digest)

        def go() -> None:
            if not self.redis.set(key, data, ex=self.object_ttl_s, nx=True):
                self.redis.expire(key, self.object_ttl_s)

        guard(go)
        return digest

    def has_object(self, digest: str) -> bool:
        if not OBJECT_HASH_RE.match(digest):
            return False
        return bool(guard(lambda: self.redis.exists(self.keys.object(digest))))

    def get_object(self, digest: str) -> MeshObject | PrimitiveObject | PointsObject | None:
        raw = guard(lambda: self.redis.get(self.keys.object(digest))) if OBJECT_HASH_RE.match(digest) else None
        return None if raw is None else decode_object(bytes(raw))  # type: ignore[arg-type]

    # ---------------------------------------------------------------- jobs
    def enqueue(self, request: JobRequest | dict[str, Any], job_id: str | None = None) -> JobStatus:
        """Queue a job; returns its (queued) status. ``job_id`` makes the call idempotent: enqueuing an
        id that exists returns that job unchanged. Raises :class:`ObjectNotFound` when ``object_hash``
        is unknown, ``ValueError`` (pydantic ``ValidationError``) for a bad request."""
        req = request if isinstance(request, JobRequest) else JobRequest.model_validate(request)
        jid = check_job_id(job_id) if job_id is not None else uuid.uuid4().hex
        keys, args = self._enqueue_call(jid, req)
        out = guard(lambda: self._enqueue(keys=keys, args=args))
        code = as_str(out[0])
        if code == "no_object":
            raise ObjectNotFound(f"object {req.object_hash} is not stored (never uploaded or expired): "
                                 "upload it with put_object first")
        st = self.get(jid)
        if st is None:  # pragma: no cover - expired between the two calls
            raise JobNotFound(f"job {jid} vanished right after it was enqueued")
        return st

    def enqueue_many(self, requests: Sequence[JobRequest | dict[str, Any]]) -> list[str]:
        """Queue many jobs in one round trip (pipelined); returns their ids in order. All objects are
        checked first: an unknown ``object_hash`` raises :class:`ObjectNotFound` and queues nothing."""
        reqs = [r if isinstance(r, JobRequest) else JobRequest.model_validate(r) for r in requests]
        digests = sorted({r.object_hash for r in reqs if r.object_hash is not None})
        k = self.keys
        if digests:
            present = guard(lambda: [bool(self.redis.exists(k.object(d))) for d in digests])
            missing = [d for d, ok in zip(digests, present) if not ok]
            if missing:
                raise ObjectNotFound(f"objects not stored (never uploaded or expired): {', '.join(missing)}; "
                                     "upload them with put_object first")
        ids = [uuid.uuid4().hex for _ in reqs]

        def go() -> list[Any]:
            with self.redis.pipeline(transaction=False) as p:
                for jid, req in zip(ids, reqs):
                    keys, args = self._enqueue_call(jid, req)
                    self._enqueue(keys=keys, args=args, client=p)
                return list(p.execute())

        codes = [as_str(r[0]) for r in guard(go)]
        if "no_object" in codes:  # pragma: no cover - an object expired between the check and the pipeline
            lost = [jid for jid, c in zip(ids, codes) if c == "no_object"]
            raise ObjectNotFound(f"jobs {lost} were refused: their object expired while enqueuing; upload it again")
        return ids

    def _enqueue_call(self, jid: str, req: JobRequest) -> tuple[list[str], list[Any]]:
        k = self.keys
        fields: list[Any] = [
            "id", jid, "mode", req.mode, "backend", req.backend, "priority", req.priority,
            "object_hash", req.object_hash or "", "n_grasps", len(req.grasps), "max_attempts", req.max_attempts,
            "request", req.model_dump_json(), "protocol", PROTOCOL_VERSION,
        ]
        keys = [k.job(jid), k.stream(req.backend, req.priority), k.events(jid),
                k.object(req.object_hash) if req.object_hash is not None else k.job(jid), k.backends]
        args = [jid, self.ttl_s, self.object_ttl_s, "1" if req.object_hash is not None else "0", req.backend, *fields]
        return keys, args

    def get(self, job_id: str, with_result: bool = True) -> JobStatus | None:
        """The job's status, or None when it does not exist (or expired)."""
        check_job_id(job_id)
        h = guard(lambda: self.redis.hgetall(self.keys.job(job_id)))
        if not h:
            return None
        return _status_from_hash(job_id, h, with_result)  # type: ignore[arg-type]

    def cancel(self, job_id: str) -> JobStatus:
        """queued -> canceled at once; running -> a cancel flag the worker checks between simulation
        chunks (the job ends ``canceled`` with the results finished so far); terminal: unchanged."""
        check_job_id(job_id)
        code = as_str(guard(lambda: self._cancel(keys=[self.keys.job(job_id), self.keys.events(job_id)],
                                              args=[self.ttl_s])))
        if code == "gone":
            raise JobNotFound(f"job {job_id} not found (never existed or expired)")
        st = self.get(job_id, with_result=False)
        if st is None:  # pragma: no cover
            raise JobNotFound(f"job {job_id} not found")
        return st

    def ttl(self, job_id: str) -> int:
        """Seconds until the job's record expires (-2: no such job)."""
        return int(guard(lambda: self.redis.ttl(self.keys.job(check_job_id(job_id)))))

    # ---------------------------------------------------------------- events
    def read_events(self, job_id: str, after: str = "0-0", block_s: float = 0.0, count: int = 100) -> list[JobEvent]:
        """Events after ``after`` (a previous event id; "0-0" = from the start), waiting up to
        ``block_s`` for the first one (0: do not wait). One call; for polling or SSE loops."""
        check_job_id(job_id)
        key = self.keys.events(job_id)
        block = None if block_s <= 0 else max(1, int(min(block_s, self.max_block_s) * 1000))
        client = self._blocking if block else self.redis
        resp: Any = guard(lambda: client.xread({key: after}, count=count, block=block))
        out: list[JobEvent] = []
        for _, entries in resp or []:
            out += [_event(job_id, eid, fields) for eid, fields in entries]
        return out

    def last_event(self, job_id: str) -> JobEvent | None:
        """The job's newest event (a terminal job's final status), or None when it has none left."""
        check_job_id(job_id)
        resp: Any = guard(lambda: self.redis.xrevrange(self.keys.events(job_id), count=1))
        return _event(job_id, resp[0][0], resp[0][1]) if resp else None

    def events(self, job_id: str, after: str = "0-0", idle_timeout_s: float | None = None,
               block_s: float = 5.0) -> Iterator[JobEvent]:
        """Yield the job's events (status changes and progress) from ``after`` on, blocking for new
        ones, until a terminal status event; stops early when nothing arrives for ``idle_timeout_s``
        (None: wait for ever) or the job disappears. Raises :class:`JobNotFound` for an unknown job.
        Blocking: from async code run it in a thread, or use :meth:`aevents`."""
        if self.get(job_id, with_result=False) is None:
            raise JobNotFound(f"job {job_id} not found (never existed or expired)")
        last, idle0 = after, time.monotonic()
        while True:
            wait = block_s if idle_timeout_s is None else max(0.001, min(block_s, idle_timeout_s))
            evs = self.read_events(job_id, last, block_s=wait)
            for e in evs:
                yield e
                last = e.id
                if e.terminal:
                    return
            if evs:
                idle0 = time.monotonic()
                continue
            if idle_timeout_s is not None and time.monotonic() - idle0 >= idle_timeout_s:
                return
            if not guard(lambda: self.redis.exists(self.keys.job(job_id))):
                return

    async def aevents(self, job_id: str, after: str = "0-0", idle_timeout_s: float | None = None,
                      block_s: float = 5.0) -> AsyncIterator[JobEvent]:
        """:meth:`events` for asyncio code (its own connection, closed when the iteration ends)."""
        import redis.asyncio as aredis

        check_job_id(job_id)
        key, jkey = self.keys.events(job_id), self.keys.job(job_id)
        r = aredis.Redis.from_url(self.url, socket_timeout=self.max_block_s + 5.0, socket_connect_timeout=3.0)
        try:
            try:
                if not await r.exists(jkey):
                    raise JobNotFound(f"job {job_id} not found (never existed or expired)")
                last, idle0 = after, time.monotonic()
                while True:
                    wait = block_s if idle_timeout_s is None else max(0.001, min(block_s, idle_timeout_s))
                    resp: Any = await r.xread({key: last}, count=100,
                                              block=max(1, int(min(wait, self.max_block_s) * 1000)))
                    got = False
                    for _, entries in resp or []:
                        for eid, fields in entries:
                            e = _event(job_id, eid, fields)
                            got = True
                            yield e
                            last = e.id
                            if e.terminal:
                                return
                    if got:
                        idle0 = time.monotonic()
                        continue
                    if idle_timeout_s is not None and time.monotonic() - idle0 >= idle_timeout_s:
                        return
                    if not await r.exists(jkey):
                        return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                raise QueueUnavailable(f"Redis is unreachable: {type(exc).__name__}: {exc}") from exc
        finally:
            await r.aclose()

    def wait(self, job_id: str, timeout_s: float = 60.0) -> JobStatus:
        """Block until the job is terminal (or ``timeout_s`` passed); returns its status."""
        deadline = time.monotonic() + timeout_s
        st = self.get(job_id)
        if st is None:
            raise JobNotFound(f"job {job_id} not found")
        last = "0-0"
        while not st.terminal and time.monotonic() < deadline:
            evs = self.read_events(job_id, last, block_s=min(1.0, max(0.01, deadline - time.monotonic())))
            if evs:
                last = evs[-1].id
            st = self.get(job_id, with_result=False) or st
        return self.get(job_id) or st

    # ---------------------------------------------------------------- keyframes
    def keyframe_png(self, job_id: str, grasp_index: int, frame: int | str) -> bytes | None:
        """One execution keyframe as PNG bytes; ``frame`` is its index in the grasp result's
        ``keyframes`` list or its name (``pregrasp``, ``grasp``, ``lifted``). None if absent."""
        check_job_id(job_id)
        key = self.keys.frames(job_id)
        if isinstance(frame, str) and not frame.isdigit():
            names_raw = guard(lambda: self.redis.hget(key, f"{int(grasp_index)}:names"))
            if names_raw is None:
                return None
            names = json.loads(names_raw)
            if frame not in names:
                return None
            frame = names.index(frame)
        raw = guard(lambda: self.redis.hget(key, f"{int(grasp_index)}:{int(frame)}"))
        return None if raw is None else bytes(raw)  # type: ignore[arg-type]

    def _hget(self, key: str, name: str) -> Any:
        return guard(lambda: self.redis.hget(key, name))

    def keyframe_index(self, job_id: str) -> dict[int, list[str]]:
        """grasp index -> keyframe names (list position = frame index), for every rendered grasp."""
        key = self.keys.frames(check_job_id(job_id))
        out: dict[int, list[str]] = {}
        for f in guard(lambda: self.redis.hkeys(key)):
            name = as_str(f)
            if name.endswith(":names"):
                raw: Any = self._hget(key, name)
                out[int(name.split(":")[0])] = json.loads(raw)
        return dict(sorted(out.items()))

    # ---------------------------------------------------------------- operations
    def stats(self) -> dict[str, Any]:
        """Backlog per backend and priority (length = waiting + delivered; pending = delivered, not
        yet finished), the dead-letter count, results written, and the live workers' heartbeats."""
        k = self.keys

        def go() -> dict[str, Any]:
            backends = sorted({as_str(b) for b in self.redis.smembers(k.backends)} | {"mujoco"})
            out: dict[str, Any] = {"namespace": k.ns, "backends": {}}
            for b in backends:
                per: dict[str, Any] = {}
                for p in PRIORITIES:
                    s = k.stream(b, p)
                    length = int(self.redis.xlen(s))
                    pending = 0
                    if length or self.redis.exists(s):
                        try:
                            pending = int(self.redis.xpending(s, GROUP)["pending"])
                        except redis.exceptions.ResponseError:  # no group yet: no worker ever started
                            pending = 0
                    per[p] = {"length": length, "pending": pending, "waiting": max(0, length - pending)}
                out["backends"][b] = per
            out["dead_letter"] = int(self.redis.xlen(k.dead))
            out["results_written"] = int(self.redis.get(k.results_written) or 0)
            workers = []
            pre, suf = k.heartbeat_affixes
            for key in self.redis.scan_iter(match=f"{pre}*{suf}", count=500):
                raw = self.redis.get(key)
                if raw:
                    try:
                        workers.append(json.loads(raw))
                    except ValueError:  # pragma: no cover
                        continue
            out["workers"] = sorted(workers, key=lambda w: str(w.get("name", "")))
            return out

        return guard(go)

    def dead_letters(self, count: int = 100) -> list[dict[str, Any]]:
        """The most recent dead-letter entries (newest first): job, error, attempts, stream, worker, t."""
        rows = guard(lambda: self.redis.xrevrange(self.keys.dead, count=count))
        return [{"id": as_str(i), **{as_str(a): as_str(b) for a, b in f.items()}} for i, f in rows]  # type: ignore[union-attr]

    def workers(self) -> list[dict[str, Any]]:
        return list(self.stats()["workers"])


__all__ = ["JobQueue"]
