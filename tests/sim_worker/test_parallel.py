"""SimPool: procs=2 gives the same results as procs=1 in input order, progress reaches (n, n),
worker errors surface as RuntimeError naming the grasp, and the pool survives them."""

from __future__ import annotations

import dataclasses
import os

import pytest

from sim_worker.arrays import GraspArrays
from sim_worker.config import SimConfig
from sim_worker.parallel import SimPool
from sim_worker.scene import SimObject, object_from_primitive

from .helpers import backed_off, trust_case

CFG = SimConfig()




@pytest.fixture(scope="module")
def mixed() -> tuple[SimObject, list[GraspArrays], list[bool]]:
    """Good and broken cylinder grasps interleaved: good, bad, good, bad. The good ones are the two
    trust grasps that hold under the referee (also with the palm moved 1 mm along any axis)."""
    obj, trust = trust_case("cylinder_power")
    good = [trust[0], trust[2]]
    grasps: list[GraspArrays] = []
    expect: list[bool] = []
    for g in good:
        grasps += [g, backed_off(g, 0.05)]  # moved 5 cm back along -approach: fails
        expect += [True, False]
    return obj, grasps, expect


@pytest.fixture(scope="module")
def pool2():
    with SimPool("mujoco", procs=2, cfg=CFG, chunk_size=1) as pool:
        yield pool.wait_ready()


def test_two_procs_match_one_proc_in_order(mixed, pool2):
    obj, grasps, expect = mixed
    with SimPool("mujoco", procs=1, cfg=CFG) as p1:
        ref = p1.validate(obj, grasps)
    seen: list[tuple[int, int]] = []
    got = pool2.validate(obj, grasps, progress=lambda d, t: seen.append((d, t)))
    assert [r["success"] for r in ref] == expect
    assert got == ref  # identical numbers, input order
    assert seen[-1] == (len(grasps), len(grasps))
    assert [d for d, _ in seen] == list(range(1, len(grasps) + 1))
    assert len(pool2.pids) == 2 and len(set(pool2.pids) | {os.getpid()}) == 3  # two real worker processes


def test_progress_in_process(mixed):
    obj, grasps, _ = mixed
    seen: list[tuple[int, int]] = []
    with SimPool("mujoco", procs=1, cfg=CFG) as p1:
        out = p1.validate(obj, grasps[:2], progress=lambda d, t: seen.append((d, t)))
    assert len(out) == 2 and seen == [(1, 2), (2, 2)]


def _broken(g: GraspArrays) -> GraspArrays:
    return dataclasses.replace(g, joints=g.joints[:5])  # wrong joint count: the backend raises


def test_worker_error_names_grasp_and_pool_survives(mixed, pool2):
    obj, grasps, _ = mixed
    bad = [*grasps[:3], _broken(grasps[0]), grasps[2]]
    with pytest.raises(RuntimeError, match=r"grasp 3: ValueError") as info:
        pool2.validate(obj, bad)
    assert info.value.__cause__ is not None and "Traceback" in str(info.value.__cause__)
    again = pool2.validate(obj, grasps[:2])  # the call was cancelled cleanly; the workers still serve
    assert [r["success"] for r in again] == [True, False]


def test_in_process_error_names_grasp(mixed):
    obj, grasps, _ = mixed
    with SimPool("mujoco", procs=1, cfg=CFG) as p1, pytest.raises(RuntimeError, match=r"grasp 1: ValueError"):
        p1.validate(obj, [grasps[0], _broken(grasps[0])])


def _stop_after(k: int):
    seen = {"n": 0}

    def progress(done: int, total: int) -> None:
        seen["n"] = done

    return progress, lambda: seen["n"] >= k


def test_should_stop_returns_a_prefix(mixed, pool2):
    obj, grasps, _ = mixed
    with SimPool("mujoco", procs=1, cfg=CFG) as p1:
        ref = p1.validate(obj, grasps)
        progress, stop = _stop_after(2)
        local = p1.validate(obj, grasps, progress=progress, should_stop=stop)
    assert local == ref[:2]
    progress, stop = _stop_after(2)
    out = pool2.validate(obj, grasps, progress=progress, should_stop=stop)
    assert len(out) < len(grasps) and out == ref[: len(out)]  # in-flight grasps are cut, never half-reported
    assert pool2.validate(obj, grasps[:1]) == ref[:1]  # and the pool carries on


def test_closed_pool_refuses_and_close_stops_workers(mixed):
    obj, grasps, _ = mixed
    pool = SimPool("mujoco", procs=2, cfg=CFG).start()
    procs = list(pool._workers)
    pool.close()
    assert all(not p.is_alive() for p in procs)
    pool.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        pool.validate(obj, grasps[:1])


