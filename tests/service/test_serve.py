"""``dexgrasp serve`` in its embedded default, run as a user would (a real subprocess with its own
Redis and worker children), then hurt: kill -9 of the worker, kill -9 of Redis, SIGTERM. The
children are found through ``/proc`` (Linux). No wall-clock assertions: deadlines only bound how
long a test may wait for a condition."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from .conftest import API_KEY, free_port
from .test_api import raw

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "sim"
T = TypeVar("T")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the children through /proc")


def wait_for(pred: Callable[[], T], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def children(pid: int) -> dict[int, str]:
    """The live child processes of ``pid``: pid -> command line (any thread may have forked them)."""
    out: dict[int, str] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for k in kids:
            try:
                stat = Path(f"/proc/{k}/stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] == "Z":
                    continue
                out[int(k)] = Path(f"/proc/{k}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
    return out


def child(pid: int, marker: str) -> int | None:
    return next((k for k, cmd in children(pid).items() if marker in cmd), None)


def redis_child(pid: int) -> int | None:
    return child(pid, "redis-server")


def worker_child(pid: int) -> int | None:
    return child(pid, "sim_worker.cli worker")


def redis_port(redis_pid: int) -> int:
    # redis-server shows "redis-server HOST:PORT" as its command line
    return int(Path(f"/proc/{redis_pid}/cmdline").read_bytes().replace(b"\0", b" ").split()[-1].rsplit(b":", 1)[1])


def admin(redis_pid: int) -> redis.Redis:
    """A client of the embedded Redis, with the password from its config file (readable by this user only)."""
    conf = Path(f"/proc/{redis_pid}/cwd/redis.conf")
    words = conf.read_text().split() if conf.exists() else []
    password = words[words.index("requirepass") + 1] if "requirepass" in words else None
    return redis.Redis(port=redis_port(redis_pid), password=password, socket_timeout=10)


def pid_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Served:
    """A ``dexgrasp serve`` process on a free port; its stderr (its own and its worker's log) in a file."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "serve.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
               "DEXGRASP_WARMUP": "false", "DEXGRASP_API_KEYS": API_KEY}
        env.pop("REDIS_URL", None)
        env.pop("DEXGRASP_REDIS_URL", None)
        env.pop("OMP_WAIT_POLICY", None)  # serve's own default is checked below
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1",
                                      "--port", str(self.port)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self) -> dict[str, Any]:
        def answered() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                status, body, _ = raw(self.url + "/readyz", key=None)
            except OSError:
                return None
            return body if status == 200 and body.get("checks", {}).get("redis") == "ok" else None

        return wait_for(answered, 240, "dexgrasp serve to be ready")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("serve"))
    try:
        s.ready()
        wait_for(lambda: worker_child(s.proc.pid), 60, "the worker process")
        yield s
    finally:
        s.close()


def test_serve_tells_openmp_to_sleep_while_waiting(served: Served) -> None:
    """The ``dexgrasp`` command sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads (spinning OpenMP threads fight
    the simulation workers for the cores: ``service.cli.quiet_openmp``); the worker ``serve`` starts inherits it.
    An explicit value is kept."""
    from service.cli import quiet_openmp

    pid = worker_child(served.proc.pid)
    assert pid is not None
    env = dict(item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item)
    assert env.get(b"OMP_WAIT_POLICY") == b"PASSIVE"
    mine = {"OMP_WAIT_POLICY": "ACTIVE"}
    quiet_openmp(mine)
    assert mine == {"OMP_WAIT_POLICY": "ACTIVE"}
    fresh: dict[str, str] = {}
    quiet_openmp(fresh)
    assert fresh == {"OMP_WAIT_POLICY": "PASSIVE"}


def _case(name: str = "box_pinch") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    doc = json.loads((DATA / f"{name}.json").read_text())
    prim = doc["primitive"]
    return {"kind": "primitive", "shape": prim["kind"], "size": prim["size"]}, doc["grasps"]


def post_job(s: Served, grasps: list[dict[str, Any]], obj: dict[str, Any]) -> str:
    status, out, _ = raw(s.url + "/v1/rollouts", "POST", json.dumps({"mode": "validate", "grasps": grasps,
                                                                      "object": obj}).encode(), "application/json")
    assert status == 202, out
    return str(out["id"])


