"""``dexgrasp serve`` as a real process: connections that hold a socket without a request in progress
are closed after the keep-alive time."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def _closed_by_server(port: int, send: bytes) -> bytes:
    """Connect, send ``send``, then read until the server closes; everything it sent (60 s at most)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(send)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def test_idle_and_half_sent_connections_are_closed(tmp_path):
    from sim_worker.embedded import EmbeddedRedis

    port = free_port()
    with EmbeddedRedis(data_dir=tmp_path, port=free_port()) as redis:
        env = {**os.environ, "REDIS_URL": redis.url, "DEXGRASP_PORT": str(port), "DEXGRASP_HOST": "127.0.0.1",
               "DEXGRASP_WARMUP": "false", "DEXGRASP_KEEP_ALIVE_S": "1", "DEXGRASP_API_KEYS": ""}
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            end = time.monotonic() + 120
            while True:
                assert proc.poll() is None and time.monotonic() < end, "dexgrasp serve did not come up"
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
                    break
                except OSError:
                    time.sleep(0.2)
            assert _closed_by_server(port, b"") == b""  # connected, never sent a byte
            assert _closed_by_server(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n") == b""  # headers never finished
            answered = _closed_by_server(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # kept alive, then idle
            assert answered.startswith(b"HTTP/1.1 200")
        finally:
            proc.terminate()
            proc.wait(60)
