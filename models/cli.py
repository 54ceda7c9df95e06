"""The ``models`` verbs of the ``dexgrasp`` command line: eval, objects, render, demo, optimize, synth, train, export.

Thin wrappers over library functions. :func:`add_commands` registers them; the command line itself
is assembled in the top layer (``service.cli``), which also passes in what ``models`` may not
import: the simulation-filtered synthesis (``sim_worker.synth.run_synth``) and the optimiser's simulated
check on the cloud (``sim_worker.cloud_check.CloudCheck``).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .tools.synth import SynthConfig

#: Runs a synthesis to ``out_dir`` and returns its summary card (``models.tools.synth.run_synth``'s shape).
SynthRunner = Callable[[str, "SynthConfig"], dict[str, Any]]
#: Makes the optimiser's simulated check on the cloud (a :class:`models.stages.check.GraspCheck` that is a context
#: manager, e.g. ``sim_worker.cloud_check.CloudCheck``); ``dexgrasp optimize`` ranks by it unless ``--no-check``.
CheckFactory = Callable[[], Any]


def _cmd_eval(a: argparse.Namespace) -> int:
    from .tools.evaluate import evaluate_file

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
    from .tools.pictures import render_grasp_file

    render_grasp_file(a.grasps, a.object, a.out)
    print(f"wrote {a.out}")
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    from .tools.demo import run_demo

    summary = run_demo(Path(a.out), object_id=a.object, num_grasps=a.num_grasps, steps=a.steps, seed=a.seed)
    print(json.dumps(summary, indent=1))
    return 0


def _cmd_optimize(a: argparse.Namespace, make_check: CheckFactory | None = None) -> int:
    """``optimize``: the optimiser (``models/proposers/optimize.py``) for one hand on one object's cloud; writes
    a grasp set in the object's frame that ``dexgrasp sim validate`` judges (its ``object`` names the object)."""
    import contextlib
    import time

    import torch

    from .grasp import GraspSet
    from .hands import known_hands
    from .proposers import get_proposer
    from .proposers.optimize import OptimizeConfig
    from .tools.evaluate import load_object

    if a.hand not in known_hands():
        raise ValueError(f"unknown hand {a.hand!r}; available: {', '.join(known_hands())}")
    obj = load_object(a.object, n_points=a.points, seed=0)
    cfg = OptimizeConfig(steps=a.steps) if a.extra_rounds is None else OptimizeConfig(steps=a.steps, extra_rounds=a.extra_rounds)
    with contextlib.ExitStack() as stack:
        check = None if a.no_check or make_check is None else stack.enter_context(make_check())
        prop = get_proposer("optimize", hand=a.hand, device=a.device, cfg=cfg, check=check)
        t0 = time.perf_counter()
        res = prop.propose(obj.surface.points.float(), obj.surface.normals.float(), a.num, seed=a.seed)
        elapsed = time.perf_counter() - t0
    gs = GraspSet(hand=a.hand, frame="object", object=obj.source, grasps=res.grasps)
    doc = gs.model_dump(mode="json")
    doc["proposer"] = {"name": prop.name, "version": prop.version, "steps": a.steps, "seed": a.seed,
                       "check": None if check is None else type(check).__name__, "rounds_held": list(res.rounds_held)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    valid = int(torch.as_tensor(res.valid).sum())
    print(f"wrote {len(res.grasps)} {a.hand} grasps on {obj.source} to {a.out} ({valid} pass the energy filter; "
          f"{elapsed:.1f} s)")
    return 0


def _cmd_synth(a: argparse.Namespace, run_synth: SynthRunner | None = None) -> int:
    from .tools.synth import SynthConfig, summarize_dataset
    from .tools.synth import run_synth as synth_without_simulator

    if a.summary:
        print(json.dumps(summarize_dataset(a.out), indent=1))
        return 0
    if a.picture:
        from .tools.synth import dataset_picture

        print(json.dumps(dataset_picture(a.out, a.picture, scenes=a.picture_scenes, newest=a.picture_newest), indent=1))
        return 0
    cfg = SynthConfig(split=a.split, hand=a.hand, poses_per_object=a.poses, grasps_per_scene=a.grasps, steps=a.steps,
                      max_objects=a.max_objects, seed=a.seed, procs=a.procs, simulate=not a.no_sim, device=a.device,
                      workers=a.workers)
    run = run_synth or synth_without_simulator  # the latter refuses cfg.simulate: --no-sim only
    print(json.dumps(run(a.out, cfg), indent=1))
    return 0


def _cmd_train(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from .learned.dgtr.data import ViewConfig
    from .learned.dgtr.model import DGTRConfig
    from .learned.dgtr.train import TrainConfig, train

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    cfg = TrainConfig(data=a.data, epochs=a.epochs, batch=a.batch, lr=a.lr, seed=a.seed,
                      views=ViewConfig(partial_views=a.partial_views), model=replace(DGTRConfig(), queries=a.queries),
                      init=a.init)
    last = train(a.out, cfg, cache_dir=a.cache, stop_after=a.stop_after, procs=a.procs)
    if a.stop_after is not None and a.stop_after < a.epochs:
        print(json.dumps(last, indent=1))
        return 0
    print(json.dumps(last, indent=1))
    if a.install:
        import shutil

        from .learned.dgtr.export import export_weights
        from .proposers.dgtr import weights_dir

        dest = weights_dir(cfg.model.hand)
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("model.safetensors", "model.json"):
            shutil.copy2(Path(a.out) / name, dest / name)
        print(f"installed {dest}; ONNX graph: {export_weights(dest)}")
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from .learned.dgtr.export import export_weights

    print(export_weights(a.weights, a.out))
    return 0


def add_commands(sub: Any, *, run_synth: SynthRunner | None = None, make_check: CheckFactory | None = None) -> None:
    """Register the ``models`` verbs on an argparse sub-parsers object. ``run_synth`` is what
    ``synth`` runs (the top layer passes the simulation-filtered one); without it ``synth`` needs
    ``--no-sim``. ``make_check`` makes the simulated check ``optimize`` ranks by (without it: none)."""

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

    op = sub.add_parser("optimize", help="optimise grasps for one hand on one object (the optimiser alone, no service)")
    op.add_argument("object", help="object id (see `objects list`), mesh (.obj/.stl/.ply) or cloud (.ply/.npy)")
    op.add_argument("--hand", default="shadow", help="a registered hand: shadow, allegro, leap")
    op.add_argument("--out", required=True, help="grasp set JSON to write (object frame)")
    op.add_argument("--num", type=int, default=16, help="grasps to return")
    op.add_argument("--steps", type=int, default=400, help="annealing steps")
    op.add_argument("--seed", type=int, default=0)
    op.add_argument("--points", type=int, default=1024, help="cloud points sampled from a mesh or object id")
    op.add_argument("--extra-rounds", type=int, default=None, help="extra rounds of candidates (default: the optimiser's)")
    op.add_argument("--no-check", action="store_true", help="rank without the simulated check on the cloud")
    op.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    op.set_defaults(fn=functools.partial(_cmd_optimize, make_check=make_check))

    y = sub.add_parser("synth", help="synthesise a grasp dataset (sharded, resumable; re-run to continue)")
    y.add_argument("--split", choices=["train", "validation", "test"], default="train")
    y.add_argument("--hand", default="shadow", help="a registered hand: shadow, allegro, leap")
    y.add_argument("--out", required=True, help="dataset folder (shards/, config.json, summary.json)")
    y.add_argument("--poses", type=int, default=2, help="resting poses per object")
    y.add_argument("--grasps", type=int, default=32, help="grasps optimised per scene")
    y.add_argument("--steps", type=int, default=200)
    y.add_argument("--max-objects", type=int, default=None)
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--procs", type=int, default=2, help="simulation processes (in all, shared by the workers)")
    y.add_argument("--workers", type=int, default=1,
                   help="scene processes, each on one torch thread with procs/workers simulation processes (2 on a 2-core machine)")
    y.add_argument("--no-sim", action="store_true", help="filter by penetration only (no MuJoCo test)")
    y.add_argument("--device", default="cpu", help="where the optimiser runs: cpu, cuda or auto (the referee runs on CPU)")
    y.add_argument("--summary", action="store_true", help="only print the summary card of --out")
    y.add_argument("--picture", default=None, help="only draw scenes of --out (one per family in turn, best grasp) to this PNG")
    y.add_argument("--picture-scenes", type=int, default=8, help="how many scenes --picture draws")
    y.add_argument("--picture-newest", action="store_true", help="--picture draws the scenes written last instead")
    y.set_defaults(fn=functools.partial(_cmd_synth, run_synth=run_synth))

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
    t.add_argument("--procs", type=int, default=1, help="processes rendering the training views (cached, made once)")
    t.add_argument("--init", default=None, help="start from this weights folder (fine-tuning, same architecture)")
    t.add_argument("--install", action="store_true", help="copy the weights to models/weights/ and export ONNX there")
    t.set_defaults(fn=_cmd_train)

    x = sub.add_parser("export", help="export a trained model's graph")
    x.add_argument("format", choices=["onnx"])
    x.add_argument("--weights", default="models/weights/dgtr_shadow", help="folder with model.safetensors and model.json")
    x.add_argument("--out", default=None, help="default: WEIGHTS/model.onnx")
    x.set_defaults(fn=_cmd_export)


__all__ = ["SynthRunner", "add_commands"]
