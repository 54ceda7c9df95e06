"""Point-cloud geometry against slow references (numpy / Python loops) and analytic shapes."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

import models.core.geometry as geometry
from models.core.geometry import (
    Plane,
    detect_support_plane,
    estimate_normals,
    farthest_point_sample,
    knn,
    object_signed_distance,
    remove_support_plane,
    statistical_outlier_removal,
    voxel_downsample,
)
from models.core.rotations import axis_angle_to_matrix

from ..conftest import DEVICES

DTYPES = [torch.float32, torch.float64]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _sphere_dirs(n: int, seed: int = 0) -> torch.Tensor:
    return _unit(torch.randn(n, 3, dtype=torch.float64, generator=_gen(seed)))


def _fibonacci_dirs(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    r = (1 - z * z).sqrt()
    phi = i * math.pi * (3 - math.sqrt(5))
    return torch.stack([r * phi.cos(), r * phi.sin(), z], -1)


def _box_surface(
    n: int, half: tuple[float, float, float], seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = _gen(seed)
    h = torch.tensor(half, dtype=torch.float64)
    areas = torch.stack([h[1] * h[2], h[0] * h[2], h[0] * h[1]]).repeat_interleave(2)
    face = torch.multinomial(areas, n, replacement=True, generator=gen)
    points = (torch.rand(n, 3, dtype=torch.float64, generator=gen) * 2 - 1) * h
    axis, sign = face // 2, (face % 2).double() * 2 - 1
    rows = torch.arange(n)
    points[rows, axis] = sign * h[axis]
    normals = torch.zeros(n, 3, dtype=torch.float64)
    normals[rows, axis] = sign
    return points, normals


def _bowl(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A thick hemispherical bowl (outer radius 6 cm, inner 5 cm, opening up) and its normals."""
    r_out, r_in = 0.06, 0.05
    areas = [2 * math.pi * r_out**2, 2 * math.pi * r_in**2, math.pi * (r_out**2 - r_in**2)]
    counts = [int(n * a / sum(areas)) for a in areas]
    dirs = _sphere_dirs(8 * n, seed)
    lower = dirs[dirs[:, 2] < 0]
    outer, inner = lower[: counts[0]], lower[counts[0] : counts[0] + counts[1]]
    gen = _gen(seed + 1)
    m = counts[2]
    rad = torch.sqrt(torch.rand(m, dtype=torch.float64, generator=gen) * (r_out**2 - r_in**2) + r_in**2)
    ang = torch.rand(m, dtype=torch.float64, generator=gen) * 2 * math.pi
    rim = torch.stack([rad * ang.cos(), rad * ang.sin(), torch.zeros(m, dtype=torch.float64)], -1)
    rim_n = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(m, 3)
    points = torch.cat([outer * r_out, inner * r_in, rim])
    normals = torch.cat([outer, -inner, rim_n])
    return points, normals


# ----------------------------------------------------------------------------------------- knn


