"""The rollout-job queue protocol: the one module both the service (producer) and the workers (consumer) import.

Everything that crosses Redis is defined here: the job and object records (pydantic), the key and
stream names, the states, and every state transition as one atomic Lua script. ``docs/jobs.md``
describes the protocol for people; this docstring is the short version.

Keys (``ns`` = namespace, default ``dexgrasp``; every key of a job expires ``ttl_s`` after its last
state change):

``ns:jobs:{backend}:{priority}``  stream, one per backend and priority (high, normal, low); entries
                                  are ``{"job": id}``; consumer group ``workers``. Entries are
                                  deleted when their job leaves them, so the length is the backlog.
``ns:job:{id}``                   hash: status, progress, attempts, request (JSON), result (JSON),
                                  error, timestamps (Redis server clock, seconds), worker, entry.
``ns:job:{id}:events``            stream of status/progress events (the SSE source; ids are the
                                  SSE event ids, so a client can resume with ``Last-Event-ID``).
``ns:job:{id}:frames``            hash ``"{grasp}:{frame}"`` -> PNG bytes (execution keyframes).
``ns:object:{sha256}``            msgpack of an :data:`ObjectSpec`, by content hash, uploaded once.
``ns:dead``                       dead-letter stream: jobs that failed ``max_attempts`` times.
``ns:worker:{name}:hb``           heartbeat (JSON, expires after ``heartbeat_ttl_s``).
``ns:worker:{name}:metrics``      the worker's counters (hash).

States follow ROS 2 actions: ``queued -> running -> succeeded | failed | canceled``. A running job
whose worker died goes back to ``queued`` (with the reason in ``error``) until another worker
starts it. Delivery is at-least-once; results are written at most once: the first terminal write
wins, later ones are acknowledged and dropped (:meth:`JobConsumer.finish` returns False).

Heartbeats: a worker sets its heartbeat key and re-claims its own pending entries (``XCLAIM ...
JUSTID``, which resets their idle time) every ``heartbeat_s``. The janitor in every worker claims
entries idle longer than ``reclaim_idle_s`` *only* when the owner's heartbeat key is gone (Redis's
``XAUTOCLAIM`` cannot filter by owner, so the scan is ``XPENDING IDLE`` + heartbeat check +
``XCLAIM``, atomically in one script). Attempts are counted when a job starts; a job that failed
(or whose worker died) ``max_attempts`` times goes to the dead-letter stream with its last error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import msgpack
import numpy as np
import redis
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from models.grasp import Grasp

PROTOCOL_VERSION = 1
GROUP = "workers"  # the one consumer group of every job stream
PRIORITIES: tuple[str, ...] = ("high", "normal", "low")  # read in this order
STATES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "canceled")
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
MODES: tuple[str, ...] = ("validate", "execute", "noop")
KNOWN_BACKENDS: tuple[str, ...] = ("mujoco", "isaacgym")

DEFAULT_TTL_S = 86400  # a job's keys live this long after its last state change
HEARTBEAT_S = 2.0  # a worker refreshes its heartbeat and its entries' idle time this often
HEARTBEAT_TTL_S = 10.0  # ... and is declared dead when its heartbeat is this old
RECLAIM_IDLE_S = 15.0  # entries idle longer than this (and whose owner is dead) are reclaimed
MAX_GRASPS_PER_JOB = 4096
MAX_OBJECT_BYTES = 64 * 1024 * 1024
MAX_ERROR_CHARS = 4000
EVENTS_MAXLEN = 512
DEAD_MAXLEN = 10000
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")

Status = Literal["queued", "running", "succeeded", "failed", "canceled"]
Mode = Literal["validate", "execute", "noop"]
Priority = Literal["high", "normal", "low"]


# ============================================================================================ errors
class QueueError(Exception):
    """Base class of the queue's errors."""


class QueueUnavailable(QueueError):
    """Redis cannot be reached (connection refused, timeout, loading): the API answers 503."""


class ObjectNotFound(QueueError, KeyError):
    """A job references an object hash that was never uploaded or has expired: ``put_object`` first."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "object not found"


class JobNotFound(QueueError, KeyError):
    """No such job (never existed, or its TTL expired)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "job not found"


T = TypeVar("T")


def _guard(fn: Callable[[], T]) -> T:
    """Run one Redis interaction; connection problems become :class:`QueueUnavailable`."""
    try:
        return fn()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise QueueUnavailable(f"Redis is unreachable: {type(exc).__name__}: {exc}") from exc
    except redis.exceptions.ResponseError as exc:
        if str(exc).startswith(("LOADING", "MASTERDOWN", "READONLY")):
            raise QueueUnavailable(f"Redis is not ready: {exc}") from exc
        raise


# ============================================================================================ objects
class _ObjectBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mass_kg: float | None = Field(None, gt=0, description="object mass; None: from the simulation config")


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
    return hashlib.sha256(b"dexgrasp-object-v1\0" + encode_object(spec)).hexdigest()


def as_object_spec(spec: Any) -> MeshObject | PrimitiveObject | PointsObject:
    if isinstance(spec, MeshObject | PrimitiveObject | PointsObject):
        return spec
    return _OBJECT_ADAPTER.validate_python(spec)


# ============================================================================================ jobs
def _priority(v: Any) -> Any:
    """Integers: > 0 high, 0 normal, < 0 low."""
    if isinstance(v, bool):
        raise ValueError("priority must be 'high', 'normal', 'low' or an integer")
    if isinstance(v, int):
        return "high" if v > 0 else "normal" if v == 0 else "low"
    return v


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
    sim: dict[str, Any] | None = Field(None, description="SimConfig overrides: {physics|validation|execution: {field: value}}")
    sleep_s: float = Field(0.0, ge=0.0, le=3600.0, description="noop only: how long the job 'runs'")

    _coerce_priority = field_validator("priority", mode="before")(_priority)

    @model_validator(mode="after")
    def _consistent(self) -> JobRequest:
        if self.mode != "noop":
            if not self.grasps:
                raise ValueError(f"a {self.mode} job needs at least one grasp")
            if self.object_hash is None:
                raise ValueError(f"a {self.mode} job needs an object_hash (upload the object with put_object)")
        elif self.object_hash is not None and not _HASH_RE.match(self.object_hash):
            raise ValueError("object_hash must be 64 lowercase hex characters (sha256)")
        if self.object_hash is not None and not _HASH_RE.match(self.object_hash):
            raise ValueError("object_hash must be 64 lowercase hex characters (sha256)")
        if self.render and self.mode != "execute":
            raise ValueError("render is only available for execute jobs")
        if self.sleep_s and self.mode != "noop":
            raise ValueError("sleep_s is only for noop jobs")
        hands = {g.hand for g in self.grasps}
        if len(hands) > 1:
            raise ValueError(f"all grasps of a job must be for one hand, got {sorted(hands)}")
        if self.sim:
            from .config import SimConfig  # stdlib-only module: cheap for the producer

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


