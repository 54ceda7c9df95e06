"""ONNX export of DGTR and the two runtimes that serve it (PyTorch eager, ONNX Runtime).

The exported graph is :class:`models.learned.dgtr.model.DGTRExport`: input ``points`` (B, P, 7) with a
dynamic batch, outputs ``translation`` (B, Q, 3), ``rot6d`` (B, Q, 6), ``joints_unit`` (B, Q, J).
Farthest point sampling and kNN are plain tensor ops, so the whole network (sampling included)
is one graph. ONNX Runtime uses the CUDA execution provider when the device is CUDA and the
provider is installed (``onnxruntime-gpu``), the CPU provider otherwise.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .model import DGTR, DGTRExport

OPSET = 17


def export_onnx(model: DGTR, out_path: str | Path) -> Path:
    """Write the ONNX graph of ``model`` (eval mode) to ``out_path``; returns the path."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.zeros(2, model.cfg.num_points, 7)
    example[..., :3] = torch.randn(2, model.cfg.num_points, 3) * 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            DGTRExport(model), (example,), str(out), dynamo=False, opset_version=OPSET,
            input_names=["points"], output_names=["translation", "rot6d", "joints_unit"],
            dynamic_axes={"points": {0: "batch"}, "translation": {0: "batch"}, "rot6d": {0: "batch"}, "joints_unit": {0: "batch"}},
        )
    return out


class Runner(Protocol):
    name: str

    def __call__(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class TorchRunner:
    name = "torch"

    def __init__(self, model: DGTR, device: str = "cpu") -> None:
        self.model = model.eval().to(device)
        self.device = device

    @torch.inference_mode()
    def __call__(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        o = self.model(torch.as_tensor(inputs, dtype=torch.float32, device=self.device))[-1]
        return tuple(o[k].float().cpu().numpy() for k in ("translation", "rot6d", "joints_unit"))


class OnnxRunner:
    name = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        self.providers = self.session.get_providers()

    def __call__(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t, r, q = self.session.run(None, {"points": np.ascontiguousarray(inputs, dtype=np.float32)})
        return t, r, q


def export_weights(weights_dir: str | Path, out_path: str | Path | None = None) -> Path:
    """Export the safetensors weights in ``weights_dir`` to ``model.onnx`` beside them (or
    ``out_path``) and record the export in ``model.json``."""
    from .weights import load_weights

    d = Path(weights_dir)
    model = load_weights(d)
    path = export_onnx(model, out_path or d / "model.onnx")
    meta_path = d / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["onnx"] = {"file": path.name, "opset": OPSET, "torch": torch.__version__}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return path


__all__ = ["OPSET", "OnnxRunner", "Runner", "TorchRunner", "export_onnx", "export_weights"]