def _knn_numpy(query: np.ndarray, points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((query[:, :, None, :] - points[:, None, :, :]) ** 2).sum(-1))
    idx = np.argsort(d, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(d, idx, axis=-1), idx


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_knn_matches_brute_force(device: str, dtype: torch.dtype) -> None:
    gen = _gen(1)
    # Offset far from the origin, as clouds in a camera frame are: ranking must not lose precision.
    query = torch.rand(2, 150, 3, dtype=torch.float64, generator=gen) * 0.2 + 0.8
    points = torch.rand(2, 400, 3, dtype=torch.float64, generator=gen) * 0.2 + 0.8
    ref_d, ref_i = _knn_numpy(query.numpy(), points.numpy(), 7)
    dist, idx = knn(query.to(device, dtype), points.to(device, dtype), 7)
    assert dist.shape == idx.shape == (2, 150, 7)
    assert dist.dtype == dtype and idx.dtype == torch.long
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    np.testing.assert_allclose(dist.cpu().double().numpy(), ref_d, atol=tol)
    if dtype == torch.float64:
        np.testing.assert_array_equal(idx.cpu().numpy(), ref_i)
    else:  # near-ties may swap in float32; the distances above already pin the neighbour sets
        assert (idx.cpu().numpy() == ref_i).mean() > 0.99


def test_knn_chunked_equals_single_block(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = _gen(2)
    query = torch.rand(3, 257, 3, dtype=torch.float64, generator=gen)
    points = torch.rand(3, 100, 3, dtype=torch.float64, generator=gen)
    dist, idx = knn(query, points, 5)
    monkeypatch.setattr(geometry, "_MAX_PAIRWISE_ELEMENTS", 3 * 100 * 16)  # 16 query rows a block
    dist_c, idx_c = knn(query, points, 5)
    assert torch.equal(idx, idx_c)
    assert torch.equal(dist, dist_c)


@pytest.mark.parametrize("shared", [True, False])
def test_neighbour_cache_finds_the_nearest_points_of_moving_queries(shared: bool) -> None:
    """Queries drifting by random steps of up to 4 mm: the Verlet list gives the brute-force k nearest at
    every call (float64: exactly, in order), searching the whole cloud again for fewer queries than there are."""
    gen = _gen(5)
    points = torch.rand(2, 500, 3, dtype=torch.float64, generator=gen) * 0.1
    query = torch.rand(2, 60, 3, dtype=torch.float64, generator=gen) * 0.1
    cloud = points[0] if shared else points
    cache = geometry.NeighbourCache(k=8, candidates=32)
    calls = 12
    for _ in range(calls):
        idx = cache(query, cloud)
        ref = knn(query, cloud.expand(2, -1, -1) if shared else cloud, 8)[1]
        assert torch.equal(idx, ref)
        query = query + (torch.rand(query.shape, dtype=torch.float64, generator=gen) - 0.5) * 0.008
    assert 2 * 60 <= cache.searched < calls * 2 * 60  # the first call searched all; later ones only the stale
    # a new cloud starts afresh
    before = cache.searched
    cache(query, cloud.clone())
    assert cache.searched == before + 2 * 60


def test_knn_rejects_too_large_k() -> None:
    with pytest.raises(ValueError, match="k must be"):
        knn(torch.zeros(1, 4, 3), torch.zeros(1, 3, 3), 4)


# ----------------------------------------------------------------------------------------- FPS


def _fps_numpy(points: np.ndarray, k: int) -> np.ndarray:
    chosen = [0]
    min_d2 = np.full(points.shape[0], np.inf)
    for _ in range(k - 1):
        min_d2 = np.minimum(min_d2, ((points - points[chosen[-1]]) ** 2).sum(-1))
        min_d2[chosen[-1]] = -1.0
        chosen.append(int(np.argmax(min_d2)))
    return np.array(chosen)


def _coverage(points: np.ndarray, idx: np.ndarray) -> float:
    """Largest distance from any point to its nearest sample: what FPS minimises greedily."""
    d = np.sqrt(((points[:, None] - points[idx][None]) ** 2).sum(-1))
    return float(d.min(axis=1).max())


def test_fps_identical_to_numpy_reference() -> None:
    points = torch.rand(2, 500, 3, dtype=torch.float64, generator=_gen(3))
    idx = farthest_point_sample(points, 64)
    for b in range(2):
        np.testing.assert_array_equal(idx[b].numpy(), _fps_numpy(points[b].numpy(), 64))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fps_covers_cloud_with_distinct_indices(device: str, dtype: torch.dtype) -> None:
    points = torch.rand(3, 800, 3, dtype=torch.float64, generator=_gen(4)) * torch.tensor([0.3, 0.1, 0.05])
    idx = farthest_point_sample(points.to(device, dtype), 50).cpu()
    assert idx.shape == (3, 50)
    for b in range(3):
        assert len(set(idx[b].tolist())) == 50
        p = points[b].numpy()
        assert _coverage(p, idx[b].numpy()) <= 1.5 * _coverage(p, _fps_numpy(p, 50))
    # Clearly better than the first 50 (random) points, which is what a broken loop would return.
    assert _coverage(points[0].numpy(), idx[0].numpy()) < 0.8 * _coverage(points[0].numpy(), np.arange(50))


def test_fps_start_and_duplicates() -> None:
    points = torch.rand(2, 40, 3, dtype=torch.float64, generator=_gen(5))
    idx = farthest_point_sample(points, 5, start=torch.tensor([7, 11]))
    assert idx[:, 0].tolist() == [7, 11]
    # Six distinct locations, each repeated: asking for more than six samples must not repeat indices.
    dup = torch.rand(1, 6, 3, dtype=torch.float64, generator=_gen(6)).repeat(1, 4, 1)
    idx = farthest_point_sample(dup, 10)
    assert len(set(idx[0].tolist())) == 10
    assert len({tuple(dup[0, i].tolist()) for i in idx[0, :6].tolist()}) == 6


# ------------------------------------------------------------------------------------- normals


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_normals_on_sphere_point_outward(device: str, dtype: torch.dtype) -> None:
    dirs = torch.stack([_sphere_dirs(1500, 7), _sphere_dirs(1500, 8)])
    centre = torch.tensor([0.4, -0.2, 0.9], dtype=torch.float64)
    normals = estimate_normals((dirs * 0.05 + centre).to(device, dtype), k=16)
    assert normals.shape == (2, 1500, 3) and normals.dtype == dtype
    cos = (normals.cpu().double() * dirs).sum(-1)
    torch.testing.assert_close(normals.norm(dim=-1).cpu().double(), torch.ones(2, 1500, dtype=torch.float64))
    assert cos.mean() > 0.99
    assert cos.min() > 0.9


@pytest.mark.parametrize("device", DEVICES)
def test_normals_on_box_surface(device: str) -> None:
    half = (0.05, 0.03, 0.02)
    points, truth = _box_surface(2500, half, seed=9)
    normals = estimate_normals(points[None].to(device), k=16)[0].cpu().double()
    cos = (normals * truth).sum(-1)
    # Away from the edges the neighbourhood is one face: the normal is the face normal.
    margin = 0.012
    to_edge = torch.stack([torch.tensor(half, dtype=torch.float64) - points.abs()], 0)[0]
    on_face = to_edge.sort(dim=-1).values[:, 1] > margin  # second-smallest gap: 0 is the face itself
    assert on_face.sum() > 800
    assert cos[on_face].min() > 0.99
    assert (cos > 0).double().mean() > 0.99  # edge normals are diagonal but still outward


def test_normals_face_the_viewpoint_on_partial_cloud() -> None:
    dirs = _sphere_dirs(6000, 10)
    camera = torch.tensor([0.3, 0.1, 0.45], dtype=torch.float64)
    points = dirs * 0.05
    seen = ((camera - points) * dirs).sum(-1) > 0.005  # the cap a camera there sees
    points, dirs = points[seen], dirs[seen]
    normals = estimate_normals(points[None], k=16, viewpoint=camera[None])[0]
    cos = (normals * dirs).sum(-1)
    assert cos.mean() > 0.99
    assert (cos > 0).all()


def test_normals_inside_a_bowl_beat_the_centroid_rule() -> None:
    points, truth = _bowl(3000)
    normals = estimate_normals(points[None], k=16)[0]
    correct = ((normals * truth).sum(-1) > 0).double().mean()
    centroid_rule = torch.where(
        ((normals * (points - points.mean(0))).sum(-1) < 0)[:, None], -normals, normals
    )
    centroid_correct = ((centroid_rule * truth).sum(-1) > 0).double().mean()
    assert centroid_correct < 0.7  # the inner wall faces the centroid: the plain rule gets it wrong
    assert correct > 0.97


# ------------------------------------------------------------------------------ outliers, voxels


@pytest.mark.parametrize("device", DEVICES)
def test_outlier_removal_drops_far_points(device: str) -> None:
    inliers = _sphere_dirs(2000, 11) * 0.05
    gen = _gen(12)
    outliers = _unit(torch.randn(20, 3, dtype=torch.float64, generator=gen)) * (
        0.15 + 0.2 * torch.rand(20, 1, dtype=torch.float64, generator=gen)
    )
    keep = statistical_outlier_removal(torch.cat([inliers, outliers]).to(device).float(), k=16)
    assert keep.dtype == torch.bool and keep.shape == (2020,)
    keep = keep.cpu()
    assert not keep[2000:].any()
    assert keep[:2000].double().mean() > 0.95


def _voxel_reference(
    points: np.ndarray, normals: np.ndarray, voxel: float
) -> dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]]:
    origin = points.min(axis=0)
    groups: dict[tuple[int, int, int], list[int]] = {}
    for i, p in enumerate(points):
        key = tuple(int(c) for c in np.floor((p - origin) / voxel))
        groups.setdefault(key, []).append(i)  # type: ignore[arg-type]
    out = {}
    for key, members in groups.items():
        n = normals[members].sum(axis=0)
        out[key] = (points[members].mean(axis=0), n / np.linalg.norm(n))
    return out  # type: ignore[return-value]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_voxel_downsample_matches_python_reference(device: str, dtype: torch.dtype) -> None:
    gen = _gen(13)
    points = torch.rand(300, 3, dtype=torch.float64, generator=gen) * 0.1 - 0.3
    normals = _unit(torch.randn(300, 3, dtype=torch.float64, generator=gen) + torch.tensor([0, 0, 2.0]))
    voxel = 0.025
    ref = _voxel_reference(points.numpy(), normals.numpy(), voxel)
    centroids, merged = voxel_downsample(points.to(device, dtype), voxel, normals.to(device, dtype))
    assert merged is not None
    assert centroids.shape == (len(ref), 3) and merged.shape == (len(ref), 3)
    ref_keys = sorted(ref)  # x-major ascending, the documented output order
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(
        centroids.cpu().double().numpy(), np.stack([ref[k][0] for k in ref_keys]), atol=tol
    )
    np.testing.assert_allclose(
        merged.cpu().double().numpy(), np.stack([ref[k][1] for k in ref_keys]), atol=tol
    )
    only_points, none = voxel_downsample(points.to(device, dtype), voxel)
    assert none is None and torch.equal(only_points, centroids)


