"""MuJoCo on CPU: scenes cached per (object, hand, table), one MjData each, reused across jobs."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import mujoco

from ..config import SimConfig
from ..scene import Scene, SimObject, build_scene
from ..validate import SimulationDiverged, validate_grasp
from .base import GraspArrays, Progress


class MujocoBackend:
    name = "mujoco"

    def __init__(self, max_scenes: int = 16) -> None:
        self._scenes: OrderedDict[tuple[str, ...], tuple[Scene, mujoco.MjData]] = OrderedDict()
        self._max = max_scenes

    def scene(
        self, obj: SimObject, cfg: SimConfig, hand: str, table_z: float | None, gravity: tuple[float, float, float],
        with_visual: bool = False,
    ) -> tuple[Scene, mujoco.MjData]:
        key = (obj.digest, hand, repr(table_z), repr(gravity), repr(cfg.physics), str(with_visual), repr(obj.mass_kg))
        if key in self._scenes:
            self._scenes.move_to_end(key)
            return self._scenes[key]
        sc = build_scene(obj, cfg.physics, hand=hand, table_z=table_z, gravity=gravity, with_visual=with_visual)
        entry = (sc, mujoco.MjData(sc.model))
        self._scenes[key] = entry
        while len(self._scenes) > self._max:
            self._scenes.popitem(last=False)
        return entry

    def validate(
        self, obj: SimObject, grasps: Sequence[GraspArrays], cfg: SimConfig, hand: str = "shadow",
        progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
    ) -> list[dict[str, Any]]:
        sc, data = self.scene(obj, cfg, hand, None, (0.0, 0.0, 0.0))
        out: list[dict[str, Any]] = []
        for i, g in enumerate(grasps):
            if should_stop is not None and should_stop():
                break
            pre = None if g.pre_position is None or g.pre_quaternion_wxyz is None or g.pre_joints is None else (
                g.pre_position, g.pre_quaternion_wxyz, g.pre_joints)
            try:
                r = validate_grasp(sc, data, g.position, g.quaternion_wxyz, g.joints, g.squeeze, cfg,
                                   should_stop=should_stop, pregrasp=pre)
            except mujoco.FatalError as e:  # e.g. the arena overflowed: the simulation could not go on
                raise SimulationDiverged(f"MuJoCo stopped: {e}") from e
            out.append(r.to_dict())
            if progress is not None:
                progress(i + 1, len(grasps))
        return out

    def execute(
        self, obj: SimObject, grasps: Sequence[GraspArrays], cfg: SimConfig, hand: str = "shadow",
        policy: str = "scripted", render: bool = False, seed: int = 0, gif: bool = False,
        progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
    ) -> list[dict[str, Any]]:
        from ..execute import execute_grasp

        e = cfg.execution
        sc, data = self.scene(obj, cfg, hand, e.table_z, e.gravity, with_visual=render or gif)
        out: list[dict[str, Any]] = []
        for i, g in enumerate(grasps):
            if should_stop is not None and should_stop():
                break
            try:
                r = execute_grasp(
                    sc, data, g, cfg, policy=policy, render=render, seed=seed + i, should_stop=should_stop,
                    render_gif=gif,
                )
            except mujoco.FatalError as e:
                raise SimulationDiverged(f"MuJoCo stopped: {e}") from e
            out.append(r.to_dict())
            if progress is not None:
                progress(i + 1, len(grasps))
        return out

    def close(self) -> None:
        self._scenes.clear()

    def __enter__(self) -> MujocoBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
