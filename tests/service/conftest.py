"""A real uvicorn server on a free port, in a thread of the test process, for HTTP tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

API_KEY = "test-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, app: object, port: int) -> None:
        import uvicorn

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


def box_on_table(seed: int = 0, offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A 6 x 4 x 8 cm box (five visible faces sampled) standing on a 30 cm table patch at z = 0."""
    rng = np.random.default_rng(seed)
    half = np.array([0.03, 0.02, 0.04])
    faces = []
    for axis in range(3):
        for sign in (-1, 1):
            if axis == 2 and sign == -1:
                continue  # the bottom face touches the table
            p = rng.uniform(-1, 1, (400, 3)) * half
            p[:, axis] = sign * half[axis]
            faces.append(p)
    box = np.concatenate(faces) + np.array([0, 0, half[2]])
    table = np.concatenate([rng.uniform(-0.15, 0.15, (1500, 2)), np.zeros((1500, 1))], 1)
    table = table[(np.abs(table[:, 0]) > half[0] + 0.005) | (np.abs(table[:, 1]) > half[1] + 0.005)]
    return (np.concatenate([box, table]) + np.asarray(offset)).astype(np.float32)
