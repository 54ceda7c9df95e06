"""Python client for the grasp service: numpy in, dataclasses and numpy out.

Needs only numpy and msgpack (no HTTP library beyond the standard one). Requests are sent as
msgpack with numpy arrays by default (the compact binary form); 503 answers and dropped
connections are retried with exponential backoff, honouring ``Retry-After``.

    from service.client import GraspClient
    client = GraspClient("http://localhost:8000", api_key=None)
    result = client.propose(points, text="grasp it from the top", num_grasps=16)
    result.poses        # (K, 4, 4) palm poses in the cloud's frame
    result.joints       # (K, 22) joint angles, in result.joint_names order
    result.pregrasp_poses, result.scores["overall"], result.warnings
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np


class GraspServiceError(RuntimeError):
    """The service answered with an error (``status``, ``code``, ``message``)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.request_id = status, code, message, request_id


@dataclass
class GraspResult:
    request_id: str
    hand: str
    proposer: str
    joint_names: list[str]
    poses: np.ndarray  # (K, 4, 4) palm poses in the request frame
    joints: np.ndarray  # (K, J)
    pregrasp_poses: np.ndarray  # (K, 4, 4)
    pregrasp_joints: np.ndarray  # (K, J)
    scores: dict[str, np.ndarray]  # each (K,)
    timings_ms: dict[str, float]
    warnings: list[str]
    intent: dict[str, Any] | None
    grasps: list[dict[str, Any]] = field(repr=False)  # the raw records in the shared schema

    def __len__(self) -> int:
        return len(self.grasps)


def _array(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a, dtype="<f4")
    return {"nd": True, "type": "<f4", "kind": "", "shape": list(a.shape), "data": a.tobytes()}


def parse_result(data: dict[str, Any]) -> GraspResult:
    grasps = data["grasps"]
    names = list(grasps[0]["joints"]) if grasps else []
    k = len(grasps)
    poses = np.array([g["pose"]["matrix"] for g in grasps], dtype=np.float64).reshape(k, 4, 4)
    pre = np.array([g["pregrasp"]["pose"]["matrix"] for g in grasps], dtype=np.float64).reshape(k, 4, 4)
    joints = np.array([[g["joints"][n] for n in names] for g in grasps], dtype=np.float64).reshape(k, len(names))
    pre_j = np.array([[g["pregrasp"]["joints"][n] for n in names] for g in grasps], dtype=np.float64).reshape(k, len(names))
    keys = sorted({s for g in grasps for s in g["scores"]})
    scores = {s: np.array([g["scores"].get(s, np.nan) for g in grasps]) for s in keys}
    return GraspResult(
        request_id=data["request_id"], hand=data["hand"], proposer=data["proposer"]["name"], joint_names=names,
        poses=poses, joints=joints, pregrasp_poses=pre, pregrasp_joints=pre_j, scores=scores,
        timings_ms=data["timings_ms"], warnings=data["warnings"], intent=data.get("intent"), grasps=grasps,
    )


