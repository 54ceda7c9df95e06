"""Domain errors -> HTTP errors, in one place. Every error body is
``{"error": {"code", "message", "request_id"}}`` and the message says what to fix."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.pipeline import QueryError

from .batching import Overloaded
from .codecs import DecodeError, UnsupportedMediaType

log = logging.getLogger("dexgrasp.service")


class PayloadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes; send fewer points or raise DEXGRASP_MAX_BODY_BYTES")


class BodyTimeout(Exception):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the request body stalled for {timeout_s:g} s before it was complete; send it again "
                         "(DEXGRASP_BODY_TIMEOUT_S sets the limit)")


class MeshTooComplex(Exception):
    def __init__(self, faces: int, limit: int) -> None:
        super().__init__(f"the mesh has {faces} faces; at most {limit} are simulated (DEXGRASP_MAX_MESH_FACES): "
                         "decimate it (e.g. quadric decimation) or send its convex hull")


class Unauthorized(Exception):
    pass


class ServiceUnavailable(Exception):
    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


class Unprocessable(Exception):
    """A well-formed request the system cannot serve as asked; the message says what to change (422)."""


def error_response(status: int, code: str, message: str, request: Request | None, headers: dict[str, str] | None = None) -> JSONResponse:
    rid = getattr(request.state, "request_id", None) if request is not None else None
    metrics = getattr(request.app.state, "metrics", None) if request is not None else None
    if metrics is not None and request is not None:
        route = request.scope.get("route")
        metrics.errors.labels(getattr(route, "path", "unmatched"), code).inc()
    return JSONResponse(
        {"error": {"code": code, "message": message, "request_id": rid}}, status_code=status, headers=headers
    )


def _validation_message(errors: list[dict[str, object]]) -> str:
    parts = []
    for e in errors[:8]:
        where = e.get("loc", ())
        loc = ".".join(str(x) for x in (where if isinstance(where, tuple | list) else ()) if x != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg')}")
    more = f" (+{len(errors) - 8} more)" if len(errors) > 8 else ""
    return "; ".join(parts) + more


def install_error_handlers(app: FastAPI) -> None:
    # domain errors whose message is the answer: class -> (status, code, headers)
    simple: dict[type[Exception], tuple[int, str, dict[str, str] | None]] = {
        QueryError: (422, "invalid_query", None),
        DecodeError: (400, "malformed_body", None),
        UnsupportedMediaType: (415, "unsupported_media_type", None),
        PayloadTooLarge: (413, "payload_too_large", None),
        MeshTooComplex: (413, "mesh_too_complex", None),
        BodyTimeout: (408, "body_timeout", {"Connection": "close"}),
        Unauthorized: (401, "unauthorized", {"WWW-Authenticate": "Bearer"}),
        Overloaded: (503, "overloaded", {"Retry-After": "1"}),
        NotFound: (404, "not_found", None),
        Conflict: (409, "conflict", None),
        Unprocessable: (422, "invalid_request", None),
    }
    for cls, (status, code, headers) in simple.items():

        async def _simple(request: Request, exc: Exception, status: int = status, code: str = code,
                          headers: dict[str, str] | None = headers) -> JSONResponse:
            return error_response(status, code, str(exc), request, headers)

        app.add_exception_handler(cls, _simple)

    @app.exception_handler(ValidationError)
    async def _pyd(request: Request, exc: ValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _validation_message(exc.errors()), request)  # type: ignore[arg-type]

    @app.exception_handler(RequestValidationError)
    async def _req(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _validation_message(list(exc.errors())), request)

    @app.exception_handler(ServiceUnavailable)
    async def _unavail(request: Request, exc: ServiceUnavailable) -> JSONResponse:
        return error_response(503, "unavailable", str(exc), request, {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(TimeoutError)
    async def _timeout(request: Request, exc: TimeoutError) -> JSONResponse:
        return error_response(504, "timeout", str(exc) or "the request did not finish within its timeout", request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), request, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); the server keeps serving", request)
