"""Labelled data for the grasp-success ranker (``models/learned/success.py``): the served pipeline's grasps,
their ranking features and their six-direction MuJoCo result.

Run (resumable per object; ``nice`` it on a shared machine):
``nice -n 5 .venv/bin/python bench/ranker_data.py --split train --objects 80 --out runs/ranker_data``
``nice -n 5 .venv/bin/python bench/ranker_data.py --split validation --objects 24 --out runs/ranker_data``

Per object (``pick_objects`` order of ``bench/proposer_quality.py``, skipping objects the DGTR
weights were trained on so the labels look like unseen objects): the object is placed on the table
and queried with a complete cloud (table plane given) and with one depth-camera view (the table in
view, removed by the pipeline), through ``GraspPipeline`` with ``--method`` (dgtr), refinement as
served, ``--grasps`` grasps. The features are computed in the pipeline's canonical frame on the
pipeline's own preprocessed cloud (the query is preprocessed again, deterministically, and checked
against the points the pipeline reports), i.e. exactly what the ranking stage sees. Every grasp is
simulated with the benchmark's six-direction test on the full mesh. One ``<split>/<object>.npz``
per object; at the end all of them are merged into ``<split>.npz``:

``features`` (S, F) float32, ``feature_names`` (F,), ``success`` (S,) bool, ``directions_passed``
(S,) int, ``object`` (S,) str, ``cloud`` (S,) str (complete|partial), ``query`` (S,) int (one id
per query, for top-k per query), ``rank`` (S,) the pipeline's returned order, ``quality`` /
``overall`` (S,) the pipeline's scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from tqdm import tqdm

from bench.proposer_quality import pick_objects, query_cloud, query_table
from models import objects
from models.core.geometry import ObjectCloud, Plane
from models.grasp import grasps_to_tensors
from models.hands import get_hand
from models.learned.success import feature_names, grasp_features
from models.pipeline import GraspPipeline, GraspQuery, QueryError, to_request_frame
from sim_worker.arrays import GraspArrays
from sim_worker.config import SimConfig
from sim_worker.parallel import SimPool
from sim_worker.scene import object_from_mesh

CLOUDS = ("complete", "partial")


def dgtr_training_objects() -> set[str]:
    from models.proposers.dgtr import weights_dir

    meta = json.loads((weights_dir("shadow") / "model.json").read_text())
    return set(meta.get("objects", []))


def choose_objects(split: str, n: int, exclude: set[str]) -> list[str]:
    """``n`` objects of ``split`` in the benchmark's family-interleaved order, minus ``exclude``."""
    ids = [o for o in pick_objects(split, len(objects.objects(split))) if o not in exclude]
    return ids[:n]


def object_file(folder: Path, oid: str) -> Path:
    return folder / (oid.replace("/", "__") + ".npz")


def query_records(pipeline: GraspPipeline, hand: Any, q: GraspQuery) -> tuple[list[Any], dict[str, np.ndarray]]:
    """Run ``q``; return its grasps (request frame) and, in the canonical frame, the grasps, the
    preprocessed cloud and plane the ranking stage saw, with the pipeline's scores."""
    res = pipeline.run(q)
    prep = pipeline.prepare(q)  # the cloud the ranking stage saw (completion only where the pipeline uses it)
    m = prep.to_request
    pts_req = (prep.points.double() @ m[:3, :3].T + m[:3, 3]).numpy()
    if res.object_points is None or np.abs(pts_req - res.object_points).max() > 1e-4:
        raise RuntimeError("preprocessing is not deterministic: the features would not match the served ones")
    to_canon = torch.linalg.inv(m)
    pos, rot, qj = grasps_to_tensors([to_request_frame(g, to_canon) for g in res.grasps], dtype=torch.float32)
    plane = np.full(4, np.nan, dtype=np.float32)
    if prep.plane is not None:
        plane[:3] = prep.plane.normal.numpy()
        plane[3] = float(prep.plane.offset)
    rec = {"grasp_position": pos.numpy(), "grasp_rotation": rot.numpy(), "grasp_joints": qj.numpy(),
           "points": prep.points.numpy(), "normals": prep.normals.numpy(), "plane": plane}
    for k in ("rank", "quality", "overall"):
        rec[k] = np.array([g.scores.get(k, np.nan) for g in res.grasps], dtype=np.float32)
    return res.grasps, rec


