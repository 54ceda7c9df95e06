"""Schema fuzzing of the HTTP API against its own OpenAPI document (schemathesis), over real HTTP:
whatever the generated input, the server answers without a 5xx and keeps serving."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from .conftest import API_KEY

schemathesis = pytest.importorskip("schemathesis")


def test_no_5xx_on_generated_requests(server):
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    seen: dict[tuple[str, int], int] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path.startswith(("/v1/rollouts", "/v1/objects")):
            continue  # this server has no Redis (503 by design); rollouts are tested with real workers

        name = f"{op.method.upper()} {op.path}"

        @settings(max_examples=100 if op.method.upper() == "POST" else 10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def check(case) -> None:
            response = case.call(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=120)
            key = (name, response.status_code)  # noqa: B023 - check() runs inside this iteration
            seen[key] = seen.get(key, 0) + 1
            assert response.status_code < 500, (case.method, case.path, str(case.body)[:300], response.text[:500])

        check()
    assert any(path == "POST /v1/grasps" for path, _ in seen)
    assert any(code == 200 for _, code in seen)
    import urllib.request

    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as r:
        assert r.status == 200
