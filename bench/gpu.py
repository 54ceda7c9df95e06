"""The served default on a GPU, measured in one run: the DGTR forward pass (PyTorch and ONNX Runtime),
the refinement per step and as shipped, and the service end to end over HTTP (p50 / p99, 1 and 16
clients) with ``DEXGRASP_DEVICE`` set to the device.

It runs ``bench/dgtr_speed.py`` and ``bench/service.py`` with this interpreter, one after the
other (never together: each owns the device while it runs), and merges their JSON into ``--out``
with the device's name. On a lent GPU machine (the project's ``device`` tool), from the repo root:

    python3 bench/gpu.py --device cuda --out $OUT/gpu.json

That machine's image has CUDA PyTorch, numpy, scipy, safetensors, tqdm and onnxruntime (CPU
provider only: the ONNX figure there is not a GPU figure unless onnxruntime-gpu is carried); the
service's other dependencies travel as wheels (``bench/gpu_wheels.txt`` names them, and how).
``--device cpu`` runs the same script on a CPU: a check of the script, never a GPU figure. The
issue's target on a GPU: <= 30 ms end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    print(f"== {what}: {' '.join(cmd)}", flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    print(f"== {what} done in {time.perf_counter() - t:.0f} s", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (cpu: a dry run of the script)")
    ap.add_argument("--repeats", type=int, default=200, help="forward passes timed per runtime")
    ap.add_argument("--requests", type=int, default=50, help="sequential HTTP requests for the latency figure")
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--per-client", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench" / "gpu.json"))
    a = ap.parse_args()

    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {a.device}: this torch ({torch.__version__}) sees no CUDA device; run it on the GPU machine")
    env = {**os.environ, "DEXGRASP_DEVICE": a.device, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        speed, served = Path(tmp) / "speed.json", Path(tmp) / "service.json"
        _run([sys.executable, "bench/dgtr_speed.py", "--device", a.device, "--repeats", str(a.repeats), "--out", str(speed)],
             env, "forward and refinement")
        _run([sys.executable, "bench/service.py", "--requests", str(a.requests), "--concurrency", a.concurrency,
              "--per-client", str(a.per_client), "--out", str(served)], env, "end to end over HTTP")
        report = {
            "device": a.device,
            "device_name": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "cpu",
            "command": " ".join([sys.executable, *sys.argv]),
            "forward_and_refine": json.loads(speed.read_text()),
            "end_to_end": json.loads(served.read_text()),
        }
    lat = report["end_to_end"]["latency"]
    print(f"end to end on {report['device_name']}: p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
