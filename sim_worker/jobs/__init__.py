"""The rollout-job queue protocol: the one package both the service (producer) and the workers (consumer) import.

Everything that crosses Redis is defined in this package and imported from here (its one face):

``records``     object specs, job requests, statuses, events (pydantic); states, modes, limits
``keys``        every key and stream name, the consumer group, timings and stream caps
``scripts``     every state transition as one atomic Lua script (``lua/*.lua``, package data)
``producer``    :class:`JobQueue`, the service side
``consumer``    :class:`JobConsumer`, the worker side
``errors``      what callers catch; ``connection``: the Redis client settings and error mapping

``docs/jobs.md`` describes the protocol for people; this docstring is the short version.

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
``ns:backend:{backend}:live``     refreshed by every heartbeat of that backend's workers (same TTL): the
                                  producer refuses jobs for a backend without it (no live worker).
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

from .consumer import Delivery, JobConsumer, StartOutcome, default_worker_name
from .errors import BackendUnavailable, JobNotFound, ObjectNotFound, QueueError, QueueUnavailable
from .keys import (
    DEAD_MAXLEN,
    DEFAULT_TTL_S,
    EVENTS_MAXLEN,
    GROUP,
    HEARTBEAT_S,
    HEARTBEAT_TTL_S,
    PRIORITIES,
    PROTOCOL_VERSION,
    RECLAIM_IDLE_S,
    Keys,
)
from .producer import JobQueue
from .records import (
    JOB_ID_PATTERN,
    KNOWN_BACKENDS,
    MAX_ERROR_CHARS,
    MAX_GRASPS_PER_JOB,
    MAX_OBJECT_BYTES,
    MODES,
    STATES,
    TERMINAL,
    JobEvent,
    JobRequest,
    JobStatus,
    MeshObject,
    Mode,
    ObjectSpec,
    PointsObject,
    PrimitiveObject,
    Priority,
    Status,
    as_object_spec,
    decode_object,
    encode_object,
    object_hash,
)

__all__ = [
    "DEAD_MAXLEN", "DEFAULT_TTL_S", "EVENTS_MAXLEN", "GROUP", "HEARTBEAT_S", "HEARTBEAT_TTL_S", "JOB_ID_PATTERN", "KNOWN_BACKENDS",
    "MAX_ERROR_CHARS", "MAX_GRASPS_PER_JOB", "MAX_OBJECT_BYTES", "MODES", "PRIORITIES", "PROTOCOL_VERSION",
    "RECLAIM_IDLE_S", "STATES", "TERMINAL",
    "BackendUnavailable", "Delivery", "JobConsumer", "JobEvent", "JobNotFound", "JobQueue", "JobRequest", "JobStatus", "Keys",
    "MeshObject", "Mode", "ObjectNotFound", "ObjectSpec", "PointsObject", "PrimitiveObject", "Priority", "QueueError",
    "QueueUnavailable", "StartOutcome", "Status", "as_object_spec", "decode_object", "default_worker_name",
    "encode_object", "object_hash",
]
