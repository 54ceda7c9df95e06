"""What one client can cost the others, over a real socket (uvicorn in a thread, a real Redis server):
bodies are parsed off the event loop (/healthz answers meanwhile), keys are checked before a body
is read, a stalled body gets 408, and rollout meshes have a face limit."""

from __future__ import annotations

import base64
import io
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from .conftest import API_KEY, LiveServer, free_port
from .test_api import multipart, raw

MAX_FACES = 500


@pytest.fixture(scope="module")
def lserver(tmp_path_factory) -> Iterator[LiveServer]:
    from service.app import create_app
    from service.settings import Settings
    from sim_worker.embedded import EmbeddedRedis

    with EmbeddedRedis(data_dir=tmp_path_factory.mktemp("redis"), port=free_port()) as redis:
        settings = Settings(api_keys=[API_KEY], redis_url=redis.url, warmup=False, max_body_bytes=64 * 1024 * 1024,
                            body_timeout_s=1.0, max_mesh_faces=MAX_FACES)
        with LiveServer(create_app(settings), free_port()) as live:
            yield live


def _in_ply_parser() -> bool:
    """Some thread of this process (the server runs in one) is walking a PLY body right now."""
    for frame in sys._current_frames().values():
        f = frame
        while f is not None:
            if f.f_code.co_name == "_skip_binary" and f.f_code.co_filename.endswith("ply.py"):
                return True
            f = f.f_back
    return False


def _faces_first_ply(n_faces: int) -> bytes:
    """A binary PLY that lists ``n_faces`` faces before its vertices (the parser walks them row by row)
    and whose vertex data is then cut short: a long parse that ends in 400."""
    rows = np.zeros(n_faces, dtype=[("n", "u1"), ("i", "<i4", 3)])
    rows["n"] = 3
    head = (f"ply\nformat binary_little_endian 1.0\nelement face {n_faces}\nproperty list uchar int vertex_indices\n"
            "element vertex 10\nproperty float x\nproperty float y\nproperty float z\nend_header\n").encode()
    return head + rows.tobytes() + b"\0" * 12


def test_health_answers_while_a_big_upload_is_parsed(lserver):
    body, ctype = multipart({}, {"cloud": ("faces.ply", _faces_first_ply(3_000_000))})
    done: dict[str, object] = {}

    def post() -> None:
        done["status"], done["body"], _ = raw(lserver.url + "/v1/grasps", "POST", body, ctype)

    t = threading.Thread(target=post, daemon=True)
    t.start()
    end = time.monotonic() + 120
    while not _in_ply_parser():
        assert t.is_alive() and time.monotonic() < end, f"the upload was never parsed: {done}"
        time.sleep(0.002)
    status, health, _ = raw(lserver.url + "/healthz", key=None)
    # answered while the upload is provably still being parsed (and not answered yet)
    assert status == 200, health
    assert _in_ply_parser() and "status" not in done
    t.join(300)
    assert done["status"] == 400 and "truncated" in done["body"]["error"]["message"], done  # type: ignore[index]


def _partial_request(url: str, path: str, headers: dict[str, str], declared: int, sent: bytes) -> tuple[int, bytes]:
    """POST announcing ``declared`` body bytes and sending only ``sent``; the status line of the answer
    and what followed it (the connection is left open on our side)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        s.sendall(head.encode() + sent)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ", 2)[1]), data


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].decode().lower()
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0


@pytest.mark.parametrize("path", ["/v1/rollouts", "/v1/objects"])
def test_a_key_is_checked_before_the_body_is_read(lserver, path):
    # 50 MB announced, 14 bytes sent: the 401 cannot wait for the body (which never comes)
    status, data = _partial_request(lserver.url, path, {}, 50_000_000, b'{"mode": "val')
    assert status == 401 and b"missing API key" in data, data[:500]
    status, data = _partial_request(lserver.url, path, {"X-API-Key": "wrong-key-123"}, 50_000_000, b'{"mode": "val')
    assert status == 401 and b"invalid API key" in data, data[:500]


def test_a_stalled_body_gets_408_and_the_connection_closes(lserver):
    host, port = lserver.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(f"POST /v1/rollouts HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: 1000\r\nX-API-Key: {API_KEY}\r\n\r\n".encode() + b'{"mode": "val')
        data = b""
        while chunk := s.recv(65536):  # the server closes the connection after its answer
            data += chunk
    assert data.startswith(b"HTTP/1.1 408"), data[:500]
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "body_timeout" and "stalled" in body["error"]["message"]


def test_a_mesh_over_the_face_limit_is_refused_with_the_limit(lserver):
    import trimesh

    def stl(mesh: trimesh.Trimesh) -> str:
        buf = io.BytesIO()
        mesh.export(buf, file_type="stl")
        return base64.b64encode(buf.getvalue()).decode()

    fine = trimesh.creation.icosphere(subdivisions=2, radius=0.04)  # 320 faces
    dense = trimesh.creation.icosphere(subdivisions=4, radius=0.04)  # 5120 faces
    assert len(fine.faces) <= MAX_FACES < len(dense.faces)
    grasps = json.loads((Path(__file__).resolve().parents[1] / "data" / "sim" / "box_pinch.json").read_text())["grasps"]
    for path, wrap in (("/v1/objects", lambda o: o), ("/v1/rollouts", lambda o: {"mode": "validate", "grasps": grasps, "object": o})):
        status, out, _ = raw(lserver.url + path, "POST", json.dumps(wrap({"kind": "mesh", "format": "stl", "data_b64": stl(dense)})).encode(),
                             "application/json")
        assert status == 413 and out["error"]["code"] == "mesh_too_complex", out
        msg = out["error"]["message"]
        assert "5120 faces" in msg and str(MAX_FACES) in msg and "decimate" in msg, msg
    status, out, _ = raw(lserver.url + "/v1/objects", "POST",
                         json.dumps({"kind": "mesh", "format": "stl", "data_b64": stl(fine)}).encode(), "application/json")
    assert status == 200 and len(out["hash"]) == 64, out
