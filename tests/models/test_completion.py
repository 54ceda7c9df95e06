"""Mirror completion of single-view clouds, checked against the analytic surfaces they came from."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models import objects
from models.pipeline import GraspQuery, PipelineConfig, QueryError, preprocess, validate_query
from models.stages.completion import CompletionConfig, mirror_complete, partial_score


def cylinder(radius: float, height: float, n: int, seed: int, view: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Side surface of an upright cylinder, axis at the origin; with ``view`` (horizontal unit
    vector) only the half facing it, as a camera sees it."""
    g = torch.Generator().manual_seed(seed)
    ang = torch.rand(n, generator=g) * 2 * math.pi
    z = torch.rand(n, generator=g) * height
    nrm = torch.stack([ang.cos(), ang.sin(), torch.zeros(n)], 1)
    pts = nrm * radius + torch.stack([torch.zeros(n), torch.zeros(n), z], 1)
    if view is not None:
        keep = nrm @ view > 0.05
        pts, nrm = pts[keep], nrm[keep]
    return pts, nrm


def box_view(size: tuple[float, float, float], n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Front face (+y) and top face of a box centred at the origin in x/y: a face-on, raised view."""
    g = torch.Generator().manual_seed(seed)
    sx, sy, sz = size
    front = torch.stack([(torch.rand(n, generator=g) - 0.5) * sx, torch.full((n,), sy / 2), torch.rand(n, generator=g) * sz], 1)
    top = torch.stack([(torch.rand(n, generator=g) - 0.5) * sx, (torch.rand(n, generator=g) - 0.5) * sy, torch.full((n,), sz)], 1)
    nrm = torch.cat([torch.tensor([[0.0, 1.0, 0.0]]).expand(n, 3), torch.tensor([[0.0, 0.0, 1.0]]).expand(n, 3)])
    return torch.cat([front, top]), nrm


def test_a_closed_surface_is_left_alone():
    pts, nrm = cylinder(0.04, 0.12, 1500, seed=0)
    score, _ = partial_score(pts, nrm)
    assert score < 0.1
    comp = mirror_complete(pts, nrm)
    assert not comp.completed and comp.points.shape == pts.shape


@pytest.mark.parametrize("angle", [0.0, 1.0, 2.5])
def test_half_cylinder_is_mirrored_about_its_axis(angle: float):
    view = torch.tensor([math.cos(angle), math.sin(angle), 0.0])
    pts, nrm = cylinder(0.04, 0.12, 1500, seed=1, view=view)
    pts = pts + torch.tensor([0.3, -0.2, 0.0])  # the axis is anywhere; the plane must follow it
    comp = mirror_complete(pts, nrm)
    assert comp.completed and comp.observed == pts.shape[0]
    assert torch.allclose(comp.view_dir, view, atol=0.1)  # towards the camera
    axis_depth = float(torch.tensor([0.3, -0.2, 0.0]) @ comp.view_dir)
    assert comp.plane_depth == pytest.approx(axis_depth, abs=0.004)
    back = comp.points[comp.observed:]
    assert back.shape[0] > 0.5 * pts.shape[0]
    radial = (back[:, :2] - torch.tensor([0.3, -0.2])).norm(dim=1)
    assert (radial - 0.04).abs().max() < 0.004  # every mirrored point is on the true cylinder
    assert bool(((back @ comp.view_dir) < axis_depth + 0.004).all())  # all of it behind the axis, away from the camera
    nb = comp.normals[comp.observed:]
    out = ((back[:, :2] - torch.tensor([0.3, -0.2])) * nb[:, :2]).sum(1)
    assert bool((out > 0).all())  # reflected normals still point outward


def test_box_seen_face_on_takes_the_top_face_depth():
    pts, nrm = box_view((0.1, 0.06, 0.05), 600, seed=2)
    comp = mirror_complete(pts, nrm, cfg=CompletionConfig(mode="mirror"))
    assert comp.completed
    assert comp.plane_depth == pytest.approx(0.0, abs=0.004)  # the box centre, halfway along the top face
    back = comp.points[comp.observed:]
    on_back = (back[:, 1] + 0.03).abs() < 0.001
    on_top = (back[:, 2] - 0.05).abs() < 0.001
    assert bool((on_back | on_top).all())  # every mirrored point is on the true box
    assert int(on_back.sum()) > 500  # the mirrored front face is the true back face


def test_modes_and_viewpoint():
    pts, nrm = cylinder(0.04, 0.12, 1500, seed=3)
    assert not mirror_complete(pts, nrm).completed
    assert mirror_complete(pts, nrm, cfg=CompletionConfig(mode="mirror")).completed  # the client insists
    half, hn = cylinder(0.04, 0.12, 1500, seed=3, view=torch.tensor([1.0, 0.0, 0.0]))
    assert not mirror_complete(half, hn, cfg=CompletionConfig(mode="off")).completed
    comp = mirror_complete(half, hn, viewpoint=torch.tensor([0.5, 0.0, 0.3]))
    assert comp.completed and torch.allclose(comp.view_dir, torch.tensor([1.0, 0.0, 0.0]), atol=0.05)
    with pytest.raises(ValueError, match="completion mode"):
        CompletionConfig(mode="sometimes")


def test_pipeline_completes_a_camera_view_and_keeps_what_was_seen():
    mesh = objects.load_mesh("prim/cylinder/0009")
    world, _, _ = objects.place_on_table(mesh, seed=0)
    view = objects.partial_cloud(world, seed=0, with_normals=False)
    pts = np.asarray(view.points, dtype=np.float32)
    cfg = PipelineConfig()
    prep = preprocess(GraspQuery(points=pts, viewpoint=tuple(view.camera_position)), cfg)
    assert prep.observed is not None
    assert prep.points.shape[0] <= cfg.model_points
    assert prep.completion_note is not None and "completed by mirroring" in prep.completion_note
    # the completed cloud reaches farther from the camera than anything observed
    cam = prep.to_request[:3, :3].T.float() @ (torch.tensor(view.camera_position).float() - prep.to_request[:3, 3].float())
    far_obs = float((prep.observed[0] - cam).norm(dim=1).max())
    assert float((prep.points - cam).norm(dim=1).max()) > far_obs + 0.01
    off = preprocess(GraspQuery(points=pts, completion="off"), cfg)
    assert off.observed is None and off.completion_note is None
    # a single view either way (the optimisers' unseen-side term); a complete cloud is not one
    assert prep.single_view and off.single_view
    full, _ = objects.complete_cloud(mesh, n=2000, seed=0)
    assert not preprocess(GraspQuery(points=np.asarray(full, dtype=np.float32)), cfg).single_view


def test_only_the_optimisers_grasp_the_completed_cloud_unless_asked():
    """fast/optimize use the completion (it helped them on validation views); dgtr keeps what
    was seen under completion=auto, and gets the completion when the query says mirror."""
    from models.pipeline import GraspPipeline

    mesh = objects.load_mesh("prim/cylinder/0009")
    world, _, _ = objects.place_on_table(mesh, seed=0)
    view = objects.partial_cloud(world, seed=0, with_normals=False)
    pts = np.asarray(view.points, dtype=np.float32)
    pipe = GraspPipeline()
    mirrored = [w for w in pipe.run(GraspQuery(points=pts, num_grasps=2, method="fast")).warnings if "mirroring" in w]
    assert len(mirrored) == 1
    assert not any("mirroring" in w for w in pipe.run(GraspQuery(points=pts, num_grasps=2, method="dgtr", refine=False)).warnings)
    forced = pipe.run(GraspQuery(points=pts, num_grasps=2, method="dgtr", refine=False, completion="mirror"))
    assert any("mirroring" in w for w in forced.warnings)


@pytest.mark.parametrize("field,value,message", [
    ("viewpoint", (0.0, 1.0), "viewpoint"),
    ("viewpoint", (0.0, float("nan"), 1.0), "viewpoint"),
    ("completion", "always", "completion"),
])
def test_bad_completion_options_are_refused(field, value, message):
    pts = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32) * 0.03
    with pytest.raises(QueryError, match=message):
        validate_query(GraspQuery(points=pts, **{field: value}), PipelineConfig())
