"""Grasp proposers behind one registry: ``optimize`` (force-closure annealing, the slow oracle and
data engine); learned proposers (``dgtr``, ...) register here as they land."""

from __future__ import annotations

import importlib
from typing import Any

_REGISTRY: dict[str, str] = {
    "optimize": "models.proposers.optimize:OptimizeProposer",
    "fast": "models.proposers.optimize:FastProposer",
    "dgtr": "models.proposers.dgtr:DGTRProposer",
}


def available_proposers() -> list[str]:
    return sorted(_REGISTRY)


def register_proposer(name: str, target: str) -> None:
    """Register ``module:Class`` under ``name``."""
    _REGISTRY[name] = target


def get_proposer(name: str, **kwargs: Any) -> Any:
    if name not in _REGISTRY:
        raise ValueError(f"unknown proposer {name!r}; available: {', '.join(available_proposers())}")
    mod, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(mod), cls)(**kwargs)


__all__ = ["available_proposers", "get_proposer", "register_proposer"]
