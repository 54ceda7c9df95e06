"""Child processes that live only as long as their parent: the one mechanism every child this
package starts relies on (simulator processes of a pool, embedded Redis and worker processes).

Linux: the kernel sends the child a signal when its parent dies (``PR_SET_PDEATHSIG``), kill -9
included. The signal follows the parent *thread* that forked, so children that must outlive the
thread starting them are forked by :class:`Launcher`, one daemon thread that lives as long as the
process. Elsewhere (and as a second line on Linux) :func:`exit_with_parent` also watches the
parent id from a daemon thread.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

_PR_SET_PDEATHSIG = 1
WATCH_S = 1.0  # how often the fallback watcher looks at the parent id


def _prctl() -> Callable[..., int] | None:
    """libc's prctl (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def exit_with_parent(sig: int = signal.SIGKILL) -> None:
    """Call first thing in a child process: ``sig`` arrives when the parent dies; a daemon thread
    also exits the process if the parent id changes (platforms without prctl)."""
    parent = os.getppid()
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    def watch() -> None:
        while True:
            time.sleep(WATCH_S)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the parent died between fork and prctl
        os._exit(1)


def preexec_exit_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``subprocess.Popen`` ``preexec_fn`` that makes the child get ``sig`` when this process dies
    (None where prctl is not available). libc is loaded here, before the fork."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class Launcher:
    """One daemon thread that forks every child started with :meth:`popen`, so that the death
    signal fires when the process exits, never when a short-lived thread (a request handler) does."""

    _lock = threading.Lock()
    _instance: Launcher | None = None

    def __init__(self) -> None:
        self._q: queue.Queue[tuple[Callable[[], Any], queue.Queue[tuple[bool, Any]]]] = queue.Queue()
        t = threading.Thread(target=self._loop, name="dexgrasp-launcher", daemon=True)
        t.start()

    @classmethod
    def get(cls) -> Launcher:
        """The process's launcher (started on first use)."""
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _loop(self) -> None:
        while True:
            fn, reply = self._q.get()
            try:
                reply.put((True, fn()))
            except BaseException as exc:
                reply.put((False, exc))

    def popen(self, args: Sequence[str], sig: int = signal.SIGTERM, **kw: Any) -> subprocess.Popen[bytes]:
        """``subprocess.Popen(args, **kw)`` from the launcher thread; the child gets ``sig`` when this
        process dies."""
        reply: queue.Queue[tuple[bool, Any]] = queue.Queue()
        kw.setdefault("preexec_fn", preexec_exit_with_parent(sig))
        self._q.put((lambda: subprocess.Popen(list(args), **kw), reply))
        ok, value = reply.get()
        if not ok:
            raise value
        proc: subprocess.Popen[bytes] = value
        return proc


__all__ = ["Launcher", "exit_with_parent", "preexec_exit_with_parent"]
