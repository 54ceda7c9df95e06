"""Rotation helpers in numpy for single poses (float64), the numpy face of :mod:`models.core.rotations`.

Same conventions as the torch module: quaternions are ``[w, x, y, z]`` (MuJoCo order),
matrices act on column vectors. The arithmetic is MuJoCo's own (``mju_*``, all wxyz), so the
simulation and the code around it agree on every convention; what MuJoCo lacks (slerp with a
near-equal fallback, the angle between two orientations) is written here once.

Isaac Gym and scipy store quaternions ``[x, y, z, w]``: convert at that boundary with
:func:`wxyz_to_xyzw` / :func:`xyzw_to_wxyz`.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]


def quat_normalize(q: ArrayLike) -> F64:
    """Unit quaternion; a zero one stays zero (no identity is invented)."""
    a = np.asarray(q, dtype=np.float64)
    out: F64 = a / max(float(np.linalg.norm(a)), 1e-12)
    return out


def quat_mul(a: ArrayLike, b: ArrayLike) -> F64:
    """Hamilton product a * b (apply b first, then a)."""
    res = np.zeros(4)
    mujoco.mju_mulQuat(res, np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return res


def quat_to_matrix(q: ArrayLike) -> F64:
    """(4,) wxyz -> (3, 3). The quaternion is normalised first."""
    res = np.zeros(9)
    mujoco.mju_quat2Mat(res, quat_normalize(q))
    return res.reshape(3, 3)


def matrix_to_quat(r: ArrayLike) -> F64:
    """(3, 3) rotation -> unit quaternion wxyz with w >= 0 (q and -q are the same rotation)."""
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(r, dtype=np.float64).reshape(9))
    q = quat_normalize(q)
    return q if q[0] >= 0 else -q


def slerp(q0: ArrayLike, q1: ArrayLike, s: float) -> F64:
    """Spherical interpolation along the shorter arc, s in [0, 1]."""
    a, b = quat_normalize(q0), quat_normalize(q1)
    d = float(np.dot(a, b))
    if d < 0.0:  # q and -q are the same rotation; take the short way round
        b, d = -b, -d
    if d > 0.9995:  # nearly equal: linear interpolation is exact enough and avoids 0/0
        return quat_normalize(a + s * (b - a))
    th = math.acos(min(1.0, d))
    out: F64 = (math.sin((1 - s) * th) * a + math.sin(s * th) * b) / math.sin(th)
    return out


def quat_angle_deg(q0: ArrayLike, q1: ArrayLike) -> float:
    """Angle in degrees of the rotation taking orientation ``q0`` to ``q1`` (either may be unnormalised)."""
    a, b = np.asarray(q0, dtype=np.float64), np.asarray(q1, dtype=np.float64)
    dot = abs(float(np.dot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return math.degrees(2 * math.acos(min(1.0, float(dot))))


def rotation_to_z(up: ArrayLike) -> F64:
    """Rotation R (3, 3) with R @ up = +z, the smallest such rotation (up must be non-zero).

    For ``up`` along -z every half-turn about a horizontal axis qualifies; this is the one about x.
    """
    u = np.asarray(up, dtype=np.float64)
    u = u / np.linalg.norm(u)
    if math.hypot(u[0], u[1]) < 1e-12:  # (anti)parallel: MuJoCo's threshold is tighter; keep this one
        return np.eye(3) if u[2] > 0 else np.diag([1.0, -1.0, -1.0])
    q = np.zeros(4)
    mujoco.mju_quatZ2Vec(q, u)  # +z -> up; R is its inverse
    return quat_to_matrix(q).T.copy()


def wxyz_to_xyzw(q: ArrayLike) -> F64:
    out: F64 = np.asarray(q, dtype=np.float64)[..., [1, 2, 3, 0]]
    return out


def xyzw_to_wxyz(q: ArrayLike) -> F64:
    out: F64 = np.asarray(q, dtype=np.float64)[..., [3, 0, 1, 2]]
    return out
