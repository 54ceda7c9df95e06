"""PLY point-cloud reading and writing (points + optional normals).

Owns the PLY codec the CLI and the API's ``.ply`` uploads use. Writes ``binary_little_endian``
(default) or ``ascii`` with float32 ``x y z`` and optionally ``nx ny nz``. Reads ascii,
binary_little_endian and binary_big_endian files with any scalar property types, extra vertex
properties (colours, intensity, ...) and other elements (faces, before or after the
vertices); returns float32 points (N,3) and normals (N,3) or None. Every malformed input raises
``ValueError`` with a message saying what is wrong; declared sizes are checked against the
data before anything is allocated, so a hostile header cannot request a huge buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

_TYPES: dict[str, str] = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
_FORMATS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}
MAX_HEADER_BYTES = 65536


@dataclass
class _Prop:
    name: str
    dtype: str
    list_count: str | None = None  # count type of a list property


@dataclass
class _Element:
    name: str
    count: int
    props: list[_Prop]


def _err(msg: str) -> ValueError:
    return ValueError(f"malformed PLY: {msg}")


def _parse_header(data: bytes) -> tuple[str, list[_Element], int]:
    if not data.startswith(b"ply"):
        raise _err("missing 'ply' magic at the start")
    end = data.find(b"end_header", 0, MAX_HEADER_BYTES)
    if end < 0:
        raise _err(f"no 'end_header' within the first {MAX_HEADER_BYTES} bytes")
    nl = data.find(b"\n", end)
    body_start = len(data) if nl < 0 else nl + 1
    try:
        lines = data[:end].decode("ascii").splitlines()
    except UnicodeDecodeError as exc:
        raise _err("header is not ASCII") from exc
    fmt: str | None = None
    elements: list[_Element] = []
    for i, raw in enumerate(lines[1:], start=2):
        tok = raw.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "format":
            if len(tok) != 3 or tok[1] not in _FORMATS:
                raise _err(f"line {i}: unsupported format {' '.join(tok[1:])!r}")
            fmt = tok[1]
        elif tok[0] == "element":
            if len(tok) != 3 or not tok[2].isdigit():
                raise _err(f"line {i}: bad element line {raw.strip()!r}")
            elements.append(_Element(tok[1], int(tok[2]), []))
        elif tok[0] == "property":
            if not elements:
                raise _err(f"line {i}: property before any element")
            if len(tok) == 5 and tok[1] == "list":
                if tok[2] not in _TYPES or tok[3] not in _TYPES:
                    raise _err(f"line {i}: unknown list types {tok[2]!r}/{tok[3]!r}")
                elements[-1].props.append(_Prop(tok[4], _TYPES[tok[3]], _TYPES[tok[2]]))
            elif len(tok) == 3 and tok[1] in _TYPES:
                elements[-1].props.append(_Prop(tok[2], _TYPES[tok[1]]))
            else:
                raise _err(f"line {i}: bad property line {raw.strip()!r}")
        else:
            raise _err(f"line {i}: unexpected header keyword {tok[0]!r}")
    if fmt is None:
        raise _err("no 'format' line in the header")
    return fmt, elements, body_start


def _vertex_columns(el: _Element) -> tuple[list[int], list[int] | None]:
    names = [p.name for p in el.props]
    if any(p.list_count is not None for p in el.props):
        raise _err("list properties in the vertex element are not supported")
    missing = [c for c in ("x", "y", "z") if c not in names]
    if missing:
        raise _err(f"vertex element lacks {', '.join(missing)}")
    xyz = [names.index(c) for c in ("x", "y", "z")]
    has_n = [c in names for c in ("nx", "ny", "nz")]
    if any(has_n) and not all(has_n):
        raise _err("vertex element has some but not all of nx, ny, nz")
    return xyz, ([names.index(c) for c in ("nx", "ny", "nz")] if all(has_n) else None)


def _finish(
    table: NDArray[np.float64], xyz: list[int], nrm: list[int] | None
) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
    pts = table[:, xyz].astype(np.float32)
    if not np.isfinite(pts).all():
        raise _err("non-finite vertex coordinates")
    normals = None
    if nrm is not None:
        normals = table[:, nrm].astype(np.float32)
        if not np.isfinite(normals).all():
            raise _err("non-finite normals")
    return pts, normals


def _read_ascii(
    body: bytes, elements: list[_Element]
) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError as exc:
        raise _err("ascii body contains non-ASCII bytes") from exc
    lines = [ln for ln in text.splitlines() if ln.strip()]
    pos = 0
    for el in elements:
        if pos + el.count > len(lines):
            raise _err(f"element {el.name!r} declares {el.count} rows, only {len(lines) - pos} remain")
        if el.name != "vertex":
            pos += el.count
            continue
        xyz, nrm = _vertex_columns(el)
        rows = lines[pos : pos + el.count]
        tokens = " ".join(rows).split()
        if len(tokens) != el.count * len(el.props):
            raise _err(f"vertex rows must have {len(el.props)} values each")
        try:
            table = np.asarray(tokens, dtype=np.float64).reshape(el.count, len(el.props))
        except ValueError as exc:
            raise _err("non-numeric vertex value") from exc
        return _finish(table, xyz, nrm)
    raise _err("no 'vertex' element")


def _skip_binary(data: bytes, offset: int, el: _Element, order: str) -> int:
    if all(p.list_count is None for p in el.props):
        return offset + el.count * sum(np.dtype(p.dtype).itemsize for p in el.props)
    for _ in range(el.count):  # rows with lists have variable length: walk them
        for p in el.props:
            if p.list_count is None:
                offset += np.dtype(p.dtype).itemsize
                continue
            size = np.dtype(p.list_count).itemsize
            if offset + size > len(data):
                raise _err(f"element {el.name!r} is truncated")
            n = int(np.frombuffer(data, order + p.list_count, 1, offset)[0])
            if n < 0:
                raise _err(f"negative list length in element {el.name!r}")
            offset += size + n * np.dtype(p.dtype).itemsize
    return offset


def _read_binary(
    data: bytes, start: int, elements: list[_Element], order: str
) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
    offset = start
    for el in elements:
        if el.name != "vertex":
            offset = _skip_binary(data, offset, el, order)
            if offset > len(data):
                raise _err(f"element {el.name!r} runs past the end of the data")
            continue
        xyz, nrm = _vertex_columns(el)
        row = np.dtype([(f"p{i}", order + p.dtype) for i, p in enumerate(el.props)])
        need = el.count * row.itemsize
        if offset + need > len(data):
            raise _err(
                f"vertex data truncated: {el.count} vertices need {need} bytes, "
                f"{max(0, len(data) - offset)} present"
            )
        rec = np.frombuffer(data, row, el.count, offset)
        table = np.stack([rec[f"p{i}"].astype(np.float64) for i in range(len(el.props))], axis=1)
        return _finish(table.reshape(el.count, len(el.props)), xyz, nrm)
    raise _err("no 'vertex' element")


def read_ply_bytes(data: bytes) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
    """Decode a PLY file's bytes into (points (N,3) float32, normals (N,3) float32 or None)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    fmt, elements, start = _parse_header(data)
    if fmt == "ascii":
        return _read_ascii(data[start:], elements)
    return _read_binary(data, start, elements, _FORMATS[fmt])


