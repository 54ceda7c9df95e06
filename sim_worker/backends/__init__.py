"""Simulator backends behind one interface, selected by name.

``mujoco`` (CPU, default, tested in CI) and ``isaacgym`` (GPU, only where the
user installed NVIDIA's Isaac Gym; importing it elsewhere fails with a clear
message). Every backend takes the same :class:`~sim_worker.scene.SimObject`,
grasp arrays and :class:`~sim_worker.config.SimConfig`, and returns the same
result types, so numbers are comparable across engines.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import GraspArrays, SimBackend

_REGISTRY: dict[str, str] = {
    "mujoco": "sim_worker.backends.mujoco_backend:MujocoBackend",
    "isaacgym": "sim_worker.backends.isaacgym_backend:IsaacGymBackend",
}


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def register_backend(name: str, target: str) -> None:
    """Register ``module:Class`` under ``name`` (a new engine is one module plus this call)."""
    _REGISTRY[name] = target


def get_backend(name: str, **kwargs: Any) -> SimBackend:
    if name not in _REGISTRY:
        raise ValueError(f"unknown simulation backend {name!r}; available: {', '.join(available_backends())}")
    mod, cls = _REGISTRY[name].split(":")
    klass = getattr(importlib.import_module(mod), cls)
    backend: SimBackend = klass(**kwargs)
    return backend


__all__ = ["GraspArrays", "SimBackend", "available_backends", "get_backend", "register_backend"]
