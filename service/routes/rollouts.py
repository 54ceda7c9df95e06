"""Rollout jobs: the enqueue side. Simulation runs in ``dexgrasp worker`` processes; the queue
protocol is :mod:`sim_worker.jobs` (this module only translates HTTP to it).

Grasps are in the object's frame: a primitive's or mesh's own frame, or, for ``points`` (reconstruct
from the request's cloud), the frame of those points, i.e. the frame ``/v1/grasps`` answered in.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from starlette.concurrency import run_in_threadpool

from models.grasp import Grasp
from sim_worker import jobs

from ..codecs import DecodeError, decode_array
from ..deps import ServiceState, StateDep
from ..errors import MeshTooComplex, NotFound, ServiceUnavailable, Unprocessable
from ..schemas import EncodedArray, ErrorResponse

router = APIRouter()

_ID = Annotated[str, Path(pattern=jobs.JOB_ID_PATTERN, description="job id")]
_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")  # a Redis stream id, as sent in the SSE "id:" lines


class PrimitiveSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["primitive"] = "primitive"
    shape: Literal["box", "sphere", "cylinder", "capsule", "ellipsoid"]
    size: list[float] = Field(..., min_length=1, max_length=3, description="MuJoCo size semantics, metres")
    mass_kg: float | None = Field(None, gt=0, allow_inf_nan=False)


class MeshSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["mesh"] = "mesh"
    format: Literal["obj", "stl", "ply", "off", "glb", "gltf"]
    data_b64: str = Field(..., description="the mesh file, base64")
    mass_kg: float | None = Field(None, gt=0, allow_inf_nan=False)


class PointsSpec(BaseModel):
    """Reconstruct the object (convex hull) from a cloud, e.g. the one sent to /v1/grasps."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["points"] = "points"
    points: list[list[float]] | EncodedArray
    mass_kg: float | None = Field(None, gt=0, allow_inf_nan=False)