def read_ply(path: str | Path) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
    """Read a PLY file: (points (N,3) float32, normals (N,3) float32 or None)."""
    return read_ply_bytes(Path(path).read_bytes())


def ply_bytes(
    points: NDArray[np.floating], normals: NDArray[np.floating] | None = None, binary: bool = True
) -> bytes:
    """Encode points (and normals) as a PLY file (float32 properties)."""
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be (N,3), got {pts.shape}")
    cols = [pts]
    names = ["x", "y", "z"]
    if normals is not None:
        nrm = np.asarray(normals, dtype=np.float32)
        if nrm.shape != pts.shape:
            raise ValueError(f"normals must match points {pts.shape}, got {nrm.shape}")
        cols.append(nrm)
        names += ["nx", "ny", "nz"]
    table = np.concatenate(cols, axis=1)
    header = [
        "ply",
        f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
        "comment dexgrasp-service models.objects",
        f"element vertex {len(pts)}",
    ]
    header += [f"property float {n}" for n in names]
    header.append("end_header")
    head = ("\n".join(header) + "\n").encode("ascii")
    if binary:
        return head + table.astype("<f4").tobytes()
    body = "\n".join(" ".join(f"{v:.9g}" for v in row) for row in table.tolist())
    return head + body.encode("ascii") + (b"\n" if len(table) else b"")


def write_ply(
    path: str | Path,
    points: NDArray[np.floating],
    normals: NDArray[np.floating] | None = None,
    binary: bool = True,
) -> Path:
    """Write points (and normals) to a PLY file; binary little-endian unless ``binary=False``."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(ply_bytes(points, normals, binary))
    return out


def ply_has_faces(path: str | Path) -> bool:
    """True when a PLY file declares a non-empty ``face`` element (a mesh, not a point cloud)."""
    with Path(path).open("rb") as f:
        head = f.read(4096)
    end = head.find(b"end_header")
    header = head[: end if end >= 0 else len(head)].decode("ascii", "replace")
    for line in header.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "element" and parts[1] == "face":
            return int(parts[2]) > 0
    return False


def read_points_npy(path: str | Path) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
    """An (N, 3) point array, or (N, 6) points + normals, from a ``.npy`` file (no pickles)."""
    arr = np.load(Path(path), allow_pickle=False)
    if arr.ndim != 2 or arr.shape[1] not in (3, 6):
        raise ValueError(f"{path}: expected an (N,3) or (N,6) point array, got shape {arr.shape}")
    pts = np.asarray(arr[:, :3], dtype=np.float32)
    return pts, (np.asarray(arr[:, 3:], dtype=np.float32) if arr.shape[1] == 6 else None)
