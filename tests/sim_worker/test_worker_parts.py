"""The worker's and the queue's seams that need no Redis: Lua scripts from package data, the worker
options generated from :class:`WorkerConfig`, the metrics exposition, the typed grasp failure."""

from __future__ import annotations

import argparse
import pickle

import pytest

from sim_worker.embedded import worker_cli_args
from sim_worker.jobs import DEAD_MAXLEN, EVENTS_MAXLEN
from sim_worker.jobs.scripts import SCRIPTS, source
from sim_worker.parallel import GraspSimulationError
from sim_worker.worker import WorkerConfig, WorkerMetrics
from sim_worker.worker.metrics import exposition


def test_every_lua_script_loads_with_its_numbers_filled_in() -> None:
    for name in SCRIPTS:
        text = source(name)
        assert "$" not in text and text.strip()
        assert ("local function now()" in text) == (name != "heartbeat")  # the prelude, where used
    assert f"'MAXLEN', '~', '{EVENTS_MAXLEN}'" in source("progress")
    assert f"'MAXLEN', '~', '{DEAD_MAXLEN}'" in source("start") and f"'{DEAD_MAXLEN}'" in source("requeue")
    with pytest.raises(KeyError):
        source("prelude")


def test_worker_options_come_from_the_config_and_round_trip() -> None:
    p = argparse.ArgumentParser()
    WorkerConfig.add_arguments(p, choices={"backend": ["mujoco"]})
    assert WorkerConfig.from_args(p.parse_args([])) == WorkerConfig()
    cfg = WorkerConfig(batch=3, procs=2, reclaim_idle_s=20.0, metrics_port=0, name="w1", write_retry_s=5.5)
    args = worker_cli_args(cfg)
    assert "--name" not in args and "--reclaim-after-s" in args  # each process names itself; the historic flag
    assert WorkerConfig.from_args(p.parse_args(args)) == WorkerConfig(**{**cfg.__dict__, "name": None})
    assert "--metrics-port" not in WorkerConfig().cli_args()  # unset optional fields are left out
    with pytest.raises(SystemExit):
        p.parse_args(["--backend", "nope"])


def test_metrics_exposition_keeps_the_label_order_and_the_redis_hash_its_types() -> None:
    m = WorkerMetrics("w1", "mujoco")
    m.batch(3)
    m.job("succeeded", 0.5)
    m.add("grasps", 6)
    text = exposition(m.registry).decode()
    assert 'dexgrasp_worker_jobs_total{worker="w1",backend="mujoco",outcome="succeeded"} 1.0' in text
    assert 'dexgrasp_worker_batch_size_bucket{worker="w1",backend="mujoco",le="4.0"} 1.0' in text
    assert "_created" not in text
    flat = m.flat()
    assert (flat["jobs_succeeded"], flat["batches"], flat["grasps"], flat["job_seconds_count"]) == (1, 1, 6, 1)
    assert all(isinstance(flat[k], int) for k in ("jobs_failed", "batches", "grasps", "redis_errors"))
    assert (m.batches, m.batch_size.sum, m.batch_size.count, m.jobs["succeeded"]) == (1, 3.0, 1, 1)


def test_a_failed_grasp_is_a_typed_runtime_error() -> None:
    e = GraspSimulationError(4, "ValueError: bad pose")
    assert isinstance(e, RuntimeError) and str(e) == "simulation failed on grasp 4: ValueError: bad pose"
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.index, e2.detail, str(e2)) == (4, "ValueError: bad pose", str(e))
