"""Point-cloud codecs: JSON (nested lists or base64 float32), msgpack with numpy arrays (the
msgpack-numpy layout GraspGen clients send), and uploads of ``.npy`` / ``.ply`` files.

No pickles: object arrays and pickled payloads are refused; ``np.load`` runs with
``allow_pickle=False``; msgpack arrays must have a numeric dtype.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
from pydantic import ValidationError

from .schemas import EncodedArray, GraspParams, GraspRequest

JSON_TYPES = ("application/json",)
MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")
MULTIPART = "multipart/form-data"
_NUMERIC_KINDS = "fiu"


class DecodeError(ValueError):
    """The body cannot be decoded; the message says what is wrong with it (400)."""


class UnsupportedMediaType(ValueError):
    """Content type not served (415)."""


@dataclass
class DecodedRequest:
    params: GraspParams
    points: np.ndarray
    normals: np.ndarray | None


def _check_array(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype.kind not in _NUMERIC_KINDS:
        raise DecodeError(f"{name}: dtype {a.dtype} is not numeric; send float32")
    if a.ndim != 2 or a.shape[1] != 3:
        raise DecodeError(f"{name} must have shape (N, 3), got {tuple(a.shape)}")
    return a


def _from_b64(obj: dict[str, Any], name: str) -> np.ndarray:
    try:
        raw = base64.b64decode(obj["b64"], validate=True)
    except (binascii.Error, ValueError) as e:
        raise DecodeError(f"{name}.b64 is not valid base64: {e}") from e
    dtype = np.dtype({"float32": "<f4", "float64": "<f8"}.get(obj.get("dtype", "float32"), obj.get("dtype", "<f4")))
    shape = tuple(int(s) for s in obj["shape"])
    if any(s < 0 for s in shape):
        raise DecodeError(f"{name}.shape must be non-negative, got {list(shape)}")
    need = math.prod(shape) * dtype.itemsize
    if len(raw) != need:
        raise DecodeError(f"{name}: {len(raw)} bytes for shape {list(shape)} of {dtype.name}; expected {need}")
    return _check_array(np.frombuffer(raw, dtype=dtype).reshape(shape), name)


def _from_lists(rows: Any, name: str) -> np.ndarray:
    try:
        a = np.asarray(rows, dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise DecodeError(f"{name} must be a list of [x, y, z] numbers: {e}") from e
    if a.size == 0:
        return np.zeros((0, 3))
    return _check_array(a, name)


def decode_array(value: list[list[float]] | EncodedArray, name: str) -> np.ndarray:
    """An (N, 3) array from a request field (nested lists or base64); DecodeError says what is wrong."""
    return _from_lists(value, name) if isinstance(value, list) else _from_b64(value.model_dump(), name)


def decode_json(body: bytes) -> DecodedRequest:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DecodeError(f"body is not valid JSON: {e}") from e
    except RecursionError as e:
        raise DecodeError("body is nested too deeply to be a request; points are [[x, y, z], ...]") from e
    if not isinstance(data, dict):
        raise DecodeError("body must be a JSON object with at least 'points'")
    req = GraspRequest.model_validate(data)  # ValidationError -> 422 with field paths
    pts = decode_array(req.points, "points")
    nrm = None if req.normals is None else decode_array(req.normals, "normals")
    params = GraspParams.model_validate(req.model_dump(exclude={"points", "normals"}))
    return DecodedRequest(params, pts, nrm)


def _msgpack_hook(obj: dict[Any, Any]) -> Any:
    """msgpack-numpy's array layout {nd, type, kind, shape, data}, numeric dtypes only."""
    nd = obj.get(b"nd", obj.get("nd"))
    if nd is None:
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    kind = obj.get(b"kind", obj.get("kind", b""))
    typ = obj.get(b"type", obj.get("type"))
    if kind not in (b"", "", None) or isinstance(typ, list | tuple):
        raise DecodeError("msgpack array with an object/structured dtype is refused (no pickles); send float32")
    try:
        dtype = np.dtype(typ.decode() if isinstance(typ, bytes) else typ)
    except TypeError as e:
        raise DecodeError(f"msgpack array dtype {typ!r} is not understood") from e
    if dtype.kind not in _NUMERIC_KINDS:
        raise DecodeError(f"msgpack array dtype {dtype} is not numeric")
    data = obj.get(b"data", obj.get("data"))
    shape = obj.get(b"shape", obj.get("shape"))
    if not isinstance(data, bytes) or not isinstance(shape, list | tuple):
        raise DecodeError("msgpack array needs bytes 'data' and a 'shape'")
    if not nd:
        return np.frombuffer(data, dtype=dtype)[0] if len(data) == dtype.itemsize else None
    need = math.prod(shape) * dtype.itemsize
    if len(data) != need:
        raise DecodeError(f"msgpack array: {len(data)} bytes for shape {list(shape)} of {dtype}; expected {need}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _utf8(raw: bytes, name: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as e:
        raise DecodeError(f"msgpack field {name} is not UTF-8 text ({e.reason} at byte {e.start}); send a str") from e


def decode_msgpack(body: bytes) -> DecodedRequest:
    try:
        data = msgpack.unpackb(body, object_hook=_msgpack_hook, raw=True, strict_map_key=False)
    except DecodeError:
        raise
    except Exception as e:  # msgpack raises several unrelated types on malformed input
        raise DecodeError(f"body is not valid msgpack: {type(e).__name__}: {e}") from e
    if not isinstance(data, dict):
        raise DecodeError("msgpack body must be a map with at least 'points'")
    data = {_utf8(k, "a map key") if isinstance(k, bytes) else k: v for k, v in data.items()}
    data = {k: _utf8(v, repr(k)) if isinstance(v, bytes) else v for k, v in data.items()}
    if "points" not in data:
        raise DecodeError("msgpack body has no 'points' (an (N, 3) float32 array)")
    pts, nrm = data.pop("points"), data.pop("normals", None)
    pts = _check_array(pts, "points") if isinstance(pts, np.ndarray) else _from_lists(pts, "points")
    if nrm is not None:
        nrm = _check_array(nrm, "normals") if isinstance(nrm, np.ndarray) else _from_lists(nrm, "normals")
    data = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in data.items()}
    if isinstance(data.get("table"), dict):
        data["table"] = {k.decode() if isinstance(k, bytes) else k: v for k, v in data["table"].items()}
    return DecodedRequest(GraspParams.model_validate(data), pts, nrm)


