"""Scanned-style meshes from the installed ``pybullet_data`` package (read at run time, never copied).

Owns: where the meshes are (the 1000 procedurally generated ``random_urdfs/NNN/NNN.obj``
blobs plus a few named models), loading them into clean ``trimesh.Trimesh`` objects (vertices
that only differ by texture coordinates or normals are merged, so most of them close up), and
their native extents (read straight from the OBJ vertex lines, fast enough to size 1000 objects
when the manifest is built). Rescaling to 6-15 cm happens in ``catalog``.

``random_urdfs/168`` has only NaN vertices in pybullet 3.2.x and is skipped; any other OBJ
whose vertices are not finite is skipped the same way.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from numpy.typing import NDArray

N_RANDOM = 1000

# name -> path inside pybullet_data. Each loads and is non-degenerate; "mug", "lego" and
# "toy_cube" are not closed (volume from the convex hull).
NAMED: dict[str, str] = {
    "duck": "duck.obj",
    "teddy": "teddy2_VHACD_CHs.obj",
    "bunny": "bunny.obj",
    "soccerball": "soccerball.obj",
    "torus": "torus/torus_textured.obj",
    "mug": "objects/mug.obj",
    "lego": "lego/lego.obj",
    "domino": "domino/domino.obj",
    "toy_cylinder": "toys/cylinder.obj",
    "toy_prism": "toys/prism.obj",
    "toy_cube": "toys/cube.obj",
    "concave_box": "toys/concave_box.obj",
    "shape_sorter": "toys/shape_sorter.obj",
}


@functools.cache
def data_path() -> Path:
    """Root of the installed ``pybullet_data`` package."""
    try:
        import pybullet_data
    except ImportError as exc:  # pragma: no cover - pybullet is a core dependency
        raise RuntimeError(
            "the pybullet object set needs the 'pybullet' package (pip install pybullet)"
        ) from exc
    return Path(pybullet_data.getDataPath())


def random_path(index: int) -> str:
    """Relative path of the ``index``-th random_urdfs mesh."""
    return f"random_urdfs/{index:03d}/{index:03d}.obj"


@functools.lru_cache(maxsize=2048)
def native_extent(relpath: str) -> float | None:
    """Largest bounding-box extent of an OBJ in its own units; None if missing or not finite."""
    path = data_path() / relpath
    if not path.is_file():
        return None
    rows = [ln.split()[1:4] for ln in path.read_bytes().splitlines() if ln.startswith(b"v ")]
    if not rows:
        return None
    try:
        v = np.asarray(rows, dtype=np.float64)
    except ValueError:
        return None
    if v.shape[1] != 3 or not np.isfinite(v).all():
        return None
    ext = float((v.max(axis=0) - v.min(axis=0)).max())
    return ext if ext > 0 else None


def load(relpath: str) -> trimesh.Trimesh:
    """Load one OBJ from pybullet_data as a single clean mesh (in its native units)."""
    path = data_path() / relpath
    loaded = trimesh.load(str(path), force="mesh", process=False)
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise ValueError(f"pybullet_data/{relpath}: no triangles")
    verts: NDArray[np.float64] = np.asarray(loaded.vertices, dtype=np.float64)
    if not np.isfinite(verts).all():
        raise ValueError(f"pybullet_data/{relpath}: non-finite vertices")
    mesh = trimesh.Trimesh(verts, np.asarray(loaded.faces), process=True)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.remove_unreferenced_vertices()
    if mesh.is_watertight:
        repair: Any = trimesh.repair  # untyped module
        repair.fix_normals(mesh, multibody=True)
    return mesh
