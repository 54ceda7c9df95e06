"""Typed dependencies for the routes: the app's state and the API-key check."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from models.pipeline import GraspPipeline

from .batching import Batcher
from .errors import Unauthorized
from .metrics import Metrics
from .settings import Settings


@dataclass
class ServiceState:
    """Everything created once at start-up and shared by the routes."""

    settings: Settings
    pipeline: GraspPipeline
    batcher: Batcher
    metrics: Metrics
    ready: bool = False
    warmup_error: str | None = None
    rollouts: Any = None  # the rollout queue client (sim_worker.jobs.JobQueue) when configured
    extras: dict[str, Any] = field(default_factory=dict)


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def require_api_key(request: Request) -> None:
    keys = request.app.state.service.settings.api_keys
    if not keys:
        return
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if given is None:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
        raise Unauthorized("invalid API key")
