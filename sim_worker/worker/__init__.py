"""The rollout worker: a long-lived process that consumes the job queue (``sim_worker.jobs``) and
runs the jobs in simulation. This package's face:

``loop``      :class:`Worker`, the consume loop (batching, simulation, results, shutdown)
``config``    :class:`WorkerConfig`, the settings (also the ``dexgrasp worker`` options)
``metrics``   :class:`WorkerMetrics` (prometheus_client) and its HTTP endpoint
``logs``      JSON-lines logging
``objects``   uploaded object specs -> simulator objects
``results``   a job's result document and keyframes
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before MuJoCo is imported anywhere in this process

from .config import WorkerConfig
from .logs import JsonLogFormatter, setup_logging
from .loop import Worker
from .metrics import WorkerMetrics
from .objects import mesh_face_count, sim_object_from_spec

__all__ = ["JsonLogFormatter", "Worker", "WorkerConfig", "WorkerMetrics", "mesh_face_count", "setup_logging",
           "sim_object_from_spec"]
