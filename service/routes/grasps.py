"""``POST /v1/grasps``: decode, hand the query to the compute thread, encode. Nothing else."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from models.pipeline import GraspQuery

from ..codecs import (
    JSON_TYPES,
    MSGPACK_TYPES,
    MULTIPART,
    DecodedRequest,
    DecodeError,
    UnsupportedMediaType,
    decode_file,
    decode_json,
    decode_msgpack,
    encode_msgpack,
    params_from_form,
)
from ..deps import StateDep
from ..schemas import ErrorResponse, GraspResponse, ProposerInfo

router = APIRouter()

_EXAMPLE = {"points": [[0.0, 0.0, 0.05], [0.01, 0.0, 0.05], [0.0, 0.01, 0.06]], "num_grasps": 8, "text": "grasp it from the top"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": ErrorResponse, "description": d}
    for c, d in [
        (400, "malformed body (bad JSON, base64, msgpack, npy or PLY)"),
        (401, "missing or wrong API key"),
        (413, "body larger than the limit"),
        (415, "unsupported content type"),
        (422, "the cloud or a parameter cannot be served; the message says what to fix"),
        (503, "overloaded; retry after Retry-After seconds"),
        (504, "did not finish within the timeout"),
    ]
}
_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/GraspRequest"}, "example": _EXAMPLE},
            "application/msgpack": {
                "schema": {"type": "string", "format": "binary"},
                "description": "a map with the GraspRequest fields; points/normals as msgpack-numpy arrays",
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["cloud"],
                    "properties": {
                        "cloud": {"type": "string", "format": "binary", "description": ".npy (N,3)/(N,6) or .ply"},
                        "params": {"type": "string", "description": "GraspParams as a JSON object"},
                    },
                }
            },
        },
    }
}


async def _decode(request: Request, body: bytes | None) -> DecodedRequest:
    """Decode in the threadpool: parsing a big body must not stall the event loop (/healthz)."""
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype in JSON_TYPES:
        assert body is not None
        return await run_in_threadpool(decode_json, body)
    if ctype in MSGPACK_TYPES:
        assert body is not None
        return await run_in_threadpool(decode_msgpack, body)
    if ctype == MULTIPART:
        try:
            form = await request.form(max_files=2, max_fields=32)
        except (ValueError, AssertionError) as e:
            raise DecodeError(f"malformed multipart body: {e}") from e
        files = {k: v for k, v in form.multi_items() if not isinstance(v, str)}
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        upload = files.get("cloud")
        if upload is None:
            raise DecodeError("multipart upload needs a file field 'cloud' (.npy or .ply)")
        content = await upload.read()
        pts, nrm = await run_in_threadpool(decode_file, upload.filename or "cloud", content)
        return DecodedRequest(params_from_form(fields), np.asarray(pts), None if nrm is None else np.asarray(nrm))
    raise UnsupportedMediaType(
        f"content type {ctype!r} is not served; use application/json, application/msgpack or multipart/form-data"
    )


def _wants_msgpack(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return any(t in accept for t in MSGPACK_TYPES)


@router.post(
    "/grasps",
    response_model=GraspResponse,
    responses=_ERRORS,
    openapi_extra=_OPENAPI_BODY,
    summary="Propose ranked, diverse grasps for an object point cloud",
)
async def propose_grasps(request: Request, state: StateDep) -> Response:
    s = state.settings
    t0 = time.perf_counter()
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    body = None if ctype == MULTIPART else await request.body()
    decoded = await _decode(request, body)
    p = decoded.params
    timeout_ms = min(p.timeout_ms or s.default_timeout_ms, s.max_timeout_ms)
    query = GraspQuery(
        points=decoded.points,
        normals=decoded.normals,
        up=p.up,
        table=None if p.table is None else (p.table.normal, p.table.offset),
        hand=p.hand,
        num_grasps=p.num_grasps,
        text=p.text,
        method=p.method,
        refine=p.refine,
        seed=p.seed,
        timeout_s=timeout_ms / 1e3,
        remove_table=p.remove_table,
        viewpoint=p.viewpoint,
        completion=p.completion,
    )
    t_decode = (time.perf_counter() - t0) * 1e3
    try:
        # the pipeline stops optimising at 75% of the budget; the rest is slack for a full queue
        result, wait_s, batch = await asyncio.wait_for(state.batcher.run(query), timeout=2.0 * timeout_ms / 1e3 + 5.0)
    except asyncio.TimeoutError as e:
        raise TimeoutError(f"no result within {timeout_ms} ms (the server is busy); retry or raise timeout_ms") from e
    t1 = time.perf_counter()
    timings = {"decode_ms": t_decode, "queue_ms": wait_s * 1e3, **result.timings_ms}
    resp = GraspResponse(
        request_id=request.state.request_id,
        hand=p.hand,
        proposer=ProposerInfo(name=result.proposer, version=result.proposer_version),
        grasps=result.grasps,
        intent=result.intent,
        intent_satisfied=result.intent_satisfied,
        timings_ms=timings,
        warnings=result.warnings,
        points_in=result.points_in,
        points_used=result.points_used,
    )
    data = resp.model_dump(mode="json")
    data["timings_ms"]["encode_ms"] = (time.perf_counter() - t1) * 1e3
    data["timings_ms"]["batch_size"] = float(batch)
    for k, v in data["timings_ms"].items():
        if k.endswith("_ms"):
            state.metrics.stage.labels(k[:-3]).observe(v / 1e3)
    state.metrics.grasps.inc(len(result.grasps))
    if _wants_msgpack(request):
        return Response(encode_msgpack(data), media_type="application/msgpack")
    return JSONResponse(data)
