"""The records that cross Redis: object specs (msgpack, by content hash), job requests, statuses and
events (pydantic, JSON), with the protocol's states, modes and limits."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Annotated, Any, Literal

import msgpack
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from models.grasp import Grasp

STATES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "canceled")
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
MODES: tuple[str, ...] = ("validate", "execute", "noop")
KNOWN_BACKENDS: tuple[str, ...] = ("mujoco", "isaacgym")

MAX_GRASPS_PER_JOB = 4096
MAX_OBJECT_BYTES = 64 * 1024 * 1024
MAX_ERROR_CHARS = 4000
MAX_GRASP_DISTANCE_M = 2.0  # |palm position| in the object frame: farther is not a grasp of this object
MAX_JOINT_ANGLE_RAD = 2 * math.pi  # beyond a full turn a joint angle is a unit or data error
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # the one definition: the API's path parameter uses it too
JOB_ID_RE = re.compile(JOB_ID_PATTERN)
OBJECT_HASH_RE = re.compile(r"^[0-9a-f]{64}$")  # sha256, lowercase hex

Status = Literal["queued", "running", "succeeded", "failed", "canceled"]
Mode = Literal["validate", "execute", "noop"]
Priority = Literal["high", "normal", "low"]


# ---------------------------------------------------------------------------------------- objects
class _ObjectBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mass_kg: float | None = Field(None, gt=0, allow_inf_nan=False, description="object mass; None: from the simulation config")


class MeshObject(_ObjectBase):
    """A triangle mesh file's bytes, in the object frame (metres)."""

    kind: Literal["mesh"] = "mesh"
    format: Literal["obj", "stl", "ply", "off", "glb", "gltf"]
    data: bytes = Field(..., min_length=1, max_length=MAX_OBJECT_BYTES)


class PrimitiveObject(_ObjectBase):
    """A MuJoCo primitive at the object-frame origin, MuJoCo size semantics: box half-extents (3),
    sphere radius (1), cylinder/capsule radius and half-height (2), ellipsoid radii (3); metres."""

    kind: Literal["primitive"] = "primitive"
    shape: Literal["box", "sphere", "cylinder", "capsule", "ellipsoid"]
    size: tuple[float, ...]

    @model_validator(mode="after")
    def _sizes(self) -> PrimitiveObject:
        need = {"box": 3, "sphere": 1, "cylinder": 2, "capsule": 2, "ellipsoid": 3}[self.shape]
        if len(self.size) != need or not all(np.isfinite(s) and s > 0 for s in self.size):
            raise ValueError(f"a {self.shape} needs {need} positive finite sizes (metres), got {list(self.size)}")
        return self


class PointsObject(_ObjectBase):
    """A point cloud to reconstruct the object from (its convex hull): float32 (N,3), little-endian,
    row-major, in the object frame (metres). Build it with :meth:`from_array`."""

    kind: Literal["points"] = "points"
    points: bytes = Field(..., max_length=MAX_OBJECT_BYTES)

    @field_validator("points")
    @classmethod
    def _shape(cls, v: bytes) -> bytes:
        if len(v) % 12 or len(v) < 4 * 12:
            raise ValueError(f"points must be float32 (N,3) with N >= 4, got {len(v)} bytes")
        if not np.isfinite(np.frombuffer(v, dtype="<f4")).all():
            raise ValueError("points contain NaN or infinite values")
        return v

    @classmethod
    def from_array(cls, points: Any, mass_kg: float | None = None) -> PointsObject:
        a = np.asarray(points, dtype="<f4")
        if a.ndim != 2 or a.shape[1] != 3:
            raise ValueError(f"points must have shape (N,3), got {a.shape}")
        return cls(points=np.ascontiguousarray(a).tobytes(), mass_kg=mass_kg)

    def array(self) -> NDArray[np.float32]:
        return np.frombuffer(self.points, dtype="<f4").reshape(-1, 3)


ObjectSpec = Annotated[MeshObject | PrimitiveObject | PointsObject, Field(discriminator="kind")]
_OBJECT_ADAPTER: TypeAdapter[MeshObject | PrimitiveObject | PointsObject] = TypeAdapter(ObjectSpec)


def encode_object(spec: MeshObject | PrimitiveObject | PointsObject) -> bytes:
    """The canonical msgpack bytes of an object (what is stored, and what the hash is taken of)."""
    d = spec.model_dump(mode="python")
    if "size" in d:
        d["size"] = [float(s) for s in d["size"]]
    return bytes(msgpack.packb(d, use_bin_type=True))


def decode_object(data: bytes) -> MeshObject | PrimitiveObject | PointsObject:
    return _OBJECT_ADAPTER.validate_python(msgpack.unpackb(data, raw=False))


def object_hash(spec: MeshObject | PrimitiveObject | PointsObject) -> str:
    """sha256 (hex) of the canonical encoding: the same geometry always gets the same hash."""
    return encoded_object_hash(encode_object(spec))


def encoded_object_hash(encoded: bytes) -> str:
    """:func:`object_hash` of bytes already made by :func:`encode_object` (saves encoding twice)."""
    return hashlib.sha256(b"dexgrasp-object-v1\0" + encoded).hexdigest()


def as_object_spec(spec: Any) -> MeshObject | PrimitiveObject | PointsObject:
    if isinstance(spec, MeshObject | PrimitiveObject | PointsObject):
        return spec
    return _OBJECT_ADAPTER.validate_python(spec)


# ---------------------------------------------------------------------------------------- jobs
def _priority(v: Any) -> Any:
    """Integers: > 0 high, 0 normal, < 0 low."""
    if isinstance(v, bool):
        raise ValueError("priority must be 'high', 'normal', 'low' or an integer")
    if isinstance(v, int):
        return "high" if v > 0 else "normal" if v == 0 else "low"
    return v