# ============================================================================================ keys
@dataclass(frozen=True)
class Keys:
    """Every Redis key of the protocol, in one place."""

    ns: str = "dexgrasp"

    def stream(self, backend: str, priority: str) -> str:
        return f"{self.ns}:jobs:{backend}:{priority}"

    def streams(self, backend: str) -> list[str]:
        return [self.stream(backend, p) for p in PRIORITIES]

    def job(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:events"

    def frames(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:frames"

    def object(self, digest: str) -> str:
        return f"{self.ns}:object:{digest}"

    @property
    def job_prefix(self) -> str:
        return f"{self.ns}:job:"

    @property
    def dead(self) -> str:
        return f"{self.ns}:dead"

    @property
    def backends(self) -> str:
        return f"{self.ns}:backends"

    @property
    def results_written(self) -> str:
        return f"{self.ns}:stats:results_written"

    def heartbeat(self, worker: str) -> str:
        return f"{self.ns}:worker:{worker}:hb"

    def metrics(self, worker: str) -> str:
        return f"{self.ns}:worker:{worker}:metrics"

    @property
    def heartbeat_affixes(self) -> tuple[str, str]:
        return f"{self.ns}:worker:", ":hb"


# ============================================================================================ scripts
# Shared Lua prelude. Timestamps come from the Redis server clock so that every party agrees.
_LUA_PRELUDE = """
local function now()
  local t = redis.call('TIME')
  return string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
end
local function terminal(s) return s == 'succeeded' or s == 'failed' or s == 'canceled' end
local function event(key, ttl, ...)
  redis.call('XADD', key, 'MAXLEN', '~', '""" + str(EVENTS_MAXLEN) + """', '*', ...)
  redis.call('EXPIRE', key, ttl)
end
"""

# KEYS: job, stream, events, object, backends   ARGV: id, ttl, object_ttl, has_object, backend, fields...
_ENQUEUE = _LUA_PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
if ARGV[4] == '1' then
  if redis.call('EXISTS', KEYS[4]) == 0 then return {'no_object'} end
  if redis.call('TTL', KEYS[4]) < tonumber(ARGV[3]) then redis.call('EXPIRE', KEYS[4], ARGV[3]) end
end
local t = now()
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
local eid = redis.call('XADD', KEYS[2], '*', 'job', ARGV[1])
redis.call('HSET', KEYS[1], 'entry', eid, 'stream', KEYS[2], 'status', 'queued', 'created_at', t,
           'updated_at', t, 'attempts', '0', 'progress', '0')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[5], ARGV[5])
event(KEYS[3], ARGV[2], 'type', 'status', 'status', 'queued', 'progress', '0', 't', t)
return {'ok', eid}
"""

# KEYS: job, stream, events, dead   ARGV: group, entry, worker, job id, ttl
_START = _LUA_PRELUDE + """
local function drop() redis.call('XACK', KEYS[2], ARGV[1], ARGV[2]); redis.call('XDEL', KEYS[2], ARGV[2]) end
local st = redis.call('HGET', KEYS[1], 'status')
if not st then drop(); return {'gone'} end
if terminal(st) then drop(); return {'skip', st} end
local f = redis.call('HMGET', KEYS[1], 'entry', 'attempts', 'max_attempts', 'error', 'cancel')
if f[1] ~= ARGV[2] then drop(); return {'stale'} end
local t = now()
if f[5] == '1' then
  drop()
  redis.call('HSET', KEYS[1], 'status', 'canceled', 'finished_at', t, 'updated_at', t)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  event(KEYS[3], ARGV[5], 'type', 'status', 'status', 'canceled', 'progress', '0', 't', t)
  return {'skip', 'canceled'}
end
local attempts = tonumber(f[2]) or 0
local maxa = tonumber(f[3]) or 1
if attempts >= maxa then
  local err = 'gave up after ' .. attempts .. ' attempts; last error: ' .. (f[4] or 'unknown')
  drop()
  redis.call('HSET', KEYS[1], 'status', 'failed', 'error', err, 'finished_at', t, 'updated_at', t)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', '""" + str(DEAD_MAXLEN) + """', '*', 'job', ARGV[4], 'error', err,
             'attempts', tostring(attempts), 'stream', KEYS[2], 'worker', ARGV[3], 't', t)
  event(KEYS[3], ARGV[5], 'type', 'status', 'status', 'failed', 'progress', '0', 't', t, 'error', err)
  return {'dead', err}
end
attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[3], 'started_at', t, 'updated_at', t, 'progress', '0')
redis.call('HSETNX', KEYS[1], 'first_started_at', t)
redis.call('EXPIRE', KEYS[1], ARGV[5])
event(KEYS[3], ARGV[5], 'type', 'status', 'status', 'running', 'progress', '0', 't', t, 'worker', ARGV[3])
return {'run', tostring(attempts), redis.call('HGET', KEYS[1], 'request')}
"""

# KEYS: job, events   ARGV: worker, progress, ttl
_PROGRESS = _LUA_PRELUDE + """
local f = redis.call('HMGET', KEYS[1], 'status', 'worker')
if f[1] ~= 'running' or f[2] ~= ARGV[1] then return 0 end
local t = now()
redis.call('HSET', KEYS[1], 'progress', ARGV[2], 'updated_at', t)
redis.call('EXPIRE', KEYS[1], ARGV[3])
event(KEYS[2], ARGV[3], 'type', 'progress', 'status', 'running', 'progress', ARGV[2], 't', t)
return 1
"""

# KEYS: job, stream, events, frames, results counter
# ARGV: group, entry, worker, status, result, error, ttl, frame field/value pairs...
_FINISH = _LUA_PRELUDE + """
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'gone' end
if terminal(st) then return 'dup' end
local t = now()
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'result', ARGV[5], 'finished_at', t, 'updated_at', t, 'worker', ARGV[3])
local p = redis.call('HGET', KEYS[1], 'progress') or '0'
if ARGV[4] == 'succeeded' then p = '1'; redis.call('HSET', KEYS[1], 'progress', '1') end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[6])
elseif ARGV[4] == 'succeeded' then redis.call('HDEL', KEYS[1], 'error') end
if #ARGV >= 8 then
  for i = 8, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
  redis.call('EXPIRE', KEYS[4], ARGV[7])
