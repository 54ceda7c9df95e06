"""The rollout worker's loop: a long-lived process that consumes the job queue (``sim_worker.jobs``).

A :class:`Worker` creates its simulators once (a :class:`~sim_worker.parallel.SimPool` of
``procs`` processes; ``procs=1`` simulates in-process) and then loops:

1. take up to ``batch`` entries: its own unfinished ones first (reclaimed from dead workers by the
   janitor, which runs every ``janitor_s``), then new ones, high priority first, blocking while idle;
2. group the batch: validate jobs on the same object, hand and config become *one* pool call (their
   grasps run in parallel across the pool's processes); each execute job is one call (its grasps run
   in parallel; per-job seeds stay as if it ran alone); noop jobs run together;
3. start each group's jobs (``queued -> running``, attempt counted), simulate, write progress, then
   the results and keyframes (atomically, first write wins) and acknowledge.

A heartbeat thread refreshes the worker's heartbeat key and its pending entries' idle time, writes
its metrics hash, polls cancel flags of the running jobs and marks jobs past ``job_timeout_s``;
cancellation, the time limit and shutdown reach the simulators through the pool's ``should_stop``
(checked between simulation chunks: every grasp and every few dozen physics steps). A job past its
limit is failed for good (a retry would take as long again), with the limit in its error; a
simulator that still has not stopped ``job_kill_after_s`` later (hung) is killed and restarted
(with ``procs`` > 1; with one the simulation runs in the worker's own thread).

Reads are high priority first, but every ``fair_every``-th read starts at a lower priority (normal,
then low, in turn): a steady stream of high-priority jobs delays the others, never starves them.

SIGTERM (or :meth:`Worker.request_stop`): stop reading, finish the current batch within
``grace_s``; past that, the simulators are stopped and the unfinished jobs are released (requeued
at once, the attempt not counted); exit code 0. A second SIGTERM or SIGINT skips the grace period.
``kill -9`` needs nothing from the worker: its heartbeat expires and another worker's janitor
reclaims its entries.

Logs are JSON lines on stderr (``{"ts", "level", "event", "worker", ...}``, :mod:`.logs`); metrics
(:mod:`.metrics`) are served in Prometheus text format on ``metrics_port`` (``/metrics``) and
written to the Redis hash ``{ns}:worker:{name}:metrics``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..jobs import Delivery, JobConsumer, JobRequest, QueueUnavailable
from .config import WorkerConfig
from .metrics import MetricsServer, WorkerMetrics
from .objects import sim_object_from_spec
from .results import job_result

log = logging.getLogger("dexgrasp.worker")
T = TypeVar("T")


# ============================================================================================ worker
class _JobFailure(Exception):
    """A job-level failure with a message for the job's ``error`` field."""


@dataclass
class _Run:
    """One started job inside the worker."""

    delivery: Delivery
    request: JobRequest
    attempt: int
    t0: float = field(default_factory=time.monotonic)
    results: list[dict[str, Any]] = field(default_factory=list)
    arrays: list[Any] = field(default_factory=list)
    last_progress: float = -1.0
    last_progress_t: float = 0.0

    @property
    def id(self) -> str:
        assert self.delivery.job_id is not None
        return self.delivery.job_id

    @property
    def n(self) -> int:
        return len(self.request.grasps)


