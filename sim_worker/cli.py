"""``dexgrasp sim``: validate or execute a grasp file in simulation, from the command line.

::

    dexgrasp sim validate GRASPS.json --object ID|MESH|CLOUD [--primitive kind:s1,s2,..] [--procs P]
                                      [--config sim.json] [--out result.json] [--limit N]
    dexgrasp sim execute  GRASPS.json --object ... [--render-dir DIR] [--procs P] [--seed S] [--policy scripted]

The object is, in order of precedence: ``--primitive kind:s1,s2,..`` (MuJoCo size
semantics: box half-extents, sphere radius, cylinder/capsule radius and
half-height, ellipsoid radii); ``--object`` (a catalogue id such as
``prim/box/0003``, a mesh file .obj/.stl/.off/.glb/.gltf/.ply with faces, a point
cloud .ply without faces or .npy of shape (N,3)/(N,6), or ``primitive:kind:s1,..``);
otherwise the grasp file's own ``primitive`` key (the trust grasps in
``tests/data/sim`` carry one) or its ``object`` field. Grasps are in the object's
frame.

A tqdm progress bar (rate, ETA) goes to stderr; the JSON result (per-grasp
results and a summary) goes to stdout and, with ``--out``, to a file. With
``--render-dir`` execution renders keyframes; the PNGs are written there and the
JSON carries their paths instead of base64. Exit codes: 0 done (whatever the
grasps' outcomes), 1 simulation failure, 2 bad input (missing or malformed file,
unknown object id, bad option), 130 interrupted.

Run standalone as ``python -m sim_worker.cli sim validate ...``; ``service.cli``
calls :func:`add_commands` to make it ``dexgrasp sim ...``.

``dexgrasp worker --redis URL [--backend mujoco|isaacgym] [--batch B] [--procs P]`` (registered by
:func:`add_worker_parser`; also ``python -m sim_worker.cli worker ...``) runs a rollout-queue worker
(``sim_worker.worker``; protocol in ``docs/jobs.md``).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MESH_SUFFIXES = {".obj", ".stl", ".off", ".glb", ".gltf"}


class InputError(Exception):
    """A problem with what the user gave (exit code 2)."""


# ---------------------------------------------------------------------------------------- inputs
def parse_primitive(text: str) -> Any:
    """``box:0.02,0.02,0.03`` -> :class:`~sim_worker.scene.SimObject` (sizes in MuJoCo semantics)."""
    from .scene import object_from_primitive

    kind, sep, sizes = text.partition(":")
    if not sep or not sizes:
        raise InputError(f"primitive {text!r}: expected kind:s1,s2,.. (e.g. box:0.02,0.02,0.03)")
    try:
        values = tuple(float(s) for s in sizes.split(","))
    except ValueError:
        raise InputError(f"primitive {text!r}: sizes must be comma-separated numbers") from None
    try:
        return object_from_primitive(kind.strip(), values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InputError(f"primitive {text!r}: {exc}") from None


def load_sim_object(spec: str) -> Any:
    """Resolve ``--object`` into a :class:`~sim_worker.scene.SimObject` (see the module docstring)."""
    import numpy as np

    from models.objects import ply_has_faces, read_points_npy

    from .scene import object_from_mesh, object_from_points

    if spec.startswith("primitive:"):
        return parse_primitive(spec.removeprefix("primitive:"))
    path = Path(spec)
    try:
        if path.is_file():
            suffix = path.suffix.lower()
            if suffix == ".npy":
                pts, _ = read_points_npy(path)
                return object_from_points(np.asarray(pts, dtype=np.float64), source=str(path))
            if suffix == ".ply" and not ply_has_faces(path):
                from models.objects import read_ply

                pts, _ = read_ply(path)
                return object_from_points(np.asarray(pts, dtype=np.float64), source=str(path))
            if suffix in MESH_SUFFIXES | {".ply"}:
                import trimesh

                mesh = trimesh.load(path, force="mesh")
                if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
                    raise InputError(f"{path}: no triangles found; give a mesh or a point cloud")
                return object_from_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), source=str(path))
            raise InputError(f"{path}: unsupported object file type {suffix!r}")
        if path.exists():
            raise InputError(f"{path}: not a regular file")
        from models import objects

        try:
            mesh = objects.load_mesh(spec)
        except KeyError as exc:
            raise InputError(f"object {spec!r} is neither an existing file nor a known object id ({exc})") from None
        return object_from_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), source=spec)
    except InputError:
        raise
    except (ValueError, OSError) as exc:
        raise InputError(f"object {spec!r}: {exc}") from None


def load_grasp_file(path: str) -> tuple[Any, dict[str, Any], Any]:
    """(GraspSet, the raw JSON document, the :class:`models.grasp.GraspDocument`); grasps without
    pregrasp or squeeze are accepted (derived later, with a warning); every failure is an
    :class:`InputError` naming the file and the field."""
    from models.grasp import read_grasp_document

    p = Path(path)
    if not p.is_file():
        raise InputError(f"grasp file not found: {path}" if not p.exists() else f"grasp file is not a file: {path}")
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: malformed JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object with a 'grasps' list, got {type(doc).__name__}")
    try:
        read = read_grasp_document({k: v for k, v in doc.items() if k != "primitive"})
    except ValueError as exc:
        raise InputError(f"{path}: not a valid grasp set: {exc}") from None
    return read.grasp_set, doc, read


def derive_missing(arrays: list[Any], read: Any, obj: Any, hand: str, limit: int) -> list[Any]:
    """Grasps without a squeeze get the wrench-balanced one from their contacts on the object's
    surface (the grasp itself is not moved); without a pregrasp, the validation derives one."""
    import dataclasses

    import numpy as np
    import torch

    from models.core.geometry import ObjectCloud
    from models.hands import get_hand
    from models.physics.grasp_batch import GraspBatch
    from models.stages.squeeze import SqueezeConfig, solve_squeeze

    from .scene import surface_samples

    out = list(arrays)
    for i in read.missing_pregrasp:
        if i < limit:
            out[i] = dataclasses.replace(out[i], pre_position=None, pre_quaternion_wxyz=None, pre_joints=None)
    idx = [i for i in read.missing_squeeze if i < limit]
    if idx:
        pts, nrm = surface_samples(obj)
        h = get_hand(hand, dtype="float64")
        pos = torch.tensor(np.array([out[i].position for i in idx]))
        quat = np.array([out[i].quaternion_wxyz for i in idx])
        from models.core.rotations import quat_to_matrix

        rot = quat_to_matrix(torch.tensor(quat))
        q = torch.tensor(np.array([out[i].joints for i in idx]))
        sol = solve_squeeze(GraspBatch(h, pos, rot, q), ObjectCloud(torch.tensor(pts), torch.tensor(nrm)),
                            SqueezeConfig(snap=False))
        for k, i in enumerate(idx):
            out[i] = dataclasses.replace(out[i], squeeze=sol.squeeze[k].numpy())
    return out


def resolve_object(primitive: str | None, obj: str | None, doc: dict[str, Any]) -> Any:
    if primitive:
        return parse_primitive(primitive)
    if obj:
        return load_sim_object(obj)
    prim = doc.get("primitive")
    if isinstance(prim, dict) and "kind" in prim and "size" in prim:
        sizes = prim["size"] if isinstance(prim["size"], list) else [prim["size"]]
        return parse_primitive(f"{prim['kind']}:{','.join(str(s) for s in sizes)}")
    if isinstance(doc.get("object"), str) and doc["object"]:
        return load_sim_object(doc["object"])
    raise InputError("no object: give --object ID|MESH|CLOUD or --primitive kind:s1,s2,..")


def load_config(path: str | None, protocol: str | None = None) -> Any:
    """The SimConfig of a run: the file's (default: the referee of record), with ``protocol``
    (a preset name) underneath the file's own values when given."""
    from .config import SimConfig

    if path is None:
        return SimConfig() if protocol is None else SimConfig.preset(protocol)
    try:
        doc = json.loads(Path(path).read_text())
        if protocol is not None and isinstance(doc, dict):
            doc = {"preset": protocol, **doc}
        return SimConfig.from_dict(doc)
    except FileNotFoundError:
        raise InputError(f"config file not found: {path}") from None
    except (json.JSONDecodeError, ValueError, TypeError, OSError) as exc:
        raise InputError(f"config {path}: {exc}") from None


