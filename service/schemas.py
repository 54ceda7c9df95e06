"""Request and response schemas of the HTTP API (the grasp record itself is ``models.grasp.Grasp``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.grasp import Grasp


class EncodedArray(BaseModel):
    """A little-endian array as base64 bytes with its shape: the compact JSON form of a cloud."""

    model_config = ConfigDict(extra="forbid")

    b64: str = Field(..., description="base64 of the raw little-endian bytes, row-major")
    shape: list[int] = Field(..., min_length=2, max_length=2, examples=[[2048, 3]])
    dtype: Literal["float32", "float64", "<f4", "<f8"] = "float32"


class TablePlane(BaseModel):
    """Support plane ``normal . x + offset = 0`` in the request frame, normal pointing up."""

    model_config = ConfigDict(extra="forbid")

    normal: list[float] = Field(..., min_length=3, max_length=3, examples=[[0.0, 0.0, 1.0]])
    offset: float = Field(..., examples=[0.0])


class GraspParams(BaseModel):
    """Everything in a proposal request but the cloud (form fields / ``params`` of an upload)."""

    model_config = ConfigDict(extra="forbid")

    hand: str = Field("shadow", description="a hand from GET /v1/hands")
    num_grasps: int = Field(16, ge=1, description="grasps to return (at most the server's limit)")
    text: str | None = Field(None, max_length=500, examples=["grasp the mug by the handle"])
    method: str = Field("auto", description="a proposer from GET /v1/models, or auto")
    refine: bool | None = Field(None, description="run the refinement stage (default: the proposer's choice)")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    timeout_ms: int | None = Field(None, ge=1, description="time budget from when the server queues the request (the wait in its queue counts); past it the best grasps so far are returned, with a warning")
    up: list[float] = Field([0.0, 0.0, 1.0], min_length=3, max_length=3, description="opposite to gravity")
    table: TablePlane | None = Field(None, description="known table plane; detected by RANSAC when absent")
    remove_table: bool = Field(True, description="detect and drop the support plane when no table is given")
    viewpoint: list[float] | None = Field(
        None, min_length=3, max_length=3, examples=[[0.0, 0.0, 0.0]],
        description="camera position in the cloud's frame ([0, 0, 0] for a cloud in camera coordinates): orients "
        "normals exactly and marks the cloud as a single view",
    )
    completion: Literal["auto", "mirror", "off"] = Field(
        "auto", description="single-view clouds: mirror the observed side about the estimated symmetry plane so grasps "
        "keep out of the unseen back (auto: when the cloud looks single-view or a viewpoint is given)",
    )


class GraspRequest(GraspParams):
    """``POST /v1/grasps`` as JSON. Points in metres, in the client's frame (camera or robot base)."""

    points: list[list[float]] | EncodedArray = Field(
        ..., description="object cloud (N, 3): nested lists or base64 float32", examples=[[[0.0, 0.0, 0.05], [0.01, 0.0, 0.05]]]
    )
    normals: list[list[float]] | EncodedArray | None = Field(None, description="outward normals (N, 3), optional")


class ProposerInfo(BaseModel):
    name: str
    version: str


class GraspResponse(BaseModel):
    request_id: str
    hand: str
    proposer: ProposerInfo
    grasps: list[Grasp]
    intent: dict[str, Any] | None = Field(None, description="the parsed instruction, when text was given")
    intent_satisfied: int | None = Field(None, description="returned grasps that satisfy the instruction")
    timings_ms: dict[str, float]
    warnings: list[str]
    points_in: int
    points_used: int


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class HandInfo(BaseModel):
    name: str
    joints: list[str]
    lower: list[float]
    upper: list[float]


class ModelInfo(BaseModel):
    name: str
    version: str | None
    loaded: bool
    device: str
    default: bool


class ReadyState(BaseModel):
    ready: bool
    status: Literal["ready", "warming", "degraded", "failed"]
    checks: dict[str, str]
