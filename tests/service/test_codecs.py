"""Wire compatibility of the msgpack array layout with msgpack-numpy (what GraspGen-style clients use).

The service decodes that layout itself (no pickle path); msgpack-numpy is only a test dependency here,
to prove that bodies it packs are read as they are and that what the service packs it can read.
"""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from service.codecs import DecodeError, decode_msgpack, encode_array_msgpack, encode_msgpack

msgpack_numpy = pytest.importorskip("msgpack_numpy")

PTS = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)


def test_bodies_packed_by_msgpack_numpy_decode_unchanged() -> None:
    nrm = PTS / np.linalg.norm(PTS, axis=1, keepdims=True)
    for pts, n in ((PTS, nrm), (PTS.astype(np.float64), None)):
        body = {"points": pts, "num_grasps": 4, "hand": "shadow"}
        if n is not None:
            body["normals"] = n
        got = decode_msgpack(msgpack.packb(body, default=msgpack_numpy.encode, use_bin_type=True))
        np.testing.assert_array_equal(got.points, pts)
        assert got.points.dtype == pts.dtype
        if n is None:
            assert got.normals is None
        else:
            assert got.normals is not None
            np.testing.assert_array_equal(got.normals, n)
        assert got.params.num_grasps == 4 and got.params.hand == "shadow"


def test_arrays_the_service_packs_read_back_with_msgpack_numpy() -> None:
    packed = encode_msgpack({"a": encode_array_msgpack(PTS)})
    # raw=True: this layout's keys are msgpack str, msgpack-numpy's own are bytes (b"nd")
    back = msgpack.unpackb(packed, object_hook=msgpack_numpy.decode, raw=True)
    np.testing.assert_array_equal(back[b"a"], PTS)


def test_msgpack_numpy_object_arrays_are_refused_not_unpickled() -> None:
    body = {"points": np.array([{"a": 1}], dtype=object)}
    with pytest.raises(DecodeError, match="no pickles"):
        decode_msgpack(msgpack.packb(body, default=msgpack_numpy.encode, use_bin_type=True))
