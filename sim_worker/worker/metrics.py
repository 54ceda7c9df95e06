"""The worker's metrics: ``prometheus_client`` counters and histograms in a registry of its own (tests
run several workers in one process), served over HTTP (``/metrics``, ``/healthz``) and flattened
into the Redis hash ``{ns}:worker:{name}:metrics`` with each heartbeat.

The exposition keeps each sample's labels in their declared order (``worker``, ``backend``, then
``outcome`` or ``le``), as the worker has always written them: ``prometheus_client``'s own
``generate_latest`` sorts labels by name, and dashboards and tests match these lines as text."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.utils import floatToGoString

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
JOB_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800)


@dataclass(frozen=True)
class HistogramTotals:
    """The sum and count of a histogram's observations."""

    sum: float
    count: int


class WorkerMetrics:
    """Counters and histograms of one worker, all labelled ``worker`` and ``backend`` (thread-safe)."""

    OUTCOMES = ("succeeded", "failed", "canceled", "retried", "dead_lettered", "released", "duplicate")

    def __init__(self, worker: str = "", backend: str = "") -> None:
        self.registry = CollectorRegistry()
        self.started = time.time()
        r, lab = self.registry, ("worker", "backend")
        self._labels = (worker, backend)
        self._jobs = Counter("dexgrasp_worker_jobs", "Jobs handled by outcome.", [*lab, "outcome"], registry=r)
        for outcome in self.OUTCOMES:  # exposed from the start, at 0
            self._jobs.labels(worker, backend, outcome)
        self._counters = {
            what: Counter(f"dexgrasp_worker_{name}", doc, lab, registry=r).labels(worker, backend)
            for what, name, doc in (("batches", "batches", "Batches read from the queue."),
                                    ("grasps", "grasps", "Grasps simulated."),
                                    ("reclaimed", "reclaimed", "Entries reclaimed from dead workers."),
                                    ("redis_errors", "redis_errors", "Failed Redis interactions."),
                                    ("busy_s", "busy_seconds", "Time spent processing batches."))
        }
        uptime = Gauge("dexgrasp_worker_uptime_seconds", "Seconds since the worker started.", lab, registry=r)
        uptime.labels(worker, backend).set_function(lambda: round(time.time() - self.started, 3))
        self._batch_size = Histogram("dexgrasp_worker_batch_size", "Entries per batch.", lab,
                                     buckets=BATCH_SIZE_BUCKETS, registry=r).labels(worker, backend)
        self._job_s = Histogram("dexgrasp_worker_job_seconds", "Job duration (start to result).", lab,
                                buckets=JOB_SECONDS_BUCKETS, registry=r).labels(worker, backend)

    # ---------------------------------------------------------------- recording
    def job(self, outcome: str, seconds: float | None = None) -> None:
        self._jobs.labels(*self._labels, outcome).inc()
        if seconds is not None:
            self._job_s.observe(seconds)

    def add(self, what: str, n: float = 1) -> None:
        """Add to one of the counters: ``grasps``, ``reclaimed``, ``redis_errors``, ``busy_s``."""
        self._counters[what].inc(n)

    def batch(self, size: int) -> None:
        self._counters["batches"].inc()
        self._batch_size.observe(size)

    # ---------------------------------------------------------------- reading
    def _samples(self) -> dict[tuple[str, str], float]:
        """(sample name, outcome label or "") -> value, for every sample but histogram buckets."""
        return {(s.name, s.labels.get("outcome", "")): s.value for m in self.registry.collect() for s in m.samples
                if "le" not in s.labels}

    @property
    def jobs(self) -> dict[str, int]:
        """Jobs per outcome."""
        return {o: int(v) for (name, o), v in self._samples().items() if name == "dexgrasp_worker_jobs_total"}

    def _count(self, name: str) -> float:
        return self._samples()[(name, "")]

    @property
    def batches(self) -> int:
        return int(self._count("dexgrasp_worker_batches_total"))

    @property
    def grasps(self) -> int:
        return int(self._count("dexgrasp_worker_grasps_total"))

    @property
    def reclaimed(self) -> int:
        return int(self._count("dexgrasp_worker_reclaimed_total"))

    @property
    def redis_errors(self) -> int:
        return int(self._count("dexgrasp_worker_redis_errors_total"))

    @property
    def busy_s(self) -> float:
        return self._count("dexgrasp_worker_busy_seconds_total")

    @property
    def batch_size(self) -> HistogramTotals:
        s = self._samples()
        return HistogramTotals(s[("dexgrasp_worker_batch_size_sum", "")], int(s[("dexgrasp_worker_batch_size_count", "")]))

    @property
    def job_s(self) -> HistogramTotals:
        s = self._samples()
        return HistogramTotals(s[("dexgrasp_worker_job_seconds_sum", "")], int(s[("dexgrasp_worker_job_seconds_count", "")]))

    def flat(self) -> dict[str, float | int | str]:
        """The values written to the worker's Redis hash."""
        s = self._samples()
        d: dict[str, float | int | str] = {f"jobs_{o}": int(v) for (name, o), v in s.items()
                                           if name == "dexgrasp_worker_jobs_total"}
        d.update({"batches": int(s[("dexgrasp_worker_batches_total", "")]),
                  "grasps": int(s[("dexgrasp_worker_grasps_total", "")]),
                  "reclaimed": int(s[("dexgrasp_worker_reclaimed_total", "")]),
                  "redis_errors": int(s[("dexgrasp_worker_redis_errors_total", "")]),
                  "busy_s": round(s[("dexgrasp_worker_busy_seconds_total", "")], 3),
                  "batch_size_sum": s[("dexgrasp_worker_batch_size_sum", "")],
                  "job_seconds_sum": round(s[("dexgrasp_worker_job_seconds_sum", "")], 6),
                  "job_seconds_count": int(s[("dexgrasp_worker_job_seconds_count", "")]),
                  "started_at": self.started, "uptime_s": round(time.time() - self.started, 3)})
        return d


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def exposition(registry: CollectorRegistry) -> bytes:
    """Prometheus text format (0.0.4) of ``registry``, labels in declared order, no ``_created`` series."""
    lines: list[str] = []
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        lines += [f"# HELP {name} {family.documentation}", f"# TYPE {name} {family.type}"]
        for s in family.samples:
            if s.name.endswith("_created"):  # prometheus_client's creation timestamps: never part of this endpoint
                continue
            labels = ",".join(f'{k}="{_label_value(v)}"' for k, v in s.labels.items())
            lines.append(f"{s.name}{{{labels}}} {floatToGoString(s.value)}")  # type: ignore[no-untyped-call]
    return ("\n".join(lines) + "\n").encode()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not worth a log line each
        pass


class MetricsServer:
    """``/metrics`` (and ``/``): :func:`exposition` of ``registry``; ``/healthz``: "ok";
    anything else 404. Threaded, on a daemon thread; ``port`` 0 picks a free one (see :attr:`port`)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int, name: str = "metrics") -> None:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO") or "/"
            if path in ("/metrics", "/"):
                start_response("200 OK", [("Content-Type", CONTENT_TYPE)])
                return [exposition(registry)]
            if path == "/healthz":
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok\n"]
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics or /healthz\n"]

        self._httpd = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
        self.port = int(self._httpd.server_port)
        threading.Thread(target=self._httpd.serve_forever, name=name, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


__all__ = ["HistogramTotals", "MetricsServer", "WorkerMetrics", "exposition"]
