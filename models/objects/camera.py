"""Single-view partial point clouds from a virtual depth camera, with the table in view.

Owns the camera model, the depth renderer and the sensor-noise model.

Camera: pinhole, OpenCV axes (x right, y down, z forward); ``camera_pose`` is the 4x4
camera-to-world transform. Pixel (u, v) has its centre at integer coordinates;
``cx = (W-1)/2``, ``cy = (H-1)/2``. The default is 320x240 with a 58° vertical field of view
(the RealSense D435 depth stream's vertical FOV), looking at the object from a random point
on the hemisphere above the table: elevation 20-70°, distance 0.4-0.8 m.

Renderer: exact ray casting by vectorised rasterisation in numpy. Every triangle's screen
bounding box is enumerated, pixels inside the triangle get the depth of the ray-plane
intersection, and a z-buffer keeps the nearest hit. The table is the plane
``z = table_height`` clipped to a square (0.5 m by default) centred under the object,
intersected analytically per pixel. (trimesh's ray queries need ``rtree``, not installed here,
and rasterising is exact where splatting surface samples leaves holes and bleed-through.)

Noise (``NoiseModel``), applied to the depth image in this order:
  1. depth noise: Gaussian along the ray with σ(z) = sigma0 + sigma_z2 · z² (m; z in m), the
     quadratic growth of stereo/structured-light sensors; default 1 mm + 1.9 mm/m² · z²
     (≈ 1.3 / 1.7 / 2.2 mm at 0.4 / 0.6 / 0.8 m);
  2. flying pixels (off by default): a pixel on a depth discontinuity (a 4-neighbour more than
     ``flying_threshold`` farther away) is, with probability ``flying_prob``, moved to a random
     depth between itself and that neighbour;
  3. dropout: each valid pixel is lost with probability ``dropout`` (default 2 %).
Points are returned in the world frame; normals are the true normals of the hit surface
(outward face normal, +z for the table; flipped towards the camera where an open mesh shows a
face's inner side), not estimated from the noisy points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh
from numpy.typing import NDArray

F64 = NDArray[np.float64]
F32 = NDArray[np.float32]

TABLE_FACE = -2  # face id of the table in the face-id image
NO_HIT = -1


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels (OpenCV convention)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov(cls, width: int = 320, height: int = 240, fov_y_deg: float = 58.0) -> CameraIntrinsics:
        """Square pixels with the given vertical field of view."""
        f = (height / 2) / np.tan(np.deg2rad(fov_y_deg) / 2)
        return cls(width, height, float(f), float(f), (width - 1) / 2, (height - 1) / 2)

    def matrix(self) -> F64:
        """The 3x3 K matrix."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)


@dataclass(frozen=True)
class Camera:
    """A posed camera: ``pose`` is camera-to-world (OpenCV axes)."""

    intrinsics: CameraIntrinsics
    pose: F64

    @property
    def position(self) -> F64:
        return np.asarray(self.pose[:3, 3], dtype=np.float64)


