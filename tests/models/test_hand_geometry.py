"""Hand collision geometry: analytic SDF against MuJoCo's geom distance; surface samples; point sets."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import torch

from models.core.rotations import matrix_to_quat, random_rotations
from models.hands import hand_mjcf_xml

PROBE_R = 1e-5


def _probe_model(h):
    root = ET.fromstring(hand_mjcf_xml(h.spec, root="fixed", with_visual=False))
    wb = root.find("worldbody")
    body = ET.SubElement(wb, "body", {"name": "probe", "mocap": "true"})
    ET.SubElement(
        body,
        "geom",
        {"name": "probe", "type": "sphere", "size": str(PROBE_R), "contype": "0", "conaffinity": "0"},
    )
    return mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"))


def test_sdf_matches_mujoco_geom_distance(shadow64):
    h = shadow64
    m = _probe_model(h)
    d = mujoco.MjData(m)
    gen = torch.Generator().manual_seed(0)
    n_cfg, n_pts = 4, 150
    q = h.lower + torch.rand(n_cfg, h.num_joints, generator=gen, dtype=torch.float64) * (h.upper - h.lower)
    rot = random_rotations(n_cfg, gen)
    pos = torch.randn(n_cfg, 3, generator=gen, dtype=torch.float64) * 0.1
    frames = h.forward_kinematics(pos, rot, q)
    geom_ids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, h.spec.full_name(g)) for g in h.geom_names]
    probe = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "probe")
    palm = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, h.spec.mjcf.root_body)
    worst = 0.0
    checked_inside = 0
    for i in range(n_cfg):
        # query points near the hand: around geom centres, inside and outside
        _, gpos = h.geom_frames(type(frames)(frames.rotation[i : i + 1], frames.translation[i : i + 1]))
        centres = gpos[0][torch.randint(len(geom_ids), (n_pts,), generator=gen)]
        pts = centres + torch.randn(n_pts, 3, generator=gen, dtype=torch.float64) * 0.012
        ours = h.signed_distance_per_geom(
            type(frames)(frames.rotation[i : i + 1], frames.translation[i : i + 1]), pts[None]
        )[0]
        m.body_pos[palm] = pos[i].numpy()
        m.body_quat[palm] = matrix_to_quat(rot[i]).numpy()
        for qi, j in enumerate(h.mj_joint_ids):
            d.qpos[m.jnt_qposadr[j]] = float(q[i, qi])
        for k in range(n_pts):
            d.mocap_pos[0] = pts[k].numpy()
            mujoco.mj_forward(m, d)
            for g, gid in enumerate(geom_ids):
                ref = mujoco.mj_geomDistance(m, d, gid, probe, 1.0, None) + PROBE_R
                worst = max(worst, abs(ref - float(ours[g, k])))
                checked_inside += int(ref < 0)
    assert checked_inside > 50, "the sample must include points inside the primitives"
    assert worst < 1e-6, f"max |SDF - MuJoCo| = {worst:.3e} m"


def test_surface_points_lie_on_hand_surface(shadow64):
    h = shadow64
    eye = torch.eye(3, dtype=torch.float64)[None]
    frames = h.forward_kinematics(torch.zeros(1, 3, dtype=torch.float64), eye, h.init_pose[None])
    pts = h.surface_points(frames, n=2048)
    per_geom = h.signed_distance_per_geom(frames, pts)
    # every sample is on the boundary of at least one primitive
    assert per_geom.abs().min(dim=1).values.max() < 1e-9
    # and the union SDF is never positive there
    assert h.signed_distance(frames, pts).max() < 1e-9
    # deterministic per seed
    assert torch.equal(pts, h.surface_points(frames, n=2048))


def test_contact_candidates_are_on_the_surface_and_palmar(shadow64):
    h = shadow64
    eye = torch.eye(3, dtype=torch.float64)[None]
    frames = h.forward_kinematics(torch.zeros(1, 3, dtype=torch.float64), eye, h.open_pose[None])
    cc = h.contact_candidates(frames)
    sd = h.signed_distance_per_geom(frames, cc).abs().min(dim=1).values
    assert sd.max() < 1e-4, "contact candidates must sit on a collision primitive surface"
    # in the open pose, finger and palm candidates face the approach side (-y) of the palm
    fingers = [i for i, n in enumerate(h.spec.contact_candidates.link) if not n.startswith("th")]
    y = cc[0, fingers, 1]
    assert (y < 1e-6).all()


def test_open_pose_is_free_of_self_penetration(shadow64):
    h = shadow64
    eye = torch.eye(3, dtype=torch.float64)[None]
    for pose in (h.open_pose, h.init_pose):
        frames = h.forward_kinematics(torch.zeros(1, 3, dtype=torch.float64), eye, pose[None])
        c, r = h.penetration_keypoints(frames)
        i, j = h.self_pairs[:, 0], h.self_pairs[:, 1]
        gap = (c[0, i] - c[0, j]).norm(dim=-1) - r[i] - r[j]
        assert gap.min() > 0, f"keypoint pair overlaps by {-gap.min():.4f} m in a canonical pose"
    assert np.isfinite(h.init_pose.numpy()).all()


def test_narrow_signed_distance_is_the_per_pair_distance(shadow64):
    """The broad phase's narrow check (points in each primitive's own frame) gives the distance of
    signed_distance_to_geom for every primitive type, inside and outside, up to rounding."""
    from models.hands.model import GEOM_BOX

    h = shadow64
    gen = torch.Generator().manual_seed(2)
    b, k = 6, 4000
    rot = random_rotations(b, generator=gen, dtype=torch.float64)
    pos = torch.randn(b, 3, generator=gen, dtype=torch.float64) * 0.3
    q = h.lower + (h.upper - h.lower) * torch.rand(b, h.num_joints, generator=gen, dtype=torch.float64)
    frames = h.forward_kinematics(pos, rot, q)
    gf = h.geom_frames(frames)
    bi = torch.randint(0, b, (k,), generator=gen)
    gi = torch.randint(0, len(h.geom_type), (k,), generator=gen)
    # points around each chosen primitive's centre, a few cm out: many inside, many outside
    pts = gf[1][bi, gi] + torch.randn(k, 3, generator=gen, dtype=torch.float64) * 0.015
    ref = h.signed_distance_to_geom(frames, bi, gi, pts)
    got = h.narrow_signed_distance(gf, bi, gi, pts)
    boxes = torch.tensor([h.geom_type[g] == GEOM_BOX for g in gi.tolist()])
    assert int((ref < 0).sum()) > 200 and int((ref > 0).sum()) > 200 and bool(boxes.any())
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