end
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('INCR', KEYS[5])
if ARGV[6] ~= '' then
  event(KEYS[3], ARGV[7], 'type', 'status', 'status', ARGV[4], 'progress', p, 't', t, 'error', ARGV[6])
else
  event(KEYS[3], ARGV[7], 'type', 'status', 'status', ARGV[4], 'progress', p, 't', t)
end
return 'ok'
"""

# A failed attempt (retry or dead-letter) or a released one (worker shutting down: not an attempt).
# KEYS: job, stream, events, dead   ARGV: group, entry, worker, error/note, ttl, 'fail'|'release', job id
_REQUEUE = _LUA_PRELUDE + """
local function drop() redis.call('XACK', KEYS[2], ARGV[1], ARGV[2]); redis.call('XDEL', KEYS[2], ARGV[2]) end
local st = redis.call('HGET', KEYS[1], 'status')
if not st then drop(); return {'gone'} end
if terminal(st) then drop(); return {'dup'} end
local f = redis.call('HMGET', KEYS[1], 'entry', 'worker', 'attempts', 'max_attempts', 'cancel')
if f[1] ~= ARGV[2] then drop(); return {'stale'} end
if st == 'running' and f[2] ~= ARGV[3] then return {'stale'} end
local t = now()
if f[5] == '1' then
  drop()
  redis.call('HSET', KEYS[1], 'status', 'canceled', 'finished_at', t, 'updated_at', t)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  event(KEYS[3], ARGV[5], 'type', 'status', 'status', 'canceled', 'progress', '0', 't', t)
  return {'canceled'}
end
local attempts = tonumber(f[3]) or 0
if ARGV[6] == 'fail' then
  redis.call('HSET', KEYS[1], 'error', ARGV[4])
  if attempts >= (tonumber(f[4]) or 1) then
    local err = 'failed ' .. attempts .. ' times; last error: ' .. ARGV[4]
    drop()
    redis.call('HSET', KEYS[1], 'status', 'failed', 'error', err, 'finished_at', t, 'updated_at', t)
    redis.call('EXPIRE', KEYS[1], ARGV[5])
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', '""" + str(DEAD_MAXLEN) + """', '*', 'job', ARGV[7], 'error', err,
               'attempts', tostring(attempts), 'stream', KEYS[2], 'worker', ARGV[3], 't', t)
    event(KEYS[3], ARGV[5], 'type', 'status', 'status', 'failed', 'progress', '0', 't', t, 'error', err)
    return {'dead', err}
  end
elseif st == 'running' then
  redis.call('HINCRBY', KEYS[1], 'attempts', -1)
end
drop()
local eid = redis.call('XADD', KEYS[2], '*', 'job', ARGV[7])
redis.call('HSET', KEYS[1], 'status', 'queued', 'entry', eid, 'updated_at', t, 'progress', '0')
redis.call('EXPIRE', KEYS[1], ARGV[5])
event(KEYS[3], ARGV[5], 'type', 'status', 'status', 'queued', 'progress', '0', 't', t, 'error', ARGV[4])
return {'requeued', eid}
"""

# KEYS: job, events   ARGV: ttl
_CANCEL = _LUA_PRELUDE + """
local f = redis.call('HMGET', KEYS[1], 'status', 'stream', 'entry')
if not f[1] then return 'gone' end
if terminal(f[1]) then return f[1] end
local t = now()
if f[1] == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'canceled', 'finished_at', t, 'updated_at', t)
  if f[2] and f[3] then redis.call('XDEL', f[2], f[3]) end
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  event(KEYS[2], ARGV[1], 'type', 'status', 'status', 'canceled', 'progress', '0', 't', t)
  return 'canceled'
end
if redis.call('HGET', KEYS[1], 'cancel') ~= '1' then
  redis.call('HSET', KEYS[1], 'cancel', '1', 'updated_at', t)
  local p = redis.call('HGET', KEYS[1], 'progress') or '0'
  event(KEYS[2], ARGV[1], 'type', 'cancel_requested', 'status', f[1], 'progress', p, 't', t)
