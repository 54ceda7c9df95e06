"""Mesh helpers the object sets need and trimesh only offers through optional extras.

Owns: the generalized winding number (inside/outside tests without ``rtree``/``embree``,
which are not installed), finding which surface samples of a multi-part mesh are hidden
inside another part, and mass properties with a recorded method (the mesh when it is closed,
its convex hull otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import trimesh
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

# Pairs (point, triangle) evaluated per numpy chunk in the winding number; bounds memory.
_CHUNK_PAIRS = 1_000_000


def winding_number(points: NDArray[np.floating], triangles: NDArray[np.floating]) -> FloatArray:
    """Generalized winding number of ``points`` (P,3) w.r.t. ``triangles`` (F,3,3).

    About 1 inside a closed, outward-oriented surface, 0 outside, 0.5 on it
    (Jacobson et al. 2013; solid angles by Van Oosterom & Strackee 1983).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    tri = np.asarray(triangles, dtype=np.float64).reshape(-1, 3, 3)
    out = np.zeros(len(pts))
    if len(pts) == 0 or len(tri) == 0:
        return out
    step = max(1, _CHUNK_PAIRS // len(tri))
    for s in range(0, len(pts), step):
        p = pts[s : s + step, None, None, :]
        v = tri[None, :, :, :] - p  # (p, F, 3, 3)
        a, b, c = v[:, :, 0], v[:, :, 1], v[:, :, 2]
        la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
        det = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
        den = (
            la * lb * lc
            + np.einsum("pfi,pfi->pf", a, b) * lc
            + np.einsum("pfi,pfi->pf", b, c) * la
            + np.einsum("pfi,pfi->pf", c, a) * lb
        )
        out[s : s + step] = np.arctan2(det, den).sum(axis=1) / (2.0 * np.pi)
    return out


def face_components(mesh: trimesh.Trimesh) -> NDArray[np.int64]:
    """Label (F,) of the connected part each face belongs to (parts share no edge)."""
    graph: Any = trimesh.graph  # untyped module
    labels = graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    return np.asarray(labels, dtype=np.int64)


def inside_other_parts(
    mesh: trimesh.Trimesh,
    points: NDArray[np.floating],
    point_faces: NDArray[np.integer],
    offset: float = 1e-5,
) -> NDArray[np.bool_]:
    """True where a surface point (on face ``point_faces``) is hidden by another closed part.

    Composite and convex-decomposed meshes are unions of overlapping (or face-to-face touching)
    closed parts; a sample is on the object's outer surface only if the spot ``offset`` metres
    outside it, along its face normal, is outside every other part. Testing that spot rather
    than the sample itself also catches faces shared between touching parts (where the
    sample's own winding number is ambiguous). Single-part meshes return all False at no cost.
    """
    faces_idx = np.asarray(point_faces)
    normals = np.asarray(mesh.face_normals, dtype=np.float64)[faces_idx]
    pts = np.asarray(points, dtype=np.float64) + offset * normals
    hidden = np.zeros(len(pts), dtype=bool)
    labels = face_components(mesh)
    if labels.max(initial=0) == 0:
        return hidden
    point_labels = labels[faces_idx]
    for lab in np.unique(labels):
        faces = np.nonzero(labels == lab)[0]
        part = cast(trimesh.Trimesh, mesh.submesh([faces], append=True, repair=False))
        if not part.is_watertight:
            continue  # an open patch encloses nothing
        lo, hi = part.bounds
        cand = np.nonzero(
            (point_labels != lab) & ~hidden & np.all((pts >= lo - 1e-9) & (pts <= hi + 1e-9), axis=1)
        )[0]
        if len(cand) == 0:
            continue
        w = winding_number(pts[cand], part.triangles)
        hidden[cand[np.abs(w) > 0.5]] = True
    return hidden


@dataclass(frozen=True)
class MassProperties:
    """Rigid-body properties in the mesh frame. ``method`` records how they were obtained."""

    volume: float  # m^3
    mass: float  # kg
    center_mass: FloatArray  # (3,)
    inertia: FloatArray  # (3,3) about center_mass, kg m^2
    method: Literal["mesh", "convex_hull"]
    watertight: bool
    n_parts: int


def mass_properties(mesh: trimesh.Trimesh, density: float = 500.0) -> MassProperties:
    """Volume, mass, centre of mass and inertia of ``mesh`` at ``density`` (kg/m^3).

    A closed, consistently outward-oriented mesh (``mesh.is_volume``) is integrated exactly
    (``method="mesh"``). When it is a union of several closed parts (composites, convex
    decompositions) the parts' overlaps count twice: measured on a voxel grid, that is about
    2-3 % for the mugs and under 1 % for the hammers and the pybullet random objects.
    Anything not closed falls back to its convex hull (``"convex_hull"``), an over-estimate
    for concave shapes; callers should record ``method`` with the numbers.
    """
    n_parts = int(face_components(mesh).max(initial=0)) + 1
    src = mesh if mesh.is_volume else mesh.convex_hull
    return MassProperties(
        volume=float(src.volume),
        mass=float(src.volume * density),
        center_mass=np.asarray(src.center_mass, dtype=np.float64),
        inertia=np.asarray(src.moment_inertia, dtype=np.float64) * density,
        method="mesh" if mesh.is_volume else "convex_hull",
        watertight=bool(mesh.is_watertight),
        n_parts=n_parts,
    )
