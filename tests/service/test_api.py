"""The HTTP API over a real socket: encodings, the response contract, and every kind of bad input
answered with a 4xx that says what to fix, while the server keeps serving."""

from __future__ import annotations

import base64
import io
import json
import threading
import urllib.error
import urllib.request

import msgpack
import numpy as np
import pytest

from service.client import GraspClient, GraspServiceError

from .conftest import API_KEY, box_on_table


def raw(url: str, method: str = "GET", body: bytes | None = None, ctype: str | None = None,
        key: str | None = API_KEY, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    h = dict(headers or {})
    if ctype:
        h["Content-Type"] = ctype
    if key:
        h["X-API-Key"] = key
    req = urllib.request.Request(url, data=body, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            data = r.read()
            return r.status, (json.loads(data) if "json" in r.headers.get("Content-Type", "") else {"raw": data}), dict(r.headers)
    except urllib.error.HTTPError as e:
        data = e.read()
        try:
            return e.code, json.loads(data), dict(e.headers)
        except json.JSONDecodeError:
            return e.code, {"raw": data}, dict(e.headers)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "----dexgrasptestboundary"
    out = io.BytesIO()
    for k, v in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for k, (name, data) in files.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
                  "Content-Type: application/octet-stream\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


# ------------------------------------------------------------------------------------ probes, meta
def test_probes_and_meta(server):
    assert raw(server.url + "/healthz", key=None)[0] == 200
    status, body, _ = raw(server.url + "/readyz", key=None)
    assert status == 200 and body["ready"] and body["status"] in ("ready", "degraded")
    status, hands, _ = raw(server.url + "/v1/hands")
    assert status == 200 and hands[0]["name"] == "shadow" and len(hands[0]["joints"]) == 22
    status, models, _ = raw(server.url + "/v1/models")
    names = {m["name"] for m in models}
    assert {"optimize", "fast"} <= names and sum(m["default"] for m in models) == 1
    spec = raw(server.url + "/openapi.json", key=None)[1]
    assert "/v1/grasps" in spec["paths"] and "GraspRequest" in spec["components"]["schemas"]
    body = spec["paths"]["/v1/grasps"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/msgpack", "multipart/form-data"} <= set(body)


# -------------------------------------------------------------------------------- valid requests
def _check_result(res, n: int, centre: np.ndarray) -> None:
    assert len(res) == n and res.poses.shape == (n, 4, 4) and res.joints.shape == (n, 22)
    # poses are proper rigid transforms in the request frame, near the object
    r = res.poses[:, :3, :3]
    assert np.allclose(r @ r.transpose(0, 2, 1), np.eye(3), atol=1e-5)
    assert np.linalg.norm(res.poses[:, :3, 3] - centre, axis=1).max() < 0.3
    # ranked by overall score (intent-satisfying first when there is an instruction)
    assert list(res.scores["rank"]) == list(range(n))
    for k in ("penetration_m", "contact_count", "force_closure", "overall"):
        assert np.isfinite(res.scores[k]).all()
    for k in ("preprocess_ms", "propose_ms", "score_ms", "select_ms", "queue_ms"):
        assert res.timings_ms[k] >= 0


@pytest.mark.parametrize("encoding", ["msgpack", "json", "json-b64"])
def test_propose_in_each_encoding_returns_grasps_in_the_request_frame(server, encoding):
    offset = np.array([0.6, -0.2, 0.75])  # a table 75 cm high, in front of the robot
    cloud = box_on_table(1, offset)
    client = GraspClient(server.url, api_key=API_KEY, encoding=encoding, retries=1)
    res = client.propose(cloud, num_grasps=3, seed=1)
    _check_result(res, 3, offset + np.array([0, 0, 0.04]))
    assert any("table detected and removed" in w for w in res.warnings)
    # the hand stays above the table (the pre-grasp too)
    assert (res.poses[:, 2, 3] > offset[2]).all() and (res.pregrasp_poses[:, 2, 3] > offset[2]).all()


def test_optimize_ranks_by_the_referees_protocol_on_the_cloud(server):
    """The service gives method=optimize sim_worker's check on the request's cloud (DEXGRASP_CLOUD_CHECK, on by
    default): the grasps carry its verdicts over HTTP, those that held first. A short optimiser, for test time."""
    from dataclasses import replace

    from models.proposers.optimize import OptimizeConfig, OptimizeProposer
    from sim_worker.cloud_check import CloudCheck

    pipe = server.app.state.service.pipeline  # type: ignore[attr-defined]
    assert isinstance(pipe.check, CloudCheck)
    key = ("optimize", "shadow")
    before = pipe._proposers.get(key)
    pipe._proposers[key] = OptimizeProposer(cfg=replace(OptimizeConfig(), steps=12, extra_rounds=0), check=pipe.check)
    try:
        res = GraspClient(server.url, api_key=API_KEY, retries=1).propose(box_on_table(4), num_grasps=3, method="optimize", seed=2)
    finally:
        pipe._proposers.pop(key)
        if before is not None:
            pipe._proposers[key] = before
    held = res.scores["cloud_check_holds"].tolist()
    assert len(held) == 3 and set(held) <= {0.0, 1.0} and held == sorted(held, reverse=True)
    assert (res.scores["cloud_check_shift_m"] >= 0).all()


def test_npy_and_ply_uploads(server):
    from models.objects.ply import ply_bytes

    cloud = box_on_table(2)
    buf = io.BytesIO()
    np.save(buf, cloud)
    for name, data in [("cloud.npy", buf.getvalue()), ("cloud.ply", ply_bytes(cloud))]:
        body, ctype = multipart({"params": json.dumps({"num_grasps": 2})}, {"cloud": (name, data)})
        status, out, headers = raw(server.url + "/v1/grasps", "POST", body, ctype)
        assert status == 200, out
        assert len(out["grasps"]) == 2 and out["points_in"] == len(cloud)
        assert headers.get("x-request-id") == out["request_id"]
    # single form fields work too
    body, ctype = multipart({"num_grasps": "1", "up": "[0, 0, 1]"}, {"cloud": ("c.npy", buf.getvalue())})
    status, out, _ = raw(server.url + "/v1/grasps", "POST", body, ctype)
    assert status == 200 and len(out["grasps"]) == 1


def test_concurrent_requests_are_batched(server):
    cloud = box_on_table(3)
    client = GraspClient(server.url, api_key=API_KEY, retries=1)
    sizes: list[float] = []
    errors: list[BaseException] = []

    def one(seed: int) -> None:
        try:
            sizes.append(client.propose(cloud, num_grasps=2, seed=seed).timings_ms["batch_size"])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(s,)) for s in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(sizes) == 5
    assert max(sizes) >= 2  # requests that arrived while one was running shared a batch
    status, _, _ = raw(server.url + "/metrics", key=None)
    text = raw(server.url + "/metrics", key=None)[1]["raw"].decode()
    assert status == 200 and "dexgrasp_batch_size_bucket" in text and "dexgrasp_stage_seconds" in text


# ----------------------------------------------------------------------------------- bad input
def _json(points, **extra) -> bytes:
    return json.dumps({"points": points, **extra}).encode()


def _mp(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


GOOD = box_on_table(4)
GOOD_LIST = GOOD[::4].tolist()


def _arr(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"nd": True, "type": a.dtype.str, "kind": "", "shape": list(a.shape), "data": a.tobytes()}


BAD_CASES = [
    ("nan", _json([[float("nan"), 0, 0], *GOOD_LIST]), "application/json", 422, "NaN"),
    ("inf-msgpack", _mp({"points": _arr(np.vstack([GOOD, [[np.inf, 0, 0]]]).astype("<f4"))}), "application/msgpack", 422, "NaN or infinite"),
    ("empty", _json([]), "application/json", 422, "empty"),
    ("one-point", _json([[0.0, 0.0, 0.0]]), "application/json", 422, "at least 50"),
    ("wrong-shape", _json([[0.0, 0.0]] * 60), "application/json", 400, "shape (N, 3)"),
    ("wrong-dtype", _json([["a", "b", "c"]] * 60), "application/json", 422, "points"),
    ("bad-b64", _json({"b64": "%%%not-base64", "shape": [10, 3]}), "application/json", 400, "base64"),
    ("b64-size", _json({"b64": base64.b64encode(b"\0" * 12).decode(), "shape": [10, 3]}), "application/json", 400, "expected 120"),
    ("bad-json", b"{points: nope", "application/json", 400, "not valid JSON"),
    ("bad-msgpack", b"\xc1\xc1\xc1garbage", "application/msgpack", 400, "not valid msgpack"),
    ("msgpack-object-dtype", _mp({"points": {"nd": True, "type": "|O", "kind": b"O", "shape": [2], "data": b"\x80\x04"}}), "application/msgpack", 400, "no pickles"),
    ("msgpack-no-points", _mp({"num_grasps": 2}), "application/msgpack", 400, "no 'points'"),
    ("unknown-hand", _json(GOOD_LIST, hand="robotiq"), "application/json", 422, "unknown hand"),
    ("unknown-method", _json(GOOD_LIST, method="magic"), "application/json", 422, "unknown method"),
    ("unknown-field", _json(GOOD_LIST, colour="red"), "application/json", 422, "colour"),
    ("too-many-grasps", _json(GOOD_LIST, num_grasps=10_000), "application/json", 422, "num_grasps"),
    ("zero-grasps", _json(GOOD_LIST, num_grasps=0), "application/json", 422, "num_grasps"),
    ("flat", _json((np.c_[np.random.default_rng(0).uniform(0, 0.1, (200, 2)), np.zeros(200)]).tolist(), remove_table=False), "application/json", 422, "flat"),
    ("two-metres", _json((np.random.default_rng(0).uniform(-1, 1, (300, 3))).tolist(), remove_table=False), "application/json", 422, "spans"),
    ("zero-up", _json(GOOD_LIST, up=[0, 0, 0]), "application/json", 422, "up"),
    ("short-viewpoint", _json(GOOD_LIST, viewpoint=[0, 0]), "application/json", 422, "viewpoint"),
    ("bad-completion", _json(GOOD_LIST, completion="always"), "application/json", 422, "completion"),
    ("media-type", b"x y z", "text/plain", 415, "application/json"),
    ("deep-points", b'{"points": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json", 400, "nested too deeply"),
    ("deep-text", _json(GOOD_LIST)[:-1] + b', "text": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json", 400, "nested too deeply"),
    ("msgpack-text-not-utf8", _mp({"points": GOOD_LIST, "text": b"\xff\xfe top"}), "application/msgpack", 400, "'text' is not UTF-8"),
    ("one-point-300-times", _json([[0.01, 0.02, 0.05]] * 300), "application/json", 422, "spans 0.00 mm"),
]


@pytest.mark.parametrize(("name", "body", "ctype", "status", "message"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_gets_a_4xx_that_says_what_to_fix(server, name, body, ctype, status, message):
    got, out, _ = raw(server.url + "/v1/grasps", "POST", body, ctype)
    assert got == status, out
    assert message.lower() in out["error"]["message"].lower(), out
    assert out["error"]["request_id"]


def test_malformed_uploads(server):
    for name, data, msg in [
        ("c.ply", b"ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nend_header\n1 2\n", "PLY"),
        ("c.npy", b"\x93NUMPY\x01\x00garbage", ".npy"),
        ("c.npy", _npy_object_array(), "object"),
        ("c.txt", b"1 2 3", ".npy or .ply"),
    ]:
        body, ctype = multipart({}, {"cloud": (name, data)})
        status, out, _ = raw(server.url + "/v1/grasps", "POST", body, ctype)
        assert status == 400, (name, out)
        assert msg.lower() in out["error"]["message"].lower(), out
    body, ctype = multipart({"num_grasps": "2"}, {})
    status, out, _ = raw(server.url + "/v1/grasps", "POST", body, ctype)
    assert status == 400 and "cloud" in out["error"]["message"]


def _npy_object_array() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _post_headers_only(server, length: int | None, chunks: int = 0) -> tuple[int, dict]:
    """Send a POST's headers (and ``chunks`` 1 MB chunks when no length is given), read the answer.

    A server refusing a body by its Content-Length answers before reading it; a client that kept
    writing the whole body would see the connection reset instead of the answer."""
    import socket

    s = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    head = f"POST /v1/grasps HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\nX-API-Key: {API_KEY}\r\n"
    head += f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    s.sendall((head + "\r\n").encode())
    try:
        for _ in range(chunks):
            s.sendall(b"100000\r\n" + b"\x00" * (1 << 20) + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        part = s.recv(65536)
        if not part:
            break
        data += part
    s.close()
    status = int(data.split(b" ", 2)[1])
    body = data.split(b"\r\n\r\n", 1)[1]
    if b"\r\n" in body and not body.startswith(b"{"):  # chunked answer: take the JSON chunk
        body = body[body.index(b"{"): body.rindex(b"}") + 1]
    return status, json.loads(body)


def test_oversized_bodies_and_ten_million_points(server):
    ten_million = 10_000_000 * 3 * 4 + 64  # a msgpack body of 10 million float32 points
    status, out = _post_headers_only(server, ten_million)
    assert status == 413 and "DEXGRASP_MAX_BODY_BYTES" in out["error"]["message"]
    # streamed without a length (chunked): refused while reading, once past the limit
    status, out = _post_headers_only(server, None, chunks=10)
    assert status == 413 and "exceeds" in out["error"]["message"]
    # under the body limit but over the point limit
    many = np.random.default_rng(0).uniform(0, 0.1, (500_000, 3)).astype("<f4")
    status, out, _ = raw(server.url + "/v1/grasps", "POST", _mp({"points": _arr(many)}), "application/msgpack")
    assert status == 422 and "at most 400000" in out["error"]["message"]


def test_api_keys(server):
    body = _json(GOOD_LIST, num_grasps=1)
    for key, headers in [(None, {}), ("wrong-key-000", {}), (None, {"Authorization": "Bearer nope-nope-nope"})]:
        status, out, h = raw(server.url + "/v1/grasps", "POST", body, "application/json", key=key, headers=headers)
        assert status == 401 and "API key" in out["error"]["message"]
        assert h.get("www-authenticate") == "Bearer"
    status, _, _ = raw(server.url + "/v1/hands", key=None, headers={"Authorization": f"Bearer {API_KEY}"})
    assert status == 200
    assert raw(server.url + "/healthz", key=None)[0] == 200  # probes stay open


def test_server_keeps_serving_after_bad_input(server, client):
    for _, body, ctype, _, _ in BAD_CASES[:6]:
        raw(server.url + "/v1/grasps", "POST", body, ctype)
    res = client.propose(GOOD, num_grasps=1)
    assert len(res) == 1
    with pytest.raises(GraspServiceError) as e:
        client.propose(GOOD[:10], num_grasps=1)
    assert e.value.status == 422 and "at least 50" in e.value.message


def test_text_instruction_over_http(client):
    res = client.propose(box_on_table(6), num_grasps=4, text="pick it up from above", seed=3)
    assert res.intent is not None and res.intent["approach"] == "top"
    assert "intent_match" in res.scores and "intent_ms" in res.timings_ms
    sat = res.scores["intent_satisfied"]
    assert list(sat) == sorted(sat, reverse=True)


def test_dgtr_serves_by_default_with_refinement(server):
    """The shipped DGTR weights make ``auto`` resolve to ``dgtr``; its grasps are refined (AB-TTA)."""
    from models.proposers.dgtr import weights_available

    assert weights_available("shadow"), "models/weights/dgtr_shadow must ship (dexgrasp train dgtr --install)"
    models = {m["name"]: m for m in raw(server.url + "/v1/models")[1]}
    assert models["dgtr"]["default"]
    offset = np.array([0.6, -0.2, 0.75])
    client = GraspClient(server.url, api_key=API_KEY, retries=1)
    res = client.propose(box_on_table(2, offset), num_grasps=4, seed=2)
    assert res.proposer == "dgtr"
    _check_result(res, 4, offset + np.array([0, 0, 0.04]))
    assert res.timings_ms["refine_ms"] > 0 and np.isfinite(res.scores["refine_pen_after"]).all()
    # explicitly asked for, and with refinement turned off
    raw_res = client.propose(box_on_table(2, offset), num_grasps=4, seed=2, method="dgtr", refine=False)
    assert raw_res.proposer == "dgtr" and "refine_pen_after" not in raw_res.scores


def test_camera_view_with_viewpoint_is_completed_unless_turned_off(server):
    from models import objects

    mesh = objects.load_mesh("prim/cylinder/0009")
    world, _, _ = objects.place_on_table(mesh, seed=0)
    view = objects.partial_cloud(world, seed=0, with_normals=False)
    client = GraspClient(server.url, api_key=API_KEY, encoding="json-b64", retries=1)
    res = client.propose(np.asarray(view.points), num_grasps=2, viewpoint=view.camera_position, method="fast")
    assert any("completed by mirroring" in w for w in res.warnings), res.warnings
    off = client.propose(np.asarray(view.points), num_grasps=2, viewpoint=view.camera_position, method="fast", completion="off")
    assert not any("mirroring" in w for w in off.warnings), off.warnings
    assert len(off.poses) == 2
