"""Schema fuzzing of the HTTP API against its own OpenAPI document (schemathesis), over real HTTP:
whatever the generated input, the server answers without a 5xx and keeps serving. The rollout and
object endpoints are fuzzed against a server with a real Redis (and no worker: nothing generated
should ever run, and the queue side of every answer is still exercised)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from .conftest import API_KEY, LiveServer, free_port

schemathesis = pytest.importorskip("schemathesis")


@pytest.fixture(scope="module")
def queue_server(tmp_path_factory):
    from service.app import create_app
    from service.client import GraspClient
    from service.settings import Settings
    from sim_worker.embedded import EmbeddedRedis

    with EmbeddedRedis(data_dir=tmp_path_factory.mktemp("redis"), port=free_port(), persistence="none") as redis:
        settings = Settings(api_keys=[API_KEY], redis_url=redis.url, warmup=False)
        with LiveServer(create_app(settings), free_port()) as live:
            GraspClient(live.url, api_key=API_KEY).wait_ready(60)
            yield live


def test_no_5xx_on_generated_requests(server, queue_server):
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    seen: dict[tuple[str, int], int] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        # the proposal server has no Redis (rollouts answer 503 there by design)
        url = queue_server.url if op.path.startswith(("/v1/rollouts", "/v1/objects")) else server.url
        name = f"{op.method.upper()} {op.path}"

        @settings(max_examples=100 if op.method.upper() == "POST" else 10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def check(case) -> None:
            response = case.call(base_url=url, headers={"X-API-Key": API_KEY}, timeout=120)  # noqa: B023
            key = (name, response.status_code)  # noqa: B023 - check() runs inside this iteration
            seen[key] = seen.get(key, 0) + 1
            assert response.status_code < 500, (case.method, case.path, str(case.body)[:300], response.text[:500])

        check()
    assert {"POST /v1/grasps", "POST /v1/rollouts", "POST /v1/objects", "GET /v1/rollouts/{job_id}"} <= {p for p, _ in seen}
    assert any(code == 200 for _, code in seen)
    import urllib.request

    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as r:
        assert r.status == 200
