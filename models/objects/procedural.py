"""Procedural objects: parameter samplers and mesh builders for primitive and composite families.

Owns the shapes themselves. Every family has ``sample(rng, size) -> params`` (lengths in metres,
rounded to 1 µm so that a manifest written to JSON rebuilds the same mesh) and
``build(params) -> trimesh.Trimesh``. ``params["size"]`` is the object's largest bounding-box
extent, drawn from [0.06, 0.15] m as in UniDexGrasp; the builder rescales the tessellated
mesh by a final factor within a fraction of a percent so that this holds exactly, and centres
the mesh at its bounding-box centre. Canonical frames are z-up (a mug stands on its bottom).

Watertightness: primitives, the mug body, bottle, bowl and L-shape are single closed
surfaces. The mug (body + handle) and the hammer (handle + head) are unions of two closed
parts that overlap slightly; their concatenation is edge-manifold (``is_watertight`` is true)
but the parts interpenetrate, so ``meshops`` filters surface samples hidden inside a
neighbouring part and estimates their volume on a grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import trimesh
from numpy.typing import NDArray

SIZE_RANGE = (0.06, 0.15)  # largest extent, metres

PRIMITIVES = ("box", "cylinder", "sphere", "capsule", "ellipsoid", "torus")
COMPOSITES = ("mug", "bottle", "bowl", "hammer", "lshape")

Params = dict[str, float]


class Uniform(Protocol):
    """What a sampler draws from: ``numpy.random.Generator`` or the catalog's hash stream."""

    def uniform(self, low: float, high: float) -> float: ...


def _r(x: float) -> float:
    """Round a length to 1 µm (what the manifest stores)."""
    return round(float(x), 6)


def _tm(obj: Any) -> trimesh.Trimesh:
    """Narrow trimesh's loosely typed creation results to a Trimesh."""
    if not isinstance(obj, trimesh.Trimesh):
        raise TypeError(f"expected a Trimesh, got {type(obj).__name__}")
    return obj


def _translation(x: float, y: float, z: float) -> NDArray[np.float64]:
    out = np.eye(4)
    out[:3, 3] = [x, y, z]
    return out


def _finish(mesh: trimesh.Trimesh, size: float) -> trimesh.Trimesh:
    """Orient outward, rescale so the largest extent is ``size``, centre at the bbox centre."""
    if mesh.volume < 0:
        mesh.invert()
    k = size / float(mesh.extents.max())
    mesh.apply_transform(np.diag([k, k, k, 1.0]))
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    return mesh


# ---------------------------------------------------------------------------- primitives


def _sample_box(rng: Uniform, s: float) -> Params:
    return {"size": s, "ex": s, "ey": s * rng.uniform(0.3, 1.0), "ez": s * rng.uniform(0.3, 1.0)}


def _build_box(p: Params) -> trimesh.Trimesh:
    return _tm(trimesh.creation.box(extents=[p["ex"], p["ey"], p["ez"]]))


def _sample_cylinder(rng: Uniform, s: float) -> Params:
    aspect = float(np.exp(rng.uniform(np.log(1 / 3), np.log(3.0))))  # height / diameter
    if aspect >= 1.0:
        height, radius = s, s / aspect / 2
    else:
        height, radius = s * aspect, s / 2
    return {"size": s, "radius": radius, "height": height}


def _build_cylinder(p: Params) -> trimesh.Trimesh:
    return _tm(trimesh.creation.cylinder(radius=p["radius"], height=p["height"], sections=48))


def _sample_sphere(rng: Uniform, s: float) -> Params:
    return {"size": s, "radius": s / 2}


def _build_sphere(p: Params) -> trimesh.Trimesh:
    return _tm(trimesh.creation.icosphere(subdivisions=3, radius=p["radius"]))


def _sample_capsule(rng: Uniform, s: float) -> Params:
    radius = s / 2 * rng.uniform(0.2, 0.5)
    return {"size": s, "radius": radius, "height": s - 2 * radius}  # height: cylindrical part


def _build_capsule(p: Params) -> trimesh.Trimesh:
    return _tm(trimesh.creation.capsule(height=p["height"], radius=p["radius"], count=[24, 24]))


def _sample_ellipsoid(rng: Uniform, s: float) -> Params:
    a = s / 2
    return {"size": s, "a": a, "b": a * rng.uniform(0.4, 1.0), "c": a * rng.uniform(0.4, 1.0)}


def _build_ellipsoid(p: Params) -> trimesh.Trimesh:
    m = _tm(trimesh.creation.icosphere(subdivisions=3, radius=1.0))
    m.apply_transform(np.diag([p["a"], p["b"], p["c"], 1.0]))
    return m