def _check_grasp_values(i: int, g: Grasp) -> None:
    """Refuse values no simulation can run (the schema already refuses non-finite ones)."""
    for what, pose in (("pose", g.pose), ("pregrasp.pose", g.pregrasp.pose)):
        d = math.hypot(*pose.position)
        if d > MAX_GRASP_DISTANCE_M:
            raise ValueError(f"grasps[{i}].{what}.position is {d:.3g} m from the object origin; at most "
                             f"{MAX_GRASP_DISTANCE_M} m (grasps are in the object's frame, in metres)")
    for what, joints in (("joints", g.joints), ("pregrasp.joints", g.pregrasp.joints), ("squeeze", g.squeeze or {})):
        bad = sorted(k for k, v in joints.items() if abs(v) > MAX_JOINT_ANGLE_RAD)
        if bad:
            raise ValueError(f"grasps[{i}].{what}: angles of {bad} exceed {MAX_JOINT_ANGLE_RAD:.3f} rad in magnitude "
                             "(joint angles are in radians)")


class JobRequest(BaseModel):
    """What a client asks for. Grasps are in the object's frame (the shared grasp schema)."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = Field(..., description="validate: six-direction disturbance test; execute: approach, close, "
                                        "lift from a table; noop: no simulation (queue tests and benchmarks)")
    grasps: list[Grasp] = Field(default_factory=list, max_length=MAX_GRASPS_PER_JOB)
    object_hash: str | None = Field(None, description="content hash returned by put_object")
    backend: str = Field("mujoco", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    render: bool = Field(False, description="execute only: render PNG keyframes")
    policy: str = Field("scripted", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="execute only")
    priority: Annotated[Priority, Field(description="high | normal | low, or an integer (>0 high, 0 normal, <0 low)")] = "normal"
    seed: int = Field(0, ge=0, lt=2**31, description="execute: grasp i runs with seed + i")
    max_attempts: int = Field(3, ge=1, le=20)
    sim: dict[str, Any] | None = Field(None, description="SimConfig overrides: {preset: fc_mocap|pinned, physics|validation|execution: {field: value}}; default: the referee of record (fc_mocap)")
    sleep_s: float = Field(0.0, ge=0.0, le=3600.0, description="noop only: how long the job 'runs'")

    _coerce_priority = field_validator("priority", mode="before")(_priority)

    @model_validator(mode="after")
    def _consistent(self) -> JobRequest:
        if self.mode != "noop":
            if not self.grasps:
                raise ValueError(f"a {self.mode} job needs at least one grasp")
            if self.object_hash is None:
                raise ValueError(f"a {self.mode} job needs an object_hash (upload the object with put_object)")
        elif self.object_hash is not None and not OBJECT_HASH_RE.match(self.object_hash):
            raise ValueError("object_hash must be 64 lowercase hex characters (sha256)")
        if self.object_hash is not None and not OBJECT_HASH_RE.match(self.object_hash):
            raise ValueError("object_hash must be 64 lowercase hex characters (sha256)")
        if self.render and self.mode != "execute":
            raise ValueError("render is only available for execute jobs")
        if self.sleep_s and self.mode != "noop":
            raise ValueError("sleep_s is only for noop jobs")
        for i, g in enumerate(self.grasps):
            _check_grasp_values(i, g)
        hands = {g.hand for g in self.grasps}
        if len(hands) > 1:
            raise ValueError(f"all grasps of a job must be for one hand, got {sorted(hands)}")
        if self.sim:
            from ..config import SimConfig  # stdlib-only module: cheap for the producer

            try:
                SimConfig.from_dict(self.sim)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"sim overrides: {exc}") from None
        return self

    @property
    def hand(self) -> str:
        return self.grasps[0].hand if self.grasps else "shadow"


class JobStatus(BaseModel):
    """A job as stored (timestamps: Redis server clock, Unix seconds)."""

    id: str
    status: Status
    mode: Mode
    backend: str
    priority: Priority
    object_hash: str | None = None
    n_grasps: int = 0
    progress: float = 0.0
    attempts: int = 0
    max_attempts: int = 1
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: float
    started_at: float | None = None  # start of the current (last) attempt
    first_started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    worker: str | None = None
    cancel_requested: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class JobEvent(BaseModel):
    """One status change or progress update of a job, from its event stream."""

    id: str = Field(..., description="stream id; use as the SSE event id (resume with after=id)")
    job_id: str
    type: Literal["status", "progress", "cancel_requested"]
    status: Status
    progress: float = 0.0
    t: float = 0.0
    error: str | None = None
    worker: str | None = None

    @property
    def terminal(self) -> bool:
        return self.type == "status" and self.status in TERMINAL



def check_job_id(job_id: str) -> str:
    """``job_id`` if it is a valid job id, else ``ValueError``."""
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
        raise ValueError(f"job id must match {JOB_ID_RE.pattern}, got {job_id!r}")
    return job_id


def trim_error(text: str) -> str:
    """An error message cut to what the job hash keeps (``MAX_ERROR_CHARS``)."""
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 20] + " ...(truncated)"


__all__ = [
    "JOB_ID_PATTERN", "KNOWN_BACKENDS", "MAX_ERROR_CHARS", "MAX_GRASPS_PER_JOB", "MAX_OBJECT_BYTES", "MODES", "OBJECT_HASH_RE", "STATES",
    "TERMINAL", "JobEvent", "JobRequest", "JobStatus", "MeshObject", "Mode", "ObjectSpec", "PointsObject",
    "PrimitiveObject", "Priority", "Status", "as_object_spec", "check_job_id", "decode_object", "encode_object", "encoded_object_hash",
    "object_hash", "trim_error",
]