def features_of(hand: Any, rec: dict[str, np.ndarray]) -> np.ndarray:
    """Ranking features of one query's grasps from its stored canonical-frame record."""
    plane = rec["plane"]
    table = None if np.isnan(plane).any() else Plane(torch.from_numpy(plane[:3]), float(plane[3]))
    surface = ObjectCloud(torch.from_numpy(rec["points"]), torch.from_numpy(rec["normals"]))
    with torch.no_grad():
        x = grasp_features(hand, torch.from_numpy(rec["grasp_position"]), torch.from_numpy(rec["grasp_rotation"]),
                           torch.from_numpy(rec["grasp_joints"]), surface, table)
    out: np.ndarray = x.numpy().astype(np.float32)
    return out


PER_GRASP = ("rank", "quality", "overall", "grasp_position", "grasp_rotation", "grasp_joints")


def object_data(pipeline: GraspPipeline, pool: SimPool, hand: Any, oid: str, method: str, grasps: int, seed: int) -> dict[str, np.ndarray]:
    mesh = objects.load_mesh(oid)
    world, pose, table_z = objects.place_on_table(mesh, seed=0)
    to_object = torch.from_numpy(np.linalg.inv(pose))
    kinds, flat, recs = [], [], {}
    for cloud in CLOUDS:
        pts = query_cloud(cloud, world, seed)
        q = GraspQuery(points=pts, num_grasps=grasps, method=method, refine=True, seed=seed, **query_table(cloud, "given", table_z))
        try:
            gs, rec = query_records(pipeline, hand, q)
        except QueryError as e:
            tqdm.write(f"{oid} {cloud}: query failed: {e}")
            continue
        recs[cloud] = rec
        kinds += [cloud] * len(gs)
        flat += [GraspArrays.from_grasp(to_request_frame(g, to_object)) for g in gs]
    if not flat:
        return {}
    sim = pool.validate(object_from_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), source=oid), flat, diverged_fails=True)
    out = {
        "features": np.concatenate([features_of(hand, r) for r in recs.values()]),
        "success": np.array([bool(r["success"]) for r in sim]),
        "directions_passed": np.array([sum(bool(v) for v in r.get("passed", {}).values()) for r in sim], dtype=np.int8),
        "cloud": np.array(kinds),
        **{k: np.concatenate([r[k] for r in recs.values()]) for k in PER_GRASP},
    }
    for cloud, r in recs.items():  # the cloud the ranking stage saw, so features can be recomputed
        out.update({f"{k}_{cloud}": r[k] for k in ("points", "normals", "plane")})
    return out


def refeature(folder: Path, ids: list[str], hand: Any) -> None:
    """Recompute the stored features of every object file (after a feature change), no simulation."""
    for oid in tqdm(ids, desc="features", unit="obj"):
        f = object_file(folder, oid)
        if not f.is_file():
            continue
        with np.load(f, allow_pickle=False) as z:
            d = dict(z)
        if "features" not in d:
            continue
        parts = []
        for cloud in CLOUDS:
            m = d["cloud"] == cloud
            if m.any():
                rec = {k: d[k][m] for k in PER_GRASP} | {k: d[f"{k}_{cloud}"] for k in ("points", "normals", "plane")}
                parts.append(features_of(hand, rec))
        d["features"] = np.concatenate(parts)
        tmp = f.with_name(f.stem + ".tmp.npz")
        np.savez_compressed(tmp, **d)
        tmp.replace(f)


