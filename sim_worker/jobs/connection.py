"""Talking to Redis: the client settings both sides use, and the one place where connection
trouble becomes :class:`~sim_worker.jobs.errors.QueueUnavailable`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .errors import QueueUnavailable

T = TypeVar("T")


def guard(fn: Callable[[], T]) -> T:
    """Run one Redis interaction; connection problems become :class:`QueueUnavailable`."""
    try:
        return fn()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise QueueUnavailable(f"Redis is unreachable: {type(exc).__name__}: {exc}") from exc
    except redis.exceptions.ResponseError as exc:
        if str(exc).startswith(("LOADING", "MASTERDOWN", "READONLY")):
            raise QueueUnavailable(f"Redis is not ready: {exc}") from exc
        raise


def connect(url: str, socket_timeout: float | None) -> redis.Redis:
    """A client with short connect timeouts and a couple of quick retries (``socket_timeout`` in seconds;
    blocking reads need it longer than their block time)."""
    try:
        return redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=3.0,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2), health_check_interval=30,
        )
    except ValueError as exc:
        raise ValueError(f"bad Redis URL {url!r}: {exc} (expected redis://host:port/db or unix:///path)") from None


def as_str(v: Any) -> str:
    """A Redis reply (bytes) as text."""
    return v.decode() if isinstance(v, bytes | bytearray) else str(v)


def as_float(v: Any) -> float | None:
    """A Redis reply as a number; missing or empty is None."""
    return None if v is None or v == b"" else float(as_str(v))


__all__ = ["as_float", "as_str", "connect", "guard"]
