"""Evaluate a grasp file against an object: every quality and diversity metric as a dict.

The object may be a catalogue id (``prim/box/0003``), a mesh file (.obj/.stl/.ply
with faces/.off/.glb) or a point cloud (.ply without faces, .npy of shape (N,3)
or (N,6) with normals). Meshes are sampled densely; clouds without normals get
them estimated (outward orientation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.geometry import ObjectCloud
from ..grasp import GraspSet, grasps_to_tensors
from ..hands import get_hand
from ..physics.diversity import diversity
from ..physics.quality import grasp_quality, summarize

MESH_SUFFIXES = {".obj", ".stl", ".off", ".glb", ".gltf"}


@dataclass(frozen=True)
class LoadedObject:
    surface: ObjectCloud
    source: str
    mesh: Any | None  # trimesh.Trimesh when the object came from a mesh


def load_object(spec: str, n_points: int = 20000, seed: int = 0) -> LoadedObject:
    """Resolve an object id or file into a dense surface (float64 points + outward normals)."""
    from .. import objects

    path = Path(spec)
    mesh = None
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".npy":
            pts, nrm = objects.read_points_npy(path)
        elif suffix == ".ply" and not objects.ply_has_faces(path):
            pts, nrm = objects.read_ply(path)
        elif suffix in MESH_SUFFIXES | {".ply"}:
            import trimesh

            loaded = trimesh.load(path, force="mesh")
            if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
                raise ValueError(f"{path}: no triangles found; give a mesh or a point cloud")
            mesh = loaded
            pts, nrm = objects.complete_cloud(mesh, n=n_points, seed=seed)
        else:
            raise ValueError(f"{path}: unsupported object file type {suffix!r}")
        source = str(path)
    else:
        try:
            mesh = objects.load_mesh(spec)
        except KeyError as exc:
            raise ValueError(f"{spec!r} is neither a file nor a known object id ({exc})") from exc
        pts, nrm = objects.complete_cloud(mesh, n=n_points, seed=seed)
        source = spec
    points = torch.as_tensor(np.asarray(pts, dtype=np.float64))
    if not torch.isfinite(points).all():
        raise ValueError("object points contain NaN or infinite values")
    if points.shape[0] < 50:
        raise ValueError(f"object has {points.shape[0]} points; at least 50 are needed")
    if nrm is None:
        from ..core.geometry import estimate_normals, voxel_downsample

        if points.shape[0] > 8000:  # normals cost N^2: estimate on a voxel-downsampled copy
            points, _ = voxel_downsample(points, 0.002)
        normals = estimate_normals(points[None])[0]
    else:
        normals = torch.as_tensor(np.asarray(nrm, dtype=np.float64))
        normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return LoadedObject(ObjectCloud(points, normals), source, mesh)


def evaluate(gs: GraspSet, obj: LoadedObject, table_z: float | None = None, per_grasp: bool = True) -> dict[str, Any]:
    hand = get_hand(gs.hand, dtype="float64")
    pos, rot, q = grasps_to_tensors(gs.grasps, dtype=torch.float64)
    table = None
    if table_z is not None:
        table = (torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), -float(table_z))
    per = grasp_quality(hand, pos, rot, q, obj.surface, table=table)
    report: dict[str, Any] = {
        "hand": gs.hand,
        "object": obj.source,
        "num_grasps": len(gs.grasps),
        "quality": summarize(per),
        "diversity": diversity(hand, pos, rot, q, obj.surface.points.mean(0)),
    }
    if per_grasp:
        report["per_grasp"] = [{k: float(v[i]) for k, v in per.items()} for i in range(len(gs.grasps))]
    return report


def evaluate_file(
    grasps_path: str,
    object_spec: str,
    table_z: float | None = None,
    n_points: int = 20000,
    per_grasp: bool = True,
) -> dict[str, Any]:
    text = Path(grasps_path).read_text()
    gs = GraspSet.model_validate_json(text)
    if not gs.grasps:
        raise ValueError(f"{grasps_path}: the file holds no grasps")
    return evaluate(gs, load_object(object_spec, n_points), table_z, per_grasp)
