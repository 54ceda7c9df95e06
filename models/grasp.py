"""The grasp record that crosses every boundary (files, HTTP, queue), as pydantic models.

A grasp is the palm (grasp root) pose in the request frame, the finger joint
angles by name, an open-hand pre-grasp, an optional squeeze target and scores.
Poses carry both ``position`` + ``quaternion_wxyz`` and a row-major 4x4
``matrix``; on input either form is enough, and when both are given they must
agree. Validation errors say what to fix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from torch import Tensor

from .core.rotations import matrix_to_quat, quat_to_matrix
from .hands.spec import known_hands, load_spec

QUAT_NORM_TOL = 1e-3
MATRIX_TOL = 1e-4


def _finite(name: str, values: Sequence[float]) -> None:
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{name} contains non-finite values at index {bad}")


class Pose(BaseModel):
    """A rigid pose: ``p_parent = R @ p_local + position``; units metres."""

    model_config = ConfigDict(extra="forbid")

    position: list[float] = Field(..., min_length=3, max_length=3, examples=[[0.0, -0.08, 0.05]])
    quaternion_wxyz: list[float] = Field(..., min_length=4, max_length=4, examples=[[1.0, 0.0, 0.0, 0.0]])
    matrix: list[list[float]] | None = Field(
        None, description="row-major 4x4 homogeneous transform; filled in on output"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_matrix(cls, data: Any) -> Any:
        if isinstance(data, dict) and "matrix" in data and data["matrix"] is not None:
            mat = data["matrix"]
            if not (isinstance(mat, list) and len(mat) == 4 and all(isinstance(r, list) and len(r) == 4 for r in mat)):
                raise ValueError("matrix must be a 4x4 nested list (row-major)")
            flat = [float(v) for r in mat for v in r]
            _finite("matrix", flat)
            t = torch.tensor(mat, dtype=torch.float64)
            r = t[:3, :3]
            if (r.T @ r - torch.eye(3, dtype=torch.float64)).abs().max() > MATRIX_TOL or torch.det(r) < 0:
                raise ValueError("matrix rotation block is not a proper rotation (orthonormal, det +1)")
            if (t[3] - torch.tensor([0, 0, 0, 1.0], dtype=torch.float64)).abs().max() > MATRIX_TOL:
                raise ValueError("matrix last row must be [0, 0, 0, 1]")
            data = dict(data)
            data.setdefault("position", t[:3, 3].tolist())
            data.setdefault("quaternion_wxyz", matrix_to_quat(r).tolist())
        return data

    @field_validator("position")
    @classmethod
    def _pos(cls, v: list[float]) -> list[float]:
        _finite("position", v)
        return v

    @field_validator("quaternion_wxyz")
    @classmethod
    def _quat(cls, v: list[float]) -> list[float]:
        _finite("quaternion_wxyz", v)
        n = math.sqrt(sum(x * x for x in v))
        if abs(n - 1.0) > QUAT_NORM_TOL:
            raise ValueError(
                f"quaternion_wxyz has norm {n:.4f}; it must be a unit quaternion [w, x, y, z] "
                f"(normalise it to within {QUAT_NORM_TOL})"
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Pose:
        mat = self.as_matrix()
        if self.matrix is not None:
            given = torch.tensor(self.matrix, dtype=torch.float64)
            err = float((given - mat).abs().max())
            if err > MATRIX_TOL:
                raise ValueError(
                    f"matrix disagrees with position/quaternion_wxyz by {err:.2e}; give one or make them agree"
                )
        self.matrix = mat.tolist()
        return self

    def as_matrix(self) -> Tensor:
        m = torch.eye(4, dtype=torch.float64)
        m[:3, :3] = quat_to_matrix(torch.tensor(self.quaternion_wxyz, dtype=torch.float64))
        m[:3, 3] = torch.tensor(self.position, dtype=torch.float64)
        return m

    @classmethod
    def from_rt(cls, rotation: Tensor, translation: Tensor) -> Pose:
        r = rotation.detach().double().cpu()
        t = translation.detach().double().cpu()
        return cls(position=t.tolist(), quaternion_wxyz=matrix_to_quat(r).tolist())


@lru_cache(maxsize=32)
def _joint_names(hand: str) -> tuple[str, ...]:
    return load_spec(hand).joints


def _check_hand(hand: str) -> str:
    """A registered hand (``known_hands``: the served ones and the data-only ones, whose grasps the optimiser
    makes and the referee judges); which hands the service proposes for is the pipeline's check
    (``available_hands``)."""
    if hand not in known_hands():
        raise ValueError(f"unknown hand {hand!r}; available: {', '.join(known_hands())}")
    return hand


def _check_joints(hand: str, joints: dict[str, float], what: str) -> None:
    names = _joint_names(hand)
    unknown = sorted(set(joints) - set(names))
    if unknown:
        raise ValueError(f"{what}: unknown joint names {unknown} for hand {hand!r}; expected {list(names)}")
    missing = [n for n in names if n not in joints]
    if missing:
        raise ValueError(f"{what}: missing joints {missing} for hand {hand!r}")
    bad = sorted(k for k, v in joints.items() if not math.isfinite(v))
    if bad:
        raise ValueError(f"{what}: non-finite joint angles for {bad}")


class PreGrasp(BaseModel):
    """The open-hand approach configuration the controller passes through before closing."""

    model_config = ConfigDict(extra="forbid")

    pose: Pose
    joints: dict[str, float]


class Grasp(BaseModel):
    """One dexterous grasp in the shared schema."""

    model_config = ConfigDict(extra="forbid")

    hand: str = Field("shadow", examples=["shadow"])
    pose: Pose = Field(..., description="grasp root (palm) frame in the request frame")
    joints: dict[str, float] = Field(..., description="finger joint angles (rad) by name")
    pregrasp: PreGrasp
    squeeze: dict[str, float] | None = Field(
        None, description="joint targets pushed slightly into the contacts; used by simulation"
    )
    scores: dict[str, float] = Field(default_factory=dict)

    @field_validator("hand")
    @classmethod
    def _hand(cls, v: str) -> str:
        return _check_hand(v)

    @model_validator(mode="after")
    def _joints(self) -> Grasp:
        _check_joints(self.hand, self.joints, "joints")
        _check_joints(self.hand, self.pregrasp.joints, "pregrasp.joints")
        if self.squeeze is not None:
            _check_joints(self.hand, self.squeeze, "squeeze")
        bad = sorted(k for k, v in self.scores.items() if not math.isfinite(v))
        if bad:
            raise ValueError(f"scores: non-finite values for {bad}")
        return self


class GraspSet(BaseModel):
    """A file or message holding grasps for one object (all in one frame)."""

    model_config = ConfigDict(extra="allow")

    hand: str = "shadow"
    frame: str = Field("object", description="name of the frame poses are expressed in")
    object: str | None = Field(None, description="object id or description the grasps were made for")
    grasps: list[Grasp]

    @field_validator("hand")
    @classmethod
    def _hand(cls, v: str) -> str:
        return _check_hand(v)

    @model_validator(mode="after")
    def _same_hand(self) -> GraspSet:
        other = sorted({g.hand for g in self.grasps} - {self.hand})
        if other:
            raise ValueError(f"grasps use hands {other} but the set is for {self.hand!r}")
        return self


# ---------------------------------------------------------------------- tensor conversion
def grasps_to_tensors(
    grasps: Sequence[Grasp], dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor, Tensor]:
    """(position (B,3), rotation (B,3,3), joints (B,J)) in the hand spec's joint order."""
    if not grasps:
        raise ValueError("no grasps")
    names = _joint_names(grasps[0].hand)
    pos = torch.tensor([g.pose.position for g in grasps], dtype=torch.float64)
    rot = quat_to_matrix(torch.tensor([g.pose.quaternion_wxyz for g in grasps], dtype=torch.float64))
    q = torch.tensor([[g.joints[n] for n in names] for g in grasps], dtype=torch.float64)
    return pos.to(device, dtype), rot.to(device, dtype), q.to(device, dtype)


