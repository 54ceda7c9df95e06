"""Quality of any registered proposer through the real pipeline (``GraspPipeline.run``): raw vs
refined output, on complete vs single-view partial clouds.

Run: ``.venv/bin/python bench/proposer_quality.py [--method auto|fast|optimize|dgtr|...]
[--cloud complete|partial|both] [--refine no|yes|both] [--split test] [--objects 10] [--grasps 16]
[--procs 2] [--complete-table given|detect|none] [--out FILE]``.

Per object (one per family in turn): the mesh is placed on the table (world frame, table z = 0,
up +z); the query cloud is either a complete cloud of the placed object (no table points; by
default the query carries the known table plane, ``--complete-table``) or one depth-camera view with
the table in view (the pipeline's RANSAC removes it). Normals are never sent; the pipeline
estimates them. Each object's query runs once with ``refine=False`` and once with
``refine=True`` (same seed), so raw and refined are directly comparable. The returned grasps (world
frame) are mapped back to the object frame and measured against the full mesh: Q1 / eta_np / max
penetration on a dense complete cloud with the table plane, delta_t, and the six-direction MuJoCo
test over all grasps and over the top 4 by the pipeline's rank. Latency is the wall time of
``run`` per query after one warm-up query. Prints per-object rows and a side-by-side table;
``--out`` writes everything as JSON with the hardware and the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from tqdm import tqdm

from bench.foundation import hardware
from models import objects
from models.core.geometry import ObjectCloud, Plane
from models.grasp import Grasp, grasps_to_tensors
from models.hands import get_hand
from models.physics.diversity import diversity
from models.physics.quality import grasp_quality, summarize
from models.pipeline import GraspPipeline, GraspQuery, QueryError, to_request_frame
from models.proposers import available_proposers
from sim_worker.arrays import GraspArrays
from sim_worker.config import SimConfig
from sim_worker.parallel import SimPool
from sim_worker.scene import object_from_mesh

QUERY_POINTS = 4096  # points of the complete query cloud
DENSE_POINTS = 20_000  # points of the evaluation cloud (object frame, full mesh)
TOP_K = 4
METRICS = ("sim_success", "sim_success_top4", "eta_np", "eta_tb", "mean_q1", "delta_t",
           "max_penetration_mm", "table_penetration_mm", "frame_check_mm")


def pick_objects(split: str, n: int) -> list[str]:
    """The first ``n`` objects of ``split``, one per family in turn (families sorted by name)."""
    by_family: dict[str, list[str]] = {}
    for e in objects.objects(split):
        by_family.setdefault(e.family, []).append(e.id)
    out: list[str] = []
    while len(out) < n and any(by_family.values()):
        for fam in sorted(by_family):
            if by_family[fam] and len(out) < n:
                out.append(by_family[fam].pop(0))
    return out


def query_cloud(kind: str, world_mesh: Any, seed: int) -> np.ndarray:
    """World-frame query points: the complete object (no table) or one view with the table."""
    if kind == "complete":
        pts, _ = objects.complete_cloud(world_mesh, n=QUERY_POINTS, seed=seed)
        return np.asarray(pts, dtype=np.float32)
    view = objects.partial_cloud(world_mesh, seed=seed, with_normals=False)
    return np.asarray(view.points, dtype=np.float32)


def query_table(cloud: str, complete_table: str, table_z: float) -> dict[str, Any]:
    """GraspQuery table options: partial views carry the table (the pipeline detects it); a
    complete cloud has none, so its plane is given, detected (may cut the object) or not used."""
    if cloud == "partial" or complete_table == "detect":
        return {}
    if complete_table == "given":
        return {"table": ((0.0, 0.0, 1.0), -table_z)}
    return {"remove_table": False}


def frame_check_mm(points_request: np.ndarray, to_object: torch.Tensor, surface: ObjectCloud) -> float:
    """Median distance (mm) from the pipeline's object points, mapped to the object frame with the
    same transform as the grasps, to the dense mesh cloud: about 1 mm when the mapping is right."""
    p = torch.from_numpy(points_request).double() @ to_object[:3, :3].T + to_object[:3, 3]
    d = torch.cdist(p, surface.points.double()).min(dim=1).values
    return round(float(d.median()) * 1e3, 2)


def percentile_ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def evaluate(hand: Any, grasps: list[Grasp], surface: ObjectCloud, table: Plane,
             sim: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics of one returned set (object frame) given its simulation results (same order)."""
    pos, rot, q = grasps_to_tensors(grasps, dtype=torch.float64)
    per = grasp_quality(hand, pos, rot, q, surface, table)
    summ = summarize(per)
    div = diversity(hand, pos, rot, q, surface.points.mean(0))
    ok = [bool(r["success"]) for r in sim]
    top = [o for o, g in zip(ok, grasps) if g.scores.get("rank", float("inf")) < TOP_K]
    return {
        "n_grasps": len(grasps),
        "sim_success": float(np.mean(ok)),
        "sim_success_top4": float(np.mean(top)) if top else 0.0,
        "sim_ok": int(sum(ok)),
        "eta_np": summ["eta_np"],
        "eta_tb": summ["eta_tb"],
        "mean_q1": summ["mean_q1"],
        "delta_t": div["delta_t"],
        "max_penetration_mm": summ["mean_max_penetration_cm"] * 10.0,
        "table_penetration_mm": summ["mean_table_penetration_cm"] * 10.0,
    }


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in rows if "error" not in r]
    out: dict[str, Any] = {"objects": len(good), "failed_queries": len(rows) - len(good)}
    for k in METRICS:
        vals = [r[k] for r in good if k in r]
        out[k] = round(float(np.mean(vals)), 4) if vals else None
    lat = [r["latency_ms"] for r in good]
    out["latency_p50_ms"] = percentile_ms(lat, 50)
    out["latency_p99_ms"] = percentile_ms(lat, 99)
    for stage in ("propose_ms", "refine_ms"):
        out[f"{stage[:-3]}_p50_ms"] = percentile_ms([r["timings_ms"][stage] for r in good], 50)
    return out