def _sample_torus(rng: Uniform, s: float) -> Params:
    q = rng.uniform(0.15, 0.45)  # minor / major radius
    major = s / 2 / (1 + q)
    return {"size": s, "major_radius": major, "minor_radius": q * major}


def _build_torus(p: Params) -> trimesh.Trimesh:
    return _tm(
        trimesh.creation.torus(p["major_radius"], p["minor_radius"], major_sections=48, minor_sections=16)
    )


# ---------------------------------------------------------------------------- composites


def _revolve(profile: list[tuple[float, float]], sections: int = 48) -> trimesh.Trimesh:
    """Closed solid of revolution about z of a (r, z) profile that starts and ends on the axis."""
    return _tm(trimesh.creation.revolve(np.asarray(profile, dtype=np.float64), sections=sections))


def _arc_tube(
    center: NDArray[np.float64],
    arc_radius: float,
    tube_radius: float,
    t0: float,
    t1: float,
    n_arc: int = 24,
    n_tube: int = 12,
) -> trimesh.Trimesh:
    """Closed tube swept along an arc in the xz-plane (angles t0..t1 from +x), capped at both ends."""
    ts = np.linspace(t0, t1, n_arc + 1)
    phis = np.linspace(0.0, 2 * np.pi, n_tube, endpoint=False)
    radial = np.stack([np.cos(ts), np.zeros_like(ts), np.sin(ts)], axis=1)  # (A,3)
    side = np.array([0.0, 1.0, 0.0])
    spine = center + arc_radius * radial
    ring = (
        spine[:, None, :]
        + tube_radius * np.cos(phis)[None, :, None] * radial[:, None, :]
        + tube_radius * np.sin(phis)[None, :, None] * side[None, None, :]
    )
    verts = np.concatenate([ring.reshape(-1, 3), spine[[0, -1]]])
    faces = []
    m = n_tube
    for i in range(n_arc):
        for j in range(m):
            a, b = i * m + j, i * m + (j + 1) % m
            c, d = a + m, b + m
            faces += [[a, b, d], [a, d, c]]
    c0, c1 = len(verts) - 2, len(verts) - 1
    last = n_arc * m
    for j in range(m):
        faces.append([c0, (j + 1) % m, j])
        faces.append([c1, last + j, last + (j + 1) % m])
    mesh = trimesh.Trimesh(verts, np.asarray(faces), process=True)
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def _sample_mug(rng: Uniform, s: float) -> Params:
    # proportions relative to the body height h, then h chosen so the largest extent is s
    R, t, tb = rng.uniform(0.3, 0.45), rng.uniform(0.05, 0.08), rng.uniform(0.06, 0.1)
    Rh, rh = rng.uniform(0.2, 0.3), rng.uniform(0.06, 0.09)
    x_extent = 2 * R + Rh + rh - t / 2
    h = s / max(1.0, x_extent)
    return {
        "size": s,
        "height": h,
        "radius": R * h,
        "wall": t * h,
        "bottom": tb * h,
        "handle_radius": Rh * h,
        "handle_tube": rh * h,
    }


def _build_mug(p: Params) -> trimesh.Trimesh:
    h, R, t, tb = p["height"], p["radius"], p["wall"], p["bottom"]
    body = _revolve([(0.0, 0.0), (R, 0.0), (R, h), (R - t, h), (R - t, tb), (0.0, tb)], sections=64)
    # C-shaped handle: half a torus whose end caps sit inside the wall
    center = np.array([R - t / 2, 0.0, 0.52 * h])
    handle = _arc_tube(center, p["handle_radius"], p["handle_tube"], -np.pi / 2, np.pi / 2)
    return _tm(trimesh.util.concatenate([body, handle]))


def _sample_bottle(rng: Uniform, s: float) -> Params:
    rb = rng.uniform(0.15, 0.25)
    hb, hs = rng.uniform(0.5, 0.65), rng.uniform(0.12, 0.2)
    rn = rb * rng.uniform(0.3, 0.5)
    return {
        "size": s,
        "height": s,
        "body_radius": rb * s,
        "body_height": hb * s,
        "shoulder_height": hs * s,
        "neck_radius": rn * s,
    }


def _build_bottle(p: Params) -> trimesh.Trimesh:
    H, rb, hb = p["height"], p["body_radius"], p["body_height"]
    hs, rn = p["shoulder_height"], p["neck_radius"]
    prof = [(0.0, 0.0), (rb, 0.0), (rb, hb)]
    for tau in np.linspace(0.0, 1.0, 10)[1:]:
        prof.append((rn + (rb - rn) * (1 + np.cos(np.pi * tau)) / 2, hb + hs * tau))
    prof += [(rn, H), (0.0, H)]
    return _revolve(prof)


