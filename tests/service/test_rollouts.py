"""Rollout endpoints end to end: real uvicorn, a real Redis server, a real worker process running
MuJoCo. Enqueue, poll, stream events, download keyframes, cancel; Redis going away gives 503 and
a degraded readiness, and everything recovers when it is back."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from .conftest import API_KEY, LiveServer, free_port
from .test_api import raw

DATA = Path(__file__).resolve().parents[1] / "data" / "sim"


def _case(name: str) -> tuple[dict, list[dict]]:
    doc = json.loads((DATA / f"{name}.json").read_text())
    prim = doc["primitive"]
    return {"kind": "primitive", "shape": prim["kind"], "size": prim["size"]}, doc["grasps"]


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    from sim_worker.embedded import EmbeddedRedis, EmbeddedSystem

    redis = EmbeddedRedis(data_dir=tmp_path_factory.mktemp("redis"), port=free_port(), persistence="aof")
    sysm = EmbeddedSystem(workers=1, redis=redis)
    url = sysm.start()
    sysm.wait_ready()
    yield url, sysm, redis
    sysm.stop()


@pytest.fixture(scope="module")
def rserver(system):
    from service.app import create_app
    from service.client import GraspClient
    from service.settings import Settings

    url, _, _ = system
    settings = Settings(api_keys=[API_KEY], redis_url=url, warmup=False)
    with LiveServer(create_app(settings), free_port()) as live:
        GraspClient(live.url, api_key=API_KEY).wait_ready(60)
        yield live


def _post(server, path: str, body: dict) -> tuple[int, dict, dict]:
    return raw(server.url + path, "POST", json.dumps(body).encode(), "application/json")


def _wait(server, job_id: str, timeout_s: float = 120.0) -> dict:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        status, body, _ = raw(f"{server.url}/v1/rollouts/{job_id}")
        assert status == 200, body
        if body["status"] in ("succeeded", "failed", "canceled"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def test_validate_job_through_the_api(rserver):
    obj, grasps = _case("box_pinch")
    status, out, headers = _post(rserver, "/v1/rollouts", {"mode": "validate", "grasps": grasps, "object": obj})
    assert status == 202, out
    assert headers["location"] == out["status_url"] and out["status"] == "queued"
    job = _wait(rserver, out["id"])
    assert job["status"] == "succeeded" and job["progress"] == 1.0
    results = job["result"]["grasps"]
    assert len(results) == len(grasps)
    assert all(isinstance(r["success"], bool) for r in results)
    # the same object uploaded on its own gets the same content hash: geometry travels once
    status, stored, _ = _post(rserver, "/v1/objects", obj)
    assert status == 200 and stored["hash"] == out["object_hash"]
    status, again, _ = _post(rserver, "/v1/rollouts", {"mode": "validate", "grasps": grasps[:1],
                                                        "object": {"kind": "hash", "hash": stored["hash"]}})
    assert status == 202 and _wait(rserver, again["id"])["status"] == "succeeded"


def test_execute_job_streams_events_and_serves_keyframes(rserver):
    obj, grasps = _case("cylinder_power")
    status, out, _ = _post(rserver, "/v1/rollouts", {"mode": "execute", "grasps": grasps[:1], "object": obj, "render": True})
    assert status == 202, out
    req = urllib.request.Request(out["events_url"], headers={"X-API-Key": API_KEY, "Accept": "text/event-stream"})
    events = []
    with urllib.request.urlopen(req, timeout=180) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        block: dict[str, str] = {}
        for line in r:
            text = line.decode().rstrip("\n")
            if not text:
                if "data" in block:
                    events.append({"event": block.get("event"), "id": block.get("id"), **json.loads(block["data"])})
                    if events[-1].get("status") in ("succeeded", "failed", "canceled") and events[-1]["event"] == "status":
                        break
                block = {}
                continue
            if text.startswith(":"):
                continue
            key, _, value = text.partition(": ")
            block[key] = value
    assert events[0]["status"] == "queued" and events[-1]["status"] == "succeeded"
    assert all(e["id"] for e in events)
    final = events[-1]["job"]
    g0 = final["result"]["grasps"][0]
    assert "lift_height_m" in json.dumps(g0) or "lift" in json.dumps(g0)
    job = _wait(rserver, out["id"])
    urls = job["result"]["grasps"][0]["keyframe_urls"]
    assert len(urls) == 3
    with urllib.request.urlopen(urllib.request.Request(urls[1], headers={"X-API-Key": API_KEY}), timeout=30) as r:
        assert r.headers["Content-Type"] == "image/png" and r.read()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cancel_unknown_and_bad_requests(rserver):
    obj, grasps = _case("cylinder_power")
    # a long execute job keeps the worker busy; the next one is canceled (queued or between chunks)
    _, first, _ = _post(rserver, "/v1/rollouts", {"mode": "execute", "grasps": grasps, "object": obj})
    _, second, _ = _post(rserver, "/v1/rollouts", {"mode": "execute", "grasps": grasps, "object": obj, "priority": "low"})
    status, body, _ = raw(f"{rserver.url}/v1/rollouts/{second['id']}", "DELETE")
    assert status == 200 and (body["status"] == "canceled" or body["cancel_requested"])
    assert _wait(rserver, second["id"])["status"] == "canceled"
    assert _wait(rserver, first["id"])["status"] == "succeeded"
    assert raw(f"{rserver.url}/v1/rollouts/nope-123")[0] == 404
    assert raw(f"{rserver.url}/v1/rollouts/nope-123/keyframes/0/0.png")[0] == 404
    bad = [
        ({"mode": "fly", "grasps": grasps, "object": obj}, 422, "mode"),
        ({"mode": "validate", "grasps": [], "object": obj}, 422, "grasps"),
        ({"mode": "validate", "grasps": grasps, "object": {"kind": "primitive", "shape": "box", "size": [1]}}, 422, "3 positive"),
        ({"mode": "validate", "grasps": grasps, "object": {"kind": "hash", "hash": "0" * 64}}, 404, "POST /v1/objects"),
        ({"mode": "validate", "grasps": grasps, "object": {"kind": "mesh", "format": "stl", "data_b64": "%%"}}, 400, "base64"),
        ({"mode": "validate", "grasps": grasps, "object": obj, "render": True}, 422, "render"),
    ]
    for body, code, msg in bad:
        status, out, _ = _post(rserver, "/v1/rollouts", body)
        assert status == code, (body, out)
        assert msg.lower() in out["error"]["message"].lower(), out


def _refused(server, path: str, body: dict, code: int, message: str) -> None:
    status, out, _ = _post(server, path, body)
    assert status == code, (body, out)
    assert message.lower() in out["error"]["message"].lower(), out


def test_object_points_that_do_not_fit_get_a_4xx(rserver):
    _, grasps = _case("box_pinch")
    eight = base64.b64encode(np.zeros(8, dtype="<f4").tobytes()).decode()
    for points, code, message in [
        ([], 422, "N >= 4"),
        ([[0.0, 0.0, 0.0], [0.1, 0.1]], 400, "list of [x, y, z]"),
        ({"b64": eight, "shape": [4, 2]}, 400, "shape (N, 3)"),
        ({"b64": eight, "shape": [3, 3]}, 400, "expected 36"),
    ]:
        obj = {"kind": "points", "points": points}
        _refused(rserver, "/v1/objects", obj, code, message)
        _refused(rserver, "/v1/rollouts", {"mode": "validate", "grasps": grasps, "object": obj}, code, message)


def test_job_ids_the_queue_refuses_are_refused_by_the_route(rserver):
    for job_id in ["a.b", "x:events", "a" * 65]:
        for path in [job_id, job_id + "/events", job_id + "/keyframes/0/0.png"]:
            status, out, _ = raw(f"{rserver.url}/v1/rollouts/{path}")
            assert status == 422 and "job_id" in out["error"]["message"], (path, out)
        assert raw(f"{rserver.url}/v1/rollouts/{job_id}", "DELETE")[0] == 422
    assert raw(f"{rserver.url}/v1/rollouts/{'a' * 64}")[0] == 404


def test_backend_without_a_live_worker_is_refused_at_submit(rserver):
    obj, grasps = _case("box_pinch")
    for backend, message in [("bullet", "unknown backend 'bullet'"), ("isaacgym", "no live worker serves backend 'isaacgym'")]:
        status, out, _ = _post(rserver, "/v1/rollouts", {"mode": "validate", "grasps": grasps, "object": obj, "backend": backend})
        assert status == 422, out
        assert message in out["error"]["message"] and "with live workers: mujoco" in out["error"]["message"], out


def test_simulation_config_is_validated_at_submit(rserver):
    obj, grasps = _case("box_pinch")
    for sim, message in [
        ({"physics": {"timestep_s": -0.01}}, "physics.timestep_s must be finite and in"),
        ({"physics": {"timestep_s": 0}}, "physics.timestep_s"),
        ({"validation": {"disturb_s": 1e9, "waypoints": -1}}, "validation.waypoints"),
        ({"execution": {"gravity": [0, 0]}}, "execution.gravity must be a list of 3 numbers"),
        ({"physics": {"timestep": 0.002}}, "unknown PhysicsConfig fields: ['timestep']"),
        ({"physic": {}}, "unknown SimConfig sections: ['physic']"),
        ({"physics": 0.002}, "physics must be an object"),
    ]:
        _refused(rserver, "/v1/rollouts", {"mode": "validate", "grasps": grasps, "object": obj, "sim": sim}, 422, message)


def test_absurd_grasp_values_are_refused_at_submit(rserver):
    obj, grasps = _case("box_pinch")
    far = json.loads(json.dumps(grasps[0]))
    far["pose"] = {"position": [1e30, 0.0, 0.0], "quaternion_wxyz": far["pose"]["quaternion_wxyz"]}
    bent = json.loads(json.dumps(grasps[0]))
    bent["joints"]["FFJ3"] = 1e30
    for g, message in [(far, "grasps[0].pose.position is 1e+30 m"), (bent, "grasps[0].joints: angles of ['FFJ3']")]:
        _refused(rserver, "/v1/rollouts", {"mode": "validate", "grasps": [g], "object": obj}, 422, message)


def test_a_diverging_simulation_fails_the_job_with_a_message(rserver):
    # a force MuJoCo cannot integrate: its auto-reset used to leave a finite state and a "slipped" verdict
    obj, grasps = _case("box_pinch")
    status, out, _ = _post(rserver, "/v1/rollouts", {"mode": "validate", "grasps": grasps[:1], "object": obj, "max_attempts": 1,
                                                      "sim": {"validation": {"force_per_kg_n": 1e12}}})
    assert status == 202, out
    job = _wait(rserver, out["id"])
    assert job["status"] == "failed" and job["result"] is None, job
    assert "simulation failed on grasp 0: SimulationDiverged" in job["error"] and "+x disturbance" in job["error"], job


def test_redis_outage_gives_503_and_recovers(rserver, system):
    _, _, redis = system
    obj, grasps = _case("box_pinch")
    redis.stop()
    try:
        status, out, headers = _post(rserver, "/v1/rollouts", {"mode": "validate", "grasps": grasps, "object": obj})
        assert status == 503 and "retry-after" in headers and "unreachable" in out["error"]["message"]
        status, ready, _ = raw(rserver.url + "/readyz", key=None)
        assert status == 200 and ready["status"] == "degraded" and ready["checks"]["redis"] == "unreachable"
        assert raw(rserver.url + "/v1/hands")[0] == 200  # the rest of the API keeps serving
    finally:
        redis.start()
    end = time.monotonic() + 30
    while raw(rserver.url + "/readyz", key=None)[1]["status"] != "ready" and time.monotonic() < end:
        time.sleep(0.2)
    status, out, _ = _post(rserver, "/v1/rollouts", {"mode": "validate", "grasps": grasps[:1], "object": obj})
    assert status == 202, out
    assert _wait(rserver, out["id"])["status"] == "succeeded"  # the worker reconnected by itself


def _sse(url: str, headers: dict[str, str], deadline_s: float = 90.0) -> tuple[list[dict], bool]:
    """Read an event stream: its events, and whether it ended by itself before ``deadline_s``."""
    req = urllib.request.Request(url, headers={"X-API-Key": API_KEY, "Accept": "text/event-stream", **headers})
    events: list[dict] = []
    end = time.monotonic() + deadline_s
    with urllib.request.urlopen(req, timeout=60) as r:
        block: dict[str, str] = {}
        for line in r:
            if time.monotonic() > end:
                return events, False
            text = line.decode().rstrip("\n")
            if not text:
                if "data" in block:
                    events.append({"event": block.get("event"), "id": block.get("id"), **json.loads(block["data"])})
                block = {}
            elif not text.startswith(":"):
                key, _, value = text.partition(": ")
                block[key] = value
    return events, True


def test_a_malformed_last_event_id_is_refused_with_a_message(rserver):
    obj, grasps = _case("box_pinch")
    _, out, _ = _post(rserver, "/v1/rollouts", {"mode": "validate", "grasps": grasps[:1], "object": obj})
    status, body, _ = raw(out["events_url"], headers={"Last-Event-ID": "bogus"})
    assert status == 400, body
    assert "Last-Event-ID" in body["error"]["message"]


def test_the_stream_of_a_finished_job_ends_with_its_final_status(rserver):
    obj, grasps = _case("box_pinch")
    _, out, _ = _post(rserver, "/v1/rollouts", {"mode": "validate", "grasps": grasps[:1], "object": obj})
    assert _wait(rserver, out["id"])["status"] == "succeeded"
    events, ended = _sse(out["events_url"], {"Last-Event-ID": "99999999999999-0"})
    assert ended, f"the stream kept going after the job had finished: {events}"
    assert [(e["event"], e["status"]) for e in events] == [("status", "succeeded")]
    assert events[0]["job"]["status"] == "succeeded" and events[0]["id"]
    final_id = events[0]["id"]
    # from the start, the same stream replays the job's history and ends on the same final event
    events, ended = _sse(out["events_url"], {})
    assert ended and events[0]["status"] == "queued" and events[-1]["status"] == "succeeded"
    assert events[-1]["id"] == final_id


def test_readiness_says_rollouts_are_not_ready_without_a_live_worker():
    from service.app import create_app
    from service.settings import Settings
    from sim_worker.embedded import EmbeddedRedis

    with EmbeddedRedis() as redis:
        settings = Settings(api_keys=[API_KEY], redis_url=redis.url, warmup=False)
        with LiveServer(create_app(settings), free_port()) as live:
            status, ready, _ = raw(live.url + "/readyz", key=None)
    assert status == 200 and ready["checks"]["redis"] == "ok"  # proposals still work
    assert ready["status"] == "degraded"
    assert ready["checks"]["workers"] == "none alive"
    assert ready["checks"]["rollouts"].startswith("not ready") and "no rollout worker" in ready["checks"]["rollouts"]


def test_readiness_with_a_live_worker_says_rollouts_are_ready(rserver):
    status, ready, _ = raw(rserver.url + "/readyz", key=None)
    assert status == 200 and ready["status"] == "ready" and ready["checks"]["rollouts"] == "ready"
