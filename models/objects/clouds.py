"""Complete point clouds and resting poses on a table.

Owns: area-uniform surface sampling with outward face normals (samples hidden inside another
part of a multi-part mesh are rejected, so composites and convex decompositions give their
outer surface only), and placing an object in a stable resting pose on the table plane
(world frame, z up, table at ``z = table_height``).
"""

from __future__ import annotations

import numpy as np
import trimesh
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from .meshops import inside_other_parts

F32 = NDArray[np.float32]


def complete_cloud(mesh: trimesh.Trimesh, n: int = 4096, seed: int = 0) -> tuple[F32, F32]:
    """``n`` area-uniform surface samples of ``mesh`` and their outward face normals, float32 (n,3).

    Deterministic for a given mesh and ``seed``. Samples that fall inside another closed part
    of the mesh (e.g. where a mug's handle enters its wall) are dropped and redrawn.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    area = np.asarray(mesh.area_faces, dtype=np.float64)
    if len(area) == 0 or area.sum() <= 0:
        raise ValueError("mesh has no surface area")
    prob = area / area.sum()
    tri = np.asarray(mesh.triangles, dtype=np.float64)
    fn = np.asarray(mesh.face_normals, dtype=np.float64)
    rng = np.random.default_rng(seed)
    pts_out: list[NDArray[np.float64]] = []
    nrm_out: list[NDArray[np.float64]] = []
    have = 0
    for _ in range(20):
        m = max(64, int((n - have) * 1.25) + 16)
        faces = rng.choice(len(area), size=m, p=prob)
        r1, r2 = rng.random(m), rng.random(m)
        s = np.sqrt(r1)
        w = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
        pts = np.einsum("mk,mkd->md", w, tri[faces])
        keep = ~inside_other_parts(mesh, pts, faces)
        pts_out.append(pts[keep])
        nrm_out.append(fn[faces[keep]])
        have += int(keep.sum())
        if have >= n:
            break
    else:
        raise ValueError("could not draw enough visible surface samples (is the mesh mostly internal?)")
    points = np.concatenate(pts_out)[:n].astype(np.float32)
    normals = np.concatenate(nrm_out)[:n].astype(np.float32)
    return points, normals


def _center_mass(mesh: trimesh.Trimesh) -> NDArray[np.float64]:
    src = mesh if mesh.is_volume else mesh.convex_hull
    return np.asarray(src.center_mass, dtype=np.float64)


def _rest_on_lowest_energy(
    mesh: trimesh.Trimesh, rng: np.random.Generator, tries: int = 16
) -> NDArray[np.float64]:
    """Fallback: of ``tries`` random orientations, the one with the lowest centre of mass above
    the lowest vertex (not guaranteed stable, but low)."""
    com = _center_mass(mesh)
    verts = np.asarray(mesh.convex_hull.vertices, dtype=np.float64)
    rots = Rotation.random(tries, random_state=rng).as_matrix()
    heights = [(r @ com)[2] - (verts @ r.T)[:, 2].min() for r in rots]
    best = np.eye(4)
    best[:3, :3] = rots[int(np.argmin(heights))]
    return best


def _support_hull(mesh: trimesh.Trimesh, max_vertices: int = 150) -> trimesh.Trimesh:
    """The convex hull, reduced to ``max_vertices`` farthest-point-sampled hull vertices when
    larger (trimesh's topple graph is pure Python and takes seconds on round shapes)."""
    hull: trimesh.Trimesh = mesh.convex_hull
    verts = np.asarray(hull.vertices, dtype=np.float64)
    if len(verts) <= max_vertices:
        return hull
    chosen = [int(np.argmax(np.linalg.norm(verts - verts.mean(axis=0), axis=1)))]
    dist = np.linalg.norm(verts - verts[chosen[0]], axis=1)
    for _ in range(max_vertices - 1):
        chosen.append(int(np.argmax(dist)))
        dist = np.minimum(dist, np.linalg.norm(verts - verts[chosen[-1]], axis=1))
    reduced: trimesh.Trimesh = trimesh.convex.convex_hull(verts[chosen])
    return reduced


def place_on_table(
    mesh: trimesh.Trimesh, seed: int = 0, table_height: float = 0.0
) -> tuple[trimesh.Trimesh, NDArray[np.float64], float]:
    """Put ``mesh`` in a stable resting pose on the table (world frame, z up).

    One of trimesh's ``compute_stable_poses`` of the (for round shapes, reduced) convex hull,
    drawn with their probabilities (if that fails,
    the lowest-energy of 16 random orientations), then a random yaw about z; the bounding-box
    centre goes to x = y = 0 and the lowest point to ``z = table_height``.
    Returns ``(mesh_in_world, pose, table_height)`` where ``mesh_in_world = pose @ mesh``.
    """
    rng = np.random.default_rng(seed)
    transform: NDArray[np.float64] | None = None
    try:
        poses, probs = _support_hull(mesh).compute_stable_poses(center_mass=_center_mass(mesh))
        probs = np.asarray(probs, dtype=np.float64)
        if len(poses) > 0 and np.isfinite(probs).all() and probs.sum() > 0:
            transform = np.asarray(poses[rng.choice(len(poses), p=probs / probs.sum())], dtype=np.float64)
    except Exception:  # qhull or numerical failure on degenerate shapes
        transform = None
    if transform is None:
        transform = _rest_on_lowest_energy(mesh, rng)
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("z", rng.uniform(0.0, 2 * np.pi)).as_matrix() @ transform[:3, :3]
    verts = np.asarray(mesh.vertices, dtype=np.float64) @ pose[:3, :3].T
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    pose[:3, 3] = [-(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2, table_height - lo[2]]
    world = mesh.copy()
    world.apply_transform(pose)
    return world, pose, float(table_height)