end
return 'cancel_requested'
"""

# Heartbeat: set the heartbeat key and reset the idle time of every entry this worker owns.
# KEYS: heartbeat, streams...   ARGV: group, worker, ttl_ms, info
_HEARTBEAT = """
redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[3])
local n = 0
for i = 2, #KEYS do
  local ok, pend = pcall(redis.call, 'XPENDING', KEYS[i], ARGV[1], '-', '+', 10000, ARGV[2])
  if ok and #pend > 0 then
    local args = {'XCLAIM', KEYS[i], ARGV[1], ARGV[2], '0'}
    for _, p in ipairs(pend) do args[#args + 1] = p[1] end
    args[#args + 1] = 'JUSTID'
    redis.call(unpack(args))
    n = n + #pend
  end
end
return n
"""

# Janitor: claim entries idle > min_idle whose owner's heartbeat is gone.
# KEYS: streams...   ARGV: group, worker, min_idle_ms, hb prefix, hb suffix, count, ttl, job prefix
_RECLAIM = _LUA_PRELUDE + """
local out = {}
local budget = tonumber(ARGV[6])
for i = 1, #KEYS do
  local ok, pend = pcall(redis.call, 'XPENDING', KEYS[i], ARGV[1], 'IDLE', ARGV[3], '-', '+', ARGV[6])
  if ok then
    for _, p in ipairs(pend) do
      local id, owner = p[1], p[2]
      if budget > 0 and owner ~= ARGV[2] and redis.call('EXISTS', ARGV[4] .. owner .. ARGV[5]) == 0 then
        local e = redis.call('XRANGE', KEYS[i], id, id)
        if #e == 0 then
          redis.call('XACK', KEYS[i], ARGV[1], id)  -- entry deleted (job finished or canceled): nothing to redo
        else
          local c = redis.call('XCLAIM', KEYS[i], ARGV[1], ARGV[2], ARGV[3], id, 'JUSTID')
          if #c > 0 then
            local job = e[1][2][2]
            local jk = ARGV[8] .. job
            local f = redis.call('HMGET', jk, 'status', 'worker', 'attempts')
            if f[1] == 'running' and f[2] == owner then
              local t = now()
              local msg = 'worker ' .. owner .. ' stopped heartbeating during attempt ' .. (f[3] or '?')
              redis.call('HSET', jk, 'status', 'queued', 'error', msg, 'updated_at', t, 'progress', '0')
              event(jk .. ':events', ARGV[7], 'type', 'status', 'status', 'queued', 'progress', '0', 't', t,
                    'error', msg)
            end
            out[#out + 1] = {KEYS[i], id, job}
            budget = budget - 1
          end
        end
      end
    end
  end
end
return out
"""


# ============================================================================================ helpers
def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes | bytearray) else str(v)


def _f(v: Any) -> float | None:
    return None if v is None or v == b"" else float(_s(v))


def _client(url: str, socket_timeout: float | None) -> redis.Redis:
    try:
        return redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=3.0,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2), health_check_interval=30,
        )
    except ValueError as exc:
        raise ValueError(f"bad Redis URL {url!r}: {exc} (expected redis://host:port/db or unix:///path)") from None


def _check_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _ID_RE.match(job_id):
        raise ValueError(f"job id must match {_ID_RE.pattern}, got {job_id!r}")
    return job_id


def _status_from_hash(job_id: str, h: dict[bytes, bytes], with_result: bool = True) -> JobStatus:
    g = {_s(k): v for k, v in h.items()}
    req = json.loads(g["request"]) if "request" in g else {}
    result = json.loads(g["result"]) if with_result and g.get("result") else None
    err = _s(g["error"]) if g.get("error") else None
    return JobStatus(
        id=job_id,
        status=_s(g["status"]),
        mode=_s(g.get("mode", req.get("mode", b"noop"))),
        backend=_s(g.get("backend", b"mujoco")),
        priority=_s(g.get("priority", b"normal")),
        object_hash=_s(g["object_hash"]) if g.get("object_hash") else None,
        n_grasps=int(_s(g.get("n_grasps", b"0"))),
        progress=float(_s(g.get("progress", b"0"))),
        attempts=int(_s(g.get("attempts", b"0"))),
        max_attempts=int(_s(g.get("max_attempts", b"1"))),
        result=result,
        error=err,
        created_at=float(_s(g.get("created_at", b"0"))),
        started_at=_f(g.get("started_at")),
        first_started_at=_f(g.get("first_started_at")),
        finished_at=_f(g.get("finished_at")),
        updated_at=_f(g.get("updated_at")),
        worker=_s(g["worker"]) if g.get("worker") else None,
        cancel_requested=g.get("cancel") == b"1",
    )


def _event(job_id: str, eid: Any, fields: dict[bytes, bytes]) -> JobEvent:
    g = {_s(k): _s(v) for k, v in fields.items()}
    return JobEvent(
        id=_s(eid), job_id=job_id, type=g.get("type", "status"), status=g.get("status", "queued"),
        progress=float(g.get("progress", 0.0)), t=float(g.get("t", 0.0)), error=g.get("error") or None,
        worker=g.get("worker") or None,
    )


def _trim_error(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 20] + " ...(truncated)"


# ============================================================================================ producer
class JobQueue:
    """The producer side (the HTTP service). Every method raises :class:`QueueUnavailable` when Redis
    cannot be reached. Thread-safe (one connection pool)."""

    def __init__(
        self, redis_url: str, namespace: str = "dexgrasp", ttl_s: int = DEFAULT_TTL_S,
        object_ttl_s: int | None = None, socket_timeout_s: float = 5.0, max_block_s: float = 30.0,
    ) -> None:
        if ttl_s < 1:
            raise ValueError(f"ttl_s must be >= 1 second, got {ttl_s}")
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", namespace):
            raise ValueError(f"namespace must be 1-64 characters of [A-Za-z0-9_.-], got {namespace!r}")
        self.url = redis_url
        self.keys = Keys(namespace)
        self.ttl_s = int(ttl_s)
        self.object_ttl_s = int(object_ttl_s if object_ttl_s is not None else 2 * ttl_s)
        self.max_block_s = max_block_s
        self.redis = _client(redis_url, socket_timeout_s)
        self._blocking = _client(redis_url, max_block_s + 5.0)  # long XREAD BLOCK calls (events)
        self._enqueue = self.redis.register_script(_ENQUEUE)
        self._cancel = self.redis.register_script(_CANCEL)

    def close(self) -> None:
        self.redis.close()
        self._blocking.close()

    def __enter__(self) -> JobQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- health
    def ping(self) -> bool:
        """True when Redis answers PING (False, not an exception, when it does not)."""
        try:
            return bool(self.redis.ping())
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ResponseError):
            return False

    # ---------------------------------------------------------------- objects
    def put_object(self, spec: MeshObject | PrimitiveObject | PointsObject | dict[str, Any]) -> str:
        """Store an object once under its content hash (idempotent; refreshes its TTL); returns the hash."""
        obj = as_object_spec(spec)
        data = encode_object(obj)
        digest = hashlib.sha256(b"dexgrasp-object-v1\0" + data).hexdigest()
        key = self.keys.object(digest)

        def go() -> None:
            if not self.redis.set(key, data, ex=self.object_ttl_s, nx=True):
                self.redis.expire(key, self.object_ttl_s)

        _guard(go)
        return digest

    def has_object(self, digest: str) -> bool:
        if not _HASH_RE.match(digest):
            return False
        return bool(_guard(lambda: self.redis.exists(self.keys.object(digest))))

    def get_object(self, digest: str) -> MeshObject | PrimitiveObject | PointsObject | None:
        raw = _guard(lambda: self.redis.get(self.keys.object(digest))) if _HASH_RE.match(digest) else None
        return None if raw is None else decode_object(bytes(raw))  # type: ignore[arg-type]

    # ---------------------------------------------------------------- jobs
    def enqueue(self, request: JobRequest | dict[str, Any], job_id: str | None = None) -> JobStatus:
        """Queue a job; returns its (queued) status. ``job_id`` makes the call idempotent: enqueuing an
        id that exists returns that job unchanged. Raises :class:`ObjectNotFound` when ``object_hash``
        is unknown, ``ValueError`` (pydantic ``ValidationError``) for a bad request."""
        req = request if isinstance(request, JobRequest) else JobRequest.model_validate(request)
        jid = _check_id(job_id) if job_id is not None else uuid.uuid4().hex
        keys, args = self._enqueue_call(jid, req)
        out = _guard(lambda: self._enqueue(keys=keys, args=args))
        code = _s(out[0])
        if code == "no_object":
            raise ObjectNotFound(f"object {req.object_hash} is not stored (never uploaded or expired): "
                                 "upload it with put_object first")
        st = self.get(jid)
        if st is None:  # pragma: no cover - expired between the two calls
            raise JobNotFound(f"job {jid} vanished right after it was enqueued")
        return st

    def enqueue_many(self, requests: Sequence[JobRequest | dict[str, Any]]) -> list[str]:
        """Queue many jobs in one round trip (pipelined); returns their ids in order. All objects are
        checked first: an unknown ``object_hash`` raises :class:`ObjectNotFound` and queues nothing."""
        reqs = [r if isinstance(r, JobRequest) else JobRequest.model_validate(r) for r in requests]
        digests = sorted({r.object_hash for r in reqs if r.object_hash is not None})
        k = self.keys
        if digests:
            present = _guard(lambda: [bool(self.redis.exists(k.object(d))) for d in digests])
            missing = [d for d, ok in zip(digests, present) if not ok]
            if missing:
                raise ObjectNotFound(f"objects not stored (never uploaded or expired): {', '.join(missing)}; "
                                     "upload them with put_object first")
        ids = [uuid.uuid4().hex for _ in reqs]

        def go() -> list[Any]:
            with self.redis.pipeline(transaction=False) as p:
                for jid, req in zip(ids, reqs):
                    keys, args = self._enqueue_call(jid, req)
                    self._enqueue(keys=keys, args=args, client=p)
                return list(p.execute())

        codes = [_s(r[0]) for r in _guard(go)]
        if "no_object" in codes:  # pragma: no cover - an object expired between the check and the pipeline
            lost = [jid for jid, c in zip(ids, codes) if c == "no_object"]
            raise ObjectNotFound(f"jobs {lost} were refused: their object expired while enqueuing; upload it again")
        return ids

    def _enqueue_call(self, jid: str, req: JobRequest) -> tuple[list[str], list[Any]]:
        k = self.keys
        fields: list[Any] = [
            "id", jid, "mode", req.mode, "backend", req.backend, "priority", req.priority,
            "object_hash", req.object_hash or "", "n_grasps", len(req.grasps), "max_attempts", req.max_attempts,
            "request", req.model_dump_json(), "protocol", PROTOCOL_VERSION,
        ]
        keys = [k.job(jid), k.stream(req.backend, req.priority), k.events(jid),
                k.object(req.object_hash) if req.object_hash is not None else k.job(jid), k.backends]
        args = [jid, self.ttl_s, self.object_ttl_s, "1" if req.object_hash is not None else "0", req.backend, *fields]
        return keys, args

    def get(self, job_id: str, with_result: bool = True) -> JobStatus | None:
        """The job's status, or None when it does not exist (or expired)."""
        _check_id(job_id)
        h = _guard(lambda: self.redis.hgetall(self.keys.job(job_id)))
        if not h:
            return None
        return _status_from_hash(job_id, h, with_result)  # type: ignore[arg-type]

    def cancel(self, job_id: str) -> JobStatus:
        """queued -> canceled at once; running -> a cancel flag the worker checks between simulation
        chunks (the job ends ``canceled`` with the results finished so far); terminal: unchanged."""
        _check_id(job_id)
        code = _s(_guard(lambda: self._cancel(keys=[self.keys.job(job_id), self.keys.events(job_id)],
                                              args=[self.ttl_s])))
        if code == "gone":
            raise JobNotFound(f"job {job_id} not found (never existed or expired)")
        st = self.get(job_id, with_result=False)
        if st is None:  # pragma: no cover
            raise JobNotFound(f"job {job_id} not found")
        return st

    def ttl(self, job_id: str) -> int:
        """Seconds until the job's record expires (-2: no such job)."""
        return int(_guard(lambda: self.redis.ttl(self.keys.job(_check_id(job_id)))))

    # ---------------------------------------------------------------- events
    def read_events(self, job_id: str, after: str = "0-0", block_s: float = 0.0, count: int = 100) -> list[JobEvent]:
        """Events after ``after`` (a previous event id; "0-0" = from the start), waiting up to
        ``block_s`` for the first one (0: do not wait). One call; for polling or SSE loops."""
        _check_id(job_id)
        key = self.keys.events(job_id)
        block = None if block_s <= 0 else max(1, int(min(block_s, self.max_block_s) * 1000))
        client = self._blocking if block else self.redis
        resp: Any = _guard(lambda: client.xread({key: after}, count=count, block=block))
        out: list[JobEvent] = []
        for _, entries in resp or []:
            out += [_event(job_id, eid, fields) for eid, fields in entries]
        return out

    def events(self, job_id: str, after: str = "0-0", idle_timeout_s: float | None = None,
               block_s: float = 5.0) -> Iterator[JobEvent]:
        """Yield the job's events (status changes and progress) from ``after`` on, blocking for new
        ones, until a terminal status event; stops early when nothing arrives for ``idle_timeout_s``
        (None: wait for ever) or the job disappears. Raises :class:`JobNotFound` for an unknown job.
        Blocking: from async code run it in a thread, or use :meth:`aevents`."""
        if self.get(job_id, with_result=False) is None:
            raise JobNotFound(f"job {job_id} not found (never existed or expired)")
        last, idle0 = after, time.monotonic()
        while True:
            wait = block_s if idle_timeout_s is None else max(0.001, min(block_s, idle_timeout_s))
            evs = self.read_events(job_id, last, block_s=wait)
            for e in evs:
                yield e
                last = e.id
                if e.terminal:
                    return
            if evs:
                idle0 = time.monotonic()
                continue
            if idle_timeout_s is not None and time.monotonic() - idle0 >= idle_timeout_s:
                return
            if not _guard(lambda: self.redis.exists(self.keys.job(job_id))):
                return

    async def aevents(self, job_id: str, after: str = "0-0", idle_timeout_s: float | None = None,
                      block_s: float = 5.0) -> AsyncIterator[JobEvent]:
        """:meth:`events` for asyncio code (its own connection, closed when the iteration ends)."""
        import redis.asyncio as aredis

        _check_id(job_id)
        key, jkey = self.keys.events(job_id), self.keys.job(job_id)
        r = aredis.Redis.from_url(self.url, socket_timeout=self.max_block_s + 5.0, socket_connect_timeout=3.0)
        try:
            try:
                if not await r.exists(jkey):
                    raise JobNotFound(f"job {job_id} not found (never existed or expired)")
                last, idle0 = after, time.monotonic()
                while True:
                    wait = block_s if idle_timeout_s is None else max(0.001, min(block_s, idle_timeout_s))
                    resp: Any = await r.xread({key: last}, count=100,
                                              block=max(1, int(min(wait, self.max_block_s) * 1000)))
                    got = False
                    for _, entries in resp or []:
                        for eid, fields in entries:
                            e = _event(job_id, eid, fields)
                            got = True
                            yield e
                            last = e.id
                            if e.terminal:
                                return
                    if got:
                        idle0 = time.monotonic()
                        continue
                    if idle_timeout_s is not None and time.monotonic() - idle0 >= idle_timeout_s:
                        return
                    if not await r.exists(jkey):
                        return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                raise QueueUnavailable(f"Redis is unreachable: {type(exc).__name__}: {exc}") from exc
        finally:
            await r.aclose()

    def wait(self, job_id: str, timeout_s: float = 60.0) -> JobStatus:
        """Block until the job is terminal (or ``timeout_s`` passed); returns its status."""
        deadline = time.monotonic() + timeout_s
        st = self.get(job_id)
        if st is None:
            raise JobNotFound(f"job {job_id} not found")
        last = "0-0"
        while not st.terminal and time.monotonic() < deadline:
            evs = self.read_events(job_id, last, block_s=min(1.0, max(0.01, deadline - time.monotonic())))
            if evs:
                last = evs[-1].id
            st = self.get(job_id, with_result=False) or st
        return self.get(job_id) or st

    # ---------------------------------------------------------------- keyframes
    def keyframe_png(self, job_id: str, grasp_index: int, frame: int | str) -> bytes | None:
        """One execution keyframe as PNG bytes; ``frame`` is its index in the grasp result's
        ``keyframes`` list or its name (``pregrasp``, ``grasp``, ``lifted``). None if absent."""
        _check_id(job_id)
        key = self.keys.frames(job_id)
        if isinstance(frame, str) and not frame.isdigit():
            names_raw = _guard(lambda: self.redis.hget(key, f"{int(grasp_index)}:names"))
            if names_raw is None:
                return None
            names = json.loads(names_raw)
            if frame not in names:
                return None
            frame = names.index(frame)
        raw = _guard(lambda: self.redis.hget(key, f"{int(grasp_index)}:{int(frame)}"))
        return None if raw is None else bytes(raw)  # type: ignore[arg-type]

    def _hget(self, key: str, name: str) -> Any:
        return _guard(lambda: self.redis.hget(key, name))

    def keyframe_index(self, job_id: str) -> dict[int, list[str]]:
        """grasp index -> keyframe names (list position = frame index), for every rendered grasp."""
        key = self.keys.frames(_check_id(job_id))
        out: dict[int, list[str]] = {}
        for f in _guard(lambda: self.redis.hkeys(key)):
            name = _s(f)
            if name.endswith(":names"):
                raw: Any = self._hget(key, name)
                out[int(name.split(":")[0])] = json.loads(raw)
        return dict(sorted(out.items()))

    # ---------------------------------------------------------------- operations
    def stats(self) -> dict[str, Any]:
        """Backlog per backend and priority (length = waiting + delivered; pending = delivered, not
        yet finished), the dead-letter count, results written, and the live workers' heartbeats."""
        k = self.keys

        def go() -> dict[str, Any]:
            backends = sorted({_s(b) for b in self.redis.smembers(k.backends)} | {"mujoco"})
            out: dict[str, Any] = {"namespace": k.ns, "backends": {}}
            for b in backends:
                per: dict[str, Any] = {}
                for p in PRIORITIES:
                    s = k.stream(b, p)
                    length = int(self.redis.xlen(s))
                    pending = 0
                    if length or self.redis.exists(s):
                        try:
                            pending = int(self.redis.xpending(s, GROUP)["pending"])
                        except redis.exceptions.ResponseError:  # no group yet: no worker ever started
                            pending = 0
                    per[p] = {"length": length, "pending": pending, "waiting": max(0, length - pending)}
                out["backends"][b] = per
            out["dead_letter"] = int(self.redis.xlen(k.dead))
            out["results_written"] = int(self.redis.get(k.results_written) or 0)
            workers = []
            pre, suf = k.heartbeat_affixes
            for key in self.redis.scan_iter(match=f"{pre}*{suf}", count=500):
                raw = self.redis.get(key)
                if raw:
                    try:
                        workers.append(json.loads(raw))
                    except ValueError:  # pragma: no cover
                        continue
            out["workers"] = sorted(workers, key=lambda w: str(w.get("name", "")))
            return out

        return _guard(go)

    def dead_letters(self, count: int = 100) -> list[dict[str, Any]]:
        """The most recent dead-letter entries (newest first): job, error, attempts, stream, worker, t."""
        rows = _guard(lambda: self.redis.xrevrange(self.keys.dead, count=count))
        return [{"id": _s(i), **{_s(a): _s(b) for a, b in f.items()}} for i, f in rows]  # type: ignore[union-attr]

    def workers(self) -> list[dict[str, Any]]:
        return list(self.stats()["workers"])


# ============================================================================================ consumer
@dataclass(frozen=True)
class Delivery:
    """One stream entry delivered to a worker; ``job_id`` is None when the entry was deleted."""

    stream: str
    entry_id: str
    job_id: str | None

    @property
    def priority(self) -> str:
        return self.stream.rsplit(":", 1)[1]


@dataclass(frozen=True)
class StartOutcome:
    """``run`` (go ahead: ``request`` and ``attempt`` are set), ``skip`` (already terminal or canceled),
    ``gone`` (expired), ``stale`` (an old entry of a requeued job), ``dead`` (attempts exhausted)."""

    action: Literal["run", "skip", "gone", "stale", "dead"]
    attempt: int = 0
    request: JobRequest | None = None
    detail: str = ""
    request_error: str = ""  # the stored request could not be parsed (version skew)


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class JobConsumer:
    """The worker side of the protocol: read, start, report, finish, fail, release, heartbeat,
    reclaim. One per worker process; calls from the worker's main and heartbeat threads are safe.
    Redis connection problems raise :class:`QueueUnavailable` (the worker backs off and retries)."""

    def __init__(
        self, redis_url: str, backend: str = "mujoco", namespace: str = "dexgrasp", name: str | None = None,
        ttl_s: int = DEFAULT_TTL_S, heartbeat_ttl_s: float = HEARTBEAT_TTL_S,
        reclaim_idle_s: float = RECLAIM_IDLE_S, max_block_s: float = 5.0,
    ) -> None:
        self.url = redis_url
        self.backend = backend
        self.keys = Keys(namespace)
        self.name = name or default_worker_name()
        if ":" in self.name or not self.name:
            raise ValueError(f"worker name must be non-empty and contain no ':', got {self.name!r}")
        self.ttl_s = int(ttl_s)
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.reclaim_idle_s = reclaim_idle_s
        self.streams = self.keys.streams(backend)
        self.redis = _client(redis_url, max_block_s + 10.0)
        self._start = self.redis.register_script(_START)
        self._progress = self.redis.register_script(_PROGRESS)
        self._finish = self.redis.register_script(_FINISH)
        self._requeue = self.redis.register_script(_REQUEUE)
        self._heartbeat = self.redis.register_script(_HEARTBEAT)
        self._reclaim = self.redis.register_script(_RECLAIM)

    def close(self) -> None:
        self.redis.close()

    # ---------------------------------------------------------------- reading
    def ensure_groups(self) -> None:
        """Create the consumer group on every stream of this backend (from the start: entries added
        before any worker existed are delivered too). Idempotent."""

        def go() -> None:
            for s in self.streams:
                try:
                    self.redis.xgroup_create(s, GROUP, id="0", mkstream=True)
                except redis.exceptions.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise

        _guard(go)

    def _read(self, streams: dict[str, str], count: int, block_ms: int | None) -> list[Delivery]:
        def go() -> Any:
            try:
                return self.redis.xreadgroup(GROUP, self.name, streams, count=count, block=block_ms)  # type: ignore[arg-type]
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self.ensure_groups()  # Redis lost the group (restart without persistence, flush)
                return self.redis.xreadgroup(GROUP, self.name, streams, count=count, block=block_ms)  # type: ignore[arg-type]

        resp = _guard(go)
        out: list[Delivery] = []
        for stream, entries in resp or []:
            for eid, fields in entries:
                job = fields.get(b"job") if fields else None
                out.append(Delivery(_s(stream), _s(eid), None if job is None else _s(job)))
        order = {s: i for i, s in enumerate(self.streams)}
        out.sort(key=lambda d: order.get(d.stream, 99))
        return out

    def own_pending(self, count: int) -> list[Delivery]:
        """Entries delivered to this worker and not finished: reclaimed ones, or ones a blocking read
        returned beyond the batch size. Priority order."""
        return self._read({s: "0" for s in self.streams}, count, None)[:count]

    def fetch(self, count: int, block_ms: int = 0) -> list[Delivery]:
        """Up to ``count`` new entries, high priority first. With ``block_ms`` > 0 and nothing waiting,
        block until something arrives on any priority (extra entries stay in this worker's pending
        list and are returned by :meth:`own_pending` next time)."""
        out: list[Delivery] = []
        for s in self.streams:
            if len(out) >= count:
                return out
            out += self._read({s: ">"}, count - len(out), None)
        if out or block_ms <= 0:
            return out
        return self._read({s: ">" for s in self.streams}, count, block_ms)[:count]

    def reclaim(self, count: int = 100) -> list[Delivery]:
        """Janitor: claim up to ``count`` entries idle > ``reclaim_idle_s`` whose owner's heartbeat
        expired; their running jobs go back to ``queued`` with the reason in ``error``."""
        pre, suf = self.keys.heartbeat_affixes
        res = _guard(lambda: self._reclaim(
            keys=self.streams,
            args=[GROUP, self.name, int(self.reclaim_idle_s * 1000), pre, suf, count, self.ttl_s, self.keys.job_prefix],
        ))
        return [Delivery(_s(s), _s(i), _s(j)) for s, i, j in res]

    def ack_deleted(self, d: Delivery) -> None:
        """Acknowledge an entry whose stream entry is gone (its job finished or was canceled)."""
        _guard(lambda: self.redis.xack(d.stream, GROUP, d.entry_id))

    # ---------------------------------------------------------------- job life
    def peek_requests(self, deliveries: Sequence[Delivery]) -> list[JobRequest | None]:
        """The stored requests of these jobs (None: missing or unparsable), to group a batch before
        starting it."""

        def go() -> list[Any]:
            with self.redis.pipeline(transaction=False) as p:
                for d in deliveries:
                    p.hget(self.keys.job(d.job_id or "_"), "request")
                return list(p.execute())

        out: list[JobRequest | None] = []
        for raw in _guard(go):
            try:
                out.append(None if raw is None else JobRequest.model_validate_json(raw))
            except ValidationError:
                out.append(None)
        return out

    def start(self, deliveries: Sequence[Delivery]) -> list[StartOutcome]:
        """Atomically move each job to ``running`` (or learn why not): counts the attempt, moves a job
        whose attempts are exhausted to the dead-letter stream."""
        if not deliveries:
            return []
        k = self.keys

        def go() -> list[Any]:
            with self.redis.pipeline(transaction=False) as p:
                for d in deliveries:
                    jid = d.job_id or "_"
                    self._start(keys=[k.job(jid), d.stream, k.events(jid), k.dead],
                                args=[GROUP, d.entry_id, self.name, jid, self.ttl_s], client=p)
                return list(p.execute())

        out: list[StartOutcome] = []
        for r in _guard(go):
            action = _s(r[0])
            if action == "run":
                try:
                    req = JobRequest.model_validate_json(r[2])
                    out.append(StartOutcome("run", int(_s(r[1])), req))
                except ValidationError as exc:
                    out.append(StartOutcome("run", int(_s(r[1])), None, request_error=f"invalid stored request: {exc}"))
            else:
                out.append(StartOutcome(action, detail=_s(r[1]) if len(r) > 1 else ""))  # type: ignore[arg-type]
        return out

    def progress(self, updates: dict[str, float]) -> None:
        """Write progress (0..1) of running jobs this worker owns; ignored for others."""
        if not updates:
            return
        k = self.keys

        def go() -> None:
            with self.redis.pipeline(transaction=False) as p:
                for jid, frac in updates.items():
                    self._progress(keys=[k.job(jid), k.events(jid)],
                                   args=[self.name, f"{min(1.0, max(0.0, frac)):.4f}", self.ttl_s], client=p)
                p.execute()

        _guard(go)

    def finish(self, d: Delivery, status: Literal["succeeded", "failed", "canceled"], result: dict[str, Any] | None,
               error: str = "", frames: dict[str, bytes] | None = None) -> bool:
        """Write the job's terminal state, result and keyframes and acknowledge the entry, atomically,
        only if the job is not terminal yet. True: this call wrote it; False: a duplicate (dropped)."""
        return self.finish_many([(d, status, result, error, frames)])[0]

    def finish_many(
        self, items: Sequence[tuple[Delivery, str, dict[str, Any] | None, str, dict[str, bytes] | None]],
    ) -> list[bool]:
        if not items:
            return []
        k = self.keys

        def go() -> list[Any]:
            with self.redis.pipeline(transaction=False) as p:
                for d, status, result, error, frames in items:
                    jid = d.job_id or "_"
                    args: list[Any] = [GROUP, d.entry_id, self.name, status,
                                       json.dumps(result, separators=(",", ":")) if result is not None else "",
                                       _trim_error(error), self.ttl_s]
                    for name, png in (frames or {}).items():
                        args += [name, png]
                    self._finish(keys=[k.job(jid), d.stream, k.events(jid), k.frames(jid), k.results_written],
                                 args=args, client=p)
                return list(p.execute())

        return [_s(r) == "ok" for r in _guard(go)]

    def fail(self, d: Delivery, error: str) -> str:
        """A failed attempt: back to the queue (``requeued``) or, after ``max_attempts``, to the
        dead-letter stream (``dead``); ``canceled`` if a cancel was requested; ``stale``/``dup``/``gone``
        when the job is no longer this worker's to fail."""
        return self._requeue_one(d, _trim_error(error), "fail")

    def release(self, d: Delivery, note: str = "") -> str:
        """Give an unfinished job back (shutdown): requeued at once for another worker, the attempt
        not counted."""
        return self._requeue_one(d, note or f"released by worker {self.name}", "release")

    def _requeue_one(self, d: Delivery, text: str, how: str) -> str:
        k = self.keys
        jid = d.job_id or "_"
        r = _guard(lambda: self._requeue(keys=[k.job(jid), d.stream, k.events(jid), k.dead],
                                         args=[GROUP, d.entry_id, self.name, text, self.ttl_s, how, jid]))
        return _s(r[0])

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these jobs have a cancel request (or vanished)."""
        if not job_ids:
            return set()

        def go() -> list[Any]:
            with self.redis.pipeline(transaction=False) as p:
                for j in job_ids:
                    p.hmget(self.keys.job(j), "cancel", "status")
                return list(p.execute())

        out = set()
        for j, (flag, status) in zip(job_ids, _guard(go)):
            if flag == b"1" or status is None or _s(status) == "canceled":
                out.add(j)
        return out

    # ---------------------------------------------------------------- liveness
    def heartbeat(self, info: dict[str, Any]) -> int:
        """Refresh the heartbeat key and the idle time of every entry this worker owns; returns how
        many entries it holds."""
        hb = {"name": self.name, "backend": self.backend, "t": time.time(), **info}
        return int(_guard(lambda: self._heartbeat(
            keys=[self.keys.heartbeat(self.name), *self.streams],
            args=[GROUP, self.name, int(self.heartbeat_ttl_s * 1000), json.dumps(hb)],
        )))

    def clear_heartbeat(self) -> None:
        _guard(lambda: self.redis.delete(self.keys.heartbeat(self.name)))

    def write_metrics(self, values: dict[str, float | int | str], ttl_s: float | None = None) -> None:
        key = self.keys.metrics(self.name)

        def go() -> None:
            with self.redis.pipeline(transaction=False) as p:
                p.hset(key, mapping=values)  # type: ignore[arg-type]
                p.expire(key, int(ttl_s or max(60.0, 10 * self.heartbeat_ttl_s)))
                p.execute()

        _guard(go)

    def forget_dead_consumers(self, min_idle_s: float = 3600.0) -> int:
        """Remove group consumers with nothing pending, no heartbeat and idle > ``min_idle_s`` (keeps
        XINFO tidy after many worker restarts). Returns how many were removed."""

        def go() -> int:
            n = 0
            for s in self.streams:
                try:
                    consumers = self.redis.xinfo_consumers(s, GROUP)
                except redis.exceptions.ResponseError:
                    continue
                for c in consumers:
                    name = _s(c["name"])
                    if (name != self.name and int(c["pending"]) == 0 and int(c["idle"]) > min_idle_s * 1000
                            and not self.redis.exists(self.keys.heartbeat(name))):
                        self.redis.xgroup_delconsumer(s, GROUP, name)
                        n += 1
            return n

        return _guard(go)

    # ---------------------------------------------------------------- objects
    def load_object(self, digest: str) -> MeshObject | PrimitiveObject | PointsObject | None:
        raw = _guard(lambda: self.redis.get(self.keys.object(digest)))
        return None if raw is None else decode_object(bytes(raw))  # type: ignore[arg-type]


__all__ = [
    "GROUP", "MODES", "PRIORITIES", "STATES", "TERMINAL",
    "Delivery", "JobConsumer", "JobEvent", "JobNotFound", "JobQueue", "JobRequest", "JobStatus", "Keys",
    "MeshObject", "ObjectNotFound", "ObjectSpec", "PointsObject", "PrimitiveObject", "QueueError",
    "QueueUnavailable", "StartOutcome", "as_object_spec", "decode_object", "encode_object", "object_hash",
]
