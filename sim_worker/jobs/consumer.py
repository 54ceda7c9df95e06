"""The consumer side of the queue (the workers): read, start, report progress, finish, fail, release,
heartbeat, reclaim. See :mod:`sim_worker.jobs` for the protocol."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis
from pydantic import ValidationError

from .connection import as_str, connect, guard
from .keys import DEFAULT_TTL_S, GROUP, HEARTBEAT_TTL_S, RECLAIM_IDLE_S, Keys
from .records import JobRequest, MeshObject, PointsObject, PrimitiveObject, decode_object, trim_error
from .scripts import source


@dataclass(frozen=True)
class Delivery:
    """One stream entry delivered to a worker; ``job_id`` is None when the entry was deleted."""

    stream: str
    entry_id: str
    job_id: str | None

    @property
    def priority(self) -> str:
        return self.stream.rsplit(":", 1)[1]


@dataclass(frozen=True)
class StartOutcome:
    """``run`` (go ahead: ``request`` and ``attempt`` are set), ``skip`` (already terminal or canceled),
    ``gone`` (expired), ``stale`` (an old entry of a requeued job), ``dead`` (attempts exhausted)."""

    action: Literal["run", "skip", "gone", "stale", "dead"]
    attempt: int = 0
    request: JobRequest | None = None
    detail: str = ""
    request_error: str = ""  # the stored request could not be parsed (version skew)


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class JobConsumer:
    """The worker side of the protocol: read, start, report, finish, fail, release, heartbeat,
    reclaim. One per worker process; calls from the worker's main and heartbeat threads are safe.
    Redis connection problems raise :class:`QueueUnavailable` (the worker backs off and retries)."""

    def __init__(
        self, redis_url: str, backend: str = "mujoco", namespace: str = "dexgrasp", name: str | None = None,
        ttl_s: int = DEFAULT_TTL_S, heartbeat_ttl_s: float = HEARTBEAT_TTL_S,
        reclaim_idle_s: float = RECLAIM_IDLE_S, max_block_s: float = 5.0,
    ) -> None:
        self.url = redis_url
        self.backend = backend
        self.keys = Keys(namespace)
        self.name = name or default_worker_name()
        if ":" in self.name or not self.name:
            raise ValueError(f"worker name must be non-empty and contain no ':', got {self.name!r}")
        self.ttl_s = int(ttl_s)
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.reclaim_idle_s = reclaim_idle_s
        self.streams = self.keys.streams(backend)
        self.redis = connect(redis_url, max_block_s + 10.0)
        self._start = self.redis.register_script(source("start"))
        self._progress = self.redis.register_script(source("progress"))
        self._finish = self.redis.register_script(source("finish"))
        self._requeue = self.redis.register_script(source("requeue"))
        self._heartbeat = self.redis.register_script(source("heartbeat"))
        self._reclaim = self.redis.register_script(source("reclaim"))

    def close(self) -> None:
        self.redis.close()

    # ---------------------------------------------------------------- reading
    def ensure_groups(self) -> None:
        """Create the consumer group on every stream of this backend (from the start: entries added
        before any worker existed are delivered too). Idempotent."""

        def go() -> None:
            for s in self.streams:
                try:
                    self.redis.xgroup_create(s, GROUP, id="0", mkstream=True)
                except redis.exceptions.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise

        guard(go)

    def _read(self, streams: dict[str, str], count: int, block_ms: int | None) -> list[Delivery]:
        def go() -> Any:
            try:
                return self.redis.xreadgroup(GROUP, self.name, streams, count=count, block=block_ms)  # type: ignore[arg-type]
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self.ensure_groups()  # Redis lost the group (restart without persistence, flush)
                return self.redis.xreadgroup(GROUP, self.name, streams, count=count, block=block_ms)  # type: ignore[arg-type]

        resp = guard(go)
        out: list[Delivery] = []
        for stream, entries in resp or []:
            for eid, fields in entries:
                job = fields.get(b"job") if fields else None
                out.append(Delivery(as_str(stream), as_str(eid), None if job is None else as_str(job)))
        order = {s: i for i, s in enumerate(self.streams)}
        out.sort(key=lambda d: order.get(d.stream, 99))
        return out

    def own_pending(self, count: int) -> list[Delivery]:
        """Entries delivered to this worker and not finished: reclaimed ones, or ones a blocking read
        returned beyond the batch size. Priority order."""
        return self._read({s: "0" for s in self.streams}, count, None)[:count]

    def fetch(self, count: int, block_ms: int = 0, first: int = 0) -> list[Delivery]:
        """Up to ``count`` new entries, high priority first (or from ``streams[first]`` down, then the
        higher ones: how a worker serves lower priorities now and then). With ``block_ms`` > 0 and
        nothing waiting, block until something arrives on any priority (extra entries stay in this
        worker's pending list and are returned by :meth:`own_pending` next time)."""
        out: list[Delivery] = []
        for s in self.streams[first:] + self.streams[:first]:
            if len(out) >= count:
                return out
            out += self._read({s: ">"}, count - len(out), None)
        if out or block_ms <= 0:
            return out
        return self._read({s: ">" for s in self.streams}, count, block_ms)[:count]

    def reclaim(self, count: int = 100) -> list[Delivery]:
        """Janitor: claim up to ``count`` entries idle > ``reclaim_idle_s`` whose owner's heartbeat
        expired; their running jobs go back to ``queued`` with the reason in ``error``."""
        pre, suf = self.keys.heartbeat_affixes
        res = guard(lambda: self._reclaim(
            keys=self.streams,
            args=[GROUP, self.name, int(self.reclaim_idle_s * 1000), pre, suf, count, self.ttl_s, self.keys.job_prefix],
        ))
        return [Delivery(as_str(s), as_str(i), as_str(j)) for s, i, j in res]

    def ack_deleted(self, d: Delivery) -> None:
        """Acknowledge an entry whose stream entry is gone (its job finished or was canceled)."""
        guard(lambda: self.redis.xack(d.stream, GROUP, d.entry_id))

    # ---------------------------------------------------------------- job life
    def peek_requests(self, deliveries: Sequence[Delivery]) -> list[JobRequest | None]:
        """The stored requests of these jobs (None: missing or unparsable), to group a batch before
        starting it."""

        def go() -> list[Any]:
            with self.redis.pipeline(transaction=False) as p:
                for d in deliveries:
                    p.hget(self.keys.job(d.job_id or "_"), "request")
                return list(p.execute())

        out: list[JobRequest | None] = []
        for raw in guard(go):
            try:
                out.append(None if raw is None else JobRequest.model_validate_json(raw))
            except ValidationError:
                out.append(None)
        return out

    def start(self, deliveries: Sequence[Delivery]) -> list[StartOutcome]:
        """Atomically move each job to ``running`` (or learn why not): counts the attempt, moves a job
        whose attempts are exhausted to the dead-letter stream."""
        if not deliveries:
            return []
        k = self.keys

        def go() -> list[Any]:
            with self.redis.pipeline(transaction=False) as p:
                for d in deliveries:
                    jid = d.job_id or "_"
                    self._start(keys=[k.job(jid), d.stream, k.events(jid), k.dead],
                                args=[GROUP, d.entry_id, self.name, jid, self.ttl_s], client=p)
                return list(p.execute())

        out: list[StartOutcome] = []
        for r in guard(go):
            action = as_str(r[0])
            if action == "run":
                try:
                    req = JobRequest.model_validate_json(r[2])
                    out.append(StartOutcome("run", int(as_str(r[1])), req))
                except ValidationError as exc:
                    out.append(StartOutcome("run", int(as_str(r[1])), None, request_error=f"invalid stored request: {exc}"))
            else:
                out.append(StartOutcome(action, detail=as_str(r[1]) if len(r) > 1 else ""))  # type: ignore[arg-type]
        return out

    def progress(self, updates: dict[str, float]) -> None:
        """Write progress (0..1) of running jobs this worker owns; ignored for others."""
        if not updates:
            return
        k = self.keys

        def go() -> None:
            with self.redis.pipeline(transaction=False) as p:
                for jid, frac in updates.items():
                    self._progress(keys=[k.job(jid), k.events(jid)],
                                   args=[self.name, f"{min(1.0, max(0.0, frac)):.4f}", self.ttl_s], client=p)
                p.execute()

        guard(go)

    def finish(self, d: Delivery, status: Literal["succeeded", "failed", "canceled"], result: dict[str, Any] | None,
               error: str = "", frames: dict[str, bytes] | None = None) -> bool:
        """Write the job's terminal state, result and keyframes and acknowledge the entry, atomically,
        only if the job is not terminal yet. True: this call wrote it; False: a duplicate (dropped)."""
        return self.finish_many([(d, status, result, error, frames)])[0]

    def finish_many(
        self, items: Sequence[tuple[Delivery, str, dict[str, Any] | None, str, dict[str, bytes] | None]],
    ) -> list[bool]:
        if not items:
            return []
        k = self.keys

        def go() -> list[Any]:
            with self.redis.pipeline(transaction=False) as p:
                for d, status, result, error, frames in items:
                    jid = d.job_id or "_"
                    args: list[Any] = [GROUP, d.entry_id, self.name, status,
                                       json.dumps(result, separators=(",", ":")) if result is not None else "",
                                       trim_error(error), self.ttl_s]
                    for name, png in (frames or {}).items():
                        args += [name, png]
                    self._finish(keys=[k.job(jid), d.stream, k.events(jid), k.frames(jid), k.results_written],
                                 args=args, client=p)
                return list(p.execute())

        return [as_str(r) == "ok" for r in guard(go)]

    def fail(self, d: Delivery, error: str) -> str:
        """A failed attempt: back to the queue (``requeued``) or, after ``max_attempts``, to the
        dead-letter stream (``dead``); ``canceled`` if a cancel was requested; ``stale``/``dup``/``gone``
        when the job is no longer this worker's to fail."""
        return self._requeue_one(d, trim_error(error), "fail")

    def release(self, d: Delivery, note: str = "") -> str:
        """Give an unfinished job back (shutdown): requeued at once for another worker, the attempt
        not counted."""
        return self._requeue_one(d, note or f"released by worker {self.name}", "release")

    def _requeue_one(self, d: Delivery, text: str, how: str) -> str:
        k = self.keys
        jid = d.job_id or "_"
        r = guard(lambda: self._requeue(keys=[k.job(jid), d.stream, k.events(jid), k.dead],
                                         args=[GROUP, d.entry_id, self.name, text, self.ttl_s, how, jid]))
        return as_str(r[0])

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these jobs have a cancel request (or vanished)."""
        if not job_ids:
            return set()

        def go() -> list[Any]:
            with self.redis.pipeline(transaction=False) as p:
                for j in job_ids:
                    p.hmget(self.keys.job(j), "cancel", "status")
                return list(p.execute())

        out = set()
        for j, (flag, status) in zip(job_ids, guard(go)):
            if flag == b"1" or status is None or as_str(status) == "canceled":
                out.add(j)
        return out

    # ---------------------------------------------------------------- liveness
    def heartbeat(self, info: dict[str, Any]) -> int:
        """Refresh the heartbeat key and the idle time of every entry this worker owns; returns how
        many entries it holds."""
        hb = {"name": self.name, "backend": self.backend, "t": time.time(), **info}
        return int(guard(lambda: self._heartbeat(
            keys=[self.keys.heartbeat(self.name), self.keys.live(self.backend), *self.streams],
            args=[GROUP, self.name, int(self.heartbeat_ttl_s * 1000), json.dumps(hb)],
        )))

    def clear_heartbeat(self) -> None:
        guard(lambda: self.redis.delete(self.keys.heartbeat(self.name)))

    def write_metrics(self, values: dict[str, float | int | str], ttl_s: float | None = None) -> None:
        key = self.keys.metrics(self.name)

        def go() -> None:
            with self.redis.pipeline(transaction=False) as p:
                p.hset(key, mapping=values)  # type: ignore[arg-type]
                p.expire(key, int(ttl_s or max(60.0, 10 * self.heartbeat_ttl_s)))
                p.execute()

        guard(go)

    def forget_dead_consumers(self, min_idle_s: float = 3600.0) -> int:
        """Remove group consumers with nothing pending, no heartbeat and idle >= ``min_idle_s`` (keeps
        XINFO tidy after many worker restarts). Returns how many were removed."""

        def go() -> int:
            n = 0
            for s in self.streams:
                try:
                    consumers = self.redis.xinfo_consumers(s, GROUP)
                except redis.exceptions.ResponseError:
                    continue
                for c in consumers:
                    name = as_str(c["name"])
                    if (name != self.name and int(c["pending"]) == 0 and int(c["idle"]) >= min_idle_s * 1000
                            and not self.redis.exists(self.keys.heartbeat(name))):
                        self.redis.xgroup_delconsumer(s, GROUP, name)
                        n += 1
            return n

        return guard(go)

    # ---------------------------------------------------------------- objects
    def load_object(self, digest: str) -> MeshObject | PrimitiveObject | PointsObject | None:
        raw = guard(lambda: self.redis.get(self.keys.object(digest)))
        return None if raw is None else decode_object(bytes(raw))  # type: ignore[arg-type]


__all__ = ["Delivery", "JobConsumer", "StartOutcome", "default_worker_name"]