def look_at(eye: F64, target: F64, up: F64 | None = None) -> F64:
    """Camera-to-world pose of a camera at ``eye`` looking at ``target`` (OpenCV axes)."""
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, dtype=np.float64)
    fwd = np.asarray(target, dtype=np.float64) - np.asarray(eye, dtype=np.float64)
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, up)
    if np.linalg.norm(right) < 1e-9:  # looking straight along up: any right vector will do
        right = np.cross(fwd, [1.0, 0.0, 0.0] if abs(fwd[0]) < 0.9 else [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, fwd, eye
    return pose


def random_camera(
    target: F64,
    seed: int | np.random.Generator = 0,
    intrinsics: CameraIntrinsics | None = None,
    elevation_deg: tuple[float, float] = (20.0, 70.0),
    distance: tuple[float, float] = (0.4, 0.8),
) -> Camera:
    """A camera on the hemisphere above the table (z up) around ``target``, looking at it."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    elev = np.deg2rad(rng.uniform(*elevation_deg))
    azim = rng.uniform(0.0, 2 * np.pi)
    dist = rng.uniform(*distance)
    direction = np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    eye = np.asarray(target, dtype=np.float64) + dist * direction
    return Camera(
        intrinsics or CameraIntrinsics.from_fov(), look_at(eye, np.asarray(target, dtype=np.float64))
    )


@dataclass(frozen=True)
class NoiseModel:
    """Depth-sensor noise; see the module docstring. ``NoiseModel.none()`` renders exact depth."""

    sigma0: float = 0.001  # m
    sigma_z2: float = 0.0019  # 1/m: σ = sigma0 + sigma_z2 * z**2
    dropout: float = 0.02
    flying_prob: float = 0.0
    flying_threshold: float = 0.02  # m

    @classmethod
    def none(cls) -> NoiseModel:
        return cls(sigma0=0.0, sigma_z2=0.0, dropout=0.0, flying_prob=0.0)

    def sigma(self, depth: NDArray[np.floating]) -> F64:
        """Depth noise standard deviation (m) at ``depth`` (m)."""
        z = np.asarray(depth, dtype=np.float64)
        return self.sigma0 + self.sigma_z2 * z * z


@dataclass(frozen=True)
class PartialView:
    """One rendered view. ``points``/``normals`` are in the world frame (table at z = table
    height, z up); ``object_mask`` marks object (not table) points; ``depth`` is the noisy
    depth image in metres, 0 where there is no return."""

    points: F32
    normals: F32 | None
    camera_pose: F64
    camera_position: F64
    intrinsics: CameraIntrinsics
    object_mask: NDArray[np.bool_]
    depth: F32 = field(repr=False)


def _pixel_rays(k: CameraIntrinsics) -> tuple[F64, F64]:
    """Pixel grid (H,W) and camera-frame ray directions with unit z, (H,W,3)."""
    u, v = np.meshgrid(np.arange(k.width, dtype=np.float64), np.arange(k.height, dtype=np.float64))
    d = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], axis=-1)
    return np.stack([u, v], axis=-1), d


def render_depth(
    mesh: trimesh.Trimesh,
    camera: Camera,
    table_height: float | None = 0.0,
    table_center: F64 | None = None,
    table_size: float = 0.5,
) -> tuple[F64, NDArray[np.int64]]:
    """Exact depth image (H,W) in metres (inf: no hit) and the face id hit per pixel
    (``NO_HIT``, ``TABLE_FACE`` or a face index of ``mesh``). ``table_height=None``: no table."""
    k = camera.intrinsics
    H, W = k.height, k.width
    R, t = camera.pose[:3, :3], camera.pose[:3, 3]
    depth = np.full(H * W, np.inf)
    face_id = np.full(H * W, NO_HIT, dtype=np.int64)

    # --- object: rasterise every triangle, z-buffer the nearest hit
    vc = (np.asarray(mesh.vertices, dtype=np.float64) - t) @ R  # camera frame
    tri = vc[np.asarray(mesh.faces)]  # (F,3,3)
    ok = (tri[:, :, 2] > 1e-3).all(axis=1)  # in front of the camera (objects never straddle it)
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    if mesh.is_volume:  # closed and outward: back faces are always hidden behind front faces
        ok &= np.einsum("fi,fi->f", normal, tri[:, 0]) < 0
    fidx = np.nonzero(ok)[0]
    tri, normal = tri[fidx], normal[fidx]
    uv = np.stack([k.fx * tri[:, :, 0] / tri[:, :, 2] + k.cx, k.fy * tri[:, :, 1] / tri[:, :, 2] + k.cy], -1)
    u0 = np.clip(np.ceil(uv[:, :, 0].min(1)), 0, W).astype(np.int64)
    u1 = np.clip(np.floor(uv[:, :, 0].max(1)), -1, W - 1).astype(np.int64)
    v0 = np.clip(np.ceil(uv[:, :, 1].min(1)), 0, H).astype(np.int64)
    v1 = np.clip(np.floor(uv[:, :, 1].max(1)), -1, H - 1).astype(np.int64)
    bw, bh = np.maximum(u1 - u0 + 1, 0), np.maximum(v1 - v0 + 1, 0)
    count = bw * bh
    total = int(count.sum())
    if total > 0:
        f = np.repeat(np.arange(len(fidx)), count)
        local = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
        pu = u0[f] + local % bw[f]
        pv = v0[f] + local // bw[f]
        # 2D edge functions (barycentrics) in the image; sign-agnostic so back faces work too
        a, b, c = uv[f, 0], uv[f, 1], uv[f, 2]
        area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])

        def edge(p: F64, q: F64) -> F64:
            e: F64 = (q[:, 0] - p[:, 0]) * (pv - p[:, 1]) - (q[:, 1] - p[:, 1]) * (pu - p[:, 0])
            return e

        with np.errstate(divide="ignore", invalid="ignore"):
            w0, w1, w2 = edge(b, c) / area, edge(c, a) / area, edge(a, b) / area
            eps = -1e-9
            inside = (np.abs(area) > 1e-12) & (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
            ray = np.stack([(pu - k.cx) / k.fx, (pv - k.cy) / k.fy, np.ones(total)], axis=1)
            nf = normal[f]
            z = np.einsum("ni,ni->n", nf, tri[f, 0]) / np.einsum("ni,ni->n", nf, ray)
        inside &= np.isfinite(z) & (z > 0)
        pix = (pv * W + pu)[inside]
        z, ff = z[inside], fidx[f[inside]]
        order = np.argsort(z, kind="stable")
        pix, z, ff = pix[order], z[order], ff[order]
        first_pix, first = np.unique(pix, return_index=True)
        depth[first_pix] = z[first]
        face_id[first_pix] = ff[first]

    # --- table: analytic ray-plane intersection, clipped to a square around the object
    if table_height is not None:
        _, d_cam = _pixel_rays(k)
        d_world = d_cam.reshape(-1, 3) @ R.T
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (table_height - t[2]) / d_world[:, 2]  # = depth, since d_cam has unit z
        hit = t + s[:, None] * d_world
        center = mesh.bounds.mean(axis=0) if table_center is None else np.asarray(table_center)
        on = (
            (s > 0)
            & (np.abs(hit[:, 0] - center[0]) <= table_size / 2)
            & (np.abs(hit[:, 1] - center[1]) <= table_size / 2)
        )
        closer = on & (s < depth)
        depth[closer] = s[closer]
        face_id[closer] = TABLE_FACE
    return depth.reshape(H, W), face_id.reshape(H, W)


def _flying_pixels(depth: F64, noise: NoiseModel, rng: np.random.Generator) -> F64:
    """Move some pixels at depth discontinuities towards their farther neighbour."""
    out = depth.copy()
    valid = np.isfinite(depth)
    far = np.full(depth.shape, -np.inf)
    for shift, axis in ((1, 0), (-1, 0), (1, 1), (-1, 1)):
        nb = np.roll(depth, shift, axis=axis)
        edge_row = [slice(None)] * 2
        edge_row[axis] = slice(0, 1) if shift == 1 else slice(-1, None)
        nb[tuple(edge_row)] = np.nan  # no wrap-around
        nb = np.where(np.isfinite(nb), nb, -np.inf)
        far = np.maximum(far, nb)
    cand = valid & np.isfinite(far) & (far - depth > noise.flying_threshold)
    pick = cand & (rng.random(depth.shape) < noise.flying_prob)
    out[pick] = depth[pick] + rng.random(int(pick.sum())) * (far[pick] - depth[pick])
    return out


def partial_cloud(
    mesh_in_world: trimesh.Trimesh,
    camera: Camera | None = None,
    table: bool = True,
    noise: NoiseModel | None = None,
    seed: int = 0,
    table_height: float = 0.0,
    table_size: float = 0.5,
    with_normals: bool = True,
) -> PartialView:
    """Render one view of an object resting on the table and back-project it to world points.

    ``camera=None`` draws a random camera (``random_camera``) aimed at the object's
    bounding-box centre from ``seed``; ``noise=None`` uses the default ``NoiseModel()``
    (``NoiseModel.none()`` for exact depth). ``table=False`` renders the object alone.
    """
    rng = np.random.default_rng(seed)
    center = mesh_in_world.bounds.mean(axis=0)
    if camera is None:
        camera = random_camera(center, rng)
    noise = NoiseModel() if noise is None else noise
    depth, face_id = render_depth(mesh_in_world, camera, table_height if table else None, center, table_size)
    valid = np.isfinite(depth)
    noisy = depth.copy()
    if noise.sigma0 > 0 or noise.sigma_z2 > 0:
        noisy[valid] += rng.normal(size=int(valid.sum())) * noise.sigma(depth[valid])
    if noise.flying_prob > 0:
        noisy = _flying_pixels(noisy, noise, rng)
    if noise.dropout > 0:
        valid &= rng.random(depth.shape) >= noise.dropout
    valid &= noisy > 0

    _, d_cam = _pixel_rays(camera.intrinsics)
    pts_cam = d_cam[valid] * noisy[valid][:, None]
    R, t = camera.pose[:3, :3], camera.pose[:3, 3]
    points = (pts_cam @ R.T + t).astype(np.float32)
    fid = face_id[valid]
    obj = fid >= 0
    normals = None
    if with_normals:
        nrm = np.zeros((len(fid), 3))
        nrm[obj] = np.asarray(mesh_in_world.face_normals)[fid[obj]]
        # open (non-closed) meshes can show a face's inner side: make normals face the sensor
        facing_away = np.einsum("ij,ij->i", nrm, camera.position - points) < 0
        nrm[facing_away] *= -1.0
        nrm[~obj] = [0.0, 0.0, 1.0]
        normals = nrm.astype(np.float32)
    depth_img = np.where(valid, noisy, 0.0).astype(np.float32)
    return PartialView(
        points, normals, camera.pose.copy(), camera.position.copy(), camera.intrinsics, obj, depth_img
    )
