"""Uploaded object specs (``sim_worker.jobs`` records) turned into the simulator's objects."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

from ..jobs import MeshObject, PointsObject, PrimitiveObject


def sim_object_from_spec(spec: MeshObject | PrimitiveObject | PointsObject, source: str = "") -> Any:
    """Build the simulator's :class:`~sim_worker.scene.SimObject` from an uploaded object spec
    (raises ``ValueError`` naming what is wrong with it). The service may call it to check uploads."""
    from ..scene import object_from_mesh, object_from_points, object_from_primitive

    if isinstance(spec, PrimitiveObject):
        obj = object_from_primitive(spec.shape, tuple(spec.size))
    elif isinstance(spec, PointsObject):
        obj = object_from_points(spec.array().astype("float64"), source=source or "points")
    else:
        import numpy as np

        mesh = _load_mesh(spec)
        obj = object_from_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), source=source or "mesh")
    if spec.mass_kg is not None:
        obj = dataclasses.replace(obj, mass_kg=spec.mass_kg)
    return obj


def mesh_face_count(spec: MeshObject) -> int:
    """Triangles in an uploaded mesh (raises ``ValueError`` when it cannot be read): what simulation
    time and memory grow with, so the service refuses meshes beyond its limit before enqueueing."""
    return len(_load_mesh(spec).faces)


def _load_mesh(spec: MeshObject) -> Any:
    import trimesh

    try:
        mesh = trimesh.load(io.BytesIO(spec.data), file_type=spec.format, force="mesh")
    except Exception as exc:
        raise ValueError(f"cannot read the {spec.format} mesh: {type(exc).__name__}: {exc}") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"the {spec.format} data holds no triangles; upload a mesh or a point cloud")
    return mesh


__all__ = ["mesh_face_count", "sim_object_from_spec"]
