"""The pipeline's ``preprocess`` stage: from a client's cloud to the object in the canonical frame.

Steps, each a function below: random subsample of very large clouds -> canonical frame (centroid
of the raw cloud at the origin, up along +z, no scaling) -> support plane (given, or detected)
and the points on or below it removed -> statistical outliers removed -> recentred on the object
and farthest-point downsampled -> normals (estimated, or the client's normalised) -> mirror
completion of a single view. The result, :class:`Prepared`, is what the proposers, the
refinement and the scoring see; its ``to_request`` maps their grasps back to the client's frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from ..core.cloud_checks import check_object_cloud
from ..core.geometry import (
    ObjectCloud,
    Plane,
    detect_support_plane,
    estimate_normals,
    farthest_point_sample,
    statistical_outlier_removal,
)
from ..core.rotations_np import rotation_to_z
from .completion import CompletionConfig, mirror_complete
from .query import GraspQuery, QueryError


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the preprocess stage (point counts, metres)."""

    preprocess_points: int = 60_000  # clouds above this are randomly subsampled before table detection
    model_points: int = 1024  # points the proposer and the scorer see (farthest point sampling)
    min_object_points: int = 50  # fewer object points left after table and outlier removal: refused
    table_margin_m: float = 0.006  # points closer than this above the table are table
    outlier_k: int = 16  # neighbours of the statistical outlier test
    outlier_std: float = 2.5  # a point whose mean neighbour distance is this many std above the mean is an outlier
    normals_k: int = 16  # neighbours of the normal estimate
    completion: CompletionConfig = field(default_factory=CompletionConfig)  # mirror completion of single views


@dataclass
class Prepared:
    """A query after preprocessing: the object in the canonical frame (centroid at the origin, up = +z)."""

    query: GraspQuery
    points: Tensor  # (M, 3) float32: the surface to grasp (observed, plus the mirrored back of a single view)
    normals: Tensor
    plane: Plane | None  # in the canonical frame, float32
    to_request: Tensor  # (4, 4) float64: canonical -> request frame
    warnings: list[str]
    points_in: int
    timings_ms: dict[str, float]
    observed: tuple[Tensor, Tensor] | None = None  # the observed points and normals when ``points`` was completed
    completion_note: str | None = None  # the warning that says so (added when the proposer uses the completion)
    single_view: bool = False  # one camera's view (a viewpoint was sent, or the normals lean): completed or not

    def use_observed(self) -> None:
        """Drop the completion: grasp only the observed points."""
        if self.observed is not None:
            self.points, self.normals = self.observed
            self.observed = None

    def cloud(self) -> ObjectCloud:
        """The surface to grasp (``points`` with ``normals``)."""
        return ObjectCloud(self.points, self.normals)

    def viewer(self) -> Tensor:
        """The request frame's origin (the sensor or robot base) in the canonical frame, (3,) float32."""
        inv: Tensor = torch.linalg.inv(self.to_request)
        return inv[:3, 3].float()

    def points_in_request_frame(self) -> np.ndarray:
        """``points`` mapped to the request frame, (M, 3) float32."""
        m = self.to_request
        out: np.ndarray = (self.points.double() @ m[:3, :3].T + m[:3, 3]).numpy().astype(np.float32)
        return out


# ------------------------------------------------------------------------------------------ steps
def _subsample(
    q: GraspQuery, cfg: PreprocessConfig, warnings: list[str]
) -> tuple[np.ndarray, np.ndarray | None]:
    """The cloud (and normals) in float64, randomly cut to ``preprocess_points`` (seeded by the query)."""
    n_in = q.points.shape[0]
    pts64 = q.points.astype(np.float64)
    nrm64 = None if q.normals is None else q.normals.astype(np.float64)
    rng = np.random.default_rng(q.seed)
    if n_in > cfg.preprocess_points:
        keep = np.sort(rng.choice(n_in, cfg.preprocess_points, replace=False))
        pts64 = pts64[keep]
        nrm64 = None if nrm64 is None else nrm64[keep]
        warnings.append(f"cloud randomly subsampled from {n_in} to {cfg.preprocess_points} points before table detection")
    return pts64, nrm64


def _support_plane(q: GraspQuery, p: Tensor, rot: np.ndarray, centre: np.ndarray) -> Plane | None:
    """The table in the canonical frame (float64 normal along +z): the query's, else detected
    (when the query allows removing it), else None."""
    z = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    if q.table is not None:
        tn = torch.tensor(np.asarray(q.table[0], dtype=np.float64) @ rot.T)
        scale = float(tn.norm())
        tn = tn / scale
        off = q.table[1] / scale + float(tn @ torch.from_numpy(rot @ centre))
        if float(tn @ z) < 0:
            tn, off = -tn, -off
        return Plane(normal=tn, offset=off)
    if q.remove_table:
        plane, _ = detect_support_plane(p.float(), z.float())
        if plane is not None:
            return Plane(normal=plane.normal.double(), offset=float(plane.offset))
    return None


