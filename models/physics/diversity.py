"""Diversity metrics of a set of grasps on one object.

* ``delta_t``, ``delta_r``, ``delta_q``: DGTR's occupancy proportions
  (DGTR, Dexterous Grasp Transformer, CVPR 2024, Sec. 4.1) with xi = 16 bins, as fractions in
  [0, 1] (multiply by 100 for the paper's %):

  - delta_t: 16 directions on the unit sphere by Fibonacci sampling are the
    bins; each grasp goes to the direction with the highest cosine similarity to
    its translation relative to the object centre (the hand root / palm frame
    origin, which is the "global translation" of the DexGraspNet pose vector);
    delta_t = occupied bins / 16.
  - delta_r: the rotation matrix is converted to intrinsic x-y'-z'' Euler
    angles, ``R = Rx(a) @ Ry(b) @ Rz(c)`` (SciPy's ``"XYZ"``), each angle is
    binned into 16 uniform bins over [-pi, pi), and the occupied shares are
    averaged over the three angles.
  - delta_q: each joint angle is binned into 16 uniform bins over that joint's
    own [lower, upper] range (values outside are clamped into the end bins);
    occupied shares are averaged over all joints.

  Ambiguities (DGTR defers the details to an appendix that is not in the text
  we have): the Euler convention and its bin range are not stated. With
  [-pi, pi) for all three angles the middle angle b lies in [-pi/2, pi/2] and
  can fill at most 8 of its 16 bins, so delta_r <= (1 + 0.5 + 1) / 3. The text
  says "discretize the range of Euler angle"; we read "range" as the full
  circle for every angle. Coupled Shadow joints (J0 follows J1) are counted as
  separate joints, as in the 22-D joint vector.
* ``joint_std_rad``: mean over joints of the per-joint standard deviation
  (population, ddof = 0) of the joint angles across grasps. GenDexGrasp states
  only "the standard deviation of the joint angles"; the per-joint std averaged
  over joints is the reading that keeps the unit (rad) of their table.
* ``keypoint_std_m``: UniDexGrasp's "average standard deviation of 15 joint
  (keypoint) positions": the 15 keypoints are the origins (joint centres) of
  the proximal, middle and distal links of the five fingers; per keypoint and
  per axis the population std across grasps is taken, then averaged over
  keypoints and axes. ``keypoint_std_cm`` is the same in cm (the paper's unit).
  Other hands: the proximal, middle and distal links of each of their fingers
  (:func:`keypoint_links`: the links whose names end so; 12 for the Allegro and
  LEAP hands' four fingers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..hands.model import HandModel

OCCUPANCY_BINS = 16
_PHALANGES = ("proximal", "middle", "distal")


def keypoint_links(link_names: Sequence[str]) -> tuple[str, ...]:
    """The keypoint links of a hand, in link order: those whose (short) names end with ``proximal``,
    ``middle`` or ``distal``, a finger's three phalanges (ShadowHand: ``ffproximal ffmiddle ffdistal
    mfproximal ... thdistal``, 15; Allegro / LEAP: ``ff_proximal ... th_distal``, 12)."""
    return tuple(n for n in link_names if n.endswith(_PHALANGES))


def fibonacci_sphere(n: int = OCCUPANCY_BINS, dtype: torch.dtype = torch.float64) -> Tensor:
    """(n, 3) near-uniform unit directions: z evenly spaced in (-1, 1), longitude by the golden angle."""
    i = torch.arange(n, dtype=dtype)
    z = 1.0 - (2.0 * i + 1.0) / n
    rho = torch.sqrt((1.0 - z * z).clamp_min(0.0))
    phi = i * (math.pi * (3.0 - math.sqrt(5.0)))
    return torch.stack([rho * torch.cos(phi), rho * torch.sin(phi), z], dim=-1)


def _occupied_share(bin_index: Tensor, bins: int) -> float:
    """Share of ``bins`` bins that hold at least one entry of the 1-D ``bin_index``."""
    return float(torch.unique(bin_index).numel()) / bins


def _uniform_bins(values: Tensor, lo: Tensor | float, hi: Tensor | float, bins: int) -> Tensor:
    """Bin index in [0, bins) of ``values`` on uniform bins over [lo, hi); values outside are clamped."""
    width = (hi - lo) / bins
    idx = torch.floor((values - lo) / width).long()
    return idx.clamp(0, bins - 1)


def translation_occupancy(root_pos: Tensor, object_center: Tensor, bins: int = OCCUPANCY_BINS) -> float:
    """DGTR delta_t of B grasps: share of Fibonacci directions that are the best match of some grasp."""
    _check_nonempty(root_pos)
    d = root_pos.double() - object_center.double().reshape(-1, 3)
    dirs = fibonacci_sphere(bins).to(d.device)
    # Cosine similarity; the direction norm is common to all bins, so argmax of the
    # dot product with unit bin directions picks the same bin (a grasp exactly at
    # the centre has no direction and falls into bin 0).
    best = (d @ dirs.T).argmax(dim=1)
    return _occupied_share(best, bins)


def euler_xyz(rot: Tensor) -> Tensor:
    """Intrinsic x-y'-z'' Euler angles (..., 3) with ``R = Rx(a) Ry(b) Rz(c)``; b in [-pi/2, pi/2]."""
    # R[0, 2] = sin b; R[1, 2] = -sin a cos b; R[2, 2] = cos a cos b;
    # R[0, 1] = -cos b sin c; R[0, 0] = cos b cos c.
    b = torch.asin(rot[..., 0, 2].clamp(-1.0, 1.0))
    a = torch.atan2(-rot[..., 1, 2], rot[..., 2, 2])
    c = torch.atan2(-rot[..., 0, 1], rot[..., 0, 0])
    return torch.stack([a, b, c], dim=-1)


