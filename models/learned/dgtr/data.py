"""Training views for DGTR, made by the same preprocessing the service runs on a request.

For every dataset scene (object, resting pose, simulation-validated grasps in the object frame)
we render what a robot would send: one complete cloud with the table given as a plane, and
``partial_views`` single-view depth-camera clouds with the table in view (random camera, sensor
noise) that go through RANSAC table removal. Each view passes through
``models.pipeline.preprocess`` (outliers, canonical frame, FPS to 1024 points, normals), so the
network trains on exactly the distribution it serves. Ground-truth grasps are moved into each
view's canonical frame. Views are cached per scene as ``.npz`` (written atomically, skipped when
present: a killed build resumes); nothing in the cache is committed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ...tools.synth import load_dataset, shard_name
from .model import fixed_size


@dataclass(frozen=True)
class ViewConfig:
    partial_views: int = 4
    complete_points: int = 4096
    seed: int = 0


def _pose_matrix(pos: np.ndarray, quat_wxyz: np.ndarray) -> np.ndarray:
    from ...core.rotations import quat_to_matrix

    m = np.tile(np.eye(4), (len(pos), 1, 1))
    m[:, :3, :3] = quat_to_matrix(torch.tensor(quat_wxyz, dtype=torch.float64)).numpy()
    m[:, :3, 3] = pos
    return m


def scene_views(scene: dict[str, np.ndarray], cfg: ViewConfig, index: int) -> dict[str, np.ndarray]:
    """Every view of one scene: points/normals (V, 1024, 3), table z (V,), GT grasps (V, G, ...)."""
    from ... import objects
    from ...pipeline import GraspQuery, PipelineConfig, preprocess

    mesh = objects.load_mesh(str(scene["object_id"]))
    rest = scene["rest_pose"]
    world = mesh.copy()
    world.apply_transform(rest)
    palm_obj = _pose_matrix(scene["palm_position"].astype(np.float64), scene["palm_quaternion_wxyz"].astype(np.float64))
    palm_world = rest[None] @ palm_obj
    pcfg = PipelineConfig()
    queries = []
    p, n = objects.complete_cloud(world, n=cfg.complete_points, seed=cfg.seed + index)
    queries.append(GraspQuery(points=p, normals=n, table=((0.0, 0.0, 1.0), 0.0), seed=index))
    for v in range(cfg.partial_views):
        view = objects.partial_cloud(world, seed=cfg.seed * 100_003 + index * 101 + v, with_normals=False)
        queries.append(GraspQuery(points=view.points.astype(np.float64), seed=index * 101 + v))
    pts, nrm, table_z, trans, rot, kinds = [], [], [], [], [], []
    for k, q in enumerate(queries):
        try:
            prep = preprocess(q, pcfg)
        except ValueError:
            continue  # a view that shows too little of the object
        prep_pts, prep_nrm = fixed_size(prep.points.numpy(), prep.normals.numpy(), pcfg.model_points, seed=index + k)
        to_req = prep.to_request.numpy()
        canon = np.linalg.inv(to_req)[None] @ palm_world
        pts.append(prep_pts)
        nrm.append(prep_nrm)
        if prep.plane is None:
            table_z.append(np.nan)
        else:
            nz = float(prep.plane.normal[2])
            table_z.append(-float(prep.plane.offset) / max(nz, 1e-3))
        trans.append(canon[:, :3, 3])
        rot.append(canon[:, :3, :3])
        kinds.append(0 if k == 0 else 1)
    return {
        "object_id": scene["object_id"],
        "points": np.array(pts, dtype=np.float32).reshape(-1, pcfg.model_points, 3),
        "normals": np.array(nrm, dtype=np.float32).reshape(-1, pcfg.model_points, 3),
        "table_z": np.array(table_z, dtype=np.float32),
        "partial": np.array(kinds, dtype=np.int8),
        "translation": np.array(trans, dtype=np.float32).reshape(len(pts), -1, 3),
        "rotation": np.array(rot, dtype=np.float32).reshape(len(pts), -1, 3, 3),
        "joints": scene["joints"].astype(np.float32),
    }


def _scene_key(scene: dict[str, np.ndarray]) -> tuple[str, int]:
    """A file-name-safe key and a stable seed per (object, resting pose)."""
    import hashlib

    h = hashlib.sha1(str(scene["object_id"]).encode() + np.asarray(scene["rest_pose"], dtype=np.float64).tobytes())
    digest = h.hexdigest()[:8]
    return shard_name(str(scene["object_id"]), 0).replace("__p0.npz", "") + "_" + digest, int(digest, 16) % 1_000_000


def _write_views(scene: dict[str, np.ndarray], cfg: ViewConfig, seed: int, f: Path) -> bool:
    """Render one scene's views into ``f`` (atomically); False when no view shows enough of the object."""
    arrays = scene_views(scene, cfg, seed)
    if len(arrays["points"]) == 0:
        return False
    tmp = f.with_name(f.name.replace(".npz", ".tmp.npz"))
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, f)
    return True


def _write_views_job(job: tuple[dict[str, np.ndarray], ViewConfig, int, Path]) -> tuple[Path, bool]:
    import torch

    torch.set_num_threads(1)  # one scene per process: the processes share the cores
    return job[3], _write_views(*job)


def build_views(data_dir: str | Path, cache_dir: str | Path, cfg: ViewConfig, progress: bool = True,
                procs: int = 1) -> list[Path]:
    """Render and preprocess every scene's views into ``cache_dir`` (resumable: scenes already there are
    kept), in ``procs`` processes; returns the files in scene order."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    scenes = [s for s in load_dataset(data_dir) if "joints" in s and len(s["joints"]) > 0]
    jobs = []
    for s in scenes:
        key, seed = _scene_key(s)
        jobs.append((s, cfg, seed, cache / f"{key}.npz"))
    todo = [j for j in jobs if not j[3].exists()]
    empty: set[Path] = set()
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="views", unit="scene", disable=not progress)
    if procs <= 1:
        for job in todo:
            if not _write_views(*job):
                empty.add(job[3])
            bar.update()
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(procs) as pool:
            for f, ok in pool.imap_unordered(_write_views_job, todo):
                if not ok:
                    empty.add(f)
                bar.update()
    bar.close()
    return [j[3] for j in jobs if j[3] not in empty and j[3].exists()]


__all__ = ["ViewConfig", "build_views", "scene_views"]
