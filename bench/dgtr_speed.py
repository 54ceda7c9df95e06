"""DGTR speed: one forward pass for 16 grasps (PyTorch eager vs ONNX Runtime), batching,
the proposer call, and the refinement (AB-TTA) cost per step.

Input: a validation mug's 4096-point complete cloud through the serving preprocessing (canonical
frame, 1024 points, normals), as the service feeds the network. Every number is measured in this
one run on this machine; the JSON records the hardware and the load.

    .venv/bin/python bench/dgtr_speed.py [--repeats 200] [--device cpu|cuda] [--out docs/bench/dgtr_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch

from bench.foundation import hardware


def timed(fn: Callable[[], object], repeats: int, warm: int = 5) -> dict[str, float]:
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    a = np.asarray(ts)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "repeats": repeats}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights", default=str(ROOT / "models" / "weights" / "dgtr_shadow"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench" / "dgtr_speed.json"))
    a = ap.parse_args()

    from models import objects
    from models.core.geometry import ObjectCloud
    from models.grasp import grasps_to_tensors
    from models.hands import get_hand
    from models.learned.dgtr.export import OnnxRunner, TorchRunner
    from models.learned.dgtr.weights import load_weights
    from models.pipeline import GraspQuery, PipelineConfig, preprocess
    from models.proposers.base import Problem
    from models.proposers.dgtr import DGTRProposer
    from models.stages.refine import RefineConfig, refine_grasps

    oid = next(e.id for e in objects.objects("validation") if e.family == "mug")
    world, _, _ = objects.place_on_table(objects.load_mesh(oid), seed=0)
    p, n = objects.complete_cloud(world, n=4096, seed=0)
    prep = preprocess(GraspQuery(points=p, normals=n, table=((0.0, 0.0, 1.0), 0.0)), PipelineConfig())
    prop = DGTRProposer(weights=a.weights, device=a.device, runtime="onnx")
    problem = Problem(prep.points, prep.normals, 16, prep.plane, 0)
    x1, _ = prop.inputs([problem])
    model = load_weights(a.weights)
    runners = {"torch_eager": TorchRunner(model, a.device), "onnxruntime": OnnxRunner(Path(a.weights) / "model.onnx", a.device)}
    hw = {**hardware(), "load_avg_1m_at_start": os.getloadavg()[0], "torch_threads": torch.get_num_threads(),
          "onnx_providers": runners["onnxruntime"].providers}  # type: ignore[attr-defined]
    print(f"hardware: {hw}", flush=True)
    report: dict[str, object] = {"hardware": hw, "object": oid, "queries": prop.model_cfg.queries, "input_points": prop.model_cfg.num_points}

    forward = {}
    for name, run in runners.items():
        forward[name] = timed(lambda run=run: run(x1), a.repeats if name == "onnxruntime" else max(20, a.repeats // 5))
        print(name, forward[name], flush=True)
    forward["speedup_onnx_vs_eager_p50"] = round(forward["torch_eager"]["p50_ms"] / forward["onnxruntime"]["p50_ms"], 2)
    report["forward_16_grasps"] = forward

    batching = {}
    for b in (1, 2, 4, 8):
        xb = np.repeat(x1, b, axis=0)
        r = timed(lambda xb=xb: runners["onnxruntime"](xb), max(20, a.repeats // 4))
        r["grasps_per_s"] = round(b * prop.model_cfg.queries / (r["p50_ms"] / 1e3), 1)
        batching[str(b)] = r
        print("batch", b, r, flush=True)
    report["onnx_batch_scaling"] = batching

    report["proposer_16"] = timed(lambda: prop.propose_batch([problem]), max(20, a.repeats // 5))
    problem32 = Problem(prep.points, prep.normals, 32, prep.plane, 0)
    report["proposer_32_two_passes"] = timed(lambda: prop.propose_batch([problem32]), max(20, a.repeats // 5))
    print("proposer", report["proposer_16"], report["proposer_32_two_passes"], flush=True)

    hand = get_hand("shadow", device=a.device, dtype="float32")
    pos, rot, q = grasps_to_tensors(prop.propose_batch([problem32])[0].grasps, device=a.device)
    obj = ObjectCloud(prep.points.to(a.device), prep.normals.to(a.device))
    from dataclasses import asdict, replace

    tuned = prop.refine_config or RefineConfig()  # the refinement shipped with the weights
    refine: dict[str, object] = {"config": asdict(tuned)}
    for steps in (1, 21):
        cfg = replace(tuned, steps=steps)
        refine[f"steps_{steps}"] = timed(lambda cfg=cfg: refine_grasps(hand, pos, rot, q, obj, prep.plane, cfg), 10, warm=2)
    p1, p21 = refine["steps_1"]["p50_ms"], refine["steps_21"]["p50_ms"]  # type: ignore[index]
    refine["per_step_ms_32_grasps"] = round((p21 - p1) / 20, 2)
    refine["shipped_32_grasps"] = timed(lambda: refine_grasps(hand, pos, rot, q, obj, prep.plane, tuned), 10, warm=1)
    report["refine"] = refine
    print("refine", refine, flush=True)
    report["load_avg_1m_at_end"] = os.getloadavg()[0]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
