"""Hostile PLY headers: declared counts are checked against the body before anything is allocated."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest

from models.objects import read_ply_bytes

XYZ = b"property float x\nproperty float y\nproperty float z\n"
FACES = b"property list uchar int vertex_indices\n"


def test_a_huge_face_count_before_the_vertices_fails_fast() -> None:
    data = (
        b"ply\nformat binary_little_endian 1.0\nelement face 1000000000000\n" + FACES
        + b"element vertex 1\n" + XYZ + b"end_header\n" + struct.pack("<B3i", 3, 0, 0, 0) + b"\x00" * 12
    )
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"malformed PLY.*'face'"):
        read_ply_bytes(data)
    assert time.perf_counter() - t < 1.0


def test_elements_after_the_vertices_are_not_read() -> None:
    # a face count no body could hold, after the vertices: the points are all that is needed
    for fmt, body in (("binary_little_endian", struct.pack("<3f", 1, 2, 3)), ("ascii", b"1 2 3\n3 0 0 0\n")):
        data = (
            f"ply\nformat {fmt} 1.0\nelement vertex 1\n".encode() + XYZ
            + b"element face 1000000000000\n" + FACES + b"end_header\n" + body
        )
        pts, nrm = read_ply_bytes(data)
        np.testing.assert_array_equal(pts, [[1, 2, 3]])
        assert nrm is None


def test_a_vertex_count_beyond_the_body_is_refused_without_allocating() -> None:
    data = b"ply\nformat binary_little_endian 1.0\nelement vertex 1000000000000\n" + XYZ + b"end_header\n" + b"\x00" * 12
    with pytest.raises(ValueError, match=r"malformed PLY.*truncated"):
        read_ply_bytes(data)
