"""Torch FK against MuJoCo's own kinematics (mj_kinematics) on the same MJCF."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

from models.core.rotations import matrix_to_quat, quat_to_matrix, random_rotations
from models.hands import get_hand, hand_model

from ..conftest import DEVICES


def _random_config(h, n, gen):
    u = torch.rand(n, h.num_joints, generator=gen, dtype=torch.float64)
    q = h.lower.cpu() + u * (h.upper.cpu() - h.lower.cpu())
    rot = random_rotations(n, gen)
    pos = (torch.rand(n, 3, generator=gen, dtype=torch.float64) - 0.5) * 2.0
    return pos, rot, q


def _mujoco_frames(h, pos, rot, q):
    """Link poses from mj_kinematics with the palm placed at (pos, rot) via body_pos/body_quat."""
    m = hand_model(h.spec, root="fixed", with_visual=False)
    d = mujoco.MjData(m)
    palm = h.body_ids[0]
    out_p, out_r = [], []
    for i in range(q.shape[0]):
        m.body_pos[palm] = pos[i].numpy()
        m.body_quat[palm] = matrix_to_quat(rot[i]).numpy()
        for qi, j in enumerate(h.mj_joint_ids):
            d.qpos[m.jnt_qposadr[j]] = float(q[i, qi])
        mujoco.mj_kinematics(m, d)
        out_p.append(np.array([d.xpos[b] for b in h.body_ids]))
        out_r.append(np.array([d.xmat[b].reshape(3, 3) for b in h.body_ids]))
    return np.stack(out_p), np.stack(out_r)


def test_fk_matches_mujoco_fixed_root(shadow64):
    gen = torch.Generator().manual_seed(0)
    pos, rot, q = _random_config(shadow64, 64, gen)
    frames = shadow64.forward_kinematics(pos, rot, q)
    ref_p, ref_r = _mujoco_frames(shadow64, pos, rot, q)
    err_p = np.abs(frames.translation.numpy() - ref_p).max()
    err_r = np.abs(frames.rotation.numpy() - ref_r).max()
    assert err_p < 1e-5, f"max link position error {err_p:.3e} m"
    assert err_r < 1e-5, f"max link rotation error {err_r:.3e}"


def test_fk_matches_mujoco_free_root(shadow64):
    """Same check through the free-joint model the simulator uses (qpos = palm pose + joints)."""
    m = hand_model(shadow64.spec, root="free", with_visual=False)
    d = mujoco.MjData(m)
    gen = torch.Generator().manual_seed(1)
    pos, rot, q = _random_config(shadow64, 16, gen)
    frames = shadow64.forward_kinematics(pos, rot, q)
    name_to_body = {m.body(b).name: b for b in range(m.nbody)}
    bodies = [name_to_body[shadow64.spec.mjcf.name_prefix + n] for n in shadow64.link_names]
    jadr = {m.joint(j).name: m.jnt_qposadr[j] for j in range(m.njnt)}
    for i in range(16):
        d.qpos[0:3] = pos[i].numpy()
        d.qpos[3:7] = matrix_to_quat(rot[i]).numpy()
        for qi, n in enumerate(shadow64.joint_names):
            d.qpos[jadr[shadow64.spec.mjcf.name_prefix + n]] = float(q[i, qi])
        mujoco.mj_kinematics(m, d)
        ref = np.array([d.xpos[b] for b in bodies])
        assert np.abs(frames.translation[i].numpy() - ref).max() < 1e-5


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fk_devices_and_dtypes_agree(device, dtype, shadow64):
    h = get_hand("shadow", device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(2)
    pos, rot, q = _random_config(shadow64, 32, gen)
    ref = shadow64.forward_kinematics(pos, rot, q)
    ts = h.ts
    got = h.forward_kinematics(ts.tensor(pos), ts.tensor(rot), ts.tensor(q))
    assert got.translation.dtype == ts.dtype and got.translation.device.type == ts.device.type
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert (got.translation.double().cpu() - ref.translation).abs().max() < tol


def test_fk_is_differentiable(shadow64):
    gen = torch.Generator().manual_seed(3)
    pos, rot, q = _random_config(shadow64, 4, gen)
    q.requires_grad_(True)
    pos.requires_grad_(True)
    frames = shadow64.forward_kinematics(pos, rot, q)
    assert torch.autograd.gradcheck(
        lambda qq: shadow64.forward_kinematics(pos.detach(), rot, qq).translation, (q,), eps=1e-6, atol=1e-6
    )
    frames.translation.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_quaternion_roundtrip():
    gen = torch.Generator().manual_seed(4)
    r = random_rotations(1000, gen)
    assert (quat_to_matrix(matrix_to_quat(r)) - r).abs().max() < 1e-10


def test_fingers_flex_towards_palm_normal(shadow64):
    """The spec's approach direction (-y of the palm) is where fingertips go when the hand closes."""
    eye = torch.eye(3, dtype=torch.float64)[None]
    zero = torch.zeros(1, 3, dtype=torch.float64)
    open_f = shadow64.forward_kinematics(zero, eye, shadow64.open_pose[None])
    closed = shadow64.open_pose.clone()
    for i, n in enumerate(shadow64.joint_names):
        if n[:2] in ("FF", "MF", "RF", "LF") and n[-1] in "210":
            closed[i] = 1.0
    shut = shadow64.forward_kinematics(zero, eye, closed[None])
    tip = shadow64.link_names.index("ffdistal")
    move = shut.translation[0, tip] - open_f.translation[0, tip]
    assert float(move @ shadow64.approach_direction) > 0.03


def test_project_joints_respects_limits_and_tendons(shadow64):
    gen = torch.Generator().manual_seed(5)
    q = (torch.rand(256, shadow64.num_joints, generator=gen, dtype=torch.float64) - 0.5) * 6
    p = shadow64.project_joints(q)
    assert (p >= shadow64.lower - 1e-12).all() and (p <= shadow64.upper + 1e-12).all()
    for c in shadow64.couplings:
        v = sum(p[:, i] * k for i, k in zip(c.joint_index, c.coef))
        assert (v >= c.lo - 1e-9).all() and (v <= c.hi + 1e-9).all()
