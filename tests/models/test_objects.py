"""Object sets and point clouds (models.objects): real meshes, real rendering, no mocks."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial import Delaunay

from models.objects import (
    Camera,
    CameraIntrinsics,
    NoiseModel,
    catalog,
    complete_cloud,
    entry,
    export_cloud,
    list_objects,
    load_mesh,
    manifest,
    mass_properties,
    objects,
    partial_cloud,
    place_on_table,
    procedural,
    pybullet_set,
    read_ply,
    read_ply_bytes,
    write_manifest,
    write_ply,
)
from models.objects.camera import look_at
from models.objects.meshops import winding_number

FAMILIES = list(procedural.FAMILIES)


def distance_to_mesh(points: np.ndarray, mesh: trimesh.Trimesh) -> np.ndarray:
    """Exact point-to-surface distance by brute force over all triangles (no rtree needed)."""
    tri = np.asarray(mesh.triangles)
    out = np.empty(len(points))
    for i, p in enumerate(np.asarray(points, dtype=np.float64)):
        closest = trimesh.triangles.closest_point(tri, np.repeat(p[None], len(tri), axis=0))
        out[i] = np.linalg.norm(closest - p, axis=1).min()
    return out


# ------------------------------------------------------------------ catalog and splits


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_builds_in_size_range(family: str) -> None:
    kind = procedural.FAMILIES[family].kind
    for i in range(4):
        e = entry(f"{kind}/{family}/{i:04d}")
        assert e.family == family and e.source == "procedural" and e.scale == 1.0
        mesh = load_mesh(e)
        assert 0.06 <= mesh.extents.max() <= 0.15
        assert mesh.extents.max() == pytest.approx(e.params["size"], abs=1e-9)
        assert mesh.is_watertight and mesh.volume > 0
        np.testing.assert_allclose(mesh.bounds.mean(axis=0), 0.0, atol=1e-9)
        assert entry(e.id) == e  # params are a pure function of the id


def test_params_differ_between_objects_of_a_family() -> None:
    sizes = {entry(f"prim/box/{i:04d}").params["size"] for i in range(20)}
    assert len(sizes) == 20
    assert min(sizes) < 0.09 and max(sizes) > 0.12


def test_mug_has_handle_and_hollow_body() -> None:
    e = entry("comp/mug/0003")
    mesh = load_mesh(e)
    radius, h = e.params["radius"], e.params["height"]
    body_center = mesh.bounds[0, 0] + radius  # body's axis at x = min x + R
    pts, _ = complete_cloud(mesh, n=2000, seed=0)
    assert (pts[:, 0] > body_center + radius + 0.005).sum() > 50  # handle points
    # the inside is hollow: the axis half-way up is outside the solid
    mid = np.array([[body_center, 0.0, mesh.bounds[0, 2] + 0.6 * h]])
    assert winding_number(mid, mesh.triangles)[0] < 0.5


def test_pybullet_meshes_load_from_installed_package() -> None:
    root = pybullet_set.data_path()
    assert (root / "random_urdfs" / "000" / "000.obj").is_file()
    assert "site-packages" in str(root) or "dist-packages" in str(root)
    assert not list(Path(catalog.__file__).parent.rglob("*.obj"))  # nothing copied into the repo
    ids = [f"pb/{name}" for name in pybullet_set.NAMED] + [f"pb/random/{i:04d}" for i in (0, 7, 421, 999)]
    for object_id in ids:
        e = entry(object_id)
        mesh = load_mesh(e)
        assert len(mesh.faces) > 0
        assert 0.06 <= mesh.extents.max() <= 0.15
        assert mesh.extents.max() == pytest.approx(e.params["size"], rel=1e-6)
        np.testing.assert_allclose(mesh.bounds.mean(axis=0), 0.0, atol=1e-9)
    # the one all-NaN random mesh is left out of the manifest instead of breaking it
    assert "pb/random/0168" not in {e.id for e in manifest()}
    with pytest.raises(KeyError):
        entry("pb/random/0168")


def test_non_watertight_mesh_uses_convex_hull_for_mass() -> None:
    mug = load_mesh("pb/mug")
    assert not mug.is_watertight
    props = mass_properties(mug)
    assert props.method == "convex_hull" and not props.watertight
    assert props.volume == pytest.approx(mug.convex_hull.volume)
    sphere = load_mesh("prim/sphere/0002")
    r = entry("prim/sphere/0002").params["radius"]
    exact = mass_properties(sphere, density=1000.0)
    assert exact.method == "mesh"
    assert exact.mass == pytest.approx(1000.0 * 4 / 3 * np.pi * r**3, rel=0.02)


def test_splits_disjoint_deterministic_and_large_enough() -> None:
    entries = manifest()
    ids = [e.id for e in entries]
    assert len(ids) == len(set(ids))
    split_sets = {s: {e.id for e in objects(s)} for s in catalog.SPLITS}
    assert not split_sets["train"] & split_sets["validation"]
    assert not split_sets["train"] & split_sets["test"]
    assert not split_sets["validation"] & split_sets["test"]
    assert set().union(*split_sets.values()) == set(ids)
    assert len(split_sets["train"]) >= 200
    assert len(split_sets["validation"]) >= 30 and len(split_sets["test"]) >= 30
    for s in catalog.SPLITS:  # every split holds procedural and pybullet objects
        assert {e.source for e in objects(s)} == {"procedural", "pybullet_data"}
    first = catalog.manifest_json()
    catalog._manifest.cache_clear()
    assert catalog.manifest_json() == first
    with pytest.raises(ValueError, match="unknown split"):
        objects("val")


def test_adding_objects_does_not_move_existing_ones() -> None:
    small = {e.id: e for e in manifest(per_family=20, include_pybullet=False)}
    large = {e.id: e for e in manifest(per_family=60, include_pybullet=False)}
    assert set(small) < set(large)
    for object_id, e in small.items():
        assert large[object_id].split == e.split
        assert large[object_id].params == e.params


def test_write_manifest_round_trip(tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "manifest.json")
    doc = json.loads(path.read_text())
    entries = manifest()
    assert [o["id"] for o in doc["objects"]] == [e.id for e in entries]
    for o, e in zip(doc["objects"], entries):
        assert o["split"] == e.split and o["params"] == e.params and o["scale"] == e.scale
    again = write_manifest(tmp_path / "again.json")
    assert again.read_bytes() == path.read_bytes()
    shipped = Path(catalog.__file__).with_name("manifest.json")
    if shipped.exists():  # a committed manifest must be exactly what the code regenerates
        assert shipped.read_text() == path.read_text()


def test_list_objects_and_errors() -> None:
    rows = list_objects("test")
    assert rows and all(r["split"] == "test" for r in rows)
    assert {"id", "split", "family", "source", "params", "scale"} <= set(rows[0])
    with pytest.raises(KeyError, match="malformed"):
        entry("nope")
    with pytest.raises(KeyError, match="family"):
        entry("prim/mug/0001")  # mug is a composite


# ------------------------------------------------------------------ complete clouds


def test_complete_cloud_on_surface_with_outward_normals() -> None:
    sphere = load_mesh("prim/sphere/0001")
    pts, nrm = complete_cloud(sphere, n=4096, seed=3)
    assert pts.shape == (4096, 3) and nrm.shape == (4096, 3)
    assert pts.dtype == np.float32 and nrm.dtype == np.float32
    idx = np.random.default_rng(0).choice(4096, 300, replace=False)
    assert distance_to_mesh(pts[idx], sphere).max() < 1e-4
    radial = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    assert (np.einsum("ij,ij->i", radial, nrm) > 0.98).all()

    box = load_mesh("prim/box/0004")
    pts, nrm = complete_cloud(box, n=4096, seed=1)
    assert distance_to_mesh(pts[:300], box).max() < 1e-4
    half = box.extents / 2
    ratio = np.abs(pts) / half  # 1 on the face a point lies on
    axis = ratio.argmax(axis=1)
    clear = np.sort(ratio, axis=1)[:, -2] < 0.999  # not on an edge
    assert clear.mean() > 0.95
    expected = np.zeros_like(nrm)
    expected[np.arange(len(pts)), axis] = np.sign(pts[np.arange(len(pts)), axis])
    np.testing.assert_allclose(nrm[clear], expected[clear], atol=1e-6)
    # area-uniform: share of samples per face pair matches its area share
    e = box.extents
    areas = np.array([e[1] * e[2], e[0] * e[2], e[0] * e[1]])
    share = [(axis == a).mean() for a in range(3)]
    np.testing.assert_allclose(share, areas / areas.sum(), atol=0.03)


def test_complete_cloud_is_deterministic_per_seed() -> None:
    mesh = load_mesh("prim/torus/0002")
    a, _ = complete_cloud(mesh, n=512, seed=7)
    b, _ = complete_cloud(mesh, n=512, seed=7)
    c, _ = complete_cloud(mesh, n=512, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("object_id", ["comp/mug/0001", "comp/hammer/0005", "pb/teddy"])
def test_multi_part_clouds_skip_hidden_surfaces(object_id: str) -> None:
    mesh = load_mesh(object_id)
    assert mesh.body_count > 1
    pts, nrm = complete_cloud(mesh, n=1024, seed=0)
    # just outside the union's surface the winding number is 0; inside another part it is >= 1
    w = winding_number(pts + 1e-5 * nrm, mesh.triangles)
    assert (w < 0.5).all()
    # the check has teeth: unfiltered samples of the same mesh do land inside other parts
    raw, faces = trimesh.sample.sample_surface(mesh, 2048, seed=0)
    w_raw = winding_number(raw + 1e-5 * mesh.face_normals[faces], mesh.triangles)
    assert (w_raw > 0.5).any()


# ------------------------------------------------------------------ table placement


@pytest.mark.parametrize(
    "object_id",
    ["prim/box/0001", "comp/mug/0002", "comp/bottle/0003", "pb/duck", "pb/random/0421", "prim/sphere/0003"],
)
def test_place_on_table_rests_stably_on_z0(object_id: str) -> None:
    mesh = load_mesh(object_id)
    world, pose, table_height = place_on_table(mesh, seed=4)
    assert table_height == 0.0
    assert abs(world.bounds[0, 2]) < 1e-3
    r = pose[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(world.vertices, mesh.vertices @ r.T + pose[:3, 3], atol=1e-12)
    np.testing.assert_allclose(world.bounds.mean(axis=0)[:2], 0.0, atol=1e-9)
    com = (world if world.is_volume else world.convex_hull).center_mass
    support = world.vertices[world.vertices[:, 2] < 1e-3][:, :2]
    assert len(support) >= 3 and Delaunay(support).find_simplex(com[:2]) >= 0  # COM over the support
    _, pose2, _ = place_on_table(mesh, seed=4)
    np.testing.assert_array_equal(pose, pose2)


# ------------------------------------------------------------------ partial clouds


@pytest.fixture(scope="module")
def sphere_on_table() -> tuple[trimesh.Trimesh, float]:
    mesh = load_mesh("prim/sphere/0003")
    world, _, _ = place_on_table(mesh, seed=0)
    return world, entry("prim/sphere/0003").params["radius"]


def test_partial_cloud_has_table_and_object(sphere_on_table: tuple[trimesh.Trimesh, float]) -> None:
    world, _ = sphere_on_table
    view = partial_cloud(world, seed=11)
    pts, obj = view.points, view.object_mask
    assert pts.dtype == np.float32 and view.normals is not None and view.normals.shape == pts.shape
    assert (~obj).sum() > 1000 and obj.sum() > 200
    assert np.abs(pts[~obj, 2]).max() < 0.01  # table points: z = 0 within noise
    assert np.abs(pts[~obj, :2]).max() <= 0.25 + 0.01  # clipped to the 0.5 m square
    lo, hi = world.bounds
    assert ((pts[obj] >= lo - 0.01) & (pts[obj] <= hi + 0.01)).all()
    # camera on the hemisphere: elevation 20-70 deg, distance 0.4-0.8 m from the object
    offset = view.camera_position - world.bounds.mean(axis=0)
    dist = np.linalg.norm(offset)
    assert 0.4 - 1e-9 <= dist <= 0.8 + 1e-9
    assert 20 - 1e-6 <= np.degrees(np.arcsin(offset[2] / dist)) <= 70 + 1e-6
    np.testing.assert_allclose(view.camera_pose[:3, 3], view.camera_position)
    assert view.depth.shape == (view.intrinsics.height, view.intrinsics.width)
    assert partial_cloud(world, table=False, seed=11).object_mask.all()


def test_partial_cloud_sees_only_the_camera_side(sphere_on_table: tuple[trimesh.Trimesh, float]) -> None:
    world, radius = sphere_on_table
    center = world.bounds.mean(axis=0)
    for seed in range(4):
        view = partial_cloud(world, seed=seed, noise=NoiseModel.none())
        p = view.points[view.object_mask].astype(np.float64)
        r = np.linalg.norm(p - center, axis=1)
        assert np.abs(r - radius).max() < 1e-3  # on the (tessellated) sphere
        outward = (p - center) / r[:, None]
        to_cam = view.camera_position - p
        to_cam /= np.linalg.norm(to_cam, axis=1, keepdims=True)
        cos = np.einsum("ij,ij->i", outward, to_cam)
        assert cos.min() > -0.05  # no back-side points
        assert (cos > 0.5).mean() > 0.5
        assert view.normals is not None  # true face normals, outward
        assert (np.einsum("ij,ij->i", view.normals[view.object_mask], outward) > 0.98).all()
        assert np.abs(view.points[~view.object_mask, 2]).max() < 1e-6  # exact depth: table at 0


def test_depth_noise_and_dropout_match_the_model(sphere_on_table: tuple[trimesh.Trimesh, float]) -> None:
    world, _ = sphere_on_table
    center = world.bounds.mean(axis=0)
    cam = Camera(CameraIntrinsics.from_fov(), look_at(center + np.array([0.35, 0.1, 0.4]), center))
    noise = NoiseModel(sigma0=0.002, sigma_z2=0.004, dropout=0.05)
    clean = partial_cloud(world, camera=cam, noise=NoiseModel.none(), seed=0)
    noisy = partial_cloud(world, camera=cam, noise=noise, seed=0)
    assert len(noisy.points) / len(clean.points) == pytest.approx(0.95, abs=0.01)
    table = noisy.points[~noisy.object_mask].astype(np.float64)
    # a depth error dz moves a table point along its ray: world dz = dz * ray_z / ray_cam_z
    ray = table - cam.position
    depth = ray @ cam.pose[:3, 2]
    sigma = 0.002 + 0.004 * depth**2  # the documented model: sigma0 + sigma_z2 * z^2
    expected = np.sqrt(np.mean((sigma * ray[:, 2] / depth) ** 2))
    assert table[:, 2].std() == pytest.approx(expected, rel=0.1)
    assert table[:, 2].mean() == pytest.approx(0.0, abs=expected / 10)


def test_flying_pixels_only_when_enabled(sphere_on_table: tuple[trimesh.Trimesh, float]) -> None:
    world, radius = sphere_on_table
    center = world.bounds.mean(axis=0)

    def strays(noise: NoiseModel) -> int:
        view = partial_cloud(world, seed=5, noise=noise)
        p = view.points.astype(np.float64)
        off_sphere = np.abs(np.linalg.norm(p - center, axis=1) - radius) > 0.003
        off_table = np.abs(p[:, 2]) > 0.003
        return int((off_sphere & off_table).sum())

    assert strays(NoiseModel.none()) == 0
    assert strays(NoiseModel(sigma0=0.0, sigma_z2=0.0, dropout=0.0, flying_prob=1.0)) > 10


def test_partial_cloud_of_composite_sees_nearest_surface() -> None:
    mesh = load_mesh("comp/mug/0004")
    world, _, _ = place_on_table(mesh, seed=2)
    center = world.bounds.mean(axis=0)
    cam = Camera(CameraIntrinsics.from_fov(), look_at(center + np.array([0.25, -0.2, 0.35]), center))
    view = partial_cloud(world, camera=cam, seed=3, noise=NoiseModel.none())
    obj = view.points[view.object_mask].astype(np.float64)
    assert len(obj) > 300
    idx = np.random.default_rng(0).choice(len(obj), 120, replace=False)
    assert distance_to_mesh(obj[idx], world).max() < 1e-4
    # nothing of the mug lies between the camera and a returned point (z-buffer keeps the nearest)
    frac = np.linspace(0.5, 0.995, 25)[None, :, None]
    segment = cam.position + frac * (obj[idx][:, None, :] - cam.position)
    assert (winding_number(segment.reshape(-1, 3), world.triangles) < 0.5).all()


# ------------------------------------------------------------------ PLY


@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip(tmp_path: Path, binary: bool) -> None:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(257, 3)).astype(np.float32)
    nrm = rng.normal(size=(257, 3)).astype(np.float32)
    path = write_ply(tmp_path / "a.ply", pts, nrm, binary=binary)
    p2, n2 = read_ply(path)
    np.testing.assert_array_equal(p2, pts)
    assert n2 is not None
    np.testing.assert_array_equal(n2, nrm)
    p3, n3 = read_ply(write_ply(tmp_path / "b.ply", pts, binary=binary))
    np.testing.assert_array_equal(p3, pts)
    assert n3 is None


def test_ply_extra_properties_and_elements() -> None:
    # binary: a face element before the vertices, colour bytes and a double between coordinates
    header = (
        b"ply\nformat binary_little_endian 1.0\ncomment test\nelement face 2\n"
        b"property list uchar int vertex_indices\nelement vertex 3\nproperty float x\n"
        b"property uchar red\nproperty double y\nproperty float z\nproperty float nx\n"
        b"property float ny\nproperty float nz\nproperty uchar alpha\nend_header\n"
    )
    faces = struct.pack("<B3i", 3, 0, 1, 2) + struct.pack("<B4i", 4, 0, 1, 2, 0)
    rows = b"".join(
        struct.pack("<fBdffffB", i + 0.5, 200, -i * 2.0, 3.0, 0.0, 0.0, 1.0, 255) for i in range(3)
    )
    pts, nrm = read_ply_bytes(header + faces + rows)
    np.testing.assert_allclose(pts, [[0.5, 0, 3], [1.5, -2, 3], [2.5, -4, 3]])
    assert nrm is not None
    np.testing.assert_allclose(nrm, [[0, 0, 1]] * 3)
    # ascii with colours and a trailing face element; big-endian doubles
    text = (
        b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
        b"property uchar red\nproperty uchar green\nproperty uchar blue\nelement face 1\n"
        b"property list uchar int vertex_indices\nend_header\n1 2 3 255 0 0\n4 5 6 0 255 0\n3 0 1 1\n"
    )
    pts, nrm = read_ply_bytes(text)
    np.testing.assert_allclose(pts, [[1, 2, 3], [4, 5, 6]])
    assert nrm is None
    big = (
        b"ply\nformat binary_big_endian 1.0\nelement vertex 1\nproperty double x\nproperty double y\n"
        b"property double z\nend_header\n" + struct.pack(">3d", 1.0, -2.0, 0.25)
    )
    np.testing.assert_allclose(read_ply_bytes(big)[0], [[1.0, -2.0, 0.25]])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "magic"),
        (b"PK\x03\x04 zip file", "magic"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n", "end_header"),
        (
            b"ply\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
            b"end_header\n1 2 3\n",
            "format",
        ),
        (
            b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\nproperty float y\n"
            b"property float z\nend_header\n" + b"\x00" * 12,
            "truncated",
        ),
        (
            b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nend_header\n1 2\n",
            "lacks z",
        ),
        (
            b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
            b"end_header\n1 two 3\n",
            "non-numeric",
        ),
        (
            b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
            b"end_header\n1 2 3\n",
            "declares 3",
        ),
        (
            b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
            b"property float nx\nend_header\n1 2 3 0\n",
            "nx, ny, nz",
        ),
        (
            b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
            b"end_header\n1 nan 3\n",
            "non-finite",
        ),
        (
            b"ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\nproperty float x\n"
            b"property float y\nproperty float z\nend_header\n" + b"\x00" * 24,
            "truncated",
        ),
        (
            b"ply\nformat ascii 1.0\nelement face 1\nproperty list uchar int vertex_indices\n"
            b"end_header\n3 0 1 2\n",
            "no 'vertex'",
        ),
    ],
)
def test_malformed_ply_raises_value_error(data: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=f"malformed PLY.*{match}"):
        read_ply_bytes(data)


# ------------------------------------------------------------------ CLI helpers


def test_export_cloud_complete_and_partial(tmp_path: Path) -> None:
    info = export_cloud("comp/bottle/0001", tmp_path / "c.ply", kind="complete", n=1000, seed=1)
    pts, nrm = read_ply(info["path"])
    assert info["n_points"] == 1000 and pts.shape == (1000, 3) and nrm is not None
    assert info["frame"] == "object" and info["split"] == entry("comp/bottle/0001").split
    info = export_cloud("pb/duck", tmp_path / "p.ply", kind="partial", n=2048, seed=2, binary=False)
    pts, nrm = read_ply(info["path"])
    assert pts.shape == (2048, 3) and nrm is not None and info["frame"] == "world"
    assert np.asarray(info["camera_pose"]).shape == (4, 4)
    assert (np.abs(pts[:, 2]) < 0.01).sum() > 500  # the table is in the cloud
    with pytest.raises(ValueError, match="kind"):
        export_cloud("pb/duck", tmp_path / "x.ply", kind="mesh")  # type: ignore[arg-type]
