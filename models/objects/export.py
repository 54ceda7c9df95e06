"""CLI-facing helpers: list catalog objects and export their point clouds as PLY files.

Owns nothing new: it composes ``catalog``, ``clouds``, ``render`` and ``ply`` into the two
calls a command line needs, returning plain JSON-able dicts.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from .camera import partial_cloud
from .catalog import SPLITS, entry, load_mesh, manifest
from .clouds import complete_cloud, place_on_table
from .ply import write_ply


def list_objects(split: str | None = None) -> list[dict[str, Any]]:
    """The default manifest (or one split of it) as dicts: id, split, family, source, params, scale."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS} or None")
    return [asdict(e) for e in manifest() if split is None or e.split == split]


def export_cloud(
    object_id: str,
    out_path: str | Path,
    kind: Literal["complete", "partial"] = "complete",
    n: int = 4096,
    seed: int = 0,
    binary: bool = True,
) -> dict[str, Any]:
    """Write one object's point cloud (points + normals) to a PLY file and describe it.

    ``complete``: ``n`` surface samples in the object frame (centred at its bounding-box
    centre). ``partial``: the object placed on the table (seeded stable pose) and seen by a
    random noisy depth camera, in the world frame (table z = 0, z up), table included;
    subsampled to ``n`` points when the view has more.
    """
    e = entry(object_id)
    mesh = load_mesh(e)
    info: dict[str, Any] = {"object_id": e.id, "split": e.split, "kind": kind, "seed": seed}
    if kind == "complete":
        points, normals_c = complete_cloud(mesh, n=n, seed=seed)
        normals: NDArray[np.float32] | None = normals_c
        info["frame"] = "object"
    elif kind == "partial":
        world, pose, table_height = place_on_table(mesh, seed=seed)
        view = partial_cloud(world, seed=seed)
        points, normals = view.points, view.normals
        if len(points) > n:
            keep = np.sort(np.random.default_rng(seed).choice(len(points), size=n, replace=False))
            points = points[keep]
            normals = None if normals is None else normals[keep]
        info.update(
            frame="world",
            object_pose=pose.tolist(),
            table_height=table_height,
            camera_pose=view.camera_pose.tolist(),
        )
    else:
        raise ValueError(f"kind must be 'complete' or 'partial', got {kind!r}")
    path = write_ply(out_path, points, normals, binary=binary)
    info.update(path=str(path), n_points=len(points))
    return info