def rotation_occupancy(root_rot: Tensor, bins: int = OCCUPANCY_BINS) -> float:
    """DGTR delta_r: occupied share of 16 bins over [-pi, pi) per Euler angle, averaged over the 3 angles."""
    _check_nonempty(root_rot)
    ang = euler_xyz(root_rot.double())  # (B, 3)
    idx = _uniform_bins(ang, -math.pi, math.pi, bins)
    return sum(_occupied_share(idx[:, k], bins) for k in range(3)) / 3.0


def joint_occupancy(joints: Tensor, lower: Tensor, upper: Tensor, bins: int = OCCUPANCY_BINS) -> float:
    """DGTR delta_q: occupied share of 16 bins over each joint's [lower, upper], averaged over joints."""
    _check_nonempty(joints)
    q = joints.double()
    lo = lower.double().to(q.device)
    hi = upper.double().to(q.device)
    if bool((hi <= lo).any()):
        raise ValueError("every joint needs upper > lower to be binned")
    idx = _uniform_bins(q, lo, hi, bins)  # (B, J)
    return sum(_occupied_share(idx[:, j], bins) for j in range(q.shape[1])) / q.shape[1]


def joint_std(joints: Tensor) -> float:
    """Mean over joints of the population std (ddof = 0) of each joint's angle across grasps (rad)."""
    _check_nonempty(joints)
    return float(joints.double().std(dim=0, correction=0).mean())


def keypoints(hand: HandModel, root_pos: Tensor, root_rot: Tensor, joints: Tensor) -> Tensor:
    """(B, K, 3) origins of the hand's K finger links in :func:`keypoint_links` order (15 for the ShadowHand)."""
    idx = [hand.link_names.index(n) for n in keypoint_links(hand.link_names)]
    frames = hand.forward_kinematics(root_pos, root_rot, joints)
    return frames.translation[:, idx]


def keypoint_std(hand: HandModel, root_pos: Tensor, root_rot: Tensor, joints: Tensor) -> float:
    """Population std across grasps of the keypoint positions, averaged over keypoints and axes (m)."""
    _check_nonempty(joints)
    kp = keypoints(hand, root_pos, root_rot, joints).double()  # (B, K, 3)
    return float(kp.std(dim=0, correction=0).mean())


def diversity(
    hand: HandModel,
    root_pos: Tensor,
    root_rot: Tensor,
    joints: Tensor,
    object_center: Tensor,
    bins: int = OCCUPANCY_BINS,
) -> dict[str, float]:
    """All diversity metrics of B grasps on one object (poses in the object's frame)."""
    kp_std = keypoint_std(hand, root_pos, root_rot, joints)
    return {
        "n": float(joints.shape[0]),
        "delta_t": translation_occupancy(root_pos, object_center, bins),
        "delta_r": rotation_occupancy(root_rot, bins),
        "delta_q": joint_occupancy(joints, hand.lower, hand.upper, bins),
        "joint_std_rad": joint_std(joints),
        "keypoint_std_m": kp_std,
        "keypoint_std_cm": kp_std * 100.0,
    }


def _check_nonempty(x: Tensor) -> None:
    if x.shape[0] == 0:
        raise ValueError("diversity metrics need at least one grasp")
