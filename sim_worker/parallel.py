"""Run many grasps through a simulator backend on several CPU cores.

:class:`SimPool` owns ``procs`` worker processes started with the ``spawn``
context (MuJoCo and OpenGL state must never be forked). Each worker creates its
backend once and reuses it for every task it gets, so a pool is one simulator
per process for its whole life. ``procs=1`` runs the backend in the calling
process, which is what tests and debuggers want.

A call (:meth:`SimPool.validate`, :meth:`SimPool.execute`) cuts the grasps into
chunks that the workers pull from one shared queue (idle workers take the next
chunk, so fast failures and slow successes balance out). Workers send one
message per finished grasp; the caller puts results back in input order and
calls ``progress(done, total)`` as they arrive. Grasps are run one at a time
through the backend with ``seed + index`` for execution, so results do not depend
on ``procs`` or on the chunking. ``should_stop()`` turning true cancels a call; it
returns the results of the longest completed prefix of the grasps (a grasp the
backend was told to stop in the middle of is never reported). Workers take a
second or two to start (imports); :meth:`SimPool.wait_ready` blocks until they
are up, for services and benchmarks that want a warm pool.

Objects (:class:`~sim_worker.scene.SimObject`), grasps
(:class:`~sim_worker.backends.base.GraspArrays`) and the
:class:`~sim_worker.config.SimConfig` are frozen dataclasses of numpy arrays and
numbers; they are pickled onto the pool's own local queues, never sent anywhere
else.

Errors: an exception while simulating grasp ``i`` is re-raised in the caller as
:class:`GraspSimulationError` (a ``RuntimeError``: "simulation failed on grasp i: Type:
message", with ``index`` and ``detail``; the worker's traceback is the ``__cause__``); the pool cancels the rest of that call and stays
usable. A worker that dies (crash, out of memory) shuts the pool down and raises
a ``RuntimeError`` naming the grasp it was running. ``close()`` (also on leaving
the ``with`` block, including by an exception or Ctrl-C) stops the workers,
terminating them if they do not stop within a few seconds.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from .arrays import GraspArrays
from .backends import get_backend
from .backends.base import Progress, SimBackend
from .config import SimConfig
from .execute import ExecutionResult
from .lifeline import exit_with_parent
from .scene import SimObject
from .validate import SimulationDiverged, ValidationResult

POLL_S = 0.2  # how often the caller checks worker liveness and ``should_stop`` while waiting
JOIN_S = 5.0  # grace period for workers to exit on close() before they are terminated
MAX_CHUNK = 32


class GraspSimulationError(RuntimeError):
    """Simulating one grasp of a call raised: ``index`` is the grasp's position in the call,
    ``detail`` the exception as ``"Type: message"``. The pool stays usable."""

    def __init__(self, index: int, detail: str) -> None:
        super().__init__(f"simulation failed on grasp {index}: {detail}")
        self.index = index
        self.detail = detail

    def __reduce__(self) -> tuple[type[GraspSimulationError], tuple[int, str]]:
        return type(self), (self.index, self.detail)


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker process (set as ``__cause__``)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


@dataclass(frozen=True)
class _Task:
    """One chunk of one call, as sent to a worker."""

    job: int
    kind: str  # "validate" or "execute"
    start: int  # global index of grasps[0]
    obj: SimObject
    grasps: tuple[GraspArrays, ...]
    cfg: SimConfig
    hand: str
    options: dict[str, Any] = field(default_factory=dict)  # execute: policy, render, seed


def _as_arrays(grasps: Sequence[Any]) -> list[GraspArrays]:
    """Accept :class:`GraspArrays` or :class:`models.grasp.Grasp` (converted once, in the caller)."""
    return [g if isinstance(g, GraspArrays) else GraspArrays.from_grasp(g) for g in grasps]


class _StopProbe:
    """A stop predicate that remembers whether it ever answered True: a backend that saw True may have
    cut the grasp short, so its result is dropped; one that never saw it ran the grasp in full."""

    def __init__(self, pred: Callable[[], bool]) -> None:
        self.pred = pred
        self.tripped = False

    def __call__(self) -> bool:
        if self.pred():
            self.tripped = True
        return self.tripped


def _run_one(
    backend: SimBackend, task: _Task, i: int, should_stop: Callable[[], bool] | None
) -> dict[str, Any] | None:
    """Simulate grasp ``task.start + i``; None when it was stopped (not run, or possibly cut short)."""
    probe = None if should_stop is None else _StopProbe(should_stop)
    g = [task.grasps[i]]
    if task.kind == "validate":
        try:
            out = backend.validate(task.obj, g, task.cfg, hand=task.hand, should_stop=probe)
        except SimulationDiverged as e:
            if not task.options.get("diverged_fails"):
                raise
            failed = ValidationResult(success=False, initial_penetration_m=float("nan"), reason=f"simulation diverged: {e}",
                                      protocol=task.cfg.validation.protocol)
            return {**failed.to_dict(), "diverged": True}
    elif task.kind == "execute":
        o = task.options
        try:
            out = backend.execute(
                task.obj, g, task.cfg, hand=task.hand, policy=o["policy"], render=o["render"],
                seed=o["seed"] + task.start + i, should_stop=probe, gif=o.get("gif", False),
            )
        except SimulationDiverged as e:
            if not o.get("diverged_fails"):
                raise
            return {**ExecutionResult(success=False, reason=f"simulation diverged: {e}", policy=str(o["policy"]),
                                      seed=o["seed"] + task.start + i).to_dict(), "diverged": True}
    else:  # pragma: no cover - internal
        raise ValueError(f"unknown task kind {task.kind!r}")
    if not out or (probe is not None and probe.tripped):
        return None
    return out[0]


def _worker_main(
    wid: int, backend_name: str, backend_kwargs: dict[str, Any], tasks: Any, results: Any, cancel: Any
) -> None:
    """Worker loop: one backend for the life of the process; ``None`` on the task queue ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller decides when to stop (close())
    exit_with_parent()  # never outlive the pool's process (kill -9 included): it would block on the queue
    try:
        backend = get_backend(backend_name, **backend_kwargs)
    except BaseException as exc:
        results.put(("fatal", wid, -1, -1, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return
    results.put(("ready", wid, -1, -1, None, None))
    try:
        while True:
            task: _Task | None = tasks.get()
            if task is None:
                break
            job = task.job

            def stopped(job: int = job) -> bool:
                return bool(cancel.value >= job)

            results.put(("chunk", wid, job, task.start, len(task.grasps), None))
            for i in range(len(task.grasps)):
                if stopped():
                    break
                try:
                    r = _run_one(backend, task, i, stopped)
                except Exception as exc:
                    results.put(("error", wid, job, task.start + i, f"{type(exc).__name__}: {exc}",
                                 traceback.format_exc()))
                    break
                if r is None:  # stopped by a cancellation before or while running it
                    break
                results.put(("result", wid, job, task.start + i, r, None))
            results.put(("done", wid, job, task.start, None, None))
    finally:
        backend.close()


def _chunks(n: int, procs: int, chunk_size: int | None) -> list[tuple[int, int]]:
    size = chunk_size or max(1, min(MAX_CHUNK, math.ceil(n / (4 * procs))))
    return [(s, min(n, s + size)) for s in range(0, n, size)]


class SimPool:
    """``procs`` simulator processes behind one call interface (see the module docstring).

    >>> with SimPool("mujoco", procs=4, cfg=SimConfig()) as pool:  # doctest: +SKIP
    ...     results = pool.validate(obj, grasps, progress=lambda done, total: None)
    """

    def __init__(
        self, backend: str = "mujoco", procs: int = 1, cfg: SimConfig | None = None,
        chunk_size: int | None = None, backend_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if procs < 1:
            raise ValueError(f"procs must be >= 1, got {procs}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.backend_name = backend
        self.procs = procs
        self.cfg = cfg or SimConfig()
        self.chunk_size = chunk_size
        self._backend_kwargs = dict(backend_kwargs or {})
        self._ctx = mp.get_context("spawn")
        self._local: SimBackend | None = None
        self._workers: list[BaseProcess] = []
        self._tasks: Any = None
        self._results: Any = None
        self._cancel: Any = None
        self._job = 0
        self._ready: set[int] = set()  # workers whose backend is up
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SimPool:
        """Create the backend (procs=1) or start the workers; idempotent, called on first use."""
        if self._closed:
            raise RuntimeError("the simulation pool is closed")
        if self._started:
            return self
        self._started = True
        if self.procs == 1:
            self._local = get_backend(self.backend_name, **self._backend_kwargs)
            return self
        self._tasks = self._ctx.Queue()
        self._results = self._ctx.Queue()
        self._cancel = self._ctx.Value("q", 0)
        for wid in range(self.procs):
            p = self._ctx.Process(
                target=_worker_main,
                args=(wid, self.backend_name, self._backend_kwargs, self._tasks, self._results, self._cancel),
                name=f"sim-worker-{wid}",
                daemon=True,
            )
            p.start()
            self._workers.append(p)
        return self

    def close(self) -> None:
        """Stop the workers (cancelling any running call) and free the simulators. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._local is not None:
            self._local.close()
            self._local = None
        if not self._workers:
            return
        with self._cancel.get_lock():
            self._cancel.value = self._job
        for _ in self._workers:
            try:
                self._tasks.put(None)
            except (OSError, ValueError):  # pragma: no cover - queue already broken
                break
        for p in self._workers:
            p.join(JOIN_S)
        for p in self._workers:
            if p.is_alive():
                p.terminate()
                p.join(JOIN_S)
            if p.is_alive():  # pragma: no cover - ignores SIGTERM
                p.kill()
                p.join()
        for q in (self._tasks, self._results):
            q.cancel_join_thread()  # never block interpreter exit on unread items
            q.close()
        self._workers = []

    def __enter__(self) -> SimPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort when close() was forgotten
        if getattr(self, "_workers", None):
            for p in self._workers:
                if p.is_alive():
                    p.terminate()

    def wait_ready(self, timeout: float = 120.0) -> SimPool:
        """Block until every worker has its backend up (process start and imports take a second or
        two each); for services that want the pool warm before the first request, and benchmarks.
        Call it between calls, not from a progress callback."""
        self.start()
        if self._local is not None:
            return self
        deadline = time.monotonic() + timeout
        while len(self._ready) < self.procs:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.procs - len(self._ready)} simulation workers not ready after {timeout} s")
            try:
                msg = self._results.get(timeout=POLL_S)
            except queue.Empty:
                try:
                    self._check_workers({}, [])
                except BaseException:
                    self.close()
                    raise
                continue
            try:
                self._note_lifecycle(msg)
            except BaseException:
                self.close()
                raise
        return self

    def _note_lifecycle(self, msg: tuple[Any, ...]) -> bool:
        """Handle "ready"/"fatal" worker messages; True when ``msg`` was one of them."""
        kind, wid, _, _, payload, tb = msg
        if kind == "ready":
            self._ready.add(wid)
            return True
        if kind == "fatal":
            raise RuntimeError(f"simulation worker {wid} could not start the {self.backend_name!r} "
                               f"backend: {payload}") from RemoteTraceback(tb)
        return False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (a crashed worker closes the pool too)."""
        return self._closed

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers (empty for procs=1)."""
        return [p.pid for p in self._workers if p.pid is not None]

    # ------------------------------------------------------------------ calls
    def validate(
        self, obj: SimObject, grasps: Sequence[Any], hand: str = "shadow", progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None, diverged_fails: bool = False,
    ) -> list[dict[str, Any]]:
        """Six-direction disturbance test of every grasp (``validate.py``), results in input order.

        ``grasps``: :class:`GraspArrays` or ``models.grasp.Grasp``. If ``should_stop()`` turns true the
        call stops and returns the results of the completed prefix of ``grasps``. A grasp whose
        simulation diverges raises :class:`GraspSimulationError` (a rollout job fails with it); with
        ``diverged_fails`` (quality benches, the synthesis filter) it is a failed grasp instead, its
        result marked ``diverged`` with the reason."""
        return self._run("validate", obj, grasps, hand, {"diverged_fails": diverged_fails}, progress, should_stop)

    def execute(
        self, obj: SimObject, grasps: Sequence[Any], hand: str = "shadow", policy: str = "scripted",
        render: bool = False, seed: int = 0, progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None, gif: bool = False, diverged_fails: bool = False,
    ) -> list[dict[str, Any]]:
        """Table-top execution of every grasp (``execute.py``); grasp ``i`` runs with seed ``seed + i``.
        A diverged simulation raises as in :meth:`validate`, or with ``diverged_fails`` is a failed rollout."""
        opts = {"policy": policy, "render": render, "seed": seed, "gif": gif, "diverged_fails": diverged_fails}
        return self._run("execute", obj, grasps, hand, opts, progress, should_stop)

    def _run(
        self, kind: str, obj: SimObject, grasps: Sequence[Any], hand: str, options: dict[str, Any],
        progress: Progress | None, should_stop: Callable[[], bool] | None,
    ) -> list[dict[str, Any]]:
        self.start()
        arrays = _as_arrays(grasps)
        n = len(arrays)
        if n == 0:
            return []
        self._job += 1
        task = _Task(self._job, kind, 0, obj, tuple(arrays), self.cfg, hand, options)
        if self._local is not None:
            return self._run_local(task, progress, should_stop)
        return self._run_workers(task, progress, should_stop)

    def _run_local(
        self, task: _Task, progress: Progress | None, should_stop: Callable[[], bool] | None
    ) -> list[dict[str, Any]]:
        assert self._local is not None
        n = len(task.grasps)
        out: list[dict[str, Any]] = []
        for i in range(n):
            if should_stop is not None and should_stop():
                break
            try:
                r = _run_one(self._local, task, i, should_stop)
            except Exception as exc:
                raise GraspSimulationError(i, f"{type(exc).__name__}: {exc}") from exc
            if r is None:
                break
            out.append(r)
            if progress is not None:
                progress(i + 1, n)
        return out

    def _run_workers(
        self, task: _Task, progress: Progress | None, should_stop: Callable[[], bool] | None
    ) -> list[dict[str, Any]]:
        n = len(task.grasps)
        job = task.job
        spans = _chunks(n, self.procs, self.chunk_size)
        for s, e in spans:
            self._tasks.put(_Task(job, task.kind, s, task.obj, task.grasps[s:e], task.cfg, task.hand, task.options))
        results: list[dict[str, Any] | None] = [None] * n
        running: dict[int, tuple[int, int]] = {}  # worker -> (chunk start, chunk length)
        outstanding = len(spans)
        done = 0
        failure: tuple[int, str, str] | None = None  # (grasp index, message, traceback)
        cancelled = False
        try:
            while outstanding:
                try:
                    msg = self._results.get(timeout=POLL_S)
                except queue.Empty:
                    self._check_workers(running, results)
                    if not cancelled and should_stop is not None and should_stop():
                        cancelled = self._cancel_job(job)
                    continue
                if self._note_lifecycle(msg):
                    continue
                kind, wid, mjob, idx, payload, tb = msg
                if mjob != job:  # stale message of an earlier cancelled call
                    continue
                if kind == "chunk":
                    running[wid] = (idx, int(payload))
                elif kind == "done":
                    running.pop(wid, None)
                    outstanding -= 1
                elif kind == "result":
                    if results[idx] is None:
                        results[idx] = payload
                        done += 1
                        if progress is not None and not cancelled:
                            progress(done, n)
                elif kind == "error":
                    if failure is None or idx < failure[0]:
                        failure = (idx, str(payload), str(tb))
                    if not cancelled:
                        cancelled = self._cancel_job(job)
                if not cancelled and should_stop is not None and should_stop():
                    cancelled = self._cancel_job(job)
        except BaseException:
            self.close()  # a broken or interrupted call leaves no workers behind
            raise
        if failure is not None:
            idx, msg, tb = failure
            raise GraspSimulationError(idx, msg) from RemoteTraceback(tb)
        out: list[dict[str, Any]] = []
        for r in results:
            if r is None:
                break
            out.append(r)
        return out

    def kill(self) -> bool:
        """Kill the simulator processes, from any thread: for a call stuck where it no longer checks
        ``should_stop`` (a hung simulator). The running call then raises ``RuntimeError`` as when a
        worker dies, and the pool is closed. False with procs=1 (the simulation runs in the caller's
        thread: nothing to kill)."""
        if not self._workers:
            return False
        for p in list(self._workers):
            if p.is_alive():
                p.kill()
        return True

    def _cancel_job(self, job: int) -> bool:
        with self._cancel.get_lock():
            self._cancel.value = max(self._cancel.value, job)
        return True

    def _check_workers(self, running: dict[int, tuple[int, int]], results: Sequence[Any]) -> None:
        for wid, p in enumerate(self._workers):
            if p.is_alive():
                continue
            where = ""
            if wid in running:
                s, length = running[wid]
                pending = [i for i in range(s, s + length) if results[i] is None]
                if pending:
                    where = f" while running grasp {pending[0]}"
            raise RuntimeError(f"simulation worker {wid} (pid {p.pid}) died with exit code {p.exitcode}{where}")


def default_procs(n_grasps: int, per_proc: int = 8) -> int:
    """A sensible worker count: one per ``per_proc`` grasps, at most one per CPU core, at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, n_grasps // per_proc))


__all__ = ["GraspSimulationError", "RemoteTraceback", "SimPool", "default_procs"]