def joints_dict(hand: str, q: Tensor) -> dict[str, float]:
    names = _joint_names(hand)
    return {n: float(v) for n, v in zip(names, q.detach().double().cpu().tolist())}


def make_grasp(
    hand: str,
    rotation: Tensor,
    translation: Tensor,
    joints: Tensor,
    pre_rotation: Tensor,
    pre_translation: Tensor,
    pre_joints: Tensor,
    scores: dict[str, float] | None = None,
    squeeze: Tensor | None = None,
) -> Grasp:
    return Grasp(
        hand=hand,
        pose=Pose.from_rt(rotation, translation),
        joints=joints_dict(hand, joints),
        pregrasp=PreGrasp(pose=Pose.from_rt(pre_rotation, pre_translation), joints=joints_dict(hand, pre_joints)),
        squeeze=None if squeeze is None else joints_dict(hand, squeeze),
        scores=scores or {},
    )


# ---------------------------------------------------------------------- grasp files
@dataclass(frozen=True)
class GraspDocument:
    """A grasp set read from a file or message that may predate pregrasp and squeeze: the grasps
    (a missing pregrasp is filled with the grasp's own pose and joints as a placeholder), which
    grasps had no pregrasp / no squeeze (their consumers derive them), and warnings saying so."""

    grasp_set: GraspSet
    missing_pregrasp: tuple[int, ...]
    missing_squeeze: tuple[int, ...]
    warnings: tuple[str, ...]


