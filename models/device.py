"""All device and dtype selection lives here.

Callers pass a :class:`TensorSpec` (device + dtype) down explicitly instead of
guessing; ``resolve_device`` turns a user string (``auto``, ``cpu``, ``cuda``,
``cuda:1``) into a torch device and raises a clear error for what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class TensorSpec:
    """Where tensors live and what precision they use."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32

    def tensor(self, data: object) -> torch.Tensor:
        return torch.as_tensor(data, device=self.device, dtype=self.dtype)


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; an explicit CUDA request without a GPU fails loudly."""
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda:0" if cuda_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not cuda_available():
        raise RuntimeError(
            f"device {name!r} was requested but no CUDA device is visible; "
            "use device='cpu' or install the CUDA build of torch (pip extra 'gpu')"
        )
    return dev


def resolve(device: str = "auto", dtype: str = "float32") -> TensorSpec:
    dtypes = {"float32": torch.float32, "float64": torch.float64}
    if dtype not in dtypes:
        raise ValueError(f"dtype must be one of {sorted(dtypes)}, got {dtype!r}")
    return TensorSpec(resolve_device(device), dtypes[dtype])