def job(s: Served, job_id: str) -> dict[str, Any] | None:
    """The job's status, or None while the service cannot say (Redis away: 503)."""
    status, body, _ = raw(f"{s.url}/v1/rollouts/{job_id}")
    if status == 503:
        return None
    assert status == 200, body
    return body


def finished(s: Served, ids: list[str]) -> list[dict[str, Any]] | None:
    jobs = [job(s, j) for j in ids]
    if any(j is None or j["status"] not in ("succeeded", "failed", "canceled") for j in jobs):
        return None
    return jobs  # type: ignore[return-value]


def test_a_killed_worker_is_restarted_and_runs_the_next_job(served: Served) -> None:
    old = worker_child(served.proc.pid)
    assert old is not None
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: (w := worker_child(served.proc.pid)) != old and w, 90, "a new worker process")
    assert pid_alive(new)
    obj, grasps = _case()
    jid = post_job(served, grasps[:1], obj)
    [done] = wait_for(lambda: finished(served, [jid]), 180, "the job to finish")
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert "embedded worker0 exited" in served.log()


def test_a_killed_redis_comes_back_with_its_queue_and_every_job_finishes_once(served: Served) -> None:
    obj, grasps = _case()
    old = redis_child(served.proc.pid)
    assert old is not None
    r = admin(old)
    written = int(r.get("dexgrasp:stats:results_written") or 0)
    r.close()
    ids = [post_job(served, grasps * 2, obj) for _ in range(6)]
    os.kill(old, signal.SIGKILL)  # some jobs queued, one batch in flight
    new = wait_for(lambda: (r := redis_child(served.proc.pid)) != old and r, 90, "a new redis-server")
    done = wait_for(lambda: finished(served, ids), 300, "every job to finish")
    assert [d["status"] for d in done] == ["succeeded"] * len(ids)
    assert all(len(d["result"]["grasps"]) == 2 * len(grasps) for d in done)
    # one result per job: an in-flight job's result was recorded (or the job re-run), never dropped or doubled
    r = admin(new)
    try:
        assert int(r.get("dexgrasp:stats:results_written") or 0) == written + len(ids)
        assert all(int(r.hget(f"dexgrasp:job:{j}", "attempts") or 0) <= 2 for j in ids)
    finally:
        r.close()
    wait_for(lambda: served.ready()["checks"]["rollouts"] == "ready", 60, "readiness for rollouts again")


def test_the_embedded_redis_needs_a_password_that_no_command_line_or_log_shows(served: Served) -> None:
    pid = redis_child(served.proc.pid)
    assert pid is not None
    port = redis_port(pid)
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=port, socket_timeout=10).ping()
    conf = Path(f"/proc/{pid}/cwd/redis.conf")
    assert conf.stat().st_mode & 0o077 == 0  # only this user can read it
    words = conf.read_text().split()
    password = words[words.index("requirepass") + 1]
    assert len(password) >= 32
    r = redis.Redis(port=port, password=password, socket_timeout=10)
    assert r.ping()
    r.close()
    for k, cmd in children(served.proc.pid).items():
        assert password not in cmd, k
    assert password not in Path(f"/proc/{served.proc.pid}/cmdline").read_text(errors="replace")
    assert password not in served.log()


def test_sigterm_stops_in_order_and_leaves_nothing_behind(tmp_path: Path) -> None:
    s = Served(tmp_path)
    try:
        s.ready()
        worker = wait_for(lambda: worker_child(s.proc.pid), 60, "the worker process")
        server = redis_child(s.proc.pid)
        assert server is not None
        data_dir = Path(os.readlink(f"/proc/{server}/cwd"))
        wait_for(lambda: '"worker_started"' in s.log(), 120, "the worker to start")
        s.proc.send_signal(signal.SIGTERM)
        rc = s.proc.wait(120)
    finally:
        s.close()
    log = s.log()
    assert rc == 0, log[-3000:]
    assert not pid_alive(worker) and not pid_alive(server)
    assert not data_dir.exists()  # the temporary Redis directory is removed
    events = [json.loads(line)["event"] for line in log.splitlines() if line.startswith("{") and '"event"' in line]
    assert events.count("signal") == 1  # one SIGTERM, not a second that skips the grace period
    assert "worker_stopped" in events
    assert "shutdown_without_redis" not in events  # Redis stopped after the worker, not before


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
