"""Hands, models, liveness, readiness and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from models.hands import get_hand
from models.hands.spec import available_hands

from ..deps import StateDep
from ..schemas import HandInfo, ModelInfo, ReadyState

router = APIRouter()  # under /v1, behind the API key
probes = APIRouter()  # unauthenticated: for orchestrators and scrapers


@router.get("/hands", response_model=list[HandInfo], summary="Hands the service can plan for")
def list_hands() -> list[HandInfo]:
    out = []
    for name in available_hands():
        h = get_hand(name)
        out.append(HandInfo(name=name, joints=list(h.joint_names), lower=h.lower.tolist(), upper=h.upper.tolist()))
    return out


@router.get("/models", response_model=list[ModelInfo], summary="Registered proposers, versions, readiness, device")
def list_models(state: StateDep) -> list[ModelInfo]:
    return [ModelInfo(**m) for m in state.pipeline.describe()]


@probes.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _live_workers(q: Any) -> int | None:
    """Workers with a live heartbeat (None when Redis could not say)."""
    from sim_worker.jobs import QueueUnavailable

    try:
        return len(q.workers())
    except QueueUnavailable:
        return None


@probes.get("/readyz", response_model=ReadyState, responses={503: {"model": ReadyState}}, summary="Readiness")
def readyz(state: StateDep) -> JSONResponse:
    checks = {"models": "ready" if state.ready else ("failed: " + state.warmup_error if state.warmup_error else "warming")}
    status = "ready" if state.ready else ("failed" if state.warmup_error else "warming")
    if state.rollouts is not None:
        ok = state.rollouts.ping()
        checks["redis"] = "ok" if ok else "unreachable"
        workers = _live_workers(state.rollouts) if ok else None
        if workers is not None:
            checks["workers"] = f"{workers} alive" if workers else "none alive"
        if not ok:
            checks["rollouts"] = "not ready: the rollout queue (Redis) is unreachable"
        elif not workers:
            checks["rollouts"] = ("not ready: no rollout worker is alive (no heartbeat); jobs would stay queued "
                                  "until one starts")
        else:
            checks["rollouts"] = "ready"
        if state.ready and checks["rollouts"] != "ready":
            status = "degraded"  # proposals work; rollouts answer 503 or wait in the queue
    body = ReadyState.model_validate({"ready": state.ready, "status": status, "checks": checks})
    return JSONResponse(body.model_dump(), status_code=200 if state.ready else 503)


@probes.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
