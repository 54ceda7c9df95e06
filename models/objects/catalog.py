"""The object catalog: ids, train/validation/test splits, the manifest and mesh loading.

Owns what an object id means. Ids are self-describing and everything about an object is a
pure function of its id, so nothing depends on list positions or on which other objects exist:

- ``prim/<family>/<NNNN>`` and ``comp/<family>/<NNNN>``: procedural (``procedural``); the
  parameters come from an RNG seeded by a hash of the id.
- ``pb/random/<NNNN>``: ``pybullet_data/random_urdfs/NNN/NNN.obj``; ``pb/<name>``: a named
  pybullet_data mesh (``pybullet_set.NAMED``). Each is rescaled so its largest extent is a
  size drawn (from the id hash) in [0.06, 0.15] m and centred at its bounding-box centre.
- The split is ``train`` / ``validation`` / ``test`` with probability 0.70 / 0.15 / 0.15 from
  a SHA-256 of the id, so adding objects never moves existing ones.

Every number reported must say which split it used (docs/evaluation.md, "Object sets").
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from . import procedural, pybullet_set

SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
DEFAULT_PER_FAMILY = 40
MANIFEST_VERSION = 1
_SALT = "dexgrasp-objects-v1"


@dataclass(frozen=True)
class ObjectEntry:
    """One object. ``scale`` multiplies the source mesh's units into metres (1.0 for procedural
    objects, whose ``params`` are already in metres); ``params["size"]`` is the largest extent."""

    id: str
    split: str
    family: str
    source: str  # "procedural" | "pybullet_data"
    params: dict[str, Any] = field(hash=False)
    scale: float


def _hash_unit(object_id: str, purpose: str) -> float:
    """A uniform number in [0, 1) from the id (stable across runs, platforms and versions)."""
    digest = hashlib.sha256(f"{_SALT}:{purpose}:{object_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class _HashUniform:
    """Uniform draws from SHA-256 of (id, draw index): parameters depend on nothing but the id
    and plain float arithmetic, not on numpy's RNG streams."""

    def __init__(self, object_id: str) -> None:
        self._id = object_id
        self._n = 0

    def uniform(self, low: float, high: float) -> float:
        u = _hash_unit(self._id, f"param{self._n}")
        self._n += 1
        return low + (high - low) * u


def split_of(object_id: str) -> str:
    """The split an id belongs to; depends on nothing but the id."""
    u = _hash_unit(object_id, "split")
    acc = 0.0
    for name, frac in zip(SPLITS, SPLIT_FRACTIONS):
        acc += frac
        if u < acc:
            return name
    return SPLITS[-1]


def entry(object_id: str) -> ObjectEntry:
    """The catalog entry of an id (it need not be in the default manifest: any index works)."""
    parts = object_id.split("/")
    split = split_of(object_id)
    if len(parts) == 3 and parts[0] in ("prim", "comp") and parts[2].isdigit():
        kind, family, _ = parts
        fam = procedural.FAMILIES.get(family)
        if fam is None or fam.kind != kind:
            raise KeyError(f"unknown object id {object_id!r}: no {kind} family {family!r}")
        params: dict[str, Any] = dict(procedural.sample_params(family, _HashUniform(object_id)))
        return ObjectEntry(object_id, split, family, "procedural", params, 1.0)
    if parts[0] == "pb" and (
        (len(parts) == 3 and parts[1] == "random" and parts[2].isdigit()) or len(parts) == 2
    ):
        if len(parts) == 3:
            index = int(parts[2])
            if not 0 <= index < pybullet_set.N_RANDOM:
                raise KeyError(
                    f"unknown object id {object_id!r}: random_urdfs has 0..{pybullet_set.N_RANDOM - 1}"
                )
            family, relpath = "random", pybullet_set.random_path(index)
        else:
            family = parts[1]
            if family not in pybullet_set.NAMED:
                raise KeyError(
                    f"unknown object id {object_id!r}: named pybullet meshes are {sorted(pybullet_set.NAMED)}"
                )
            relpath = pybullet_set.NAMED[family]
        native = pybullet_set.native_extent(relpath)
        if native is None:
            raise KeyError(
                f"object {object_id!r}: pybullet_data/{relpath} is missing or has non-finite vertices"
            )
        lo, hi = procedural.SIZE_RANGE
        size = round(lo + (hi - lo) * _hash_unit(object_id, "size"), 6)
        return ObjectEntry(
            object_id, split, family, "pybullet_data", {"path": relpath, "size": size}, size / native
        )
    raise KeyError(
        f"malformed object id {object_id!r} (expected prim/<family>/NNNN, comp/<family>/NNNN, "
        "pb/random/NNNN or pb/<name>)"
    )


