"""The simulation filter of dataset synthesis: ``models.tools.synth`` asks which grasps hold, a :class:`SimPool` answers.

``models`` does not import the simulator, so synthesis takes its filter as a parameter
(:class:`models.tools.synth.SimFilter`). :func:`pool_filter` makes one from a pool running the
six-direction disturbance test (``validate.py``), and :func:`run_synth` is synthesis wired with
it: what ``dexgrasp synth`` runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from models.grasp import Grasp
    from models.tools.synth import SynthConfig

    from .config import SimConfig
    from .parallel import SimPool


@dataclass(frozen=True)
class PoolFilter:
    """A :class:`models.tools.synth.SimFilter` backed by a started pool; ``success`` of the validation is the verdict."""

    pool: SimPool
    # the last mesh's collision object: synthesis referees a scene's candidates a chunk at a time
    _last: dict[bytes, Any] = field(default_factory=dict, repr=False, compare=False)

    def __call__(self, vertices: np.ndarray, faces: np.ndarray, grasps: Sequence[Grasp], source: str) -> list[bool]:
        from .arrays import GraspArrays
        from .scene import object_from_mesh

        v, f = np.ascontiguousarray(vertices, dtype=np.float64), np.ascontiguousarray(faces, dtype=np.int64)
        key = source.encode() + b"\0" + v.tobytes() + f.tobytes()
        if key not in self._last:
            self._last.clear()
            self._last[key] = object_from_mesh(v, f, source=source)
        obj = self._last[key]
        if not grasps:
            return []
        # the hand the grasps were made for (a scene's grasps are one hand's)
        results = self.pool.validate(obj, [GraspArrays.from_grasp(g) for g in grasps], hand=grasps[0].hand, diverged_fails=True)
        return [bool(r["success"]) for r in results]


@contextmanager
def pool_filter(procs: int, cfg: SimConfig | None = None, backend: str = "mujoco") -> Iterator[PoolFilter]:
    """A filter over ``procs`` simulator processes (``SimPool`` semantics: ``procs >= 1``, 1 runs
    in this process), closed on exit."""
    from .config import SimConfig
    from .parallel import SimPool

    with SimPool(backend, procs=procs, cfg=cfg or SimConfig()) as pool:
        yield PoolFilter(pool)


def run_synth(out_dir: str | Path, cfg: SynthConfig, progress: bool = True) -> dict[str, Any]:
    """:func:`models.tools.synth.run_synth` with the MuJoCo filter on ``cfg.procs`` processes; returns the
    summary card. The pool is opened whether or not ``cfg.simulate``, so ``procs`` is checked alike.

    With ``cfg.workers`` > 1 the scenes are shared by that many worker processes (by object: every resting pose
    of the j-th object goes to worker j mod workers, ``models.tools.synth.part_of``), each on one torch thread with ``procs // workers`` (at least 1) simulation processes of its
    own; this process shows one progress bar over the shards they write, and waits. A worker stops when this
    process is gone (after its current scene); the run resumes from the shards, with any number of workers."""
    from models.tools.synth import run_synth as synthesise
    from models.tools.synth import summarize_dataset

    if cfg.workers < 1:
        raise ValueError(f"workers must be >= 1, got {cfg.workers}")
    if cfg.procs < 1:  # the workers' pools take max(1, procs // workers): refuse what one pool would refuse
        raise ValueError(f"procs must be >= 1, got {cfg.procs}")
    if cfg.workers == 1:
        with pool_filter(cfg.procs) as sim_filter:
            return synthesise(out_dir, cfg, progress, sim_filter=sim_filter)
    _run_workers(Path(out_dir), cfg, progress)
    return summarize_dataset(out_dir)


def _worker(out_dir: str, cfg: SynthConfig, index: int, parent: int) -> None:
    """One worker of :func:`run_synth`: its part of the scenes, one torch thread, its own simulation processes."""
    import os

    import torch

    from models.tools.synth import run_synth as synthesise

    torch.set_num_threads(1)
    with pool_filter(max(1, cfg.procs // cfg.workers)) as sim_filter:
        synthesise(out_dir, cfg, progress=False, sim_filter=sim_filter, part=(index, cfg.workers),
                   should_stop=lambda: os.getppid() != parent, summary=False)


def _run_workers(out: Path, cfg: SynthConfig, progress: bool) -> None:
    import multiprocessing as mp
    import os
    import time

    from tqdm import tqdm

    from models.tools.synth import scenes, shard_name

    names = {shard_name(oid, k) for oid, k in scenes(cfg)}
    shards = out / "shards"

    def present() -> set[str]:  # one directory listing per poll
        return names.intersection(os.listdir(shards)) if shards.is_dir() else set()

    seen = present()
    bar = tqdm(total=len(names), initial=len(seen), desc=f"synth {cfg.split} ({cfg.workers} workers)",
               unit="scene", disable=not progress)
    ctx = mp.get_context("spawn")  # no fork of a process holding torch threads
    workers = [ctx.Process(target=_worker, args=(str(out), cfg, i, os.getpid()), name=f"synth-{i}")
               for i in range(cfg.workers)]
    kept = 0
    try:
        for w in workers:
            w.start()
        while any(w.is_alive() for w in workers):
            time.sleep(1.0)
            new = present() - seen
            if not new:
                continue
            for n in new:
                with np.load(shards / n, allow_pickle=False) as z:
                    kept += int(z["stats"][2])
            seen |= new
            bar.update(len(new))
            bar.set_postfix(valid=kept)
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
            w.join()
        bar.close()
    failed = [f"{w.name} exited with {w.exitcode}" for w in workers if w.exitcode != 0]
    if failed:
        raise RuntimeError("synthesis worker failed: " + "; ".join(failed) + " (the shards written so far are kept: re-run to resume)")


__all__ = ["PoolFilter", "pool_filter", "run_synth"]
