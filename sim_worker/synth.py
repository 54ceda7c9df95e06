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
    hand: str = "shadow"
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
        results = self.pool.validate(obj, [GraspArrays.from_grasp(g) for g in grasps], hand=self.hand, diverged_fails=True)
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
    summary card. The pool is opened whether or not ``cfg.simulate``, so ``procs`` is checked alike."""
    from models.tools.synth import run_synth as synthesise

    with pool_filter(cfg.procs) as sim_filter:
        return synthesise(out_dir, cfg, progress, sim_filter=sim_filter)


__all__ = ["PoolFilter", "pool_filter", "run_synth"]
