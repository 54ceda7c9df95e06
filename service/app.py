"""The FastAPI app: ``create_app(settings)`` builds it; ``dexgrasp serve`` runs it under uvicorn.

Start-up creates the pipeline and the compute thread and warms the default proposer in the
background: ``/healthz`` answers at once, ``/readyz`` only once warm-up is done.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.device import resolve
from models.pipeline import GraspPipeline, PipelineConfig

from .batching import Batcher
from .deps import ServiceState, require_api_key
from .errors import BodyTimeout, PayloadTooLarge, install_error_handlers
from .metrics import Metrics
from .routes import grasps, meta
from .routes import rollouts as rollouts_routes
from .schemas import GraspRequest
from .settings import Settings, get_settings

log = logging.getLogger("dexgrasp.service")
API_VERSION = "1.0.0"


class BodyLimit:
    """Refuse bodies over ``limit`` bytes: at once from Content-Length, or while streaming; and bodies
    whose next chunk does not arrive within ``timeout_s`` (408), so a client that announces more than
    it sends does not hold a request open forever."""

    def __init__(self, app: ASGIApp, limit: int, timeout_s: float) -> None:
        self.app, self.limit, self.timeout_s = app, limit, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    too_big = int(v) > self.limit
                except ValueError:
                    too_big = False
                if too_big:
                    await _send_413(send, self.limit)
                    return
        seen = 0
        complete = False

        async def counted() -> Message:
            nonlocal seen, complete
            if complete:  # later reads wait for a disconnect (streaming responses): no limit on those
                return await receive()
            try:
                with anyio.fail_after(self.timeout_s):  # in this task: a read under a cancelled scope stays as it was
                    msg = await receive()
            except TimeoutError:
                raise BodyTimeout(self.timeout_s) from None
            complete = msg["type"] != "http.request" or not msg.get("more_body", False)
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise PayloadTooLarge(self.limit)
            return msg

        await self.app(scope, counted, send)


class RequestContext:
    """Request id (``X-Request-ID`` echoed or made), in-flight gauge, request count and latency."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode(errors="replace")
        rid = (given or uuid.uuid4().hex)[:128]
        scope.setdefault("state", {})["request_id"] = rid
        status = 500
        t = time.perf_counter()

        async def send_with_id(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
                msg.setdefault("headers", [])
                msg["headers"] = [*msg["headers"], (b"x-request-id", rid.encode())]
            await send(msg)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(path, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - t)


async def _send_413(send: Send, limit: int) -> None:
    import json

    body = json.dumps({"error": {"code": "payload_too_large", "message": str(PayloadTooLarge(limit)), "request_id": None}}).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _warm(state: ServiceState) -> None:
    try:
        t = time.perf_counter()
        state.pipeline.warm_up(run=lambda q: state.batcher.submit(q).result())
        state.ready = True
        log.info("warm-up done in %.1f s", time.perf_counter() - t)
    except Exception as e:  # readiness reports it; liveness stays up
        state.warmup_error = f"{type(e).__name__}: {e}"
        log.exception("warm-up failed")


def create_app(settings: Settings | None = None, rollouts: Any = None) -> FastAPI:
    """Build the app. ``rollouts`` is a rollout-queue client (``sim_worker.jobs.JobQueue``) or None."""
    s = settings or get_settings()
    if rollouts is None and s.redis_url:
        from sim_worker.jobs import JobQueue

        rollouts = JobQueue(s.redis_url, ttl_s=s.rollout_ttl_s)
    device = str(resolve(s.device, "float32").device)
    check = None
    if s.cloud_check:
        from sim_worker.cloud_check import CloudCheck

        check = CloudCheck()
    pipeline = GraspPipeline(PipelineConfig(max_points=s.max_points, max_num_grasps=s.max_num_grasps), device=device, check=check)
    metrics = Metrics()
    state = ServiceState(
        settings=s,
        pipeline=pipeline,
        batcher=Batcher(pipeline, metrics, s.max_batch, s.batch_window_ms / 1e3, s.max_queue),
        metrics=metrics,
        rollouts=rollouts,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.batcher.start()
        if s.warmup:
            threading.Thread(target=_warm, args=(state,), name="dexgrasp-warmup", daemon=True).start()
        else:
            state.ready = True
        yield
        state.batcher.stop()
        if check is not None:
            check.close()
        if state.rollouts is not None:
            state.rollouts.close()

    app = FastAPI(
        title="dexgrasp",
        version=API_VERSION,
        description="Ranked, diverse dexterous grasps for object point clouds; simulated rollouts as jobs.",
        lifespan=lifespan,
    )
    app.state.service = state
    app.state.metrics = metrics
    install_error_handlers(app)

    auth = [Depends(require_api_key)]
    app.include_router(grasps.router, prefix="/v1", tags=["grasps"], dependencies=auth)
    app.include_router(meta.router, prefix="/v1", tags=["meta"], dependencies=auth)
    app.include_router(rollouts_routes.router, prefix="/v1", tags=["rollouts"], dependencies=auth)
    app.include_router(meta.probes, tags=["probes"])
    if s.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=s.cors_origins, allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(BodyLimit, limit=s.max_body_bytes, timeout_s=s.body_timeout_s)
    app.add_middleware(RequestContext, metrics=metrics)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        req = GraspRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in req.pop("$defs", {}).items():
            comps.setdefault(name, sub)
        comps["GraspRequest"] = req
        for name, model in rollouts_routes.OPENAPI_BODIES.items():
            sub = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
            for dep, dsub in sub.pop("$defs", {}).items():
                comps.setdefault(dep, dsub)
            comps[name] = sub
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