def _remove_table(
    q: GraspQuery, plane: Plane | None, p: Tensor, n: Tensor | None, cfg: PreprocessConfig, warnings: list[str]
) -> tuple[Tensor, Tensor | None]:
    """Drop the points within ``table_margin_m`` above the plane or below it."""
    if plane is not None:
        keep_t = plane.signed_distance(p) > cfg.table_margin_m
        dropped = int((~keep_t).sum())
        if dropped:
            what = "given table" if q.table is not None else "table detected and"
            warnings.append(f"{what} removed: {dropped} of {p.shape[0]} points at or below the support plane")
        p = p[keep_t]
        n = None if n is None else n[keep_t]
    if p.shape[0] < cfg.min_object_points:
        raise QueryError(
            f"only {p.shape[0]} object points left after removing the table; at least {cfg.min_object_points} "
            "are needed (is the object in the cloud, or is the table plane wrong?)"
        )
    return p, n


def _remove_outliers(
    p: Tensor, n: Tensor | None, cfg: PreprocessConfig, warnings: list[str]
) -> tuple[Tensor, Tensor | None]:
    keep_o = statistical_outlier_removal(p.float(), cfg.outlier_k, cfg.outlier_std)
    if int((~keep_o).sum()):
        warnings.append(f"removed {int((~keep_o).sum())} outlier points")
        p = p[keep_o]
        n = None if n is None else n[keep_o]
    return p, n


def _downsample(
    p: Tensor, n: Tensor | None, cfg: PreprocessConfig, warnings: list[str]
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Recentre on the object alone (the table no longer pulls the centroid) and farthest-point
    sample ``model_points``; returns the points, normals and the shift applied."""
    shift = p.mean(0)
    p = p - shift
    if p.shape[0] > cfg.model_points:
        idx = farthest_point_sample(p.float()[None], cfg.model_points)[0]
        warnings.append(f"cloud downsampled from {p.shape[0]} to {cfg.model_points} points")
        p = p[idx]
        n = None if n is None else n[idx]
    return p, n, shift


def _normals(pf: Tensor, n: Tensor | None, vp: Tensor | None, cfg: PreprocessConfig) -> Tensor:
    """The client's normals made unit, else estimated (oriented towards the camera when known)."""
    if n is None:
        return estimate_normals(pf[None], k=min(cfg.normals_k, pf.shape[0]), viewpoint=None if vp is None else vp[None])[0]
    return torch.nn.functional.normalize(n.float(), dim=-1)


def _complete(
    q: GraspQuery, pf: Tensor, nf: Tensor, vp: Tensor | None, cfg: PreprocessConfig
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor] | None, str | None, float]:
    """Mirror completion: (points, normals, the observed ones when completed, the note, partial score)."""
    observed, note = None, None
    comp = mirror_complete(pf, nf, vp, replace(cfg.completion, mode=q.completion))
    if comp.completed:
        observed = (pf, nf)
        pf, nf = comp.points, comp.normals
        if pf.shape[0] > cfg.model_points:
            idx = farthest_point_sample(pf[None], cfg.model_points)[0]
            pf, nf = pf[idx], nf[idx]
        note = (
            f"single-view cloud (normal lean {comp.partial_score:.2f}): its unseen back was completed by mirroring "
            f"{comp.points.shape[0] - comp.observed} points about a vertical plane {(-comp.plane_depth if comp.plane_depth else 0.0) * 100:.1f} cm "
            "behind the centroid; send completion=off to grasp only what was seen"
        )
    return pf, nf, observed, note, comp.partial_score


# ------------------------------------------------------------------------------------------ stage
def preprocess(q: GraspQuery, cfg: PreprocessConfig) -> Prepared:
    """Table removal, outlier removal, downsampling, normals, completion and the canonical frame."""
    timings: dict[str, float] = {}
    warnings: list[str] = []
    pts64, nrm64 = _subsample(q, cfg, warnings)
    rot = rotation_to_z(np.asarray(q.up, dtype=np.float64))
    centre = pts64.mean(0)
    p = torch.from_numpy((pts64 - centre) @ rot.T)
    n = None if nrm64 is None else torch.from_numpy(nrm64 @ rot.T)

    t = time.perf_counter()
    plane = _support_plane(q, p, rot, centre)
    p, n = _remove_table(q, plane, p, n, cfg, warnings)
    timings["table_ms"] = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    p, n = _remove_outliers(p, n, cfg, warnings)
    timings["outliers_ms"] = (time.perf_counter() - t) * 1e3
    try:
        check_object_cloud(p)
    except ValueError as e:
        raise QueryError(str(e)) from e

    t = time.perf_counter()
    p, n, shift = _downsample(p, n, cfg, warnings)
    timings["downsample_ms"] = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    pf = p.float()
    # the camera in the canonical frame, when the client sent it (orients normals exactly)
    vp = None if q.viewpoint is None else (torch.from_numpy(np.asarray(q.viewpoint, dtype=np.float64) - centre) @ torch.from_numpy(rot).T - shift).float()
    nf = _normals(pf, n, vp, cfg)
    timings["normals_ms"] = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    pf, nf, observed, note, partial = _complete(q, pf, nf, vp, cfg)
    timings["completion_ms"] = (time.perf_counter() - t) * 1e3

    support = None
    if plane is not None:
        support = Plane(plane.normal.float(), float(plane.offset + float(plane.normal @ shift)))
    to_req = torch.eye(4, dtype=torch.float64)
    to_req[:3, :3] = torch.from_numpy(rot.T)
    to_req[:3, 3] = torch.from_numpy(centre) + torch.from_numpy(rot.T) @ shift
    single_view = vp is not None or partial >= cfg.completion.single_view_threshold
    return Prepared(q, pf, nf, support, to_req, warnings, q.points.shape[0], timings, observed, note, single_view)


__all__ = ["Prepared", "PreprocessConfig", "preprocess"]
