"""The worker's settings, defined once: :class:`WorkerConfig` is the source of the ``dexgrasp worker``
options (names, types, defaults and help come from its fields) and of the argument list the
embedded launcher passes to worker processes."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from ..jobs import DEFAULT_TTL_S, HEARTBEAT_S, HEARTBEAT_TTL_S, RECLAIM_IDLE_S


def _setting(default: Any, help: str, flag: str | None = None) -> Any:
    """A config field with its command-line help (and its option name when not ``--field-name``)."""
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True)
class WorkerConfig:
    """Worker settings (seconds unless named otherwise)."""

    backend: str = _setting("mujoco", "simulator backend")
    batch: int = _setting(8, "jobs taken per read (XREADGROUP COUNT)")
    procs: int = _setting(1, "simulator processes (1: in the worker process)")
    namespace: str = _setting("dexgrasp", "Redis key prefix shared with the API")
    name: str | None = _setting(None, "consumer name (default host-pid-random; must be unique)")
    heartbeat_s: float = _setting(HEARTBEAT_S, "heartbeat period, seconds")
    heartbeat_ttl_s: float = _setting(HEARTBEAT_TTL_S, "a worker silent this long is dead, seconds")
    reclaim_idle_s: float = _setting(RECLAIM_IDLE_S, "reclaim a dead worker's entries idle this long, seconds",
                                     flag="--reclaim-after-s")
    janitor_s: float = _setting(5.0, "how often to look for dead workers' jobs, seconds")
    cancel_poll_s: float = _setting(0.2, "how often running jobs' cancel flags are read, seconds")
    block_ms: int = _setting(1000, "longest blocking read while idle, milliseconds (also how fast an idle "
                                   "worker sees SIGTERM)")
    grace_s: float = _setting(30.0, "after SIGTERM, finish the current batch within this time, then release it, "
                                    "seconds")
    ttl_s: int = _setting(DEFAULT_TTL_S, "job record TTL, seconds")
    job_timeout_s: float = _setting(600.0, "a job still running after this long is stopped and failed (not retried), "
                                           "seconds; 0: no limit")
    job_kill_after_s: float = _setting(30.0, "a simulator still busy with a job this long past its time limit is "
                                             "killed and restarted (--procs > 1), seconds")
    fair_every: int = _setting(4, "every Nth read starts at a lower priority (normal, then low, in turn) so a steady "
                                  "stream of high-priority jobs cannot starve them; 0: strict priority")
    metrics_port: int | None = _setting(None, "serve Prometheus metrics on this port (0: any free port; "
                                              "default: off)")
    metrics_host: str = _setting("0.0.0.0", "metrics bind address")
    object_cache: int = _setting(64, "simulation objects kept per worker (by content hash)")
    progress_interval_s: float = _setting(0.25, "at most one progress write per job per interval, seconds")
    write_retry_s: float = _setting(60.0, "keep retrying a result write this long while Redis is away, seconds")

    def check(self) -> WorkerConfig:
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if self.procs < 1:
            raise ValueError(f"procs must be >= 1, got {self.procs}")
        if self.heartbeat_s <= 0 or self.heartbeat_ttl_s < 2 * self.heartbeat_s:
            raise ValueError(f"heartbeat_ttl_s ({self.heartbeat_ttl_s}) must be >= 2 x heartbeat_s ({self.heartbeat_s}) "
                             "so one late heartbeat does not declare a live worker dead")
        if self.reclaim_idle_s < self.heartbeat_ttl_s:
            raise ValueError(f"reclaim_idle_s ({self.reclaim_idle_s}) must be >= heartbeat_ttl_s ({self.heartbeat_ttl_s})")
        if self.grace_s < 0 or self.block_ms < 1 or self.janitor_s <= 0:
            raise ValueError("grace_s must be >= 0, block_ms >= 1 and janitor_s > 0")
        if self.job_timeout_s < 0 or self.job_kill_after_s < 0 or self.fair_every < 0:
            raise ValueError("job_timeout_s, job_kill_after_s and fair_every must be >= 0")
        return self

    # ---------------------------------------------------------------- command line
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, choices: dict[str, list[str]] | None = None) -> None:
        """One option per field (``--field-name``, or the field's ``flag``), typed and defaulted from
        the field; ``choices`` restricts fields by name (e.g. the installed backends)."""
        for f, typ in _fields(cls):
            flag, allowed = _flag(f), (choices or {}).get(f.name)
            shown = "" if f.default is None else " (default %(default)s)"
            parser.add_argument(flag, dest=f.name, type=typ, default=f.default, choices=allowed,
                                metavar=None if allowed else flag[2:].upper().replace("-", "_"),
                                help=f"{f.metadata['help']}{shown}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> WorkerConfig:
        """The config parsed by :meth:`add_arguments` (not checked: call :meth:`check`)."""
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})

    def cli_args(self, exclude: tuple[str, ...] = ()) -> list[str]:
        """Options that reproduce this config in ``dexgrasp worker`` (unset optional fields left out)."""
        out: list[str] = []
        for f, _ in _fields(type(self)):
            value = getattr(self, f.name)
            if f.name not in exclude and value is not None:
                out += [_flag(f), str(value)]
        return out


def _flag(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _fields(cls: type) -> list[tuple[dataclasses.Field[Any], type]]:
    """(field, the type its option parses to): ``X | None`` parses to X."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
            (typ,) = [a for a in typing.get_args(typ) if a is not type(None)]
        if typ not in (int, float, str):
            raise TypeError(f"{cls.__name__}.{f.name}: no command-line form for {typ!r}")
        out.append((f, typ))
    return out


__all__ = ["WorkerConfig"]
