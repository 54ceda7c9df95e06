"""Prometheus metrics of the API: requests, errors, latency per stage, batch sizes, queue time.

One registry per app (tests build several apps in one process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("dexgrasp_requests_total", "HTTP requests", ["route", "method", "status"], registry=r)
        self.errors = Counter("dexgrasp_errors_total", "Requests answered with an error", ["route", "code"], registry=r)
        self.latency = Histogram(
            "dexgrasp_request_seconds", "Request latency", ["route"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.stage = Histogram(
            "dexgrasp_stage_seconds", "Pipeline stage latency", ["stage"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "dexgrasp_batch_size", "Proposal requests optimised together", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=r
        )
        self.queue_time = Histogram(
            "dexgrasp_queue_seconds", "Time a proposal waited for the compute thread", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("dexgrasp_queue_depth", "Proposal requests waiting", registry=r)
        self.in_flight = Gauge("dexgrasp_in_flight", "Requests being served", registry=r)
        self.grasps = Counter("dexgrasp_grasps_returned_total", "Grasps returned", registry=r)
        self.rollouts = Counter("dexgrasp_rollouts_enqueued_total", "Rollout jobs enqueued", ["mode"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