@functools.lru_cache(maxsize=8)
def _manifest(per_family: int, include_pybullet: bool) -> tuple[ObjectEntry, ...]:
    ids = [
        f"{fam.kind}/{fam.name}/{i:04d}" for fam in procedural.FAMILIES.values() for i in range(per_family)
    ]
    if include_pybullet:
        ids += [
            f"pb/random/{i:04d}"
            for i in range(pybullet_set.N_RANDOM)
            if pybullet_set.native_extent(pybullet_set.random_path(i)) is not None
        ]
        ids += [
            f"pb/{name}"
            for name in pybullet_set.NAMED
            if pybullet_set.native_extent(pybullet_set.NAMED[name]) is not None
        ]
    return tuple(entry(i) for i in ids)


def manifest(per_family: int = DEFAULT_PER_FAMILY, include_pybullet: bool = True) -> list[ObjectEntry]:
    """All objects of the default sets: ``per_family`` objects of each procedural family, the
    loadable random_urdfs and the named pybullet meshes, in a fixed order."""
    return list(_manifest(per_family, include_pybullet))


def objects(
    split: str, per_family: int = DEFAULT_PER_FAMILY, include_pybullet: bool = True
) -> list[ObjectEntry]:
    """The manifest's objects of one split (``train``, ``validation`` or ``test``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return [e for e in manifest(per_family, include_pybullet) if e.split == split]


def manifest_json(per_family: int = DEFAULT_PER_FAMILY, include_pybullet: bool = True) -> str:
    """The manifest as JSON text (deterministic: same text on every run)."""
    doc = {
        "version": MANIFEST_VERSION,
        "units": "metres",
        "split_fractions": dict(zip(SPLITS, SPLIT_FRACTIONS)),
        "objects": [asdict(e) for e in manifest(per_family, include_pybullet)],
    }
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def write_manifest(
    path: str | Path, per_family: int = DEFAULT_PER_FAMILY, include_pybullet: bool = True
) -> Path:
    """Write the manifest JSON (ids, splits, families, params, scales) to ``path``."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(manifest_json(per_family, include_pybullet))
    return out


@functools.lru_cache(maxsize=256)
def _load_cached(object_id: str) -> trimesh.Trimesh:
    e = entry(object_id)
    if e.source == "procedural":
        mesh = procedural.build(e.family, e.params)
    else:
        mesh = pybullet_set.load(e.params["path"])
        mesh.apply_transform(np.diag([e.scale, e.scale, e.scale, 1.0]))
        mesh.apply_translation(-mesh.bounds.mean(axis=0))
    mesh.metadata.update({"object_id": e.id, "split": e.split, "family": e.family, "source": e.source})
    return mesh


def load_mesh(entry_or_id: ObjectEntry | str) -> trimesh.Trimesh:
    """The object's mesh in metres, centred at its bounding-box centre (a fresh copy each call;
    the parsed meshes sit in an LRU cache of 256)."""
    object_id = entry_or_id.id if isinstance(entry_or_id, ObjectEntry) else entry_or_id
    return _load_cached(object_id).copy()
