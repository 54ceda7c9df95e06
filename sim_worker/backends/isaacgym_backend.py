"""Isaac Gym backend (GPU), importable only where the user installed NVIDIA's Isaac Gym.

Untested here: no Isaac Gym is available on the development machines or in CI.
It must keep the MuJoCo backend's scene description and success criteria
(``SimConfig``), create the gym/sim once per process, load all object assets up
front and restart after K rebuilds (Isaac Gym leaks when envs are re-created).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..config import SimConfig
from ..scene import SimObject
from .base import GraspArrays, Progress


def _require_isaacgym() -> Any:
    try:
        import isaacgym
    except ImportError as exc:
        raise RuntimeError(
            "the 'isaacgym' backend needs NVIDIA Isaac Gym (Preview 4, Python <= 3.8), which is not "
            "installed here: download it from NVIDIA, `pip install -e isaacgym/python`, or use --backend mujoco"
        ) from exc
    return isaacgym


class IsaacGymBackend:
    name = "isaacgym"

    def __init__(self, **_: Any) -> None:
        self._gym = _require_isaacgym()
        raise NotImplementedError(
            "the Isaac Gym backend is not implemented yet; the MuJoCo backend is the referee (see docs/simulation.md)"
        )

    def validate(
        self, obj: SimObject, grasps: Sequence[GraspArrays], cfg: SimConfig, hand: str = "shadow",
        progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
    ) -> list[dict[str, Any]]:
        raise NotImplementedError

    def execute(
        self, obj: SimObject, grasps: Sequence[GraspArrays], cfg: SimConfig, hand: str = "shadow",
        policy: str = "scripted", render: bool = False, seed: int = 0, gif: bool = False,
        progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
    ) -> list[dict[str, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> IsaacGymBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
