"""The referee's protocol on a cloud proxy (``sim_worker.cloud_check``): the proxy's geometry, and its
verdicts against the referee of record on the object itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from models import objects
from models.grasp import GraspSet
from sim_worker.cloud_check import CloudCheck
from sim_worker.config import SimConfig
from sim_worker.parallel import SimPool
from sim_worker.scene import build_scene, object_from_cloud

from .helpers import DATA, trust_case


def _case_cloud(name: str) -> tuple[np.ndarray, np.ndarray, list]:
    doc = json.loads((DATA / f"{name}.json").read_text())
    prim = doc.pop("primitive")
    s = prim["size"]
    if prim["kind"] == "cylinder":
        mesh = trimesh.creation.cylinder(radius=s[0], height=2 * s[1], sections=64)
    else:
        mesh = trimesh.creation.box(extents=[2 * x for x in s])
    p, n = objects.complete_cloud(mesh, n=1024, seed=0)
    return p, n, GraspSet.model_validate(doc).grasps


def test_proxy_spheres_touch_the_surface_at_their_points():
    p, n = objects.complete_cloud(trimesh.creation.icosphere(subdivisions=3, radius=0.04), n=512, seed=0)
    obj = object_from_cloud(p, n)
    centres = np.array([part.pos for part in obj.parts])
    radii = np.array([part.size[0] for part in obj.parts])
    assert len(obj.parts) == 512 and np.allclose(radii, 0.004)  # a thick object: the largest spheres
    assert np.allclose(np.linalg.norm(centres - p, axis=1), radii)
    assert np.all(np.einsum("ij,ij->i", p - centres, n) > 0)  # each centre inside, behind its point
    sc = build_scene(obj, SimConfig().physics)
    assert len(sc.object_geoms) == 512


def test_thin_walls_get_thin_spheres():
    """Two sheets 3 mm apart, facing away from each other (a wall seen from both sides): no sphere may
    reach through to the other side."""
    g = np.stack(np.meshgrid(np.linspace(0, 0.05, 20), np.linspace(0, 0.05, 20)), -1).reshape(-1, 2)
    top = np.c_[g, np.full(len(g), 0.003)]
    bottom = np.c_[g, np.zeros(len(g))]
    p = np.r_[top, bottom]
    n = np.r_[np.tile([0, 0, 1.0], (len(g), 1)), np.tile([0, 0, -1.0], (len(g), 1))]
    obj = object_from_cloud(p, n)
    radii = np.array([part.size[0] for part in obj.parts])
    centres = np.array([part.pos for part in obj.parts])
    assert np.allclose(radii, 0.0015)
    assert centres[:, 2].min() - 0.0015 >= -1e-9 and centres[:, 2].max() + 0.0015 <= 0.003 + 1e-9


def test_bad_clouds_are_refused():
    with pytest.raises(ValueError, match="normals"):
        object_from_cloud(np.zeros((10, 3)), np.zeros((9, 3)))
    with pytest.raises(ValueError, match="finite"):
        object_from_cloud(np.full((10, 3), np.nan), np.ones((10, 3)))


@pytest.mark.parametrize("name", ["cylinder_power", "box_pinch"])
def test_verdicts_match_the_referee_on_the_object(name):
    """On a 1 024-point cloud of the trust cases' primitives, the check gives the referee of record's
    verdicts on the primitive itself (cylinder: two of three hold; box pinches: none)."""
    obj, arrays = trust_case(name)
    p, n, grasps = _case_cloud(name)
    with SimPool("mujoco", procs=1, cfg=SimConfig()) as pool:
        ref = [bool(r["success"]) for r in pool.validate(obj, arrays)]
    with CloudCheck() as check:
        got = check(p, n, grasps)
    assert got["holds"].tolist() == ref
    assert got["shift_m"].shape == (len(grasps),) and np.all(got["shift_m"] >= 0)
    assert any(ref) or name == "box_pinch"


def test_no_grasps_no_simulation():
    with CloudCheck() as check:
        out = check(np.zeros((8, 3)), np.ones((8, 3)), [])
    assert out["holds"].shape == (0,) and check._pool is None
