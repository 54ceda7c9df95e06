"""Shared fixtures. GPU tests carry the ``gpu`` marker and skip cleanly without CUDA."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")
warnings.filterwarnings("ignore", message=".*AdroitHand.*")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none visible)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shadow64():
    from models.hands import get_hand

    return get_hand("shadow", dtype="float64")
