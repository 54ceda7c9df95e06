"""Diversity metrics: known answers on constructed grasp sets and brute-force loop references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from models.core.rotations import random_rotations
from models.hands import get_hand
from models.physics.diversity import (
    diversity,
    euler_xyz,
    fibonacci_sphere,
    joint_occupancy,
    joint_std,
    keypoint_links,
    keypoint_std,
    keypoints,
    rotation_occupancy,
    translation_occupancy,
)

F64 = torch.float64


def _random_grasps(h, n, seed):
    gen = torch.Generator().manual_seed(seed)
    pos = (torch.rand(n, 3, generator=gen, dtype=F64) - 0.5) * 0.4
    rot = random_rotations(n, gen)
    u = torch.rand(n, h.num_joints, generator=gen, dtype=F64)
    q = h.lower + u * (h.upper - h.lower)
    return pos, rot, q


# ---------------------------------------------------------------------------- loop references
def ref_fibonacci(n):
    golden = math.pi * (3 - math.sqrt(5))
    out = []
    for i in range(n):
        z = 1 - (2 * i + 1) / n
        r = math.sqrt(1 - z * z)
        out.append((r * math.cos(i * golden), r * math.sin(i * golden), z))
    return out


def ref_delta_t(positions, center, bins=16):
    dirs = ref_fibonacci(bins)
    hit = set()
    for p in positions:
        v = [p[k] - center[k] for k in range(3)]
        norm = math.sqrt(sum(x * x for x in v))
        cos = [sum(v[k] * d[k] for k in range(3)) / norm for d in dirs]
        hit.add(max(range(bins), key=lambda j: cos[j]))
    return len(hit) / bins


def ref_uniform_occupancy(values, lo, hi, bins=16):
    hit = set()
    for v in values:
        j = int((v - lo) // ((hi - lo) / bins))
        hit.add(min(max(j, 0), bins - 1))
    return len(hit) / bins


# ---------------------------------------------------------------------------- (f) known answers
def test_identical_grasps_occupy_one_bin_each(shadow64):
    h = shadow64
    pos, rot, q = _random_grasps(h, 1, 0)
    b = 8
    out = diversity(h, pos.expand(b, 3), rot.expand(b, 3, 3), q.expand(b, -1), torch.zeros(3, dtype=F64))
    assert out["delta_t"] == 1 / 16
    assert out["delta_r"] == pytest.approx(1 / 16)
    assert out["delta_q"] == pytest.approx(1 / 16)
    assert out["joint_std_rad"] == 0.0
    assert out["keypoint_std_m"] == pytest.approx(0.0, abs=1e-15)


def test_grasps_spread_around_object_fill_translation_bins(shadow64):
    h = shadow64
    center = torch.tensor([0.1, -0.2, 0.05], dtype=F64)
    dirs = fibonacci_sphere(16)
    pos = center + 0.15 * dirs
    rot = torch.eye(3, dtype=F64).expand(16, 3, 3)
    q = h.open_pose.expand(16, -1)
    out = diversity(h, pos, rot, q, center)
    assert out["delta_t"] == 1.0
    # all approaching from one hemisphere (z > 0 side) can hit at most the 8 upper bins
    upper = pos[dirs[:, 2] > 0]
    assert translation_occupancy(upper, center) == 0.5


def test_fibonacci_directions_are_unit_and_spread():
    d = fibonacci_sphere(16)
    np.testing.assert_allclose(d.norm(dim=1).numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose(d.numpy(), np.array(ref_fibonacci(16)), atol=1e-12)
    cos = d @ d.T - 2 * torch.eye(16, dtype=F64)
    assert cos.max() < 0.8  # no two bins closer than ~37 degrees
    assert d.mean(dim=0).norm() < 0.1


def test_delta_t_matches_loop_reference():
    gen = torch.Generator().manual_seed(1)
    center = torch.tensor([0.02, 0.0, -0.01], dtype=F64)
    for n in (1, 5, 20, 60):
        pos = torch.randn(n, 3, generator=gen, dtype=F64) * 0.1
        got = translation_occupancy(pos, center)
        assert got == ref_delta_t(pos.tolist(), center.tolist())


def test_euler_xyz_matches_scipy_intrinsic_xyz():
    rot = random_rotations(200, torch.Generator().manual_seed(2))
    ours = euler_xyz(rot).numpy()
    ref = Rotation.from_matrix(rot.numpy()).as_euler("XYZ")
    # compare as rotations (angle wrap) and as angles (same branch: b in [-pi/2, pi/2])
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    back = Rotation.from_euler("XYZ", ours).as_matrix()
    np.testing.assert_allclose(back, rot.numpy(), atol=1e-9)


def test_delta_r_matches_loop_reference_and_limits():
    rot = random_rotations(300, torch.Generator().manual_seed(3))
    eul = Rotation.from_matrix(rot.numpy()).as_euler("XYZ")
    ref = sum(ref_uniform_occupancy(eul[:, k], -math.pi, math.pi) for k in range(3)) / 3
    assert rotation_occupancy(rot) == pytest.approx(ref)
    # many uniform rotations fill all bins of a and c, but only the 8 bins of b in [-pi/2, pi/2]
    assert rotation_occupancy(rot) == pytest.approx((1 + 0.5 + 1) / 3)
    # rotations about x only: a spans 16 bins, b and c stay in the bin holding 0
    a = torch.linspace(-math.pi + 0.1, math.pi - 0.1, 16, dtype=F64)
    rx = torch.zeros(16, 3, 3, dtype=F64)
    rx[:, 0, 0] = 1
    rx[:, 1, 1], rx[:, 1, 2] = torch.cos(a), -torch.sin(a)
    rx[:, 2, 1], rx[:, 2, 2] = torch.sin(a), torch.cos(a)
    assert rotation_occupancy(rx) == pytest.approx((16 + 1 + 1) / 48)


def test_delta_q_matches_loop_reference_and_bin_centres(shadow64):
    h = shadow64
    _, _, q = _random_grasps(h, 25, 4)
    lo, hi = h.lower.tolist(), h.upper.tolist()
    per_joint = [ref_uniform_occupancy(q[:, j].tolist(), lo[j], hi[j]) for j in range(h.num_joints)]
    ref = sum(per_joint) / h.num_joints
    assert joint_occupancy(q, h.lower, h.upper) == pytest.approx(ref)
    # one grasp per bin centre of every joint: all occupied; joint limits themselves land in the end bins
    centres = h.lower + (torch.arange(16, dtype=F64)[:, None] + 0.5) / 16 * (h.upper - h.lower)
    assert joint_occupancy(centres, h.lower, h.upper) == 1.0
    limits = torch.stack([h.lower, h.upper])
    assert joint_occupancy(limits, h.lower, h.upper) == pytest.approx(2 / 16)


def test_joint_std_is_mean_of_per_joint_population_std(shadow64):
    _, _, q = _random_grasps(shadow64, 30, 5)
    assert joint_std(q) == pytest.approx(float(np.std(q.numpy(), axis=0).mean()))
    # two grasps differing by 0.2 rad in a single joint of 22: per-joint std 0.1 -> mean 0.1 / 22
    a = torch.zeros(2, 22, dtype=F64)
    a[1, 3] = 0.2
    assert joint_std(a) == pytest.approx(0.1 / 22)


def test_keypoints_are_the_15_finger_link_origins(shadow64):
    h = shadow64
    links = keypoint_links(h.link_names)
    # the ShadowHand's 15, in the order they have always had (UniDexGrasp's keypoints)
    assert links == tuple(f"{f}{p}" for f in ("ff", "mf", "rf", "lf", "th") for p in ("proximal", "middle", "distal"))
    pos, rot, q = _random_grasps(h, 3, 6)
    kp = keypoints(h, pos, rot, q)
    frames = h.forward_kinematics(pos, rot, q)
    for i, name in enumerate(links):
        assert torch.equal(kp[:, i], frames.translation[:, h.link_names.index(name)])


@pytest.mark.parametrize("name", ["allegro", "leap"])
def test_keypoints_of_four_fingered_hands(name):
    """The Allegro and LEAP hands: the three phalanges of each of their four fingers."""
    h = get_hand(name, dtype="float64")
    links = keypoint_links(h.link_names)
    assert links == tuple(f"{f}_{p}" for f in ("ff", "mf", "rf", "th") for p in ("proximal", "middle", "distal"))
    pos, rot, q = _random_grasps(h, 4, 9)
    assert keypoints(h, pos, rot, q).shape == (4, 12, 3)
    assert diversity(h, pos, rot, q, torch.zeros(3, dtype=F64))["keypoint_std_m"] > 0


def test_keypoint_std_of_translated_copies(shadow64):
    """Rigidly translated copies: every keypoint moves with the root, so the std is the root's."""
    h = shadow64
    _, rot, q = _random_grasps(h, 1, 7)
    pos = torch.tensor([[-0.03, 0.0, 0.0], [0.03, 0.0, 0.0]], dtype=F64)
    # per-axis population std: x 0.03, y 0, z 0 -> averaged over axes 0.01
    got = keypoint_std(h, pos, rot.expand(2, 3, 3), q.expand(2, -1))
    assert got == pytest.approx(0.01, abs=1e-12)
    # and against a loop over keypoints and axes for random grasps
    pos, rot, q = _random_grasps(h, 10, 8)
    kp = keypoints(h, pos, rot, q).numpy()
    ref = np.mean([[np.std(kp[:, k, a]) for a in range(3)] for k in range(15)])
    assert keypoint_std(h, pos, rot, q) == pytest.approx(ref)
    assert diversity(h, pos, rot, q, torch.zeros(3, dtype=F64))["keypoint_std_cm"] == pytest.approx(100 * ref)


def test_empty_set_is_rejected(shadow64):
    with pytest.raises(ValueError):
        joint_std(torch.zeros(0, 22, dtype=F64))