# ------------------------------------------------------------------------------- support plane


def _table_scene(tilt_deg: float = 10.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A 5 cm ball resting on a 40 cm table, 2 mm noise, table tilted about x; returns points,
    the true table normal and the number of ball points (which come first)."""
    gen = _gen(seed)
    n_ball, n_table = 2000, 3000
    ball = _sphere_dirs(n_ball, seed) * 0.05 + torch.tensor([0.0, 0.0, 0.05], dtype=torch.float64)
    table = torch.cat(
        [
            (torch.rand(n_table, 2, dtype=torch.float64, generator=gen) * 2 - 1) * 0.2,
            torch.zeros(n_table, 1, dtype=torch.float64),
        ],
        -1,
    )
    points = torch.cat([ball, table]) + 0.002 * torch.randn(
        n_ball + n_table, 3, dtype=torch.float64, generator=gen
    )
    rot = axis_angle_to_matrix(
        torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
        torch.tensor(math.radians(tilt_deg), dtype=torch.float64),
    )
    points = points @ rot.T + torch.tensor([0.3, -0.1, 0.7], dtype=torch.float64)
    return points, rot[:, 2], n_ball


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ransac_finds_tilted_table_and_removal_keeps_the_ball(device: str, dtype: torch.dtype) -> None:
    points, table_normal, n_ball = _table_scene()
    up = torch.tensor([0.0, 0.0, 1.0], device=device, dtype=dtype)
    plane, inliers = detect_support_plane(points.to(device, dtype), up)
    assert plane is not None
    angle = math.degrees(math.acos(min(1.0, float(plane.normal.cpu().double() @ table_normal))))
    assert angle < 2.0
    assert inliers[n_ball:].double().mean() > 0.95
    assert inliers[:n_ball].double().mean() < 0.1

    kept, plane2, keep = remove_support_plane(points.to(device, dtype), up)
    assert plane2 is not None
    keep = keep.cpu()
    assert kept.shape == (int(keep.sum()), 3)
    assert keep[:n_ball].double().mean() > 0.9  # only the ball's bottom few mm go with the table
    assert keep[n_ball:].double().mean() < 0.05
    # The ball sits above the plane: its top is about one diameter up.
    assert float(plane2.signed_distance(points[:n_ball].to(device, dtype)).max()) == pytest.approx(
        0.1, abs=0.006
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ransac_returns_none_without_a_table(seed: int) -> None:
    ball = _sphere_dirs(3000, seed) * 0.05
    ball = ball + 0.002 * torch.randn(3000, 3, dtype=torch.float64, generator=_gen(seed))
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    for cloud in (ball, ball[ball[:, 0] > 0]):  # full ball and a half-seen one
        plane, mask = detect_support_plane(cloud, up, seed=seed)
        assert plane is None
        assert mask.shape == (cloud.shape[0],) and not mask.any()
        kept, none, keep = remove_support_plane(cloud, up)
        assert none is None and keep.all() and torch.equal(kept, cloud)


def test_plane_signed_distance_and_given_plane_removal() -> None:
    plane = Plane(normal=torch.tensor([0.0, 0.0, 1.0]), offset=-0.5)
    points = torch.tensor(
        [[0.0, 0.0, 0.6], [1.0, 2.0, 0.5], [0.0, 0.0, 0.4], [0.0, 0.0, 0.503]], dtype=torch.float64
    )
    torch.testing.assert_close(
        plane.signed_distance(points), torch.tensor([0.1, 0.0, -0.1, 0.003], dtype=torch.float64)
    )
    kept, same, keep = remove_support_plane(points, torch.tensor([0.0, 0.0, 1.0]), plane, margin_m=0.005)
    assert same is plane
    assert keep.tolist() == [True, False, False, False]
    assert kept.shape == (1, 3)


# ------------------------------------------------------------------------------ signed distance


def _sdf_queries(n: int, seed: int, r_min: float, r_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    gen = _gen(seed)
    radius = r_min + (r_max - r_min) * torch.rand(2, n, dtype=torch.float64, generator=gen)
    dirs = _unit(torch.randn(2, n, 3, dtype=torch.float64, generator=gen))
    return dirs * radius[..., None], radius


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_object_signed_distance_on_sphere(device: str, dtype: torch.dtype) -> None:
    dirs = _fibonacci_dirs(4000)
    points, normals = dirs * 0.05, dirs
    query, radius = _sdf_queries(600, 14, 0.02, 0.1)
    sdf = object_signed_distance(query.to(device, dtype), points.to(device, dtype), normals.to(device, dtype))
    assert sdf.shape == (2, 600) and sdf.dtype == dtype
    truth = radius - 0.05
    err = (sdf.cpu().double() - truth).abs()
    assert err.max() < 0.002
    clear = truth.abs() > 0.002
    assert torch.equal(torch.sign(sdf.cpu()[clear]).double(), torch.sign(truth[clear]))
    # A per-batch cloud gives the same answer as the shared one.
    batched = object_signed_distance(
        query.to(device, dtype),
        points.expand(2, -1, -1).to(device, dtype),
        normals.expand(2, -1, -1).to(device, dtype),
    )
    torch.testing.assert_close(batched, sdf)


def test_object_signed_distance_with_estimated_normals() -> None:
    points = _sphere_dirs(3000, 15) * 0.05
    normals = estimate_normals(points[None])[0]
    query, radius = _sdf_queries(300, 16, 0.02, 0.1)
    sdf = object_signed_distance(query, points, normals)
    assert ((sdf - (radius - 0.05)).abs()).max() < 0.002


def test_object_signed_distance_gradcheck() -> None:
    dirs = _fibonacci_dirs(800)
    points, normals = dirs * 0.05, dirs
    # Shells inside (3 cm) and outside (7 cm), clear of the surface and of the medial axis (centre).
    query, _ = _sdf_queries(6, 17, 0.03, 0.03)
    outer, _ = _sdf_queries(6, 18, 0.07, 0.07)
    query = torch.cat([query, outer], 1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q: object_signed_distance(q, points, normals), (query,))
    # Near the surface the gradient is the surface normal (an SDF has unit gradient).
    near, _ = _sdf_queries(20, 19, 0.052, 0.052)
    near.requires_grad_(True)
    object_signed_distance(near, points, normals).sum().backward()
    assert near.grad is not None
    cos = (near.grad * _unit(near.detach())).sum(-1) / near.grad.norm(dim=-1)
    assert cos.min() > 0.95


# ------------------------------------------------------------------------------------ ONNX


class _KnnModule(torch.nn.Module):
    def forward(self, query: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return knn(query, points, 8)


class _FpsModule(torch.nn.Module):
    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return farthest_point_sample(points, 32)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_knn_and_fps_export_to_onnx() -> None:
    ort = pytest.importorskip("onnxruntime")
    gen = _gen(20)
    query = torch.rand(2, 100, 3, generator=gen)
    points = torch.rand(2, 300, 3, generator=gen)

    buf = io.BytesIO()
    torch.onnx.export(
        _KnnModule(),
        (query, points),
        buf,
        dynamo=False,
        opset_version=17,
        input_names=["query", "points"],
        output_names=["dist", "idx"],
        dynamic_axes={"query": {1: "m"}, "points": {1: "n"}},
    )
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    # A different cloud size than traced: the graph is not specialised to N.
    query2, points2 = torch.rand(2, 64, 3, generator=gen), torch.rand(2, 500, 3, generator=gen)
    for q, p in ((query, points), (query2, points2)):
        dist, idx = session.run(None, {"query": q.numpy(), "points": p.numpy()})
        ref_dist, ref_idx = knn(q, p, 8)
        np.testing.assert_array_equal(idx, ref_idx.numpy())
        np.testing.assert_allclose(dist, ref_dist.numpy(), atol=1e-6)

    buf = io.BytesIO()
    torch.onnx.export(
        _FpsModule(),
        (points,),
        buf,
        dynamo=False,
        opset_version=17,
        input_names=["points"],
        output_names=["idx"],
        dynamic_axes={"points": {1: "n"}},
    )
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for p in (points, points2):
        (idx,) = session.run(None, {"points": p.numpy()})
        np.testing.assert_array_equal(idx, farthest_point_sample(p, 32).numpy())


def test_a_face_of_the_object_is_no_support_plane() -> None:
    """Complete object clouds without a table: the top of a box or the flank of a lying bottle has
    the object under it and must not be taken for the table (it would cut the object away)."""
    from models import objects
    from models.core.geometry import detect_support_plane

    for oid in ("prim/box/0000", "comp/bottle/0006"):
        world, _, _ = objects.place_on_table(objects.load_mesh(oid), seed=0)
        p, _ = objects.complete_cloud(world, n=4096, seed=0)
        pts = torch.tensor(p)
        plane, _ = detect_support_plane(pts, torch.tensor([0.0, 0.0, 1.0]))
        if plane is not None:  # at most the lowest face: nothing of the object below it
            below = (pts @ plane.normal.to(pts) + plane.offset) < -0.005
            assert int(below.sum()) <= 0.02 * len(pts), oid
            assert abs(float(-plane.offset / plane.normal[2])) < 0.005, oid  # the plane z = 0 (the resting face)


def test_densify_cloud_fills_a_sparse_cloud_on_its_surface_and_leaves_a_dense_one():
    from models.core.geometry import densify_cloud, knn

    def sphere(n, r=0.04):
        i = torch.arange(n, dtype=torch.float64) + 0.5
        phi, th = torch.acos(1 - 2 * i / n), math.pi * (1 + 5**0.5) * i
        nrm = torch.stack([torch.cos(th) * torch.sin(phi), torch.sin(th) * torch.sin(phi), torch.cos(phi)], -1)
        return nrm * r, nrm

    def spacing(p):
        return float(knn(p[None], p[None], 2)[0][0, :, 1].median())

    p, n = sphere(300)  # about 8 mm apart
    assert spacing(p) > 0.006
    dp, dn = densify_cloud(p, n, 0.003, 0.0025)
    assert dp.shape[0] > 5 * p.shape[0] and dn.shape == dp.shape
    assert torch.equal(dp[:300], p)
    assert spacing(dp) < 0.0035
    # tangent samples at half the spacing sit within r^2 / 2R of a sphere of radius R
    off = (dp.norm(dim=-1) - 0.04).abs().max()
    assert float(off) < (0.5 * spacing(p)) ** 2 / (2 * 0.04) * 1.01
    torch.testing.assert_close(dn.norm(dim=-1), torch.ones(dp.shape[0], dtype=torch.float64))
    q, m = sphere(4000)  # about 2 mm apart: unchanged
    dq, dm = densify_cloud(q, m, 0.003, 0.0025)
    assert dq is q and dm is m
