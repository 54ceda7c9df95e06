"""``dexgrasp`` command line: one verb per capability, thin wrappers over library functions."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")


def _cmd_eval(a: argparse.Namespace) -> int:
    from .evaluate import evaluate_file

    report = evaluate_file(a.grasps, a.object, table_z=a.table_z, n_points=a.points, per_grasp=not a.summary_only)
    text = json.dumps(report, indent=1)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)
    return 0


def _cmd_objects(a: argparse.Namespace) -> int:
    from . import objects

    if a.action == "list":
        rows = objects.list_objects(a.split)
        if a.json:
            print(json.dumps(rows, indent=1))
        else:
            for r in rows:
                print(f"{r['id']:<24} {r['split']:<10} {r['family']:<10} {r['source']}")
            print(f"{len(rows)} objects", file=sys.stderr)
        return 0
    if a.action == "cloud":
        if not a.id or not a.out:
            print("usage: dexgrasp objects cloud OBJECT_ID --out FILE.ply [--partial]", file=sys.stderr)
            return 2
        objects.export_cloud(a.id, a.out, kind="partial" if a.partial else "complete", n=a.n, seed=a.seed)
        print(f"wrote {a.out}")
        return 0
    if a.action == "manifest":
        out = a.out or "manifest.json"
        objects.write_manifest(out)
        print(f"wrote {out}")
        return 0
    return 2


def _cmd_render(a: argparse.Namespace) -> int:
    from .render import render_grasp_file

    render_grasp_file(a.grasps, a.object, a.out)
    print(f"wrote {a.out}")
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    from .demo import run_demo

    summary = run_demo(Path(a.out), object_id=a.object, num_grasps=a.num_grasps, steps=a.steps, seed=a.seed)
    print(json.dumps(summary, indent=1))
    return 0


def _cmd_synth(a: argparse.Namespace) -> int:
    from .synth import SynthConfig, run_synth, summarize_dataset

    if a.summary:
        print(json.dumps(summarize_dataset(a.out), indent=1))
        return 0
    cfg = SynthConfig(split=a.split, poses_per_object=a.poses, grasps_per_scene=a.grasps, steps=a.steps,
                      max_objects=a.max_objects, seed=a.seed, procs=a.procs, simulate=not a.no_sim)
    print(json.dumps(run_synth(a.out, cfg), indent=1))
    return 0


def _cmd_train(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from .dgtr.data import ViewConfig
    from .dgtr.model import DGTRConfig
    from .dgtr.train import TrainConfig, train

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    cfg = TrainConfig(data=a.data, epochs=a.epochs, batch=a.batch, lr=a.lr, seed=a.seed,
                      views=ViewConfig(partial_views=a.partial_views), model=replace(DGTRConfig(), queries=a.queries))
    last = train(a.out, cfg, cache_dir=a.cache, stop_after=a.stop_after)
    if a.stop_after is not None and a.stop_after < a.epochs:
        print(json.dumps(last, indent=1))
        return 0
    print(json.dumps(last, indent=1))
    if a.install:
        import shutil

        from .dgtr.export import export_weights
        from .proposers.dgtr import weights_dir

        dest = weights_dir(cfg.model.hand)
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("model.safetensors", "model.json"):
            shutil.copy2(Path(a.out) / name, dest / name)
        print(f"installed {dest}; ONNX graph: {export_weights(dest)}")
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from .dgtr.export import export_weights

    print(export_weights(a.weights, a.out))
    return 0


def _cmd_serve(a: argparse.Namespace) -> int:
    from service.serve import serve

    return serve(host=a.host, port=a.port)


def _read_cloud(path: str) -> tuple[Any, Any]:
    import numpy as np

    from .objects.ply import read_ply, read_points_npy

    if path.lower().endswith(".npy"):
        pts, nrm = read_points_npy(path)
    elif path.lower().endswith(".ply"):
        pts, nrm = read_ply(path)
    else:
        raise ValueError(f"{path}: give a .ply or .npy point cloud")
    return np.asarray(pts), None if nrm is None else np.asarray(nrm)


def _cmd_propose(a: argparse.Namespace) -> int:
    from .grasp import GraspSet

    pts, nrm = _read_cloud(a.cloud)
    up = [float(v) for v in a.up.split(",")]
    if a.server:
        from service.client import GraspClient, GraspServiceError

        client = GraspClient(a.server, api_key=a.api_key or os.environ.get("DEXGRASP_API_KEY"), timeout_s=a.timeout)
        try:
            res = client.propose(pts, nrm, num_grasps=a.num, text=a.text, method=a.method, up=up, seed=a.seed)
        except GraspServiceError as e:
            print(f"dexgrasp propose: {e}", file=sys.stderr)
            return 2 if 400 <= e.status < 500 else 1
        grasps, warnings, timings, proposer = res.grasps, res.warnings, res.timings_ms, res.proposer
        intent = res.intent
        object_points = None
    else:
        from tqdm import tqdm

        from .pipeline import GraspPipeline, GraspQuery, QueryError

        pipe = GraspPipeline()
        bar = tqdm(total=1, desc="optimising", unit="step", file=sys.stderr)

        def progress(step: int, total: int, energy: float) -> None:
            bar.total = total
            bar.n = step
            bar.set_postfix(energy=f"{energy:.3f}")
            bar.refresh()

        try:
            query = GraspQuery(points=pts, normals=nrm, up=up, num_grasps=a.num, text=a.text, method=a.method, seed=a.seed)
            out = pipe.run_batch([query], progress=progress)[0]
        finally:
            bar.close()
        if isinstance(out, QueryError):
            print(f"dexgrasp propose: {out}", file=sys.stderr)
            return 2
        if isinstance(out, BaseException):
            raise out
        grasps = [g.model_dump(mode="json") for g in out.grasps]
        warnings, timings, proposer, intent = out.warnings, out.timings_ms, out.proposer, out.intent
        object_points = out.object_points
    gs = GraspSet.model_validate({"hand": "shadow", "frame": "request", "object": a.cloud, "grasps": grasps})
    doc = gs.model_dump(mode="json")
    doc.update({"proposer": proposer, "warnings": warnings, "timings_ms": timings, "intent": intent, "text": a.text})
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    overall = [g["scores"].get("overall", float("nan")) for g in grasps]
    print(f"wrote {len(grasps)} grasps to {a.out} (proposer {proposer}; best overall {max(overall):.3f}; "
          f"{sum(v for k, v in timings.items() if k.endswith('_ms') and k in ('preprocess_ms', 'intent_ms', 'propose_ms', 'refine_ms', 'score_ms', 'select_ms')):.0f} ms)")
    if a.render:
        import tempfile

        import numpy as np

        from .render import render_grasp_file

        with tempfile.TemporaryDirectory() as tmp:
            cloud = a.cloud
            if object_points is not None:  # draw what the grasps were planned on: the object, no table
                cloud = str(Path(tmp) / "object.npy")
                np.save(cloud, object_points)
            render_grasp_file(a.out, cloud, a.render)
        print(f"wrote {a.render}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dexgrasp", description="Dexterous grasp service tools")
    sub = p.add_subparsers(dest="cmd", required=True)

    e = sub.add_parser("eval", help="quality and diversity metrics of a grasp file against an object")
    e.add_argument("grasps", help="grasp set JSON (shared schema)")
    e.add_argument(
        "--object",
        required=True,
        help="object id (see `objects list`), mesh (.obj/.stl/.ply) or cloud (.ply/.npy)",
    )
    e.add_argument("--table-z", type=float, default=None, help="height of a horizontal table plane (m), z up")
    e.add_argument("--points", type=int, default=20000, help="object surface samples for mesh inputs")
    e.add_argument("--summary-only", action="store_true")
    e.add_argument("--out", help="also write the JSON report here")
    e.set_defaults(fn=_cmd_eval)

    o = sub.add_parser("objects", help="object sets: list, export point clouds, write the manifest")
    o.add_argument("action", choices=["list", "cloud", "manifest"])
    o.add_argument("id", nargs="?", help="object id (for `cloud`)")
    o.add_argument("--split", choices=["train", "validation", "test"], default=None)
    o.add_argument("--json", action="store_true")
    o.add_argument("--out")
    o.add_argument("--partial", action="store_true", help="single-view depth-camera cloud with the table")
    o.add_argument("-n", type=int, default=4096, help="points of a complete cloud")
    o.add_argument("--seed", type=int, default=0)
    o.set_defaults(fn=_cmd_objects)

    r = sub.add_parser("render", help="draw grasps and the object to a PNG (MuJoCo offscreen)")
    r.add_argument("grasps")
    r.add_argument("--object", required=True)
    r.add_argument("--out", default="grasp.png")
    r.set_defaults(fn=_cmd_render)

    d = sub.add_parser("demo", help="synthesise a few grasps on one object, write metrics, JSON and a picture")
    d.add_argument("--out", default="out/demo")
    d.add_argument("--object", default=None, help="object id; default: a validation cylinder")
    d.add_argument("--num-grasps", type=int, default=16)
    d.add_argument("--steps", type=int, default=300)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(fn=_cmd_demo)

    y = sub.add_parser("synth", help="synthesise a grasp dataset (sharded, resumable; re-run to continue)")
    y.add_argument("--split", choices=["train", "validation", "test"], default="train")
    y.add_argument("--out", required=True, help="dataset folder (shards/, config.json, summary.json)")
    y.add_argument("--poses", type=int, default=2, help="resting poses per object")
    y.add_argument("--grasps", type=int, default=32, help="grasps optimised per scene")
    y.add_argument("--steps", type=int, default=200)
    y.add_argument("--max-objects", type=int, default=None)
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--procs", type=int, default=2, help="simulation processes")
    y.add_argument("--no-sim", action="store_true", help="filter by penetration only (no MuJoCo test)")
    y.add_argument("--summary", action="store_true", help="only print the summary card of --out")
    y.set_defaults(fn=_cmd_synth)

    t = sub.add_parser("train", help="train a learned proposer (resumable: re-run the same command to continue)")
    t.add_argument("model", choices=["dgtr"])
    t.add_argument("--data", default="models/data/shadow_v1", help="synthesised dataset folder")
    t.add_argument("--out", default="runs/dgtr_shadow", help="run folder: config, log.jsonl, checkpoint, weights")
    t.add_argument("--cache", default=None, help="training-view cache (default: OUT/views)")
    t.add_argument("--epochs", type=int, default=60)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--queries", type=int, default=16)
    t.add_argument("--partial-views", type=int, default=4, help="single-view clouds rendered per scene")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--stop-after", type=int, default=None, help="end this call after that epoch (resume later)")
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    t.add_argument("--install", action="store_true", help="copy the weights to models/weights/ and export ONNX there")
    t.set_defaults(fn=_cmd_train)

    x = sub.add_parser("export", help="export a trained model's graph")
    x.add_argument("format", choices=["onnx"])
    x.add_argument("--weights", default="models/weights/dgtr_shadow", help="folder with model.safetensors and model.json")
    x.add_argument("--out", default=None, help="default: WEIGHTS/model.onnx")
    x.set_defaults(fn=_cmd_export)

    try:
        from sim_worker.cli import add_sim_parser, add_worker_parser
    except ImportError:  # the simulation CLI is optional until sim_worker.cli exists
        pass
    else:
        add_sim_parser(sub)
        add_worker_parser(sub)

    s = sub.add_parser("serve", help="run the HTTP service (embedded Redis and workers when REDIS_URL is unset)")
    s.add_argument("--host", default=None, help="default: DEXGRASP_HOST or 0.0.0.0")
    s.add_argument("--port", type=int, default=None, help="default: DEXGRASP_PORT or 8000")
    s.set_defaults(fn=_cmd_serve)

    pr = sub.add_parser("propose", help="grasps for a point cloud (.ply/.npy): locally, or via --server")
    pr.add_argument("cloud")
    pr.add_argument("--out", required=True, help="grasp set JSON to write")
    pr.add_argument("--text", default=None, help='instruction, e.g. "grasp the mug by the handle"')
    pr.add_argument("--num", type=int, default=16)
    pr.add_argument("--method", default="auto")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--up", default="0,0,1", help="up vector in the cloud's frame")
    pr.add_argument("--server", default=None, help="service URL; default: run the pipeline in this process")
    pr.add_argument("--api-key", default=None, help="default: DEXGRASP_API_KEY")
    pr.add_argument("--timeout", type=float, default=120.0, help="HTTP timeout (s)")
    pr.add_argument("--render", default=None, help="also draw the grasps to this PNG")
    pr.set_defaults(fn=_cmd_propose)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"dexgrasp {args.cmd}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
