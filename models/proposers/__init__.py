"""Grasp proposers behind one registry: ``optimize`` (force-closure annealing, the slow oracle and
data engine), ``fast`` (its short schedule, the CPU default) and learned proposers (``dgtr``, ...).

A proposer is registered by name as ``module:Class`` and imported on first use; its class carries
its :class:`~models.proposers.base.Capabilities`, which is all the pipeline reads about it, and
:func:`auto_proposer` turns them into the answer for ``method=auto``.
"""

from __future__ import annotations

import importlib
from typing import Any, cast

from .base import Capabilities, Problem, Proposal, Proposer

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


def proposer_class(name: str) -> type[Proposer]:
    """The registered class (imported, not instantiated: no weights are loaded)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown proposer {name!r}; available: {', '.join(available_proposers())}")
    mod, cls = _REGISTRY[name].split(":")
    return cast("type[Proposer]", getattr(importlib.import_module(mod), cls))


def capabilities(name: str) -> Capabilities:
    """How the pipeline treats the output of proposer ``name``."""
    return proposer_class(name).capabilities


def get_proposer(name: str, **kwargs: Any) -> Proposer:
    return proposer_class(name)(**kwargs)


def auto_proposer(instruction: bool, hand: str = "shadow") -> str | None:
    """What ``method=auto`` serves: the registered proposer with the highest ``auto_priority``
    (above 0) that serves ``hand`` by default and, for a query with an instruction, follows it;
    None when none qualifies."""
    ranked = sorted(((capabilities(n).auto_priority, n) for n in available_proposers()), reverse=True)
    for priority, name in ranked:
        if priority <= 0:
            break
        if instruction and not capabilities(name).follows_instructions:
            continue
        if proposer_class(name).serves_by_default(hand):
            return name
    return None


__all__ = [
    "Capabilities", "Problem", "Proposal", "Proposer", "auto_proposer", "available_proposers", "capabilities",
    "get_proposer", "proposer_class", "register_proposer",
]