def write_renders(results: list[dict[str, Any]], render_dir: str) -> int:
    """Decode base64 keyframes (and a GIF, if any) to files; the JSON keeps their paths. Returns files written."""
    out = Path(render_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for r in results:
        i = int(r["index"])
        frames = r.get("keyframes") or {}
        paths: dict[str, str] = {}
        for name, b64 in frames.items():
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", str(name))
            p = out / f"grasp{i:04d}_{safe}.png"
            p.write_bytes(base64.b64decode(b64))
            paths[name] = str(p)
            written += 1
        if frames:
            r["keyframes"] = paths
        if isinstance(r.get("gif"), str):
            p = out / f"grasp{i:04d}.gif"
            p.write_bytes(base64.b64decode(r["gif"]))
            r["gif"] = str(p)
            written += 1
    return written


# ---------------------------------------------------------------------------------------- command
def _cmd_sim(a: argparse.Namespace) -> int:
    try:
        return _run(a)
    except InputError as exc:
        print(f"dexgrasp sim {a.sim_action}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"dexgrasp sim {a.sim_action}: simulation failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dexgrasp sim {a.sim_action}: interrupted", file=sys.stderr)
        return 130


def _run(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .parallel import SimPool, default_procs

    if a.limit is not None and a.limit < 0:
        raise InputError(f"--limit must be >= 0, got {a.limit}")
    if a.procs < 0:
        raise InputError(f"--procs must be >= 0 (0: automatic), got {a.procs}")
    gs, doc, read = load_grasp_file(a.grasps)
    if a.hand is not None and a.hand != gs.hand:  # the joints are the file's hand's: they cannot be read as another's
        raise InputError(f"{a.grasps} holds grasps for hand {gs.hand!r}, not {a.hand!r}")
    for w in read.warnings:
        print(f"dexgrasp sim {a.sim_action}: warning: {w}", file=sys.stderr)
    cfg = load_config(a.config, a.protocol)
    obj = resolve_object(a.primitive, a.object, doc)
    grasps = gs.grasps[: a.limit] if a.limit is not None else gs.grasps
    execute = a.sim_action == "execute"
    render = execute and a.render_dir is not None
    if execute and a.gif and not render:
        raise InputError("--gif needs --render-dir (the GIFs are written there)")
    if execute:
        try:
            from .policies import available_policies
        except ImportError as exc:
            raise RuntimeError(f"execution is not available: {exc}") from None
        if a.policy not in available_policies():
            raise InputError(f"unknown policy {a.policy!r}; available: {', '.join(available_policies())}")
        if render:
            os.environ.setdefault("MUJOCO_GL", "egl")  # before any worker starts: they inherit it
    from .arrays import GraspArrays

    try:
        arrays = [GraspArrays.from_grasp(g) for g in grasps]
    except (KeyError, ValueError) as exc:
        raise InputError(f"{a.grasps}: {exc}") from None
    if cfg.protocol == "fc_mocap":  # the earlier protocol keeps its own fallbacks (blanket squeeze, no pregrasp)
        arrays = derive_missing(arrays, read, obj, gs.hand, len(arrays))
    procs = a.procs or default_procs(len(arrays))
    t0 = time.perf_counter()
    with tqdm(total=len(arrays), desc=f"sim {a.sim_action}", unit="grasp", file=sys.stderr, dynamic_ncols=True,
              disable=a.quiet) as bar:

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        with SimPool(a.backend, procs=procs, cfg=cfg) as pool:
            if execute:
                results = pool.execute(obj, arrays, hand=gs.hand, policy=a.policy, render=render, seed=a.seed,
                                       gif=a.gif, progress=progress)
            else:
                results = pool.validate(obj, arrays, hand=gs.hand, progress=progress)
    wall = time.perf_counter() - t0
    results = [{"index": i, **r} for i, r in enumerate(results)]
    if execute:
        from .execute import summarize_execution as summarize
    else:
        from .validate import summarize_validation as summarize
    summary = summarize(results)
    summary.update({
        "wall_time_s": wall,
        "grasps_per_s": len(results) / wall if wall > 0 else math.nan,
        "procs": procs,
        "backend": a.backend,
    })
    report: dict[str, Any] = {
        "action": a.sim_action,
        "grasps_file": a.grasps,
        "object": obj.source,
        "hand": gs.hand,
        "summary": summary,
    }
    if execute:
        report.update({"policy": a.policy, "seed": a.seed})
        if render:
            report["render_dir"] = a.render_dir
            report["rendered_files"] = write_renders(results, a.render_dir)
    report["protocol"] = cfg.protocol
    from models.hands import load_spec

    # the hand's own finger actuation the scene got (the protocol is every hand's; the actuators are each hand's)
    report["finger_physics"] = cfg.physics.finger_physics(load_spec(gs.hand).sim)
    if read.warnings:
        report["warnings"] = list(read.warnings)
    report["config"] = cfg.to_dict()
    if not a.summary_only:
        report["results"] = results
    text = json.dumps(report, indent=1)
    if a.out:
        try:
            Path(a.out).write_text(text + "\n")
        except OSError as exc:
            raise InputError(f"cannot write --out {a.out}: {exc}") from None
    print(text)
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    from .backends import available_backends

    p.add_argument("grasps", help="grasp set JSON (shared schema); grasps in the object frame")
    p.add_argument("--object", help="object id (see `objects list`), mesh (.obj/.stl/.ply), cloud (.ply/.npy) "
                                    "or primitive:kind:s1,s2,..")
    p.add_argument("--primitive", help="MuJoCo primitive kind:s1,s2,.. (box half-extents, sphere r, "
                                       "cylinder/capsule r,half-height, ellipsoid radii), e.g. box:0.02,0.02,0.03")
    p.add_argument("--procs", type=int, default=0, help="worker processes (default 0: automatic, <= CPU cores)")
    p.add_argument("--hand", default=None,
                   help="the hand the grasps are for (default: the file's 'hand'; a file for another hand is refused)")
    p.add_argument("--config", help="SimConfig JSON (sections preset / physics / validation / execution)")
    p.add_argument("--protocol", choices=["fc_mocap", "pinned"], default=None,
                   help="validation protocol: fc_mocap (default: the referee of record, DexGraspBench's test) or "
                        "pinned (the earlier, lenient validator; report it only labelled)")
    p.add_argument("--out", help="also write the JSON result here")
    p.add_argument("--limit", type=int, default=None, help="only the first N grasps")
    p.add_argument("--backend", default="mujoco", choices=available_backends())
    p.add_argument("--summary-only", action="store_true", help="leave the per-grasp results out of the JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def add_sim_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``sim`` (with actions ``validate`` and ``execute``) on an argparse sub-parsers object."""
    s: argparse.ArgumentParser = sub.add_parser(
        "sim", help="validate or execute grasps in simulation (MuJoCo)",
        description="Physics checks of a grasp file: six-direction disturbance validation or table-top execution.",
    )
    actions = s.add_subparsers(dest="sim_action", required=True)
    v = actions.add_parser("validate", help="six-direction disturbance test of every grasp")
    _add_common(v)
    v.set_defaults(fn=_cmd_sim)
    e = actions.add_parser("execute", help="pick each grasp up from a table with a policy, optionally rendered")
    _add_common(e)
    e.add_argument("--render-dir", help="render keyframes and write them here as PNG files")
    e.add_argument("--seed", type=int, default=0, help="grasp i runs with seed S + i")
    e.add_argument("--policy", default="scripted", help="execution policy (default: scripted)")
    e.add_argument("--gif", action="store_true", help="also write an animated GIF of each rollout (needs --render-dir)")
    e.set_defaults(fn=_cmd_sim)
    return s


# ---------------------------------------------------------------------------------------- worker
def _cmd_worker(a: argparse.Namespace) -> int:
    """``dexgrasp worker``: exit 0 after a clean stop (SIGTERM/SIGINT), 2 for bad options or a backend
    that cannot start (e.g. Isaac Gym not installed), 1 for anything unexpected."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    from .jobs import QueueUnavailable
    from .worker import Worker, WorkerConfig, setup_logging

    setup_logging(a.log_level)
    url = a.redis or os.environ.get("REDIS_URL")
    if not url:
        print("dexgrasp worker: error: no Redis: give --redis redis://HOST:PORT/DB or set REDIS_URL", file=sys.stderr)
        return 2
    try:
        cfg = WorkerConfig.from_args(a).check()
        worker = Worker(url, cfg)
    except ValueError as exc:
        print(f"dexgrasp worker: error: {exc}", file=sys.stderr)
        return 2
    try:
        worker.start()
    except (RuntimeError, NotImplementedError, ImportError, OSError) as exc:
        worker.close()
        print(f"dexgrasp worker: error: the {a.backend!r} backend could not start: {exc}", file=sys.stderr)
        return 2
    try:
        return worker.run()
    except QueueUnavailable as exc:  # pragma: no cover - run() retries; only shutdown paths raise
        print(f"dexgrasp worker: error: {exc}", file=sys.stderr)
        return 1
    finally:
        worker.close()


def add_worker_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``worker`` (the rollout-queue consumer) on an argparse sub-parsers object."""
    from .backends import available_backends
    from .worker.config import WorkerConfig

    w: argparse.ArgumentParser = sub.add_parser(
        "worker", help="consume rollout jobs from Redis (long-lived; SIGTERM finishes or releases its jobs)",
        description="A simulation worker: pulls up to --batch jobs at a time from the Redis job streams, runs "
                    "them on --procs simulator processes, writes progress, results and keyframes. "
                    "Logs are JSON lines on stderr. See docs/jobs.md.",
    )
    w.add_argument("--redis", default=None, help="Redis URL, e.g. redis://localhost:6379/0 (default: $REDIS_URL)")
    WorkerConfig.add_arguments(w, choices={"backend": available_backends()})
    w.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    w.set_defaults(fn=_cmd_worker)
    return w


def add_commands(sub: Any) -> None:
    """Register the simulation verbs (``sim``, ``worker``) on an argparse sub-parsers object."""
    add_sim_parser(sub)
    add_worker_parser(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry: ``python -m sim_worker.cli sim validate ...`` (the leading ``sim`` is optional)
    or ``python -m sim_worker.cli worker --redis URL``."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] in ("validate", "execute"):
        args_in.insert(0, "sim")
    p = argparse.ArgumentParser(prog="dexgrasp", description="Dexterous grasp simulation tools")
    sub = p.add_subparsers(dest="cmd", required=True)
    add_commands(sub)
    a = p.parse_args(args_in)
    return int(a.fn(a))


if __name__ == "__main__":
    raise SystemExit(main())
