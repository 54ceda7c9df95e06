"""Every Redis key and stream name of the protocol, and the protocol's fixed numbers (group name,
priorities, timings, stream lengths). ``docs/jobs.md`` has the table for people."""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOL_VERSION = 1  # stored in every job hash ("protocol")
GROUP = "workers"  # the one consumer group of every job stream
PRIORITIES: tuple[str, ...] = ("high", "normal", "low")  # read in this order

DEFAULT_TTL_S = 86400  # a job's keys live this long after its last state change
HEARTBEAT_S = 2.0  # a worker refreshes its heartbeat and its entries' idle time this often
HEARTBEAT_TTL_S = 10.0  # ... and is declared dead when its heartbeat is this old
RECLAIM_IDLE_S = 15.0  # entries idle longer than this (and whose owner is dead) are reclaimed
EVENTS_MAXLEN = 512  # approximate cap of a job's event stream (entries)
DEAD_MAXLEN = 10000  # approximate cap of the dead-letter stream (entries)


@dataclass(frozen=True)
class Keys:
    """Every Redis key of the protocol, in one place."""

    ns: str = "dexgrasp"

    def stream(self, backend: str, priority: str) -> str:
        return f"{self.ns}:jobs:{backend}:{priority}"

    def streams(self, backend: str) -> list[str]:
        return [self.stream(backend, p) for p in PRIORITIES]

    def job(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:events"

    def frames(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:frames"

    def object(self, digest: str) -> str:
        return f"{self.ns}:object:{digest}"

    @property
    def job_prefix(self) -> str:
        return f"{self.ns}:job:"

    @property
    def dead(self) -> str:
        return f"{self.ns}:dead"

    @property
    def backends(self) -> str:
        return f"{self.ns}:backends"

    @property
    def results_written(self) -> str:
        return f"{self.ns}:stats:results_written"

    def heartbeat(self, worker: str) -> str:
        return f"{self.ns}:worker:{worker}:hb"

    def live(self, backend: str) -> str:
        """Set by every heartbeat of a worker of ``backend``; expires with the last one."""
        return f"{self.ns}:backend:{backend}:live"

    def metrics(self, worker: str) -> str:
        return f"{self.ns}:worker:{worker}:metrics"

    @property
    def heartbeat_affixes(self) -> tuple[str, str]:
        return f"{self.ns}:worker:", ":hb"


__all__ = [
    "DEAD_MAXLEN", "DEFAULT_TTL_S", "EVENTS_MAXLEN", "GROUP", "HEARTBEAT_S", "HEARTBEAT_TTL_S", "PRIORITIES",
    "PROTOCOL_VERSION", "RECLAIM_IDLE_S", "Keys",
]
