"""The proposer registry: every registered proposer meets the protocol, and ``auto`` follows the
capabilities (priority, instructions, serves by default), not names in the pipeline."""

from __future__ import annotations

import pytest

from models.proposers import (
    auto_proposer,
    available_proposers,
    capabilities,
    proposer_class,
    register_proposer,
)
from models.proposers.base import Capabilities


@pytest.mark.parametrize("name", available_proposers())
def test_registered_proposers_carry_the_protocol(name):
    cls = proposer_class(name)
    assert cls.name == name
    assert isinstance(cls.capabilities, Capabilities)
    for attr in ("propose_batch", "propose", "serves_by_default"):
        assert callable(getattr(cls, attr))


def test_auto_picks_the_highest_priority_that_serves(monkeypatch):
    import models.proposers as reg

    monkeypatch.setattr(reg, "_REGISTRY", dict(reg._REGISTRY))
    register_proposer("dummy", "tests.models.test_proposers:_Dummy")
    assert capabilities("dummy").auto_priority == 9
    assert auto_proposer(instruction=False) == "dummy"
    assert auto_proposer(instruction=True) == "fast"  # the dummy does not follow instructions
    _Dummy.serving = False
    try:
        assert auto_proposer(instruction=False) in ("dgtr", "fast")
    finally:
        _Dummy.serving = True


class _Dummy:
    name = "dummy"
    capabilities = Capabilities(follows_instructions=False, auto_priority=9)
    serving = True

    @classmethod
    def serves_by_default(cls, hand: str) -> bool:
        return cls.serving
