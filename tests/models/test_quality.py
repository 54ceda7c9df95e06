"""Grasp-quality metrics on hand placements built analytically with FK, plus slow references.

The references here are independent of ``models.physics.quality``: wrenches are built
with explicit Python loops over contacts and cone edges, and Q1 is checked
against a brute-force minimum of the wrench set's support function over unit
directions (an upper bound on the hull's inscribed-ball radius that converges
to it), never against Qhull.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from models.core.geometry import ObjectCloud as ObjectSurface
from models.core.rotations import random_rotations
from models.physics.quality import (
    contact_wrenches,
    contacts_and_penetration,
    epsilon_quality,
    grasp_quality,
    summarize,
    table_penetration,
)

F64 = torch.float64

# A tripod found offline by optimising the thumb, index and middle joints so that
# their distal capsules sit ~1 mm outside a 2.5 cm sphere at TRIPOD_CENTER (palm at
# the origin, identity rotation). The coupled J0 joints are set by project_joints.
TRIPOD_JOINTS = {
    "FFJ3": -0.1359, "FFJ2": 0.1377, "FFJ1": 1.3795, "FFJ0": 1.5752,
    "MFJ3": 0.349, "MFJ2": 0.5751, "MFJ1": 0.7205, "MFJ0": 0.8227,
    "THJ4": -0.5045, "THJ3": 0.2082, "THJ2": -0.0821, "THJ1": -0.2663, "THJ0": -0.9086,
}
TRIPOD_CENTER = (0.0505, -0.0583, 0.1146)
TRIPOD_RADIUS = 0.025


# ---------------------------------------------------------------------------- object samplers
def sphere_surface(center: tuple[float, float, float], radius: float, n: int = 20000) -> ObjectSurface:
    """Fibonacci samples of a sphere (spacing ~0.6 mm for r = 2.5 cm at n = 20000)."""
    i = torch.arange(n, dtype=F64)
    z = 1 - (2 * i + 1) / n
    r = torch.sqrt(1 - z * z)
    phi = i * math.pi * (3 - math.sqrt(5))
    d = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)
    return ObjectSurface(torch.tensor(center, dtype=F64) + radius * d, d)


def box_surface(lo: tuple[float, ...], hi: tuple[float, ...], step: float,
                anchor: tuple[float, ...] = (0.0, 0.0, 0.0)) -> ObjectSurface:
    """Grid samples (spacing ``step``, one node at ``anchor``'s in-face coordinates) on all six faces."""
    lo_a, hi_a, an = np.array(lo), np.array(hi), np.array(anchor)
    grids = [an[k] + step * np.arange(math.ceil((lo_a[k] - an[k]) / step - 1e-9),
                                      math.floor((hi_a[k] - an[k]) / step + 1e-9) + 1) for k in range(3)]
    pts, nrm = [], []
    for axis in range(3):
        u, v = [k for k in range(3) if k != axis]
        gu, gv = np.meshgrid(grids[u], grids[v], indexing="ij")
        for side, value in ((-1.0, lo_a[axis]), (1.0, hi_a[axis])):
            p = np.zeros((gu.size, 3))
            p[:, u], p[:, v], p[:, axis] = gu.ravel(), gv.ravel(), value
            nn = np.zeros_like(p)
            nn[:, axis] = side
            pts.append(p)
            nrm.append(nn)
    return ObjectSurface(torch.tensor(np.concatenate(pts)), torch.tensor(np.concatenate(nrm)))


def pose(n: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(n, 3, dtype=F64), torch.eye(3, dtype=F64).expand(n, 3, 3).clone()


def joints_of(h, values: dict[str, float]) -> torch.Tensor:
    q = h.joint_vector({n: values.get(n, 0.0) for n in h.joint_names})
    return h.project_joints(q)[None]


def tripod(h) -> torch.Tensor:
    return joints_of(h, TRIPOD_JOINTS)


def geom_gap(h, q, surface_center, radius, geom) -> float:
    """Gap between one collision geom and a sphere (centre distance minus radius)."""
    pos, rot = pose()
    frames = h.forward_kinematics(pos, rot, q)
    c = torch.tensor(surface_center, dtype=F64)[None, None]
    sd = h.signed_distance_per_geom(frames, c)[0, h.geom_names.index(geom), 0]
    return float(sd) - radius


# ---------------------------------------------------------------------------- references
def reference_wrenches(pos: np.ndarray, nrm: np.ndarray, center: np.ndarray, mu: float = 1.0,
                       edges: int = 8, torque_scale: float = 10.0) -> np.ndarray:
    """Loop version: per contact, per cone edge, f = -n + mu * tangent, w = [f, s * (p - c) x f]."""
    rows = []
    for p, n in zip(pos, nrm):
        d = -np.asarray(n, dtype=float) / np.linalg.norm(n)
        helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        t1 = np.cross(d, helper)
        t1 /= np.linalg.norm(t1)
        t2 = np.cross(d, t1)
        for k in range(edges):
            a = 2.0 * math.pi * k / edges
            f = d + mu * (math.cos(a) * t1 + math.sin(a) * t2)
            tau = np.cross(np.asarray(p) - center, f) * torque_scale
            rows.append(np.concatenate([f, tau]))
    return np.array(rows)


def brute_force_q1(w: np.ndarray, n_dir: int = 2000, starts: int = 16, iters: int = 300,
                   seed: int = 0) -> float:
    """max(0, min over unit u of max_i u.w_i), by sampling then random local search from the best samples.

    For any u the value is >= the inscribed-ball radius, so the result is an upper
    bound; the local search only lowers it towards the true minimum.
    """
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_dir, 6))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    h = (u @ w.T).max(axis=1)
    order = np.argsort(h)[:starts]
    best, hb = u[order].copy(), h[order].copy()
    step = np.full(starts, 0.3)
    rows = np.arange(starts)
    for _ in range(iters):
        cand = best[:, None, :] + step[:, None, None] * rng.normal(size=(starts, 32, 6))
        cand /= np.linalg.norm(cand, axis=-1, keepdims=True)
        hc = (cand @ w.T).max(axis=-1)
        j = hc.argmin(axis=1)
        hj = hc[rows, j]
        better = hj < hb
        best[better] = cand[rows, j][better]
        hb[better] = hj[better]
        step[~better] *= 0.8
    return max(0.0, float(hb.min()))