class GraspClient:
    def __init__(
        self,
        url: str = "http://localhost:8000",
        api_key: str | None = None,
        timeout_s: float = 60.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        encoding: str = "msgpack",
    ) -> None:
        if encoding not in ("msgpack", "json", "json-b64"):
            raise ValueError("encoding must be msgpack, json or json-b64")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.encoding = encoding

    # --------------------------------------------------------------------------------- transport
    def _headers(self, content_type: str | None) -> dict[str, str]:
        h = {"Accept": "application/msgpack, application/json"}
        if content_type:
            h["Content-Type"] = content_type
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> Any:
        """One call with retries on 503 and connection errors; returns the decoded body."""
        attempt = 0
        while True:
            req = urllib.request.Request(self.url + path, data=body, method=method, headers=self._headers(content_type))
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                    return self._decode(r.headers.get("Content-Type", ""), r.read())
            except urllib.error.HTTPError as e:
                payload = e.read()
                if e.code == 503 and attempt < self.retries:
                    attempt += 1
                    self._sleep(attempt, e.headers.get("Retry-After"))
                    continue
                try:
                    err = self._decode(e.headers.get("Content-Type", ""), payload)["error"]
                except Exception:
                    err = {"code": "http_error", "message": payload[:500].decode(errors="replace")}
                raise GraspServiceError(e.code, err.get("code", "error"), err.get("message", ""), err.get("request_id")) from None
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as e:
                if attempt < self.retries:
                    attempt += 1
                    self._sleep(attempt, None)
                    continue
                raise GraspServiceError(0, "unreachable", f"{self.url}: {e}") from e

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff_s * 2 ** (attempt - 1) * (0.75 + 0.5 * random.random())
        if retry_after:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass
        time.sleep(min(delay, 30.0))

    @staticmethod
    def _decode(content_type: str, payload: bytes) -> Any:
        if "msgpack" in content_type:
            return msgpack.unpackb(payload, raw=False)
        return json.loads(payload) if payload else None

    # ---------------------------------------------------------------------------------- endpoints
    def propose(
        self,
        points: np.ndarray,
        normals: np.ndarray | None = None,
        *,
        num_grasps: int = 16,
        text: str | None = None,
        hand: str = "shadow",
        method: str = "auto",
        up: Sequence[float] = (0.0, 0.0, 1.0),
        table: tuple[Sequence[float], float] | None = None,
        seed: int = 0,
        timeout_ms: int | None = None,
        refine: bool | None = None,
        viewpoint: Sequence[float] | None = None,
        completion: str = "auto",
    ) -> GraspResult:
        pts = np.asarray(points, dtype=np.float32)
        params: dict[str, Any] = {"num_grasps": num_grasps, "hand": hand, "method": method, "up": [float(u) for u in up], "seed": seed}
        if text is not None:
            params["text"] = text
        if timeout_ms is not None:
            params["timeout_ms"] = timeout_ms
        if refine is not None:
            params["refine"] = refine
        if table is not None:
            params["table"] = {"normal": [float(v) for v in table[0]], "offset": float(table[1])}
        if viewpoint is not None:
            params["viewpoint"] = [float(v) for v in viewpoint]
        if completion != "auto":
            params["completion"] = completion
        if self.encoding == "msgpack":
            params["points"] = _array(pts)
            if normals is not None:
                params["normals"] = _array(np.asarray(normals))
            body, ctype = msgpack.packb(params, use_bin_type=True), "application/msgpack"
        else:
            def enc(a: np.ndarray) -> Any:
                a = np.ascontiguousarray(a, dtype="<f4")
                if self.encoding == "json":
                    return a.tolist()
                return {"b64": base64.b64encode(a.tobytes()).decode(), "shape": list(a.shape), "dtype": "float32"}

            params["points"] = enc(pts)
            if normals is not None:
                params["normals"] = enc(np.asarray(normals))
            body, ctype = json.dumps(params).encode(), "application/json"
        return parse_result(self.request("POST", "/v1/grasps", body, ctype))

    def hands(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self.request("GET", "/v1/hands")
        return out

    def models(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self.request("GET", "/v1/models")
        return out

    def health(self) -> bool:
        try:
            return bool(self.request("GET", "/healthz"))
        except GraspServiceError:
            return False

    def ready(self) -> dict[str, Any]:
        """The readiness body; raises on 503 only after the retries are spent."""
        out: dict[str, Any] = self.request("GET", "/readyz")
        return out

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            try:
                req = urllib.request.Request(self.url + "/readyz", headers=self._headers(None))
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, http.client.HTTPException, TimeoutError):
                pass
            time.sleep(0.25)
        raise GraspServiceError(0, "not_ready", f"{self.url} not ready within {timeout_s} s")


__all__ = ["GraspClient", "GraspResult", "GraspServiceError", "parse_result"]
