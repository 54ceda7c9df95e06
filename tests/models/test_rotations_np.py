"""The numpy rotation face agrees with the torch one and with the geometry it promises."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.core import rotations as rt
from models.core import rotations_np as rn


def _unit_quats(n: int, seed: int = 0) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_matrix_conversions_match_the_torch_face() -> None:
    for q in _unit_quats(50):
        r = rn.quat_to_matrix(3.0 * q)  # normalised first, like the torch face
        assert np.allclose(r, rt.quat_to_matrix(torch.from_numpy(q)).numpy(), atol=1e-12)
        assert np.allclose(rn.matrix_to_quat(r), rt.matrix_to_quat(torch.from_numpy(r)).numpy(), atol=1e-12)
        assert rn.matrix_to_quat(r)[0] >= 0


def test_quat_mul_composes_rotations() -> None:
    a, b = _unit_quats(2, seed=1)
    assert np.allclose(rn.quat_to_matrix(rn.quat_mul(a, b)), rn.quat_to_matrix(a) @ rn.quat_to_matrix(b), atol=1e-12)


def test_slerp_endpoints_midpoint_and_short_arc() -> None:
    a = np.array([1.0, 0.0, 0.0, 0.0])
    b = np.array([math.cos(0.5), math.sin(0.5), 0.0, 0.0])  # 1 rad about x
    assert rn.slerp(a, b, 0.0) == pytest.approx(a) and rn.slerp(a, b, 1.0) == pytest.approx(b)
    assert rn.quat_angle_deg(a, rn.slerp(a, b, 0.5)) == pytest.approx(math.degrees(0.5))
    assert rn.quat_angle_deg(a, rn.slerp(a, -b, 0.5)) == pytest.approx(math.degrees(0.5))  # -b is b


def test_quat_angle_deg_ignores_sign_and_scale() -> None:
    q = np.array([math.cos(0.1), 0.0, math.sin(0.1), 0.0])
    assert rn.quat_angle_deg([1.0, 0, 0, 0], -2.0 * q) == pytest.approx(math.degrees(0.2))


@pytest.mark.parametrize("up", [[0.3, -0.2, 0.9], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, -1.0], [1e-13, 0.0, -1.0]])
def test_rotation_to_z(up: list[float]) -> None:
    r = rn.rotation_to_z(up)
    u = np.asarray(up) / np.linalg.norm(up)
    assert np.allclose(r @ r.T, np.eye(3)) and np.linalg.det(r) == pytest.approx(1.0)
    assert np.allclose(r @ u, [0.0, 0.0, 1.0], atol=1e-12)
    if abs(u[2]) < 1 - 1e-9:  # the smallest rotation turns about up x z
        axis = np.cross(u, [0.0, 0.0, 1.0])
        assert np.allclose(r @ axis, axis)
    if up[2] < 0 and abs(u[2]) > 1 - 1e-12:
        assert np.allclose(r, np.diag([1.0, -1.0, -1.0]))


def test_xyzw_round_trip() -> None:
    q = np.array([[0.1, 0.2, 0.3, 0.4]])
    assert np.array_equal(rn.wxyz_to_xyzw(q), [[0.2, 0.3, 0.4, 0.1]])
    assert np.array_equal(rn.xyzw_to_wxyz(rn.wxyz_to_xyzw(q)), q)