def decode_file(filename: str, content: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """An uploaded ``.npy`` ((N,3) or (N,6) with normals) or ``.ply`` cloud."""
    name = filename.lower()
    if name.endswith(".npy") or content[:6] == b"\x93NUMPY":
        try:
            a = np.load(io.BytesIO(content), allow_pickle=False)
        except ValueError as e:
            raise DecodeError(f"{filename}: not a readable .npy array (object arrays are refused): {e}") from e
        except Exception as e:
            raise DecodeError(f"{filename}: not a readable .npy file: {e}") from e
        if a.dtype.kind not in _NUMERIC_KINDS:
            raise DecodeError(f"{filename}: dtype {a.dtype} is not numeric")
        if a.ndim != 2 or a.shape[1] not in (3, 6):
            raise DecodeError(f"{filename}: array must be (N, 3) points or (N, 6) points + normals, got {a.shape}")
        return (a, None) if a.shape[1] == 3 else (a[:, :3], a[:, 3:])
    if name.endswith(".ply") or content[:3] == b"ply":
        from models.objects.ply import read_ply_bytes

        try:
            return read_ply_bytes(content)
        except (ValueError, IndexError, KeyError) as e:
            raise DecodeError(f"{filename}: malformed PLY: {e}") from e
    raise DecodeError(f"{filename}: upload a .npy or .ply point cloud")


def params_from_form(fields: dict[str, str]) -> GraspParams:
    """Form fields of a multipart upload: either ``params`` (a JSON object) or one field per parameter."""
    if "params" in fields:
        try:
            data = json.loads(fields["params"])
        except json.JSONDecodeError as e:
            raise DecodeError(f"form field 'params' is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise DecodeError("form field 'params' must be a JSON object")
        return GraspParams.model_validate(data)
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if k in ("up", "table", "viewpoint"):
            try:
                out[k] = json.loads(v)
            except json.JSONDecodeError as e:
                raise DecodeError(f"form field {k!r} must be JSON, e.g. [0, 0, 1]: {e}") from e
        else:
            out[k] = v
    return GraspParams.model_validate(out)


def encode_msgpack(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def encode_array_msgpack(a: np.ndarray) -> dict[str, Any]:
    """An array in msgpack-numpy's layout (readable by :func:`decode_msgpack`, and by msgpack_numpy when
    unpacked with ``raw=True``: these keys are msgpack str, msgpack-numpy's own are bytes)."""
    a = np.ascontiguousarray(a)
    return {"nd": True, "type": a.dtype.str, "kind": "", "shape": list(a.shape), "data": a.tobytes()}


__all__ = [
    "DecodeError",
    "DecodedRequest",
    "UnsupportedMediaType",
    "ValidationError",
    "decode_array",
    "decode_file",
    "decode_json",
    "decode_msgpack",
    "encode_array_msgpack",
    "encode_msgpack",
    "params_from_form",
]
