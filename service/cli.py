"""The ``dexgrasp`` command line, assembled here in the top layer, and the service's own verbs.

Each layer offers its verbs through an ``add_commands(subparsers)``: ``models.cli`` (eval, objects,
render, demo, optimize, synth, train, export), ``sim_worker.cli`` (sim, worker) and this module (serve,
propose: the verbs that run or call the HTTP service). :func:`build_parser` puts them together and
hands ``models`` what it may not import itself (synthesis with the simulation filter, the optimiser's
check on the cloud); :func:`main` is the ``dexgrasp`` console script (also ``python -m service.cli``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def quiet_openmp(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Tell OpenMP (torch's CPU threads) to sleep while it waits for work, unless ``OMP_WAIT_POLICY`` is set.

    By default its threads spin for a while before sleeping. Beside busy simulation processes on the same cores
    (the embedded workers of ``dexgrasp serve``, a compose host running workers beside the API, a synthesis or a
    test run beside another) the spinning threads fight them for the cores: one synthesis scene's optimisation (two
    threads, both cores busy with simulation) took 472 s instead of 28 s with ``PASSIVE``. Alone on the machine
    ``PASSIVE`` costs about a sixth (17.0 -> 20.0 s, median of three; ``docker/README.md``, "Variables"). It takes
    effect only before torch is loaded: the ``dexgrasp`` command calls it first thing."""
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


quiet_openmp()  # before anything below can load torch (its verbs and the processes they start inherit it)

from models import cli as models_cli  # noqa: E402
from sim_worker import cli as sim_cli  # noqa: E402
from sim_worker.synth import run_synth  # noqa: E402

# offscreen MuJoCo rendering needs no display; set before any verb imports MuJoCo (workers inherit it)
os.environ.setdefault("MUJOCO_GL", "egl")


def _cmd_serve(a: argparse.Namespace) -> int:
    from .serve import serve

    return serve(host=a.host, port=a.port)


def _read_cloud(path: str) -> tuple[Any, Any]:
    import numpy as np

    from models.objects.ply import read_ply, read_points_npy

    if path.lower().endswith(".npy"):
        pts, nrm = read_points_npy(path)
    elif path.lower().endswith(".ply"):
        pts, nrm = read_ply(path)
    else:
        raise ValueError(f"{path}: give a .ply or .npy point cloud")
    return np.asarray(pts), None if nrm is None else np.asarray(nrm)


def _cmd_propose(a: argparse.Namespace) -> int:
    from models.grasp import GraspSet

    pts, nrm = _read_cloud(a.cloud)
    up = [float(v) for v in a.up.split(",")]
    if a.server:
        from .client import GraspClient, GraspServiceError

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

        from models.pipeline import GraspPipeline, GraspQuery, QueryError

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
          f"{sum(v for k, v in timings.items() if k.endswith('_ms') and k in ('preprocess_ms', 'intent_ms', 'propose_ms', 'refine_ms', 'score_ms', 'select_ms', 'finish_ms')):.0f} ms)")
    if a.render:
        import tempfile

        import numpy as np

        from models.tools.pictures import render_grasp_file

        with tempfile.TemporaryDirectory() as tmp:
            cloud = a.cloud
            if object_points is not None:  # draw what the grasps were planned on: the object, no table
                cloud = str(Path(tmp) / "object.npy")
                np.save(cloud, object_points)
            render_grasp_file(a.out, cloud, a.render)
        print(f"wrote {a.render}")
    return 0


def add_commands(sub: Any) -> None:
    """Register the service verbs (serve, propose) on an argparse sub-parsers object."""
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


def _cloud_check() -> Any:
    """The simulated check on the cloud ``dexgrasp optimize`` ranks by (``sim_worker.cloud_check``)."""
    from sim_worker.cloud_check import CloudCheck

    return CloudCheck()


def build_parser() -> argparse.ArgumentParser:
    """Every ``dexgrasp`` verb, in the order ``--help`` lists them: models, simulation, service."""
    p = argparse.ArgumentParser(prog="dexgrasp", description="Dexterous grasp service tools")
    sub = p.add_subparsers(dest="cmd", required=True)
    models_cli.add_commands(sub, run_synth=run_synth, make_check=_cloud_check)
    sim_cli.add_commands(sub)
    add_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"dexgrasp {args.cmd}: error: {exc}", file=sys.stderr)
        return 2


__all__ = ["add_commands", "build_parser", "main"]


if __name__ == "__main__":
    raise SystemExit(main())