def test_dead_worker_loses_nothing(mixed):
    """Kill a worker mid-call. Either the call fails loudly naming the dead worker (and the pool shuts
    down), or, when the victim was between chunks, the survivor finishes and every result is there and
    correct. A silent partial result is the one outcome that must never happen."""
    import signal

    obj, grasps, expected = mixed
    batch = grasps * 4
    pool = SimPool("mujoco", procs=2, cfg=CFG, chunk_size=1)
    with pool:
        pool.wait_ready(60)
        procs = list(pool._workers)
        victim = pool.pids[0]

        def kill_one(done: int, total: int) -> None:
            if done == 1:
                os.kill(victim, signal.SIGKILL)

        try:
            out = pool.validate(obj, batch, progress=kill_one)
        except RuntimeError as exc:
            assert "died" in str(exc)
            assert all(not p.is_alive() for p in procs)  # the survivor was stopped too
            with pytest.raises(RuntimeError, match="closed"):
                pool.validate(obj, grasps[:1])
        else:
            assert len(out) == len(batch)
            assert [r["success"] for r in out] == list(expected) * 4


def test_bad_arguments():
    with pytest.raises(ValueError, match="procs"):
        SimPool(procs=0)
    with SimPool(procs=1) as p:
        assert p.validate(object_from_primitive("sphere", (0.03,)), []) == []


def test_execute_two_procs_match_one_proc(mixed, pool2):
    obj, grasps, _ = mixed
    sub = grasps[:2]
    with SimPool("mujoco", procs=1, cfg=CFG) as p1:
        ref = p1.execute(obj, sub, seed=3)
    got = pool2.execute(obj, sub, seed=3)
    assert [r["seed"] for r in got] == [3, 4]
    strip = ("wall_time_s",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in got] == [
        {k: v for k, v in r.items() if k not in strip} for r in ref
    ]


def test_a_diverged_grasp_raises_or_is_a_failed_verdict_on_request(mixed):
    # joints MuJoCo cannot integrate blow the simulation up: a rollout job fails with the error; a
    # quality bench or the synthesis filter asks for it as a failed grasp, marked diverged
    obj, grasps, _ = mixed
    wild = dataclasses.replace(grasps[0], joints=grasps[0].joints + 1e30)
    with SimPool("mujoco", procs=1, cfg=CFG) as p1:
        with pytest.raises(RuntimeError, match=r"grasp 1: SimulationDiverged"):
            p1.validate(obj, [grasps[0], wild])
        out = p1.validate(obj, [grasps[0], wild], diverged_fails=True)
    assert out[0]["success"] and "diverged" not in out[0]
    assert not out[1]["success"] and out[1]["diverged"] and "simulation diverged" in out[1]["reason"]


def test_a_diverged_execution_raises_or_is_a_failed_rollout_on_request(mixed):
    obj, grasps, _ = mixed
    wild = dataclasses.replace(grasps[0], joints=grasps[0].joints + 1e30)
    with SimPool("mujoco", procs=1, cfg=CFG) as p1:
        with pytest.raises(RuntimeError, match=r"grasp 0: SimulationDiverged"):
            p1.execute(obj, [wild])
        out = p1.execute(obj, [wild], seed=5, diverged_fails=True)
    assert not out[0]["success"] and out[0]["diverged"] and "simulation diverged" in out[0]["reason"] and out[0]["seed"] == 5


def test_mujoco_stopping_mid_grasp_is_a_diverged_grasp(mixed, monkeypatch):
    """A MuJoCo fatal error while simulating one grasp (e.g. its arena overflowing on hundreds of contacts) is
    that grasp's failure, as a divergence: an error for a rollout job, a failed verdict for the benches and the
    synthesis filter, never a crashed batch. The scene's arena is the configured size."""
    import mujoco

    import sim_worker.backends.mujoco_backend as mb
    from sim_worker.scene import build_scene

    obj, grasps, _ = mixed
    assert build_scene(obj, CFG.physics, hand="shadow", table_z=None, gravity=(0.0, 0.0, 0.0)).model.narena == \
        CFG.physics.arena_memory_mb * 2**20
    real = mb.validate_grasp
    calls = []

    def second_stops(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise mujoco.FatalError("mj_stackAlloc: out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(mb, "validate_grasp", second_stops)
    with SimPool("mujoco", procs=1, cfg=CFG) as p0:  # in process: the patched function runs
        out = p0.validate(obj, grasps[:3], diverged_fails=True)
        assert [r["success"] for r in out] == [True, False, True]
        assert out[1]["diverged"] and "MuJoCo stopped" in out[1]["reason"]
        calls.clear()
        with pytest.raises(RuntimeError, match=r"grasp 1: SimulationDiverged"):
            p0.validate(obj, grasps[:3])