def random_contact_set(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """3-6 contacts on a random ellipsoid (centred at 0) with its outward normals."""
    k = int(rng.integers(3, 7))
    d = rng.normal(size=(k, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    axes = rng.uniform(0.02, 0.08, 3)
    pos = d * axes
    nrm = d / axes**2
    return pos, nrm / np.linalg.norm(nrm, axis=1, keepdims=True)


# ---------------------------------------------------------------------------- (g) Q1 vs references
def test_wrenches_match_loop_reference():
    rng = np.random.default_rng(0)
    pos, nrm = random_contact_set(rng)
    center = rng.normal(size=3) * 0.01
    ref = reference_wrenches(pos, nrm, center)
    got = contact_wrenches(torch.tensor(pos), torch.tensor(nrm), torch.tensor(center)).numpy()
    assert got.shape == ref.shape == (8 * len(pos), 6)
    np.testing.assert_allclose(got, ref, atol=1e-12)
    # every edge has unit inward normal component and friction ratio mu = 1
    f = got[:, :3].reshape(len(pos), 8, 3)
    normal_part = -(f * nrm[:, None]).sum(-1)
    np.testing.assert_allclose(normal_part, 1.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(f, axis=-1), math.sqrt(2.0), atol=1e-12)


def test_hull_q1_matches_brute_force_support_function():
    rng = np.random.default_rng(2)
    positive = zero = 0
    for _ in range(20):
        pos, nrm = random_contact_set(rng)
        w = reference_wrenches(pos, nrm, np.zeros(3))
        q = epsilon_quality(w)
        brute = brute_force_q1(w)
        assert q <= brute + 1e-9
        assert q >= 0.8 * brute
        positive += q > 0
        zero += q == 0
    assert positive >= 5 and zero >= 2, "the random sets should cover both closure and non-closure"


def test_q1_known_value_for_a_symmetric_set():
    """Unit wrenches +-e_k, k = 1..6: the hull is the cross-polytope, whose inradius is 1/sqrt(6)."""
    w = np.concatenate([np.eye(6), -np.eye(6)])
    assert epsilon_quality(w) == pytest.approx(1 / math.sqrt(6), abs=1e-8)
    # shift so the origin is outside: 0
    assert epsilon_quality(w + 2.0) == 0.0


def test_q1_degenerate_sets_are_zero():
    rng = np.random.default_rng(3)
    assert epsilon_quality(np.zeros((0, 6))) == 0.0
    assert epsilon_quality(rng.normal(size=(5, 6))) == 0.0  # fewer than 7 points
    flat = rng.normal(size=(40, 6))
    flat[:, 5] = 0.0  # spans 5 dims only: origin can't be interior
    assert epsilon_quality(flat) == 0.0
    # one contact, or two antipodal contacts: no torque about the contact axis -> not closure
    one = reference_wrenches(np.array([[0.0, 0.0, 0.03]]), np.array([[0.0, 0.0, 1.0]]), np.zeros(3))
    assert epsilon_quality(one) == 0.0
    two = reference_wrenches(np.array([[0, 0, 0.03], [0, 0, -0.03]]), np.array([[0, 0, 1.0], [0, 0, -1.0]]),
                             np.zeros(3))
    assert epsilon_quality(two) == 0.0


# ---------------------------------------------------------------------------- (a) tripod on a sphere
def test_tripod_on_sphere_has_positive_q1(shadow64):
    h = shadow64
    q = tripod(h)
    for g in ("C_ffdistal", "C_mfdistal", "C_thdistal"):  # construction precondition: ~1 mm gaps
        assert 0.0 < geom_gap(h, q, TRIPOD_CENTER, TRIPOD_RADIUS, g) < 0.002
    surface = sphere_surface(TRIPOD_CENTER, TRIPOD_RADIUS)
    pos, rot = pose()
    out = grasp_quality(h, pos, rot, q, surface)
    assert out["max_penetration_m"].item() == 0.0
    assert out["q1"].item() > 0.01
    assert out["q1"].item() == out["q1_ungated"].item()
    assert out["contact_count"].item() >= 3
    # which links: distal phalanges at ~1 mm and the middle finger's middle phalanx
    # at ~4 mm are in; the index middle phalanx at ~11 mm is just outside the 1 cm rule.
    contacts, _ = contacts_and_penetration(h, h.forward_kinematics(pos, rot, q), surface)
    names = {h.link_names[li] for li, m in zip(contacts.link.tolist(), contacts.mask[0].tolist()) if m}
    assert names == {"ffdistal", "mfdistal", "mfmiddle", "thdistal"}
    ff_mid = contacts.link.tolist().index(h.link_names.index("ffmiddle"))
    assert 0.010 < contacts.distance[0, ff_mid].item() < 0.0125


def test_thumb_removed_loses_closure(shadow64):
    """Without the thumb the remaining contacts press from one side only: Q1 = 0."""
    h = shadow64
    values = dict(TRIPOD_JOINTS, THJ4=1.047, THJ3=0.0, THJ0=0.0)
    q = joints_of(h, values)
    out = grasp_quality(h, *pose(), q, sphere_surface(TRIPOD_CENTER, TRIPOD_RADIUS))
    assert out["max_penetration_m"].item() < 0.005
    assert out["contact_count"].item() >= 2
    assert out["q1_ungated"].item() == 0.0


# ---------------------------------------------------------------------------- (b) one-sided contact
def test_hand_flat_on_box_face_has_zero_q1(shadow64):
    """Open hand with its back 1 mm below a box face: many contacts, all pushing +y -> Q1 = 0."""
    h = shadow64
    q = joints_of(h, {})
    surface = box_surface((-0.08, 0.0121, -0.03), (0.13, 0.04, 0.23), 0.002)
    out = grasp_quality(h, *pose(), q, surface)
    assert out["max_penetration_m"].item() == 0.0
    # every link but the thumb's middle (10.1 mm) and distal (11.9 mm) phalanges is within
    # 1 cm; the thumb's proximal phalanx at 8.1 mm pins the threshold from below
    assert out["contact_count"].item() == 15
    assert out["q1_ungated"].item() == 0.0
    assert out["q1"].item() == 0.0


# ---------------------------------------------------------------------------- (c) (d) penetration
def _curled_index_and_box(h, depth: float):
    """Index curled 90 deg (distal capsule along -y); a box face sits ``depth`` into its tip."""
    q = joints_of(h, {"FFJ2": math.pi / 2})
    pos, rot = pose()
    frames = h.forward_kinematics(pos, rot, q)
    gr, gp = h.geom_frames(frames)
    g = h.geom_names.index("C_ffdistal")
    axis = gr[0, g, :, 2]
    assert torch.allclose(axis.abs(), torch.tensor([0.0, 1.0, 0.0], dtype=F64), atol=1e-9)
    r, half = h._geom_size[g, 0].item(), h._geom_size[g, 1].item()
    centre = gp[0, g]
    tip_y = centre[1].item() - half - r  # the capsule's far end along -y
    face = tip_y + depth
    x0, z0 = centre[0].item(), centre[2].item()
    surface = box_surface((x0 - 0.03, -0.16, z0 - 0.03), (x0 + 0.03, face, z0 + 0.03), 0.001,
                          anchor=(x0, 0.0, z0))
    return q, surface


def test_index_tip_sunk_5mm_reports_half_cm(shadow64):
    h = shadow64
    q, surface = _curled_index_and_box(h, 0.005)
    out = grasp_quality(h, *pose(), q, surface)
    assert out["max_penetration_m"].item() == pytest.approx(0.005, abs=5e-4)
    assert summarize(out)["mean_max_penetration_cm"] == pytest.approx(0.5, abs=0.05)
    assert out["contact_count"].item() == 1  # only the index tip is within 1 cm


def test_penetration_above_5mm_gates_q1(shadow64):
    """Tripod on a sphere grown so every fingertip sinks ~6 mm: closure exists but Q1 is gated to 0."""
    h = shadow64
    q = tripod(h)
    gap = geom_gap(h, q, TRIPOD_CENTER, TRIPOD_RADIUS, "C_ffdistal")
    deep = grasp_quality(h, *pose(), q, sphere_surface(TRIPOD_CENTER, TRIPOD_RADIUS + gap + 0.006))
    assert deep["max_penetration_m"].item() == pytest.approx(0.006, abs=3e-4)
    assert deep["q1_ungated"].item() > 0.01
    assert deep["q1"].item() == 0.0
    shallow = grasp_quality(h, *pose(), q, sphere_surface(TRIPOD_CENTER, TRIPOD_RADIUS + gap + 0.0045))
    assert 0.004 < shallow["max_penetration_m"].item() < 0.005
    assert shallow["q1"].item() > 0.01


def test_index_tip_depth_decides_non_penetration_ratio(shadow64):
    """6 mm deep -> counted as penetrating (eta_np = 0); 4 mm -> not (eta_np = 1)."""
    h = shadow64
    q, surface = _curled_index_and_box(h, 0.006)
    deep = grasp_quality(h, *pose(), q, surface)
    assert deep["max_penetration_m"].item() == pytest.approx(0.006, abs=5e-4)
    assert summarize(deep)["eta_np"] == 0.0
    q, surface = _curled_index_and_box(h, 0.004)
    shallow = grasp_quality(h, *pose(), q, surface)
    assert shallow["max_penetration_m"].item() == pytest.approx(0.004, abs=5e-4)
    assert summarize(shallow)["eta_np"] == 1.0


# ---------------------------------------------------------------------------- (e) table
def _fingers_down(h, lowest_z: float):
    """Open hand, fingers pointing down (-z), placed so that its lowest point is at ``lowest_z``."""
    rot = torch.tensor([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]], dtype=F64)[None]
    q = joints_of(h, {})
    frames = h.forward_kinematics(torch.zeros(1, 3, dtype=F64), rot, q)
    gr, gp = h.geom_frames(frames)
    g = h.geom_names.index("C_mfdistal")  # the longest finger
    r, half = h._geom_size[g, 0].item(), h._geom_size[g, 1].item()
    assert abs(gr[0, g, 2, 2].item()) == pytest.approx(1.0)  # capsule axis is vertical
    low = gp[0, g, 2].item() - half - r  # vertical capsule: lower end minus radius
    pos = torch.tensor([[0.0, 0.0, lowest_z - low]], dtype=F64)
    return pos, rot, q


@dataclass(frozen=True)
class _Plane:
    normal: torch.Tensor
    offset: float


def test_table_penetration_of_vertical_capsule(shadow64):
    h = shadow64
    pos, rot, q = _fingers_down(h, -0.008)
    frames = h.forward_kinematics(pos, rot, q)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    assert table_penetration(h, frames, (up, 0.0)).item() == pytest.approx(0.008, abs=1e-6)
    # plane objects and unnormalised normals describe the same table
    assert table_penetration(h, frames, _Plane(up, 0.0)).item() == pytest.approx(0.008, abs=1e-6)
    assert table_penetration(h, frames, (3 * up, 0.0)).item() == pytest.approx(0.008, abs=1e-6)
    # table at z = -0.01 (n.x + 0.01 = 0): the hand is 2 mm above it
    assert table_penetration(h, frames, (up, 0.01)).item() == 0.0
    # no table: 0
    assert table_penetration(h, frames, None).item() == 0.0


def test_table_penetration_bounds_dense_surface_samples(shadow64):
    """For random poses the closed form is the exact minimum over each primitive, so it must be at least the
    deepest of many surface samples and at most ~1.5 mm deeper (boxes and capsules included)."""
    h = shadow64
    gen = torch.Generator().manual_seed(5)
    n = 16
    rot = random_rotations(n, gen)
    u = torch.rand(n, h.num_joints, generator=gen, dtype=F64)
    q = h.project_joints(h.lower + u * (h.upper - h.lower))
    frames = h.forward_kinematics(torch.zeros(n, 3, dtype=F64), rot, q)
    normal = torch.tensor([0.3, -0.2, 0.9], dtype=F64)
    normal = normal / normal.norm()
    analytic = table_penetration(h, frames, (normal, 0.0))
    samples = h.surface_points(frames, n=40000)
    sampled = (-(samples @ normal).min(dim=1).values).clamp_min(0)
    assert (analytic >= sampled - 1e-12).all()
    assert ((analytic - sampled) < 1.5e-3).all()
    assert (analytic > 0.01).sum() >= n // 2  # the palm origin is on the plane: most poses dip below it


def test_table_penetration_gates_q1(shadow64):
    h = shadow64
    q = tripod(h)
    surface = sphere_surface(TRIPOD_CENTER, TRIPOD_RADIUS)
    pos, rot = pose()
    frames = h.forward_kinematics(pos, rot, q)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    z_min = 1.0 - table_penetration(h, frames, (up, -1.0)).item()  # lowest hand point, from a plane at z = 1
    ok = grasp_quality(h, pos, rot, q, surface, table=(up, -(z_min + 0.008)))
    assert ok["table_penetration_m"].item() == pytest.approx(0.008, abs=1e-9)
    assert ok["q1"].item() > 0.0
    bad = grasp_quality(h, pos, rot, q, surface, table=(up, -(z_min + 0.012)))
    assert bad["table_penetration_m"].item() == pytest.approx(0.012, abs=1e-9)
    assert bad["q1_ungated"].item() > 0.0
    assert bad["q1"].item() == 0.0


# ---------------------------------------------------------------------------- batching and summaries
def test_batched_matches_single_and_summary(shadow64):
    h = shadow64
    q1 = tripod(h)
    q_open = joints_of(h, {})
    surface = sphere_surface(TRIPOD_CENTER, TRIPOD_RADIUS)
    # 12 grasps (enough to split the distance computation into several chunks):
    # the tripod, and the open hand 0.5 m away (no contact at all).
    b = 12
    pos = torch.zeros(b, 3, dtype=F64)
    pos[1::2, 0] = 0.5
    rot = torch.eye(3, dtype=F64).expand(b, 3, 3).clone()
    q = torch.cat([q1, q_open]).repeat(b // 2, 1)
    out = grasp_quality(h, pos, rot, q, surface)
    single = grasp_quality(h, *pose(), q1, surface)
    assert torch.allclose(out["q1"][0::2], single["q1"].expand(b // 2))
    assert (out["q1"][1::2] == 0).all() and (out["contact_count"][1::2] == 0).all()
    s = summarize(out)
    assert s["eta_tb"] == pytest.approx(0.5)
    assert s["eta_np"] == pytest.approx(1.0)
    assert s["mean_q1"] == pytest.approx(single["q1"].item() / 2)
    assert s["mean_contact_count"] == pytest.approx(single["contact_count"].item() / 2)
    # a per-grasp (B, N, 3) surface gives the same numbers as the shared one
    batched = ObjectSurface(surface.points.expand(b, -1, -1), surface.normals.expand(b, -1, -1))
    out_b = grasp_quality(h, pos, rot, q, batched)
    assert torch.allclose(out_b["q1"], out["q1"])


def test_penetration_metrics_are_differentiable(shadow64):
    h = shadow64
    q, surface = _curled_index_and_box(h, 0.005)
    pos = torch.zeros(1, 3, dtype=F64, requires_grad=True)
    rot = torch.eye(3, dtype=F64)[None]
    frames = h.forward_kinematics(pos, rot, q)
    _, pen = contacts_and_penetration(h, frames, surface)
    table = table_penetration(h, frames, (torch.tensor([0.0, 1.0, 0.0], dtype=F64), 0.2))
    (pen.sum() + table.sum()).backward()
    assert pos.grad is not None and torch.isfinite(pos.grad).all()
    assert pos.grad[0, 1].item() < 0  # moving the hand +y pulls the tip out of the box