class HashSpec(BaseModel):
    """An object uploaded before with POST /v1/objects (geometry travels once)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["hash"] = "hash"
    hash: str = Field(..., pattern=r"^[0-9a-f]{64}$")


ObjectIn = Annotated[PrimitiveSpec | MeshSpec | PointsSpec | HashSpec, Field(discriminator="kind")]
ObjectUpload = Annotated[PrimitiveSpec | MeshSpec | PointsSpec, Field(discriminator="kind")]


class RolloutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["validate", "execute"] = Field(..., description="validate: six-direction disturbance test; "
                                                                   "execute: approach, close, lift from a table")
    grasps: list[Grasp] = Field(..., min_length=1, max_length=256, description="in the object's frame")
    object: ObjectIn
    backend: str = Field("mujoco", description="mujoco (CPU) or isaacgym where installed; refused (422) without a live worker")
    render: bool = Field(False, description="execute only: PNG keyframes (pre-grasp, grasp, lifted)")
    priority: Literal["high", "normal", "low"] = "normal"
    seed: int = Field(0, ge=0, lt=2**31)
    max_attempts: int = Field(3, ge=1, le=20)
    sim: dict[str, Any] | None = Field(None, description="SimConfig overrides {preset: fc_mocap|pinned, physics|validation|execution: {...}}; default: the referee of record (fc_mocap)")


class RolloutAccepted(BaseModel):
    id: str
    status: str
    object_hash: str
    status_url: str
    events_url: str


class ObjectStored(BaseModel):
    hash: str


_ERRS: dict[int | str, dict[str, Any]] = {
    c: {"model": ErrorResponse, "description": d}
    for c, d in [(404, "unknown job or object"), (422, "invalid request"), (503, "Redis unreachable; retry later")]
}


def _json_body(model: Any) -> Any:
    """The JSON body as ``model``, as a dependency: it runs after the router's API-key check (an
    unauthenticated body is never read) and parses in the threadpool (a big body does not stall the
    event loop, so /healthz keeps answering)."""
    adapter: TypeAdapter[Any] = TypeAdapter(model)

    async def parse(request: Request) -> Any:
        return await run_in_threadpool(adapter.validate_json, await request.body())

    return Depends(parse)


def _openapi_body(name: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}}


# the bodies documented by ref above (service.app adds them to the schema's components)
OPENAPI_BODIES: dict[str, Any] = {"RolloutRequest": RolloutRequest, "ObjectUpload": ObjectUpload}


def _queue(state: ServiceState) -> jobs.JobQueue:
    if state.rollouts is None:
        raise ServiceUnavailable("rollouts are not configured on this server (no Redis)", retry_after_s=30)
    q: jobs.JobQueue = state.rollouts
    return q


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise DecodeError(f"{what} is not valid base64: {e}") from e


def _object_spec(obj: PrimitiveSpec | MeshSpec | PointsSpec, max_faces: int) -> jobs.MeshObject | jobs.PrimitiveObject | jobs.PointsObject:
    if isinstance(obj, PrimitiveSpec):
        return jobs.PrimitiveObject(shape=obj.shape, size=tuple(obj.size), mass_kg=obj.mass_kg)
    if isinstance(obj, MeshSpec):
        from sim_worker.worker.objects import mesh_face_count

        mesh = jobs.MeshObject(format=obj.format, data=_b64(obj.data_b64, "object.data_b64"), mass_kg=obj.mass_kg)
        try:
            faces = mesh_face_count(mesh)
        except ValueError as e:
            raise DecodeError(f"object: {e}") from None
        if faces > max_faces:
            raise MeshTooComplex(faces, max_faces)
        return mesh
    pts = decode_array(obj.points, "object.points")
    return jobs.PointsObject.from_array(pts, mass_kg=obj.mass_kg)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except jobs.QueueUnavailable as e:
        raise ServiceUnavailable(f"the rollout queue is unreachable ({e}); proposals still work, retry later") from e
    except (jobs.JobNotFound, jobs.ObjectNotFound) as e:
        raise NotFound(str(e).strip("'\"")) from e
    except jobs.BackendUnavailable as e:
        raise Unprocessable(str(e)) from e


def _with_links(request: Request, st: jobs.JobStatus) -> dict[str, Any]:
    d = st.model_dump(mode="json")
    base = str(request.url_for("get_rollout", job_id=st.id))
    d["events_url"] = base + "/events"
    if d.get("result") and isinstance(d["result"].get("grasps"), list):
        for i, g in enumerate(d["result"]["grasps"]):
            if isinstance(g, dict) and g.get("keyframes"):
                g["keyframe_urls"] = [f"{base}/keyframes/{i}/{k}.png" for k in range(len(g["keyframes"]))]
    return d


@router.post("/objects", response_model=ObjectStored, responses=_ERRS, openapi_extra=_openapi_body("ObjectUpload"),
             summary="Store object geometry once; returns its content hash")
def put_object(body: Annotated[PrimitiveSpec | MeshSpec | PointsSpec, _json_body(ObjectUpload)], state: StateDep) -> ObjectStored:
    q = _queue(state)
    return ObjectStored(hash=_call(q.put_object, _object_spec(body, state.settings.max_mesh_faces)))


@router.post("/rollouts", status_code=202, response_model=RolloutAccepted, responses=_ERRS,
             openapi_extra=_openapi_body("RolloutRequest"), summary="Enqueue simulated validation or execution of grasps")
def create_rollout(body: Annotated[RolloutRequest, _json_body(RolloutRequest)], request: Request, response: Response,
                   state: StateDep) -> RolloutAccepted:
    q = _queue(state)
    # everything that can be checked without Redis first, so a bad request never stores anything
    if isinstance(body.object, HashSpec):
        spec, digest = None, body.object.hash
    else:
        spec = _object_spec(body.object, state.settings.max_mesh_faces)
        digest = jobs.object_hash(spec)
    req = jobs.JobRequest(
        mode=body.mode, grasps=body.grasps, object_hash=digest, backend=body.backend, render=body.render,
        priority=body.priority, seed=body.seed, max_attempts=body.max_attempts, sim=body.sim,
    )
    _call(q.check_backend, body.backend)
    if spec is not None:
        _call(q.put_object, spec)
    elif not _call(q.has_object, digest):
        raise NotFound(f"object {digest} is not stored (expired or never uploaded); POST /v1/objects first")
    st: jobs.JobStatus = _call(q.enqueue, req)
    state.metrics.rollouts.labels(body.mode).inc()
    url = str(request.url_for("get_rollout", job_id=st.id))
    response.headers["Location"] = url
    return RolloutAccepted(id=st.id, status=st.status, object_hash=digest, status_url=url, events_url=url + "/events")


@router.get("/rollouts/{job_id}", responses=_ERRS, summary="Status, progress and result of a rollout job")
def get_rollout(job_id: _ID, request: Request, state: StateDep) -> dict[str, Any]:
    st = _call(_queue(state).get, job_id)
    if st is None:
        raise NotFound(f"job {job_id} not found (never existed or expired)")
    return _with_links(request, st)


@router.delete("/rollouts/{job_id}", responses=_ERRS, summary="Cancel a job (queued: at once; running: between chunks)")
def cancel_rollout(job_id: _ID, request: Request, state: StateDep) -> dict[str, Any]:
    return _with_links(request, _call(_queue(state).cancel, job_id))


@router.get("/rollouts/{job_id}/keyframes/{grasp_index}/{frame}.png", responses={**_ERRS, 200: {"content": {"image/png": {}}}},
            response_class=Response, summary="A rendered keyframe of an execute job")
def keyframe(job_id: _ID, grasp_index: Annotated[int, Path(ge=0, le=10_000)], frame: Annotated[int, Path(ge=0, le=100)],
             state: StateDep) -> Response:
    png = _call(_queue(state).keyframe_png, job_id, grasp_index, frame)
    if png is None:
        raise NotFound(f"no keyframe {frame} for grasp {grasp_index} of job {job_id} (render=true execute jobs only)")
    return Response(png, media_type="image/png")


@router.get("/rollouts/{job_id}/events", responses={**_ERRS, 400: {"model": ErrorResponse, "description": "malformed Last-Event-ID"}, 200: {"content": {"text/event-stream": {}}}},
            response_class=StreamingResponse, summary="Server-sent events: progress and the final status",
            description="The stream ends after the job's final status event (also at once, with that event, when "
                        "the job had ended before `Last-Event-ID`/`after`); clients should close on it.")
async def rollout_events(
    job_id: _ID, request: Request, state: StateDep,
    after: Annotated[str, Query(pattern=r"^\d+-\d+$")] = "0-0",
) -> StreamingResponse:
    q = _queue(state)
    resume = request.headers.get("last-event-id")
    if resume is not None and not _EVENT_ID.match(resume):
        raise HTTPException(400, f"Last-Event-ID must be an event id of this job's stream (digits-digits, as sent "
                                 f"in the 'id:' lines), got {resume[:64]!r}; leave it out to start from the beginning")
    last = resume or after
    # fail before the stream starts when the job is unknown or Redis is down
    if _call(q.get, job_id, with_result=False) is None:
        raise NotFound(f"job {job_id} not found (never existed or expired)")

    def frame(ev: jobs.JobEvent) -> bytes:
        payload = ev.model_dump(mode="json")
        if ev.terminal:
            st = q.get(job_id)
            payload["job"] = None if st is None else st.model_dump(mode="json")
        return f"id: {ev.id}\nevent: {ev.type}\ndata: {json.dumps(payload)}\n\n".encode()

    def final() -> bytes | None:
        """The final event of a job that ended before ``last`` (nothing more will come), else None."""
        st = q.get(job_id, with_result=False)
        if st is None or not st.terminal:
            return None
        ev = q.last_event(job_id)
        if ev is None or not ev.terminal:  # events expired first: the job's own state stands in
            ev = jobs.JobEvent(id=last, job_id=job_id, type="status", status=st.status, progress=st.progress,
                               t=st.finished_at or 0.0, error=st.error, worker=st.worker)
        return frame(ev)

    async def stream() -> AsyncIterator[bytes]:
        nonlocal last
        yield b"retry: 2000\n\n"
        idle_s = 0.0  # the first pass only looks at what is there: a finished job's stream ends at once
        while True:
            terminal = False
            try:
                async for ev in q.aevents(job_id, after=last, idle_timeout_s=idle_s, block_s=5.0 if idle_s else 0.001):
                    last = ev.id
                    yield frame(ev)
                    if ev.terminal:
                        terminal = True
                        break
                end = None if terminal else final()
            except jobs.QueueUnavailable:
                yield b"event: error\ndata: {\"message\": \"rollout queue unreachable; reconnect later\"}\n\n"
                return
            except jobs.JobNotFound:
                yield b"event: error\ndata: {\"message\": \"job expired\"}\n\n"
                return
            if end is not None:
                yield end
                return
            if terminal or await request.is_disconnected():
                return
            if idle_s:
                yield b": keep-alive\n\n"
            idle_s = 15.0

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