def validation_message(exc: ValidationError, limit: int = 5) -> str:
    """A pydantic error as ``field.path: what is wrong`` lines (no trace, no input echo)."""
    lines = []
    for e in exc.errors()[:limit]:
        where = ".".join(str(p) for p in e.get("loc", ())) or "(document)"
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        lines.append(f"{where}: {msg}")
    more = len(exc.errors()) - limit
    return "; ".join(lines) + (f" (and {more} more)" if more > 0 else "")


def read_grasp_document(doc: Any) -> GraspDocument:
    """Validate a grasp set document, accepting grasps without ``pregrasp`` or ``squeeze``.
    Raises ``ValueError`` with :func:`validation_message`'s text when it is malformed."""
    if isinstance(doc, list):
        doc = {"grasps": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("grasps"), list):
        raise ValueError("grasps: expected a JSON object with a 'grasps' list")
    grasps = []
    missing_pre: list[int] = []
    missing_sq: list[int] = []
    for i, g in enumerate(doc["grasps"]):
        if isinstance(g, dict):
            if "pregrasp" not in g and "pose" in g and "joints" in g:
                g = {**g, "pregrasp": {"pose": g["pose"], "joints": g["joints"]}}
                missing_pre.append(i)
            if g.get("squeeze") is None:
                missing_sq.append(i)
        grasps.append(g)
    try:
        gs = GraspSet.model_validate({**doc, "grasps": grasps})
    except ValidationError as exc:
        raise ValueError(validation_message(exc)) from None
    warnings = []
    if missing_pre:
        warnings.append(f"{len(missing_pre)} grasp(s) carry no pregrasp (indices {missing_pre[:10]}): derived as the "
                        "mirror of the squeeze, 1 cm back along the approach")
    if missing_sq:
        warnings.append(f"{len(missing_sq)} grasp(s) carry no squeeze (indices {missing_sq[:10]}): derived from the "
                        "grasp's contacts (wrench-balanced)")
    return GraspDocument(gs, tuple(missing_pre), tuple(missing_sq), tuple(warnings))