def merge(folder: Path, ids: list[str], names: list[str]) -> Path:
    """All per-object files of ``ids`` in ``folder`` as one ``<folder>.npz``; ``query`` numbers the
    (object, cloud kind) queries in file order."""
    parts: dict[str, list[np.ndarray]] = {}
    objs, query = [], []
    for oid in ids:
        f = object_file(folder, oid)
        if not f.is_file():
            continue
        with np.load(f, allow_pickle=False) as d:
            if "features" not in d:
                continue
            for k in ("features", "success", "directions_passed", "cloud", "rank", "quality", "overall"):
                parts.setdefault(k, []).append(d[k])
            objs.append(np.full(d["success"].shape[0], oid))
            query.append(np.array([CLOUDS.index(str(c)) for c in d["cloud"]]) + len(CLOUDS) * (len(objs) - 1))
    if not parts:
        raise SystemExit(f"no object data under {folder}")
    out = folder.with_suffix(".npz")
    np.savez_compressed(out, feature_names=np.array(names), object=np.concatenate(objs), query=np.concatenate(query),
                        **{k: np.concatenate(v) for k, v in parts.items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--split", default="train", choices=["train", "validation"], help="never the test split")
    ap.add_argument("--objects", type=int, default=80)
    ap.add_argument("--method", default="dgtr")
    ap.add_argument("--grasps", type=int, default=32, help="grasps per query (the pipeline proposes twice as many)")
    ap.add_argument("--seed", type=int, default=0, help="query seed of the first object (object i uses seed + i)")
    ap.add_argument("--procs", type=int, default=2, help="simulation processes")
    ap.add_argument("--out", type=Path, default=Path("runs/ranker_data"))
    ap.add_argument("--refeature", action="store_true", help="only recompute the features of the stored objects")
    ap.add_argument("--keep-dgtr-train", action="store_true", help="also use objects the DGTR weights were trained on")
    a = ap.parse_args()
    torch.set_num_threads(1)  # the simulation processes take the other core
    exclude = set() if a.keep_dgtr_train else dgtr_training_objects()
    ids = choose_objects(a.split, a.objects, exclude)
    folder = a.out / a.split
    folder.mkdir(parents=True, exist_ok=True)
    hand = get_hand("shadow", dtype="float32")
    names = feature_names(hand)
    if a.refeature:
        refeature(folder, ids, hand)
        print(f"wrote {merge(folder, ids, names)}")
        return
    pipeline = GraspPipeline()
    pipeline.proposer(pipeline.resolve_method(a.method), "shadow")
    todo = [(i, o) for i, o in enumerate(ids) if not object_file(folder, o).is_file()]
    t0 = time.perf_counter()
    with SimPool("mujoco", procs=a.procs, cfg=SimConfig()) as pool:
        bar = tqdm(todo, desc=f"ranker data ({a.split})", unit="obj")
        ok = n = 0
        for i, oid in bar:
            d = object_data(pipeline, pool, hand, oid, a.method, a.grasps, a.seed + i)
            dest = object_file(folder, oid)
            tmp = dest.with_name(dest.stem + ".tmp.npz")
            np.savez_compressed(tmp, **d) if d else np.savez_compressed(tmp, error=np.array("no grasps"))
            tmp.replace(dest)
            if d:
                ok += int(d["success"].sum())
                n += int(d["success"].size)
            bar.set_postfix(success=f"{ok / max(1, n):.2f}", grasps=n)
    out = merge(folder, ids, names)
    with np.load(out, allow_pickle=False) as d:
        s = d["success"]
        print(f"{a.split}: {len(set(d['object'].tolist()))} objects, {s.size} grasps, {s.mean():.3f} succeed; "
              f"{time.perf_counter() - t0:.0f} s this run; wrote {out}")


if __name__ == "__main__":
    main()
