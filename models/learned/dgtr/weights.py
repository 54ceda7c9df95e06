"""DGTR weight files: ``model.safetensors`` (tensors, no pickle) and ``model.json`` (architecture and record).

Owned here, apart from ``train``, so that serving (``models.proposers.dgtr``, ``export``) reads
weights without importing the training code; training writes them through :func:`save_weights`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .model import DGTR, DGTRConfig


def save_weights(model: DGTR, out_dir: Path, meta: dict[str, Any]) -> Path:
    """``model.safetensors`` (no pickle) and ``model.json`` (the architecture and training record)."""
    from safetensors.torch import save_file

    path = out_dir / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    (out_dir / "model.json").write_text(json.dumps({"format": "dexgrasp-dgtr/1", "model": asdict(model.cfg), **meta}, indent=1, default=list) + "\n")
    return path


def load_weights(weights_dir: str | Path) -> DGTR:
    from safetensors.torch import load_file

    d = Path(weights_dir)
    meta = json.loads((d / "model.json").read_text())
    model = DGTR(DGTRConfig.from_dict(meta["model"]))
    model.load_state_dict(load_file(str(d / "model.safetensors")))
    model.eval()
    return model


__all__ = ["load_weights", "save_weights"]
