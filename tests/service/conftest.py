"""A real uvicorn server on a free port, in a thread of the test process, for HTTP tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.clouds import box_on_table  # noqa: F401 - re-exported for the service tests

API_KEY = "test-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, app: object, port: int) -> None:
        import uvicorn

        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        end = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def server() -> Iterator[LiveServer]:
    from service.app import create_app
    from service.client import GraspClient
    from service.settings import Settings

    settings = Settings(api_keys=[API_KEY], max_body_bytes=8 * 1024 * 1024, max_points=400_000, max_batch=8)
    with LiveServer(create_app(settings), free_port()) as live:
        GraspClient(live.url, api_key=API_KEY).wait_ready(180)
        yield live


@pytest.fixture(scope="session")
def client(server: LiveServer):
    from service.client import GraspClient

    return GraspClient(server.url, api_key=API_KEY, retries=1)