def _sample_bowl(rng: Uniform, s: float) -> Params:
    rim = np.deg2rad(rng.uniform(65.0, 90.0))  # polar angle of the rim, from the bottom
    ro = s / (2 * np.sin(rim))
    return {"size": s, "outer_radius": ro, "wall": ro * rng.uniform(0.04, 0.07), "rim_angle": float(rim)}


def _build_bowl(p: Params) -> trimesh.Trimesh:
    ro, t, rim = p["outer_radius"], p["wall"], p["rim_angle"]
    ri = ro - t
    foot = np.arccos(1 - t / (2 * ro))  # flat foot: cut the outer sphere at height t/2
    prof = [(0.0, t / 2)]
    prof += [(ro * np.sin(a), ro - ro * np.cos(a)) for a in np.linspace(foot, rim, 16)]
    prof += [(ri * np.sin(a), ro - ri * np.cos(a)) for a in np.linspace(rim, 0.0, 16)]
    return _revolve(prof, sections=64)


def _sample_hammer(rng: Uniform, s: float) -> Params:
    a, lh, rh = rng.uniform(0.15, 0.25), rng.uniform(0.35, 0.6), rng.uniform(0.035, 0.06)
    L = s / (1 + a / 2)  # handle axis length to the head centre
    return {
        "size": s,
        "handle_length": L,
        "handle_radius": rh * L,
        "head_length": lh * L,
        "head_width": a * L,
    }


def _build_hammer(p: Params) -> trimesh.Trimesh:
    L, rh, lh, a = p["handle_length"], p["handle_radius"], p["head_length"], p["head_width"]
    top = L - a / 2 + 0.1 * a  # handle enters the head by 10 % of its width
    handle = trimesh.creation.cylinder(
        radius=rh, segment=np.array([[0.0, 0.0, 0.0], [0.0, 0.0, top]]), sections=32
    )
    head = trimesh.creation.box(extents=[lh, a, a], transform=_translation(0.0, 0.0, L))
    return _tm(trimesh.util.concatenate([handle, head]))


def _sample_lshape(rng: Uniform, s: float) -> Params:
    return {
        "size": s,
        "long_arm": s,
        "short_arm": s * rng.uniform(0.4, 1.0),
        "width": s * rng.uniform(0.15, 0.3),
        "thickness": s * rng.uniform(0.1, 0.3),
    }


def _build_lshape(p: Params) -> trimesh.Trimesh:
    """Union of two boxes (x-arm and y-arm sharing the corner square) as one extruded L prism."""
    a, b, w, d = p["long_arm"], p["short_arm"], p["width"], p["thickness"]
    poly = np.array([[0, 0], [a, 0], [a, w], [w, w], [w, b], [0, b]], dtype=np.float64)
    n = len(poly)
    verts = np.concatenate([np.c_[poly, np.zeros(n)], np.c_[poly, np.full(n, d)]])
    faces = []
    for i in range(1, n - 1):  # the L is star-shaped from its corner vertex 0: fan it
        faces.append([0, i + 1, i])  # bottom, facing -z
        faces.append([n, n + i, n + i + 1])  # top, facing +z
    for i in range(n):
        j = (i + 1) % n
        faces += [[i, j, n + j], [i, n + j, n + i]]
    return trimesh.Trimesh(verts, np.asarray(faces), process=True)


@dataclass(frozen=True)
class Family:
    """A procedural family: id prefix (``prim``/``comp``), parameter sampler and mesh builder."""

    name: str
    kind: str
    sample: Callable[[Uniform, float], Params]
    build: Callable[[Params], trimesh.Trimesh]


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("box", "prim", _sample_box, _build_box),
        Family("cylinder", "prim", _sample_cylinder, _build_cylinder),
        Family("sphere", "prim", _sample_sphere, _build_sphere),
        Family("capsule", "prim", _sample_capsule, _build_capsule),
        Family("ellipsoid", "prim", _sample_ellipsoid, _build_ellipsoid),
        Family("torus", "prim", _sample_torus, _build_torus),
        Family("mug", "comp", _sample_mug, _build_mug),
        Family("bottle", "comp", _sample_bottle, _build_bottle),
        Family("bowl", "comp", _sample_bowl, _build_bowl),
        Family("hammer", "comp", _sample_hammer, _build_hammer),
        Family("lshape", "comp", _sample_lshape, _build_lshape),
    ]
}


def sample_params(family: str, rng: Uniform) -> Params:
    """Draw the parameters of one ``family`` object (lengths in metres, rounded to 1 µm)."""
    fam = FAMILIES[family]
    size = float(rng.uniform(*SIZE_RANGE))
    return {k: _r(v) for k, v in fam.sample(rng, size).items()}


def build(family: str, params: Params) -> trimesh.Trimesh:
    """Build the mesh of a ``family`` object from its parameters (centred, largest extent = size)."""
    mesh = FAMILIES[family].build(params)
    return _finish(mesh, params["size"])