def side_by_side(summary: dict[str, dict[str, Any]]) -> str:
    cols = list(summary)
    rows = [("sim success %", "sim_success", 100.0), ("sim top-4 %", "sim_success_top4", 100.0),
            ("eta_np %", "eta_np", 100.0), ("eta_tb %", "eta_tb", 100.0), ("mean Q1", "mean_q1", 1.0),
            ("delta_t %", "delta_t", 100.0), ("max pen. mm", "max_penetration_mm", 1.0),
            ("table pen. mm", "table_penetration_mm", 1.0), ("frame check mm", "frame_check_mm", 1.0),
            ("latency p50 ms", "latency_p50_ms", 1.0),
            ("latency p99 ms", "latency_p99_ms", 1.0), ("objects", "objects", 1.0),
            ("failed queries", "failed_queries", 1.0)]
    width = max(16, *(len(c) + 2 for c in cols))
    lines = [f"{'':16}" + "".join(f"{c:>{width}}" for c in cols)]
    for label, key, scale in rows:
        cells = []
        for c in cols:
            v = summary[c].get(key)
            cells.append(f"{'-':>{width}}" if v is None else f"{v * scale:>{width}.{4 if key == 'mean_q1' else 1}f}")
        lines.append(f"{label:16}" + "".join(cells))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--method", default="auto", help="a registered proposer name, or auto")
    ap.add_argument("--cloud", choices=["complete", "partial", "both"], default="both")
    ap.add_argument("--refine", choices=["no", "yes", "both"], default="both")
    ap.add_argument("--complete-table", choices=["given", "detect", "none"], default="given",
                    help="complete clouds hold no table: send its plane with the query (given), let the "
                         "pipeline's RANSAC look for one (detect) or send none and skip removal (none)")
    ap.add_argument("--split", default="test", choices=["train", "validation", "test"])
    ap.add_argument("--objects", type=int, default=10)
    ap.add_argument("--grasps", type=int, default=16)
    ap.add_argument("--procs", type=int, default=2, help="simulation processes")
    ap.add_argument("--seed", type=int, default=0, help="seed of the queries, the query clouds and the camera view")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up queries before measuring")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--refine-set", action="append", default=[], metavar="KEY=VALUE",
                    help="RefineConfig override, e.g. --refine-set steps=40 (repeatable)")
    ap.add_argument("--completion", choices=["auto", "mirror", "off"], default="auto",
                    help="the query's mirror completion of single views (the service default is auto)")
    ap.add_argument("--per-grasp", action="store_true", help="also store each grasp's scores and simulation result")
    ap.add_argument("--weights", default=None, help="dgtr: a weights folder other than the shipped one")
    a = ap.parse_args()
    if a.method != "auto" and a.method not in available_proposers():
        ap.error(f"unknown method {a.method!r}; available: auto, {', '.join(available_proposers())}")
    clouds = ["complete", "partial"] if a.cloud == "both" else [a.cloud]
    refines = {"no": [False], "yes": [True], "both": [False, True]}[a.refine]
    combos = [(c, r) for c in clouds for r in refines]

    def label(cloud: str, refine: bool) -> str:
        return f"{cloud}/{'refined' if refine else 'raw'}"

    from dataclasses import fields, replace

    from models.pipeline import PipelineConfig
    from models.stages.refine import RefineConfig

    kinds = {f.name: type(getattr(RefineConfig(), f.name)) for f in fields(RefineConfig)}
    overrides = {k: kinds[k](v) for k, v in (item.split("=", 1) for item in a.refine_set)}
    pipeline = GraspPipeline(PipelineConfig(refine=replace(RefineConfig(), **overrides)))
    if a.weights is not None:
        from models.proposers.dgtr import DGTRProposer

        pipeline._proposers[("dgtr", "shadow")] = DGTRProposer(weights=a.weights)
    method = pipeline.resolve_method(a.method)
    try:
        pipeline.proposer(method, "shadow")  # created once, outside the timed queries
    except ValueError as e:  # e.g. a learned proposer without weights: its message says what to do
        ap.error(f"method {method!r} cannot be created: {e}")
    hand = get_hand("shadow", dtype="float64")
    ids = pick_objects(a.split, a.objects)
    if not ids:
        ap.error(f"no objects in split {a.split!r}")
    rows: dict[str, list[dict[str, Any]]] = {label(c, r): [] for c, r in combos}
    proposer_version = ""
    warmed = False
    t_start = time.perf_counter()
    with SimPool("mujoco", procs=a.procs, cfg=SimConfig()) as pool:
        bar = tqdm(ids, desc=f"{method} on {a.split}", unit="obj")
        for oid in bar:
            mesh = objects.load_mesh(oid)
            world, pose, table_z = objects.place_on_table(mesh, seed=0)
            to_object = torch.from_numpy(np.linalg.inv(pose))
            dense_p, dense_n = objects.complete_cloud(mesh, n=DENSE_POINTS, seed=a.seed + 1)
            surface = ObjectCloud(torch.tensor(dense_p, dtype=torch.float64), torch.tensor(dense_n, dtype=torch.float64))
            # the world table n.x + d = 0 (n = +z, d = -table_z) in the object frame: x_w = R x_o + t
            up_w = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
            rot_w = torch.from_numpy(pose[:3, :3])
            table = Plane(rot_w.T @ up_w, float(pose[2, 3]) - table_z)
            pending: list[tuple[str, dict[str, Any], list[Grasp]]] = []
            for cloud in clouds:
                pts = query_cloud(cloud, world, a.seed)
                for refine in refines:
                    q = GraspQuery(points=pts, num_grasps=a.grasps, method=a.method, refine=refine, seed=a.seed,
                                   completion=a.completion, **query_table(cloud, a.complete_table, table_z))
                    if not warmed:  # every stage once (refine included) before anything is timed
                        warmed = True
                        for _ in range(a.warmup):
                            try:
                                pipeline.run(dataclasses.replace(q, refine=True))
                            except QueryError:
                                break
                    row: dict[str, Any] = {"object": oid, "points_in": int(pts.shape[0])}
                    t0 = time.perf_counter()
                    try:
                        res = pipeline.run(q)
                    except QueryError as e:
                        row["error"] = str(e)
                        rows[label(cloud, refine)].append(row)
                        continue
                    row["latency_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
                    row["timings_ms"] = {k: round(v, 1) for k, v in res.timings_ms.items()}
                    row["points_used"] = res.points_used
                    row["warnings"] = res.warnings
                    proposer_version = res.proposer_version
                    in_object = [to_request_frame(g, to_object) for g in res.grasps]
                    if res.object_points is not None:
                        row["frame_check_mm"] = frame_check_mm(res.object_points, to_object, surface)
                    pending.append((label(cloud, refine), row, in_object))
            # one simulation call per object keeps every worker busy
            flat = [GraspArrays.from_grasp(g) for _, _, gs in pending for g in gs]
            sim = pool.validate(object_from_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), source=oid), flat, diverged_fails=True) if flat else []
            at = 0
            for key, row, gs in pending:
                row.update(evaluate(hand, gs, surface, table, sim[at:at + len(gs)]))
                if a.per_grasp:  # each grasp's scores beside its simulation result (ranking studies)
                    row["per_grasp"] = [{"success": bool(r["success"]), **g.scores} for g, r in zip(gs, sim[at:at + len(gs)])]
                at += len(gs)
                rows[key].append(row)
            bar.set_postfix({k: f"{np.mean([r['sim_success'] for r in v if 'error' not in r] or [0]):.2f}" for k, v in rows.items()})
    wall_s = time.perf_counter() - t_start

    summary = {k: aggregate(v) for k, v in rows.items()}
    out = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "hardware": hardware(),
        "protocol": SimConfig().validation.protocol,  # the simulation test every success figure here is under
        "method": a.method,
        "resolved_method": method,
        "proposer_version": proposer_version,
        "split": a.split,
        "object_ids": ids,
        "grasps_per_query": a.grasps,
        "seed": a.seed,
        "complete_table": a.complete_table,
        "complete_query_points": QUERY_POINTS,
        "evaluation_points": DENSE_POINTS,
        "wall_s": round(wall_s, 1),
        "note": "latency is CPU wall time of GraspPipeline.run on this machine" if not torch.cuda.is_available() else "",
        "summary": summary,
        "per_object": rows,
    }
    print(f"\nper object ({method}, {a.split}):")
    print(f"{'object':28}{'cloud/refine':>20}{'sim':>7}{'top4':>7}{'eta_np':>8}{'Q1':>8}{'pen mm':>8}{'dt':>6}{'ms':>9}{'frame mm':>10}")
    for key, rs in rows.items():
        for r in rs:
            if "error" in r:
                print(f"{r['object']:28}{key:>20}  query failed: {r['error']}")
                continue
            print(f"{r['object']:28}{key:>20}{r['sim_success']:>7.2f}{r['sim_success_top4']:>7.2f}{r['eta_np']:>8.2f}"
                  f"{r['mean_q1']:>8.4f}{r['max_penetration_mm']:>8.1f}{r['delta_t']:>6.2f}{r['latency_ms']:>9.0f}"
                  f"{r.get('frame_check_mm', float('nan')):>10.2f}")
    print(f"\n{method} on {len(ids)} {a.split} objects, {a.grasps} grasps per query, wall {wall_s:.0f} s "
          f"({'GPU' if torch.cuda.is_available() else 'CPU'}):")
    print(side_by_side(summary))
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
