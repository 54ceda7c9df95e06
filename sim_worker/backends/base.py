"""The backend interface; the grasp arrays it consumes are :class:`sim_worker.arrays.GraspArrays`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..arrays import GraspArrays as GraspArrays
from ..config import SimConfig
from ..scene import SimObject

F64 = NDArray[np.float64]
Progress = Callable[[int, int], None]  # (done, total)


class SimBackend(Protocol):
    """Create once, reuse for many jobs, close at the end (simulators leak when re-created)."""

    name: str

    def validate(
        self, obj: SimObject, grasps: Sequence[GraspArrays], cfg: SimConfig, hand: str = "shadow",
        progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
    ) -> list[dict[str, Any]]: ...

    def execute(
        self, obj: SimObject, grasps: Sequence[GraspArrays], cfg: SimConfig, hand: str = "shadow",
        policy: str = "scripted", render: bool = False, seed: int = 0, gif: bool = False,
        progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
    ) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> SimBackend: ...

    def __exit__(self, *exc: object) -> None: ...