class Worker:
    """Consume rollout jobs (see the module docstring). Context-managed::

        with Worker("redis://localhost:6379/0", WorkerConfig(batch=8, procs=2)) as w:
            w.run()  # until SIGTERM / request_stop()
    """

    def __init__(self, redis_url: str, config: WorkerConfig | None = None) -> None:
        self.cfg = (config or WorkerConfig()).check()
        self.url = redis_url
        self.consumer = JobConsumer(
            redis_url, backend=self.cfg.backend, namespace=self.cfg.namespace, name=self.cfg.name,
            ttl_s=self.cfg.ttl_s, heartbeat_ttl_s=self.cfg.heartbeat_ttl_s, reclaim_idle_s=self.cfg.reclaim_idle_s,
            max_block_s=self.cfg.block_ms / 1000.0,
        )
        self.name = self.consumer.name
        self.metrics = WorkerMetrics(self.name, self.cfg.backend)
        self.metrics_port: int | None = None
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._canceled: set[str] = set()
        self._deadlines: dict[str, float] = {}  # running job -> monotonic time its limit is reached
        self._expired: set[str] = set()  # running jobs past their time limit
        self._killed: set[str] = set()  # expired jobs whose simulators were killed
        self._reads = 0
        self._state = "starting"
        self._pool: Any = None
        self._objects: OrderedDict[str, Any] = OrderedDict()
        self._threads: list[threading.Thread] = []
        self._http: MetricsServer | None = None
        self._grace_timer: threading.Timer | None = None
        self._next_janitor = 0.0
        self._next_forget = time.monotonic() + 600.0
        self._last_redis_log = 0.0
        self._started = False

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> Worker:
        """Create the simulators (once), the heartbeat thread and the metrics endpoint. Raises
        ``RuntimeError`` with the backend's message when the backend cannot start (e.g. Isaac Gym
        missing)."""
        if self._started:
            return self
        self._started = True
        self._new_pool()
        if self.cfg.metrics_port is not None:
            self._http = MetricsServer(self.metrics.registry, self.cfg.metrics_host, self.cfg.metrics_port,
                                       name=f"{self.name}-metrics")
            self.metrics_port = self._http.port
        t = threading.Thread(target=self._control_loop, name=f"{self.name}-heartbeat", daemon=True)
        t.start()
        self._threads.append(t)
        self._state = "idle"
        self._log(logging.INFO, "worker_started", backend=self.cfg.backend, batch=self.cfg.batch, procs=self.cfg.procs,
                  pid=os.getpid(), metrics_port=self.metrics_port, pool_pids=list(self._pool.pids))
        return self

    def _new_pool(self) -> None:
        from ..config import SimConfig
        from ..parallel import SimPool

        pool = SimPool(self.cfg.backend, procs=self.cfg.procs, cfg=SimConfig())
        try:
            pool.start()
            pool.wait_ready()
        except BaseException:
            pool.close()
            raise
        self._pool = pool  # its simulator processes die with this one, kill -9 included (sim_worker.lifeline)

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def close(self) -> None:
        """Stop threads, the metrics endpoint and the simulators. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        if self._http is not None:
            self._http.close()
        for t in self._threads:
            t.join(5)
        self._close_pool()
        self.consumer.close()

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request_stop(self, grace_s: float | None = None) -> None:
        """Stop taking jobs; the current batch may run ``grace_s`` more seconds (default: the config's),
        then it is stopped and its unfinished jobs released. Thread- and signal-safe."""
        first = not self._stop.is_set()
        self._stop.set()
        g = self.cfg.grace_s if grace_s is None else grace_s
        if g <= 0:
            self._abort.set()
        elif first:
            self._grace_timer = threading.Timer(g, self._abort.set)
            self._grace_timer.daemon = True
            self._grace_timer.start()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self._stop.is_set():
            self._abort.set()  # second signal: no more grace
        else:
            self.request_stop()
        self._log(logging.INFO, "signal", signal=signal.Signals(signum).name, abort=self._abort.is_set())

    # ---------------------------------------------------------------- main loop
    def run(self, install_signals: bool = True) -> int:
        """Consume jobs until :meth:`request_stop` (or SIGTERM/SIGINT when ``install_signals`` and on the
        main thread). Returns the process exit code (0)."""
        self.start()
        if install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        backoff = 0.5
        groups_ok = False
        while not self._stop.is_set():
            try:
                if not groups_ok:
                    self.consumer.ensure_groups()
                    groups_ok = True
                batch = self._next_batch()
            except QueueUnavailable as exc:
                self._redis_down(exc)
                self._stop.wait(backoff)
                backoff = min(10.0, backoff * 2)
                continue
            backoff = 0.5
            if batch:
                t0 = time.monotonic()
                self._state = "busy"
                try:
                    self._process(batch)
                finally:
                    self._state = "idle"
                    self.metrics.add("busy_s", time.monotonic() - t0)
        self._state = "stopping"
        self._shutdown()
        self._log(logging.INFO, "worker_stopped", jobs=self.metrics.jobs)
        return 0

    def _next_batch(self) -> list[Delivery]:
        b = self.cfg.batch
        out = self.consumer.own_pending(b)
        now = time.monotonic()
        if len(out) < b and now >= self._next_janitor:
            self._next_janitor = now + self.cfg.janitor_s
            seen = {(d.stream, d.entry_id) for d in out}
            got = [d for d in self.consumer.reclaim(b - len(out)) if (d.stream, d.entry_id) not in seen]
            if got:
                self.metrics.add("reclaimed", len(got))
                self._log(logging.WARNING, "reclaimed", jobs=[d.job_id for d in got])
            out += got
            if now >= self._next_forget:
                self._next_forget = now + 600.0
                self.consumer.forget_dead_consumers()
        if len(out) < b:
            wait_ms = 0 if out else max(1, min(self.cfg.block_ms, int((self._next_janitor - now) * 1000)))
            out += self.consumer.fetch(b - len(out), block_ms=wait_ms, first=self._first_priority())
        return out

    def _first_priority(self) -> int:
        """The priority a read starts at: the highest, except every ``fair_every``-th read, which starts
        at the next lower one in turn (so none starves behind a steady stream of higher ones)."""
        self._reads += 1
        n, levels = self.cfg.fair_every, len(self.consumer.streams)
        if n <= 0 or levels < 2 or self._reads % n:
            return 0
        return 1 + (self._reads // n - 1) % (levels - 1)

    def _process(self, batch: list[Delivery]) -> None:
        self.metrics.batch(len(batch))
        live: list[Delivery] = []
        for d in batch:
            if d.job_id is None:
                self._ack_deleted(d)
            else:
                live.append(d)
        if not live:
            return
        reqs = self._retry_redis(lambda: self.consumer.peek_requests(live), "read requests")
        if reqs is None:
            return
        groups: OrderedDict[tuple[Any, ...], list[Delivery]] = OrderedDict()
        for d, req in zip(live, reqs):
            if req is None:
                key: tuple[Any, ...] = ("other", d.entry_id)  # missing or unparsable: start() decides
            elif req.mode == "noop":
                key = ("noop",)
            elif req.mode == "validate":
                key = ("validate", req.backend, req.object_hash, req.hand, json.dumps(req.sim or {}, sort_keys=True))
            else:
                key = ("execute", d.entry_id)
            groups.setdefault(key, []).append(d)
        self._log(logging.DEBUG, "batch", size=len(batch), groups=len(groups))
        for key, members in groups.items():
            if self._abort.is_set():
                for d in members:
                    self._release_delivery(d)
                continue
            self._run_group(str(key[0]), members)

    def _ack_deleted(self, d: Delivery) -> None:
        self._retry_redis(lambda: self.consumer.ack_deleted(d), "ack")

    def _run_group(self, kind: str, members: list[Delivery]) -> None:
        outcomes = self._retry_redis(lambda: self.consumer.start(members), "start jobs")
        if outcomes is None:
            return
        runs: list[_Run] = []
        for d, oc in zip(members, outcomes):
            if oc.action == "run":
                if oc.request is None:
                    self._fail_delivery(d, oc.request_error or "the job's stored request is missing")
                    continue
                runs.append(_Run(d, oc.request, oc.attempt))
                self._log(logging.INFO, "job_started", job=d.job_id, mode=oc.request.mode, attempt=oc.attempt,
                          grasps=len(oc.request.grasps), priority=d.priority)
            elif oc.action == "dead":
                self.metrics.job("dead_lettered")
                self._log(logging.WARNING, "job_dead_lettered", job=d.job_id, error=oc.detail)
            else:
                self._log(logging.DEBUG, "job_skipped", job=d.job_id, why=oc.action, detail=oc.detail)
        if not runs:
            return
        with self._lock:
            self._running.update(r.id for r in runs)
            if self.cfg.job_timeout_s > 0:
                self._deadlines.update((r.id, r.t0 + self.cfg.job_timeout_s) for r in runs)
        try:
            if kind == "noop":
                self._run_noop(runs)
            elif kind in ("validate", "execute"):
                self._run_sim(kind, runs)
            else:  # pragma: no cover - a request unreadable at peek time but fine at start
                for r in runs:
                    if r.request.mode == "noop":
                        self._run_noop([r])
                    else:
                        self._run_sim(r.request.mode, [r])
        finally:
            with self._lock:
                ids = {r.id for r in runs}
                self._running -= ids
                self._canceled -= ids
                self._expired -= ids
                self._killed -= ids
                for i in ids:
                    self._deadlines.pop(i, None)

    # ---------------------------------------------------------------- noop
    def _run_noop(self, runs: list[_Run]) -> None:
        t0 = time.monotonic()
        left = sorted(runs, key=lambda r: r.request.sleep_s)
        while left:
            now = time.monotonic()
            due = [r for r in left if now - t0 >= r.request.sleep_s]
            canceled = [r for r in left if r.id in self._canceled and r not in due]
            done = [(r, "succeeded", {"mode": "noop", "n_grasps": r.n, "slept_s": r.request.sleep_s,
                                      "worker": self.name, "attempt": r.attempt}) for r in due]
            done += [(r, "canceled", {"mode": "noop", "n_grasps": r.n, "worker": self.name}) for r in canceled]
            if done:
                self._finish([(r, st, res, {}) for r, st, res in done])
            expired = [r for r in left if r.id in self._expired and r not in due and r not in canceled]
            for r in expired:
                self._finish([(r, "failed", {"mode": "noop", "n_grasps": r.n, "worker": self.name}, {})], self._too_long(r))
            if done or expired:
                gone = {id(r) for r, _, _ in done} | {id(r) for r in expired}
                left = [r for r in left if id(r) not in gone]
            if not left:
                return
            if self._abort.is_set():
                for r in left:
                    self._release_run(r)
                return
            for r in left:
                self._progress(r, min(0.99, (time.monotonic() - t0) / max(r.request.sleep_s, 1e-9)))
            nxt = min(r.request.sleep_s for r in left) - (time.monotonic() - t0)
            time.sleep(min(0.05, max(0.0, nxt)))

    # ---------------------------------------------------------------- simulation
    def _sim_object(self, digest: str) -> Any:
        if digest in self._objects:
            self._objects.move_to_end(digest)
            return self._objects[digest]
        spec = self._retry_redis(lambda: self.consumer.load_object(digest), "load object")
        if spec is None:
            raise _JobFailure(f"object {digest} is not stored (expired or never uploaded): upload it with put_object "
                              "and enqueue the job again")
        try:
            obj = sim_object_from_spec(spec, source=f"object:{digest[:12]}")
        except (ValueError, RuntimeError) as exc:
            raise _JobFailure(f"object {digest} cannot be simulated: {exc}") from None
        self._objects[digest] = obj
        while len(self._objects) > self.cfg.object_cache:
            self._objects.popitem(last=False)
        return obj

    def _run_sim(self, kind: str, runs: list[_Run]) -> None:
        from ..arrays import GraspArrays
        from ..config import SimConfig

        req = runs[0].request
        try:
            assert req.object_hash is not None
            obj = self._sim_object(req.object_hash)
            cfg = SimConfig.from_dict(req.sim or {})
            for r in runs:
                r.arrays = [GraspArrays.from_grasp(g) for g in r.request.grasps]
        except (_JobFailure, ValueError, KeyError, TypeError) as exc:
            for r in runs:
                self._fail_run(r, str(exc) if isinstance(exc, _JobFailure) else f"bad job: {type(exc).__name__}: {exc}")
            return
        if kind == "validate":
            self._simulate(runs, obj, cfg, execute=False)
        else:
            for r in runs:
                if self._abort.is_set():
                    self._release_run(r)
                    continue
                self._simulate([r], obj, cfg, execute=True)

    def _simulate(self, runs: list[_Run], obj: Any, cfg: Any, execute: bool) -> None:
        """Run these jobs' remaining grasps as one pool call; repeat after a cancellation stopped the
        call early (the canceled job leaves, the others resume where they were)."""
        from ..parallel import GraspSimulationError

        pending = list(runs)
        stalls = 0
        while pending:
            spans: list[tuple[_Run, int, int]] = []  # run, offset in the call, grasps in the call
            grasps: list[Any] = []
            for r in pending:
                todo = r.arrays[len(r.results):]
                spans.append((r, len(grasps), len(todo)))
                grasps += todo
            ids = [r.id for r in pending]

            def should_stop(ids: list[str] = ids) -> bool:
                return self._abort.is_set() or any(i in self._canceled or i in self._expired for i in ids)

            def progress(done: int, total: int, spans: list[tuple[_Run, int, int]] = spans) -> None:
                for r, off, n in spans:
                    self._progress(r, (len(r.results) + min(n, max(0, done - off))) / r.n)

            self._pool.cfg = cfg
            try:
                if execute:
                    r0 = pending[0]
                    out = self._pool.execute(obj, grasps, hand=r0.request.hand, policy=r0.request.policy,
                                             render=r0.request.render, seed=r0.request.seed + len(r0.results),
                                             progress=progress, should_stop=should_stop)
                else:
                    out = self._pool.validate(obj, grasps, hand=pending[0].request.hand, progress=progress,
                                              should_stop=should_stop)
            except RuntimeError as exc:
                if isinstance(exc, GraspSimulationError) and self._pool is not None and not self._pool.closed:
                    # one grasp raised: its job fails, the others in the call run again from where they were
                    for r, off, n in spans:
                        if off <= exc.index < off + n:
                            self._fail_run(r, f"simulation failed on grasp {len(r.results) + exc.index - off}: "
                                              f"{exc.detail}")
                            pending.remove(r)
                            break
                    continue
                self._log(logging.ERROR, "simulator_crashed", error=str(exc), jobs=ids)
                for r in pending:
                    if r.id in self._expired:  # killed past its time limit: no retry
                        self._finish([(r, "failed", *self._result(r, execute))], self._too_long(r))
                    else:
                        self._fail_run(r, f"the simulator crashed: {exc}")
                self._close_pool()
                self._new_pool()
                return
            self.metrics.add("grasps", len(out))
            for r, off, n in spans:
                r.results += out[off: off + n] if off < len(out) else []
            complete = [r for r in pending if len(r.results) == r.n]
            if complete:
                self._finish([(r, "succeeded", *self._result(r, execute)) for r in complete])
            pending = [r for r in pending if len(r.results) < r.n]
            if not pending:
                return
            canceled = [r for r in pending if r.id in self._canceled]
            if canceled:
                self._finish([(r, "canceled", *self._result(r, execute)) for r in canceled])
                pending = [r for r in pending if r not in canceled]
            for r in [r for r in pending if r.id in self._expired]:
                self._finish([(r, "failed", *self._result(r, execute))], self._too_long(r))
                pending.remove(r)
            if self._abort.is_set():
                for r in pending:
                    self._release_run(r)
                return
            stalls = 0 if (out or canceled) else stalls + 1
            if stalls > 3:  # pragma: no cover - a backend that returns nothing without being stopped
                for r in pending:
                    self._fail_run(r, "the simulator returned no results")
                return

    def _too_long(self, r: _Run) -> str:
        return (f"stopped at the worker's job time limit of {self.cfg.job_timeout_s:g} s (--job-timeout-s) after "
                f"{len(r.results)} of {r.n} grasps; send fewer grasps per job or a simpler object")

    def _result(self, r: _Run, execute: bool) -> tuple[dict[str, Any], dict[str, bytes]]:
        return job_result(r.request, r.results, execute, self.name, r.attempt, time.monotonic() - r.t0)

    # ---------------------------------------------------------------- reporting
    def _progress(self, r: _Run, frac: float) -> None:
        now = time.monotonic()
        if frac - r.last_progress < 0.01 or now - r.last_progress_t < self.cfg.progress_interval_s:
            return
        r.last_progress, r.last_progress_t = frac, now
        try:
            self.consumer.progress({r.id: frac})
        except QueueUnavailable as exc:  # progress is best effort
            self._redis_down(exc)

    def _finish(self, items: list[tuple[_Run, str, dict[str, Any], dict[str, bytes]]], error: str = "") -> None:
        written = self._retry_redis(
            lambda: self.consumer.finish_many([(r.delivery, st, res, error, fr) for r, st, res, fr in items]), "finish")
        if written is None:
            return
        for (r, st, _res, _fr), ok in zip(items, written):
            dt = time.monotonic() - r.t0
            self.metrics.job(st if ok else "duplicate", dt)
            self._log(logging.INFO if ok else logging.WARNING, "job_finished" if ok else "job_result_duplicate",
                      job=r.id, status=st, seconds=round(dt, 4), attempt=r.attempt)

    def _fail_run(self, r: _Run, error: str) -> None:
        self._fail_delivery(r.delivery, error, time.monotonic() - r.t0)

    def _fail_delivery(self, d: Delivery, error: str, seconds: float | None = None) -> None:
        out = self._retry_redis(lambda: self.consumer.fail(d, error), "fail")
        outcome = {"requeued": "retried", "dead": "dead_lettered", "canceled": "canceled"}.get(str(out), "duplicate")
        self.metrics.job(outcome, seconds)
        if outcome == "dead_lettered":
            self.metrics.job("failed")
        self._log(logging.WARNING, "job_failed", job=d.job_id, error=error[:500], outcome=out)

    def _release_run(self, r: _Run) -> None:
        self._release_delivery(r.delivery)

    def _release_delivery(self, d: Delivery) -> None:
        out = self._retry_redis(lambda: self.consumer.release(d), "release", patient=False)
        self.metrics.job("released")
        self._log(logging.INFO, "job_released", job=d.job_id, outcome=out)

    # ---------------------------------------------------------------- Redis trouble
    def _redis_down(self, exc: Exception) -> None:
        self.metrics.add("redis_errors")
        now = time.monotonic()
        if now - self._last_redis_log > 10.0:
            self._last_redis_log = now
            self._log(logging.WARNING, "redis_unavailable", error=str(exc))

    def _retry_redis(self, fn: Callable[[], T], what: str, patient: bool = True) -> T | None:
        """Retry a write while Redis is away (up to ``write_retry_s``; once when not ``patient`` or
        aborting). None when it never went through: the entry stays in this worker's pending list and
        is redone from there, or reclaimed by another worker if this one goes away."""
        deadline = time.monotonic() + (self.cfg.write_retry_s if patient else 0.0)
        delay = 0.2
        while True:
            try:
                return fn()
            except QueueUnavailable as exc:
                self._redis_down(exc)
                if time.monotonic() >= deadline or self._abort.is_set() or self._closed.is_set():
                    self._log(logging.ERROR, "redis_write_lost", what=what, error=str(exc))
                    return None
                time.sleep(delay)
                delay = min(5.0, delay * 2)

    # ---------------------------------------------------------------- background
    def _heartbeat_info(self) -> dict[str, Any]:
        with self._lock:
            running = len(self._running)
        return {"pid": os.getpid(), "host": os.uname().nodename, "batch": self.cfg.batch, "procs": self.cfg.procs,
                "state": self._state, "running": running, "metrics_port": self.metrics_port,
                "started_at": self.metrics.started, "pool_pids": list(self._pool.pids) if self._pool else []}

    def _control_loop(self) -> None:
        next_hb = 0.0
        while not self._closed.is_set():
            try:
                now = time.monotonic()
                if now >= next_hb:
                    next_hb = now + self.cfg.heartbeat_s
                    self.consumer.heartbeat(self._heartbeat_info())
                    self.consumer.write_metrics(self.metrics.flat())
                with self._lock:
                    running = list(self._running)
                    late = {j for j, t in self._deadlines.items() if now >= t} - self._expired
                    self._expired |= late
                    hung = {j for j, t in self._deadlines.items() if now >= t + self.cfg.job_kill_after_s} - self._killed
                    self._killed |= hung
                if late:
                    self._log(logging.WARNING, "job_timed_out", jobs=sorted(late), limit_s=self.cfg.job_timeout_s)
                pool = self._pool
                if hung and pool is not None:
                    self._log(logging.ERROR, "simulator_hung", jobs=sorted(hung), killed=pool.kill())
                if running:
                    flagged = self.consumer.cancel_requested(running)
                    new = flagged - self._canceled
                    if new:
                        with self._lock:
                            self._canceled |= new
                        self._log(logging.INFO, "cancel_seen", jobs=sorted(new))
            except QueueUnavailable as exc:
                self._redis_down(exc)
            except Exception:  # pragma: no cover - never let the heartbeat thread die
                log.exception("heartbeat_error", extra={"fields": {"worker": self.name}})
            self._closed.wait(self.cfg.cancel_poll_s)

    def _shutdown(self) -> None:
        """Give back what this worker holds but did not start, stop heartbeating, final metrics."""
        try:
            for d in self.consumer.own_pending(10000):
                if d.job_id is None:
                    self.consumer.ack_deleted(d)
                else:
                    self._release_delivery(d)
            self.consumer.write_metrics(self.metrics.flat())
            self.consumer.clear_heartbeat()
        except QueueUnavailable as exc:
            self._log(logging.WARNING, "shutdown_without_redis", error=str(exc))

    def _log(self, level: int, event: str, **fields: Any) -> None:
        log.log(level, event, extra={"fields": {"worker": self.name, **fields}})


__all__ = ["Worker"]
