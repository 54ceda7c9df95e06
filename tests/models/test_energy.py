"""Energy terms: known values on constructed cases and finite-difference gradient checks."""

from __future__ import annotations

import math

import pytest
import torch

from models.core.geometry import ObjectCloud
from models.core.geometry import Plane as SupportPlane
from models.physics.energy import (
    EnergyWeights,
    contact_distance,
    force_closure,
    grasp_energy,
    hand_inside_object,
    joint_limits,
    object_penetration,
    self_penetration,
    table_penetration,
)
from models.physics.init_poses import palm_placements


def _sphere(n: int = 800, r: float = 0.04) -> ObjectCloud:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    th = math.pi * (1 + 5**0.5) * i
    nrm = torch.stack([torch.cos(th) * torch.sin(phi), torch.sin(th) * torch.sin(phi), torch.cos(phi)], -1)
    return ObjectCloud(nrm * r, nrm)


def _configs(h, b: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    obj = _sphere()
    pos, rot = palm_placements(h, obj.points, b, standoff_m=0.0, generator=gen)
    q = h.init_pose.expand(b, -1).clone() + torch.randn(b, h.num_joints, generator=gen, dtype=torch.float64) * 0.2
    return obj, pos, rot, q


def test_force_closure_known_values():
    # two antipodal contacts with opposing normals: balanced force and torque -> 0
    p = torch.tensor([[[0.05, 0, 0], [-0.05, 0, 0]]], dtype=torch.float64)
    n = torch.tensor([[[-1.0, 0, 0], [1.0, 0, 0]]], dtype=torch.float64)
    assert float(force_closure(p, n)) == pytest.approx(0.0, abs=1e-15)
    # same side: net force 2 along -x -> E = 4
    n2 = torch.tensor([[[-1.0, 0, 0], [-1.0, 0, 0]]], dtype=torch.float64)
    assert float(force_closure(p, n2)) == pytest.approx(4.0)
    # offset antipodal pair: forces cancel, torque = 2 * 0.01 -> E = 4e-4
    p3 = torch.tensor([[[0.05, 0.01, 0], [-0.05, -0.01, 0]]], dtype=torch.float64)
    assert float(force_closure(p3, n)) == pytest.approx(4e-4)


def test_contact_distance_and_penetration_known_values(shadow64):
    obj = _sphere(4000, 0.04)
    pts = torch.tensor([[[0.05, 0, 0], [0, 0.03, 0]]], dtype=torch.float64)
    # |0.05-0.04| + |0.03-0.04| = 0.02, up to the cloud's sampling resolution
    assert float(contact_distance(pts, obj)) == pytest.approx(0.02, abs=1.5e-3)


def test_joint_limits_energy(shadow64):
    h = shadow64
    q = h.open_pose[None].clone()
    assert float(joint_limits(h, q)) == 0.0
    q[0, 0] = h.upper[0] + 0.1  # FFJ3 beyond its limit by 0.1 rad
    assert float(joint_limits(h, q)) == pytest.approx(0.1)
    # tendon band: FFJ1 = 0.5, FFJ0 = 0 violates 0.00705*J0 - 0.00805*J1 >= -0.001 by 0.003025 m of tendon
    q = h.open_pose[None].clone()
    i1 = h.joint_names.index("FFJ1")
    q[0, i1] = 0.5
    assert float(joint_limits(h, q)) == pytest.approx((0.00805 * 0.5 - 0.001) / 0.00705)
    assert float(joint_limits(h, h.project_joints(q))) == pytest.approx(0.0, abs=1e-12)


def test_table_and_object_penetration_known_values(shadow64):
    h = shadow64
    eye = torch.eye(3, dtype=torch.float64)[None]
    z = torch.zeros(1, 3, dtype=torch.float64)
    frames = h.forward_kinematics(z, eye, h.open_pose[None])
    c, r = h.penetration_keypoints(frames)
    # a plane just touching the lowest keypoint sphere gives zero; raising it by 3 mm gives 3 mm per sphere touched
    low = float((c[0, :, 2] - r).min())
    plane = SupportPlane(torch.tensor([0.0, 0, 1], dtype=torch.float64), -low)
    assert float(table_penetration(h, frames, plane)) == pytest.approx(0.0, abs=1e-12)
    plane2 = SupportPlane(torch.tensor([0.0, 0, 1], dtype=torch.float64), -(low + 0.003))
    n_touch = int(((c[0, :, 2] - r) < low + 0.003).sum())
    expected = float((low + 0.003 - (c[0, :, 2] - r)).clamp_min(0).sum())
    assert n_touch >= 1
    assert float(table_penetration(h, frames, plane2)) == pytest.approx(expected)
    # one object point 4 mm inside the middle of the index proximal capsule (radius 10 mm)
    li = h.link_names.index("ffproximal")
    centre = frames.translation[0, li] + frames.rotation[0, li] @ torch.tensor([0.006, 0, 0.0225], dtype=torch.float64)
    obj = ObjectCloud(centre[None], torch.tensor([[1.0, 0, 0]], dtype=torch.float64))
    assert float(object_penetration(h, frames, obj)) == pytest.approx(0.004, abs=1e-9)


def test_self_penetration_detects_crossed_fingers(shadow64):
    h = shadow64
    eye = torch.eye(3, dtype=torch.float64)[None]
    z = torch.zeros(1, 3, dtype=torch.float64)
    q = h.open_pose[None].clone()
    assert float(self_penetration(h, h.forward_kinematics(z, eye, q))) == 0.0
    # index abducted towards the middle finger, middle towards the index: the fingers cross
    q[0, h.joint_names.index("FFJ3")] = -0.349
    q[0, h.joint_names.index("MFJ3")] = 0.349
    assert float(self_penetration(h, h.forward_kinematics(z, eye, q))) > 0.001


def _gradcheck(fn, *inputs):
    # the terms are piecewise smooth (relu, min over primitives): a tiny eps keeps FD off the kinks
    return torch.autograd.gradcheck(fn, inputs, eps=1e-8, atol=1e-4, rtol=5e-3)


def test_gradients_match_finite_differences(shadow64):
    h = shadow64
    obj, pos, rot, q = _configs(h, 3)
    # push the hands into the object a little so penetration terms are active
    pos = pos + (obj.center - pos) * 0.25
    plane = SupportPlane(torch.tensor([0.0, 0, 1], dtype=torch.float64), 0.03)
    pos = pos.clone().requires_grad_(True)
    q = q.clone().requires_grad_(True)
    fr = lambda p, qq: h.forward_kinematics(p, rot, qq)  # noqa: E731
    active = {
        "pen": float(object_penetration(h, fr(pos, q), obj).min().detach()),
        "table": float(table_penetration(h, fr(pos, q), plane).min().detach()),
        "joints": float(joint_limits(h, q * 3).min().detach()),
    }
    assert all(v > 0 for v in active.values()), f"terms must be active for a meaningful check: {active}"
    assert _gradcheck(lambda p, qq: object_penetration(h, fr(p, qq), obj), pos, q)
    assert _gradcheck(lambda p, qq: table_penetration(h, fr(p, qq), plane), pos, q)
    assert _gradcheck(lambda qq: joint_limits(h, qq * 3), q)
    # self-penetration: a crossed-finger configuration
    q2 = h.open_pose[None].clone()
    q2[0, h.joint_names.index("FFJ3")] = -0.3
    q2[0, h.joint_names.index("MFJ3")] = 0.3
    q2.requires_grad_(True)
    eye = torch.eye(3, dtype=torch.float64)[None]
    z = torch.zeros(1, 3, dtype=torch.float64)
    assert float(self_penetration(h, h.forward_kinematics(z, eye, q2)).detach()) > 0
    assert _gradcheck(lambda qq: self_penetration(h, h.forward_kinematics(z, eye, qq)), q2)
    # force closure and contact distance w.r.t. contact positions
    cand = h.contact_candidates(fr(pos, q))[:, :4].detach().clone().requires_grad_(True)
    nrm = torch.nn.functional.normalize(torch.randn(3, 4, 3, dtype=torch.float64), dim=-1)
    assert _gradcheck(lambda c: force_closure(c, nrm, obj.center), cand)
    assert _gradcheck(lambda c: contact_distance(c, obj), cand)


def test_total_energy_is_weighted_sum(shadow64):
    h = shadow64
    obj, pos, rot, q = _configs(h, 4, seed=1)
    contacts = torch.randint(h.contact_link.shape[0], (4, 4), generator=torch.Generator().manual_seed(0))
    plane = SupportPlane(torch.tensor([0.0, 0, 1], dtype=torch.float64), 0.05)
    t = grasp_energy(h, pos, rot, q, contacts, obj, plane)
    w = {"fc": 1.0, "dis": 100.0, "pen": 100.0, "spen": 10.0, "joints": 1.0, "table": 100.0}
    expect = sum(w[k] * t[k] for k in w)
    assert torch.allclose(t["total"], expect)
    assert t["total"].shape == (4,)


def test_hand_inside_object_sees_the_unobserved_side(shadow64):
    """A single-view cloud: a 40 cm square patch (4 mm grid, normals +z) seen from above. The open
    hand wholly below it sits in the unobserved part of the object: E_pen (object points inside the
    hand) is blind to it, E_inside charges every keypoint sphere its depth below the surface."""
    h = shadow64
    eye = torch.eye(3, dtype=torch.float64)[None]
    frames0 = h.forward_kinematics(torch.zeros(1, 3, dtype=torch.float64), eye, h.open_pose[None])
    c0, r = h.penetration_keypoints(frames0)
    centre = c0[0].mean(0)
    g = torch.arange(-0.2, 0.2001, 0.004, dtype=torch.float64)
    gx, gy = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([gx.reshape(-1) + centre[0], gy.reshape(-1) + centre[1], torch.zeros(gx.numel(), dtype=torch.float64)], -1)
    obj = ObjectCloud(pts, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(pts))
    for shift, inside_expected in ((-(float((c0[0, :, 2] + r).max()) + 0.01), True), (0.02 - float((c0[0, :, 2] - r).min()), False)):
        pos = torch.tensor([[0.0, 0.0, shift]], dtype=torch.float64)
        frames = h.forward_kinematics(pos, eye, h.open_pose[None])
        c, _ = h.penetration_keypoints(frames)
        assert float(object_penetration(h, frames, obj)) == 0.0
        expected = float(torch.relu(r - c[0, :, 2]).sum())
        got = float(hand_inside_object(h, frames, obj))
        if inside_expected:
            assert expected > 0.5  # 106 spheres, each a few cm deep
            assert got == pytest.approx(expected, rel=0.03)  # the neighbour blend is within a fraction of a mm per sphere
        else:
            assert got == expected == 0.0
    # the term enters the total only with a positive weight
    contacts = torch.zeros(1, 4, dtype=torch.long)
    off = grasp_energy(h, pos, eye, h.open_pose[None], contacts, obj)
    on = grasp_energy(h, pos, eye, h.open_pose[None], contacts, obj, weights=EnergyWeights(inside=100.0))
    assert "inside" not in off and "inside" in on
    assert torch.allclose(on["total"], off["total"] + 100.0 * on["inside"])


def test_per_primitive_penetration_margin(shadow64):
    """A margin per collision primitive: all equal is the scalar margin; a larger one on some
    primitives counts exactly the points within it of those primitives (a brute-force reference)."""
    h = shadow64
    obj, pos, rot, q = _configs(h, 6, seed=2)
    frames = h.forward_kinematics(pos, rot, q)
    g = len(h.geom_type)
    same = object_penetration(h, frames, obj, torch.full((g,), 0.002, dtype=torch.float64))
    assert torch.allclose(same, object_penetration(h, frames, obj, 0.002))
    margin = torch.where(torch.arange(g) % 2 == 0, 0.002, 0.006).to(torch.float64)
    sd = h.signed_distance_per_geom(frames, obj.points.expand(6, *obj.points.shape))  # (B, G, P)
    ref = torch.relu((margin[None, :, None] - sd).max(dim=1).values).sum(-1)
    got = object_penetration(h, frames, obj, margin)
    assert torch.allclose(got, ref) and bool((got >= same).all()) and bool((got > same).any())


def _self_penetration_dense(h, frames):
    c, r = h.penetration_keypoints(frames)
    i, j = h.self_pairs[:, 0], h.self_pairs[:, 1]
    return torch.relu(r[i] + r[j] - (c[:, i] - c[:, j]).norm(dim=-1)).sum(-1)


@pytest.mark.parametrize("margin", [0.0, 0.002, "per_geom"])
def test_sparse_penetration_terms_match_the_dense_reference(shadow64, margin):
    """E_pen and E_spen differentiate only penetrating pairs; value and gradient must equal the dense sums."""
    from models.core.rotations import rot6d_to_matrix
    from models.physics.energy import object_penetration_dense

    h = shadow64
    obj, pos, rot, q = _configs(h, 12, seed=3)
    pos = pos * 0.6  # pushed into the sphere: most configurations penetrate
    m = torch.linspace(0.001, 0.005, len(h.geom_type), dtype=torch.float64) if margin == "per_geom" else margin
    x0 = torch.cat([pos, rot[:, :, :2].transpose(1, 2).reshape(-1, 6), q], 1)
    out = []
    for pen in (object_penetration, object_penetration_dense):
        for spen in (self_penetration, _self_penetration_dense):
            x = x0.clone().requires_grad_(True)
            frames = h.forward_kinematics(x[:, :3], rot6d_to_matrix(x[:, 3:9]), x[:, 9:])
            e = pen(h, frames, obj, m) + 3.0 * spen(h, frames)
            (g,) = torch.autograd.grad(e.sum(), x)
            out.append((e.detach(), g))
    e_ref, g_ref = out[-1]
    assert int((e_ref > 0).sum()) >= 6  # the case exercises the terms
    for e, g in out[:-1]:
        torch.testing.assert_close(e, e_ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-9)


def test_self_penetration_broad_phase_misses_no_pair_in_float32():
    """E_spen's broad phase takes squared distances from a matmul, which rounds in float32 most where the hand
    is far from the origin: the value must still be the dense sum of every overlapping pair, and its gradient
    the same, for hands a metre away in curled, penetrating poses."""
    from models.hands import get_hand

    h = get_hand("shadow", dtype="float32")
    gen = torch.Generator().manual_seed(5)
    b = 64
    pos = (torch.rand(b, 3, generator=gen) - 0.5) * 2.0  # up to a metre out
    rot = torch.linalg.qr(torch.randn(b, 3, 3, generator=gen))[0]
    q = (h.lower + (h.upper - h.lower) * torch.rand(b, h.num_joints, generator=gen)).requires_grad_(True)
    out = []
    for spen in (self_penetration, _self_penetration_dense):
        e = spen(h, h.forward_kinematics(pos, rot, q))
        (g,) = torch.autograd.grad(e.sum(), q)
        out.append((e.detach(), g))
    (e, g), (e_ref, g_ref) = out
    assert int((e_ref > 0).sum()) >= 10  # random poses cross fingers: the case exercises the term
    torch.testing.assert_close(e, e_ref, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)


def test_penetration_pairs_give_the_fresh_broad_phase(shadow64):
    """A neighbour list kept across calls (as the optimiser's steps move the hand) gives E_pen and its
    gradient exactly as a fresh broad phase does, and searches again only the grasps that moved."""
    from models.physics.energy import PenetrationPairs

    h = shadow64
    obj, pos, rot, q = _configs(h, 8, seed=5)
    pos = pos * 0.7  # into the sphere
    pts = obj.points.expand(8, *obj.points.shape).contiguous()  # one tensor for the run, as the optimiser's
    cloud = ObjectCloud(pts, obj.normals.expand(8, *obj.normals.shape).contiguous())
    pairs = PenetrationPairs(skin_m=0.01)
    gen = torch.Generator().manual_seed(6)
    searched = []
    for step in range(12):
        # small steps for all; every fourth step, two grasps jump by more than the skin
        pos = pos + torch.randn(pos.shape, generator=gen, dtype=torch.float64) * 0.001
        q = q + torch.randn(q.shape, generator=gen, dtype=torch.float64) * 0.01
        if step % 4 == 3:
            pos[:2] = pos[:2] + torch.tensor([0.02, 0.0, 0.0], dtype=torch.float64)
        out = []
        for p in (pairs, None):
            qq = q.clone().requires_grad_(True)
            e = object_penetration(h, h.forward_kinematics(pos, rot, qq), cloud, 0.002, pairs=p)
            (g,) = torch.autograd.grad(e.sum(), qq)
            out.append((e.detach(), g))
        assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
        searched.append(pairs.searched)
    assert float(out[1][0].max()) > 0  # the case penetrates
    assert searched[0] == 8  # the first call searches every grasp
    assert 8 < searched[-1] < 8 * 12  # later calls only those that moved past the skin
    # a different margin (a different reach) or cloud starts afresh
    before = pairs.searched
    object_penetration(h, h.forward_kinematics(pos, rot, q), cloud, 0.0, pairs=pairs)
    assert pairs.searched == before + 8


@pytest.mark.parametrize("shared", [True, False])
def test_shared_neighbour_search_gives_the_same_distance(shared):
    """object_signed_distance with the neighbours of cloud_neighbours is the distance it finds itself,
    value and gradient; the first neighbour is the nearest point."""
    from models.core.geometry import cloud_neighbours, object_signed_distance

    obj = _sphere(500)
    gen = torch.Generator().manual_seed(1)
    q0 = torch.randn(3, 7, 3, generator=gen, dtype=torch.float64) * 0.05
    pts = obj.points if shared else obj.points.expand(3, -1, -1).contiguous()
    nrm = obj.normals if shared else obj.normals.expand(3, -1, -1).contiguous()
    nb = cloud_neighbours(q0, pts)
    assert nb.shape == (3, 7, 8)
    brute = ((q0[:, :, None] - (pts if not shared else pts[None])[:, None]) ** 2).sum(-1).argmin(-1)
    assert torch.equal(nb[..., 0], brute)
    out = []
    for kw in ({}, {"neighbours": nb}):
        q = q0.clone().requires_grad_(True)
        d = object_signed_distance(q, pts, nrm, **kw)
        (g,) = torch.autograd.grad(d.sum(), q)
        out.append((d.detach(), g))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    with pytest.raises(ValueError, match="neighbours"):
        object_signed_distance(q0, pts, nrm, neighbours=nb[:2])
