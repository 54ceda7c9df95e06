"""The multi-process simulation pool agrees with the in-process backend."""

from __future__ import annotations

import pytest

from sim_worker.config import SimConfig
from sim_worker.parallel import SimPool

from .helpers import backed_off, trust_case

CFG = SimConfig()


def test_two_processes_match_one_and_keep_order():
    obj, good = trust_case("cylinder_power")
    grasps = []
    for g in good:
        grasps += [g, backed_off(g, 0.05)]  # alternating pass / fail
    seen: list[tuple[int, int]] = []
    with SimPool("mujoco", procs=1, cfg=CFG) as p1:
        ref = p1.validate(obj, grasps)
    with SimPool("mujoco", procs=2, cfg=CFG, chunk_size=2) as p2:
        got = p2.validate(obj, grasps, progress=lambda d, t: seen.append((d, t)))
    assert [r["success"] for r in got] == [r["success"] for r in ref]
    assert [r["success"] for r in ref] == [True, False] * len(good)
    assert [r["translation_m"] for r in got] == [r["translation_m"] for r in ref]
    assert seen and seen[-1] == (len(grasps), len(grasps))


def test_bad_procs_is_refused():
    with pytest.raises(ValueError, match="procs"):
        SimPool("mujoco", procs=0)
