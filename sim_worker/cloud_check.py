"""The referee's protocol on the cloud alone: which candidate grasps stay put when driven pregrasp -> grasp
-> squeeze and pushed, simulated on a proxy of the object built from the cloud the grasps were planned on.

The referee of record (``validate.py``, fc_mocap) needs the object's mesh, which a request does not
have. :func:`~sim_worker.scene.object_from_cloud` makes a collision proxy from the points and their
normals (one sphere per point, tangent to the surface there, thin walls kept thin), and this module runs
the same protocol on it, with the six disturbances shortened to ``disturb_s`` each (0.2 s instead of
2 s: the flicks of the approach and the squeeze, the failures that matter most, are all in, and the
cost per candidate falls about 5x). It implements :class:`models.stages.check.GraspCheck`: the optimiser
(``models``, which does not import the simulator) ranks the candidates that hold here first.

Measured against the referee of record (``bench/proxy_referee.py``; validation, complete 1 024-point
clouds, every candidate of one optimiser round): see ``docs/optimizer.md``, "A referee on the cloud".
The table is not simulated (neither is it by the referee of record).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import SimConfig, ValidationConfig

if TYPE_CHECKING:
    from models.grasp import Grasp

    from .parallel import SimPool


@dataclass(frozen=True)
class CloudCheckConfig:
    """The proxy and the shortened protocol. Units: m, s."""

    disturb_s: float = 0.2  # each of the six disturbances (the referee of record: 2 s)
    max_radius_m: float = 0.004  # proxy spheres (object_from_cloud)
    min_radius_m: float = 0.0015
    procs: int = 1  # simulator processes (1: in the calling process)


@dataclass
class CloudCheck:
    """A :class:`models.stages.check.GraspCheck` on MuJoCo. Holds a simulator pool (started on first
    use); ``close()`` or a ``with`` block frees it."""

    cfg: CloudCheckConfig = field(default_factory=CloudCheckConfig)
    _pool: SimPool | None = field(default=None, init=False, repr=False)
    _proxy: tuple[bytes, Any] | None = field(default=None, init=False, repr=False)  # the last cloud's proxy (checks come in chunks)

    def _sim_config(self) -> SimConfig:
        v = ValidationConfig(disturb_s=self.cfg.disturb_s, check_every_s=min(ValidationConfig().check_every_s, self.cfg.disturb_s))
        return SimConfig(validation=v)

    def start(self) -> CloudCheck:
        """Start the simulator pool and wait until it is up (a service's warm-up, a benchmark before timing);
        the first call does it otherwise."""
        from .parallel import SimPool

        if self._pool is None:
            self._pool = SimPool("mujoco", procs=self.cfg.procs, cfg=self._sim_config()).start()
        self._pool.wait_ready()
        return self

    def __call__(self, points: np.ndarray, normals: np.ndarray, grasps: Sequence[Grasp]) -> dict[str, np.ndarray]:
        """Per grasp (in the cloud's frame; all for one hand, each grasp's ``hand``): ``holds`` (bool) and
        ``shift_m``, how far the object moved during the approach and the squeeze (m; 1.0 where the simulation
        never got there)."""
        from .arrays import GraspArrays
        from .scene import object_from_cloud

        if not grasps:
            return {"holds": np.zeros(0, dtype=bool), "shift_m": np.zeros(0)}
        if self._pool is None:
            self.start()
        assert self._pool is not None
        key = np.ascontiguousarray(points, dtype=np.float64).tobytes() + np.ascontiguousarray(normals, dtype=np.float64).tobytes()
        if self._proxy is None or self._proxy[0] != key:
            self._proxy = (key, object_from_cloud(points, normals, self.cfg.max_radius_m, self.cfg.min_radius_m, source="cloud check"))
        obj = self._proxy[1]
        hand = grasps[0].hand  # the hand the grasps were made for (a chunk is one problem's: one hand)
        res: list[dict[str, Any]] = self._pool.validate(obj, [GraspArrays.from_grasp(g) for g in grasps], hand=hand,
                                                        diverged_fails=True)
        return {"holds": np.array([bool(r["success"]) for r in res]),
                "shift_m": np.array([float(r.get("phase_translation_m", {}).get("squeeze", 1.0)) for r in res])}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> CloudCheck:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["CloudCheck", "CloudCheckConfig"]
