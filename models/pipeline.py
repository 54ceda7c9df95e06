"""The proposal pipeline behind ``POST /v1/grasps`` and ``dexgrasp propose``.

validate -> preprocess (table detection/removal, outliers, downsample, normals, canonical frame)
-> propose (a registered proposer, batched over concurrent queries) -> refine -> score ->
select (diversity-aware top K) -> grasps in the query's own frame.

Every stage is a plain function; :class:`GraspPipeline` composes them and times each. Inputs that
no stage can work with raise :class:`QueryError` (a ``ValueError``) with a message that says what
to fix; the service maps it to a 4xx. Nothing here knows about HTTP.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .cloud_checks import check_object_cloud
from .completion import MODES as COMPLETION_MODES
from .completion import CompletionConfig, mirror_complete
from .energy import ObjectCloud, SupportPlane
from .geometry import Plane, detect_support_plane, estimate_normals, farthest_point_sample, statistical_outlier_removal
from .grasp import Grasp, Pose, PreGrasp, grasps_to_tensors
from .hands import get_hand
from .hands.spec import available_hands
from .proposers import available_proposers, get_proposer
from .proposers.optimize import Problem
from .quality import ObjectSurface
from .rank import RankConfig, grasp_distances, score_grasps, select_diverse
from .refine import RefineConfig, refine_grasps
from .rotations import matrix_to_quat
from .rotations_np import rotation_to_z


class QueryError(ValueError):
    """The query cannot be served as sent; the message says what to fix."""


@dataclass(frozen=True)
class PipelineConfig:
    """Limits and stage settings (units in the names)."""

    max_points: int = 2_000_000  # larger clouds are refused (downsample on the robot side)
    preprocess_points: int = 60_000  # clouds above this are randomly subsampled before table detection
    model_points: int = 1024  # points the proposer and the scorer see (farthest point sampling)
    min_object_points: int = 50
    table_margin_m: float = 0.006  # points closer than this above the table are table
    outlier_k: int = 16
    outlier_std: float = 2.5
    normals_k: int = 16
    max_num_grasps: int = 64
    candidates_per_grasp: float = 2.0  # proposer candidates per returned grasp, for the selection
    default_method: str = "fast"  # what ``auto`` resolves to while no learned proposer is installed
    completion: CompletionConfig = field(default_factory=CompletionConfig)  # mirror completion of single views
    # proposers that grasp the completed cloud under completion=auto (validation, partial views:
    # optimize 29.4 -> 35.6 % sim success, eta_np 57.5 -> 63.1 %; dgtr + its refinement got worse,
    # 61.3 -> 54.4 % and 76.3 -> 74.4 %, so it keeps the observed cloud unless the query says mirror)
    complete_for: tuple[str, ...] = ("optimize", "fast")
    refine: RefineConfig = field(default_factory=RefineConfig)
    refine_by_default: tuple[str, ...] = ("dgtr",)  # proposers whose output is refined unless the query says no (AB-TTA is part of DGTR)
    rank: RankConfig = field(default_factory=RankConfig)


@dataclass
class GraspQuery:
    """One proposal request, in the client's frame."""

    points: np.ndarray  # (N, 3) float
    normals: np.ndarray | None = None  # (N, 3) outward normals, optional
    up: Sequence[float] = (0.0, 0.0, 1.0)  # opposite to gravity
    table: tuple[Sequence[float], float] | None = None  # plane n.x + d = 0, n roughly along up
    hand: str = "shadow"
    num_grasps: int = 16
    text: str | None = None
    method: str = "auto"
    refine: bool | None = None
    seed: int = 0
    timeout_s: float | None = None
    remove_table: bool = True
    viewpoint: Sequence[float] | None = None  # camera position (request frame) of a single-view cloud, when known
    completion: str = "auto"  # auto | mirror | off: mirror a single view about its estimated symmetry plane


@dataclass
class Prepared:
    """A query after preprocessing: the object in the canonical frame (centroid at the origin, up = +z)."""

    query: GraspQuery
    points: Tensor  # (M, 3) float32: the surface to grasp (observed, plus the mirrored back of a single view)
    normals: Tensor
    plane: SupportPlane | None  # in the canonical frame
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


@dataclass
class PipelineResult:
    grasps: list[Grasp]
    proposer: str
    proposer_version: str
    timings_ms: dict[str, float]
    warnings: list[str]
    points_in: int
    points_used: int
    intent: dict[str, Any] | None = None
    intent_satisfied: int | None = None  # how many returned grasps satisfy the instruction
    object_points: np.ndarray | None = None  # (M, 3) the object points the grasps were made for, request frame


# ------------------------------------------------------------------------------------------ stages
def validate_query(q: GraspQuery, cfg: PipelineConfig) -> None:
    """Shape, finiteness, size and option checks that need no geometry."""
    pts = q.points
    if not isinstance(pts, np.ndarray) or pts.dtype.kind not in "fiu":
        raise QueryError("points must be a numeric array of shape (N, 3)")
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise QueryError(f"points must have shape (N, 3), got {tuple(pts.shape)}")
    n = pts.shape[0]
    if n == 0:
        raise QueryError("points is empty; send the object's point cloud (N, 3) in metres")
    if n < cfg.min_object_points:
        raise QueryError(f"cloud has {n} points; at least {cfg.min_object_points} object points are needed")
    if n > cfg.max_points:
        raise QueryError(f"cloud has {n} points; at most {cfg.max_points} are accepted (downsample it first)")
    if not np.isfinite(pts).all():
        bad = int((~np.isfinite(pts)).any(axis=1).sum())
        raise QueryError(f"points contain NaN or infinite values ({bad} points); drop them before sending")
    if q.normals is not None:
        nr = q.normals
        if nr.shape != pts.shape:
            raise QueryError(f"normals must have the same shape as points {tuple(pts.shape)}, got {tuple(nr.shape)}")
        if not np.isfinite(nr).all():
            raise QueryError("normals contain NaN or infinite values")
        if (np.linalg.norm(nr, axis=1) < 1e-6).any():
            raise QueryError("normals contain zero-length vectors; send unit normals or none")
    up = np.asarray(q.up, dtype=np.float64)
    if up.shape != (3,) or not np.isfinite(up).all() or np.linalg.norm(up) < 1e-9:
        raise QueryError("up must be a non-zero finite 3-vector (opposite to gravity), e.g. [0, 0, 1]")
    if q.table is not None:
        nrm, off = q.table
        tn = np.asarray(nrm, dtype=np.float64)
        if tn.shape != (3,) or not np.isfinite(tn).all() or np.linalg.norm(tn) < 1e-9 or not math.isfinite(off):
            raise QueryError("table must be {normal: [nx, ny, nz], offset: d} with a non-zero finite normal")
    if q.viewpoint is not None:
        vp = np.asarray(q.viewpoint, dtype=np.float64)
        if vp.shape != (3,) or not np.isfinite(vp).all():
            raise QueryError("viewpoint must be a finite 3-vector: the camera position in the cloud's frame, e.g. [0, 0, 0]")
    if q.completion not in COMPLETION_MODES:
        raise QueryError(f"completion must be one of {', '.join(COMPLETION_MODES)}, got {q.completion!r}")
    if q.hand not in available_hands():
        raise QueryError(f"unknown hand {q.hand!r}; available: {', '.join(available_hands())}")
    if not 1 <= q.num_grasps <= cfg.max_num_grasps:
        raise QueryError(f"num_grasps must be between 1 and {cfg.max_num_grasps}, got {q.num_grasps}")
    if q.method != "auto" and q.method not in available_proposers():
        raise QueryError(f"unknown method {q.method!r}; available: auto, {', '.join(available_proposers())}")
    if q.timeout_s is not None and not (q.timeout_s > 0):
        raise QueryError("timeout_ms must be positive")


def preprocess(q: GraspQuery, cfg: PipelineConfig) -> Prepared:
    """Table removal, outlier removal, downsampling, normals and the canonical frame."""
    timings: dict[str, float] = {}
    warnings: list[str] = []
    n_in = q.points.shape[0]
    pts64 = q.points.astype(np.float64)
    nrm64 = None if q.normals is None else q.normals.astype(np.float64)
    rng = np.random.default_rng(q.seed)
    if n_in > cfg.preprocess_points:
        keep = np.sort(rng.choice(n_in, cfg.preprocess_points, replace=False))
        pts64 = pts64[keep]
        nrm64 = None if nrm64 is None else nrm64[keep]
        warnings.append(f"cloud randomly subsampled from {n_in} to {cfg.preprocess_points} points before table detection")
    # canonical frame: centroid of the (raw) cloud at the origin, up along +z, no scaling
    up = np.asarray(q.up, dtype=np.float64)
    rot = rotation_to_z(up)
    centre = pts64.mean(0)
    p = torch.from_numpy((pts64 - centre) @ rot.T)
    n = None if nrm64 is None else torch.from_numpy(nrm64 @ rot.T)
    z = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)

    t = time.perf_counter()
    plane: Plane | None = None
    if q.table is not None:
        tn = torch.tensor(np.asarray(q.table[0], dtype=np.float64) @ rot.T)
        scale = float(tn.norm())
        tn = tn / scale
        off = q.table[1] / scale + float(tn @ torch.from_numpy(rot @ centre))
        if float(tn @ z) < 0:
            tn, off = -tn, -off
        plane = Plane(normal=tn, offset=off)
    elif q.remove_table:
        plane, _ = detect_support_plane(p.float(), z.float())
        if plane is not None:
            plane = Plane(normal=plane.normal.double(), offset=float(plane.offset))
    if plane is not None:
        keep_t = plane.signed_distance(p) > cfg.table_margin_m
        dropped = int((~keep_t).sum())
        if dropped:
            what = "given table" if q.table is not None else "table detected and"
            warnings.append(f"{what} removed: {dropped} of {p.shape[0]} points at or below the support plane")
        p = p[keep_t]
        n = None if n is None else n[keep_t]
    timings["table_ms"] = (time.perf_counter() - t) * 1e3
    if p.shape[0] < cfg.min_object_points:
        raise QueryError(
            f"only {p.shape[0]} object points left after removing the table; at least {cfg.min_object_points} "
            "are needed (is the object in the cloud, or is the table plane wrong?)"
        )
    t = time.perf_counter()
    keep_o = statistical_outlier_removal(p.float(), cfg.outlier_k, cfg.outlier_std)
    if int((~keep_o).sum()):
        warnings.append(f"removed {int((~keep_o).sum())} outlier points")
        p = p[keep_o]
        n = None if n is None else n[keep_o]
    timings["outliers_ms"] = (time.perf_counter() - t) * 1e3
    try:
        check_object_cloud(p)
    except ValueError as e:
        raise QueryError(str(e)) from e

    t = time.perf_counter()
    # recentre on the object alone (the table no longer pulls the centroid)
    shift = p.mean(0)
    p = p - shift
    if p.shape[0] > cfg.model_points:
        idx = farthest_point_sample(p.float()[None], cfg.model_points)[0]
        warnings.append(f"cloud downsampled from {p.shape[0]} to {cfg.model_points} points")
        p = p[idx]
        n = None if n is None else n[idx]
    timings["downsample_ms"] = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    pf = p.float()
    # the camera in the canonical frame, when the client sent it (orients normals exactly)
    vp = None if q.viewpoint is None else (torch.from_numpy(np.asarray(q.viewpoint, dtype=np.float64) - centre) @ torch.from_numpy(rot).T - shift).float()
    if n is None:
        nf = estimate_normals(pf[None], k=min(cfg.normals_k, pf.shape[0]), viewpoint=None if vp is None else vp[None])[0]
    else:
        nf = torch.nn.functional.normalize(n.float(), dim=-1)
    timings["normals_ms"] = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
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
    timings["completion_ms"] = (time.perf_counter() - t) * 1e3

    support = None
    if plane is not None:
        support = SupportPlane(plane.normal.float(), float(plane.offset + float(plane.normal @ shift)))
    to_req = torch.eye(4, dtype=torch.float64)
    to_req[:3, :3] = torch.from_numpy(rot.T)
    to_req[:3, 3] = torch.from_numpy(centre) + torch.from_numpy(rot.T) @ shift
    single_view = vp is not None or comp.partial_score >= cfg.completion.single_view_threshold
    return Prepared(q, pf, nf, support, to_req, warnings, n_in, timings, observed, note, single_view)


def to_request_frame(g: Grasp, transform: Tensor) -> Grasp:
    """``g`` with its palm and pre-grasp poses mapped by ``transform`` (4, 4)."""

    def move(pose: Pose) -> Pose:
        m = transform @ pose.as_matrix()
        return Pose(position=m[:3, 3].tolist(), quaternion_wxyz=matrix_to_quat(m[:3, :3]).tolist())

    return g.model_copy(update={"pose": move(g.pose), "pregrasp": PreGrasp(pose=move(g.pregrasp.pose), joints=g.pregrasp.joints)})


def _points_to_request(p: Prepared) -> np.ndarray:
    m = p.to_request
    out: np.ndarray = (p.points.double() @ m[:3, :3].T + m[:3, 3]).numpy().astype(np.float32)
    return out


def _moved(g: Grasp, pos: Tensor, rot: Tensor, q: Tensor, hand: Any) -> Grasp:
    """``g`` with a refined palm pose and joints; the pre-grasp keeps its back-off along the new approach."""
    from .grasp import joints_dict

    back = float(torch.tensor(g.pose.position).sub(torch.tensor(g.pregrasp.pose.position)).norm())
    approach = rot.double() @ hand.approach_direction.double()
    pre_pos = pos.double() - approach * back
    squeeze = None
    if g.squeeze is not None:
        delta = torch.tensor([g.squeeze[n] - g.joints[n] for n in hand.joint_names], dtype=q.dtype)
        squeeze = joints_dict(g.hand, hand.project_joints((q + delta)[None])[0])
    return g.model_copy(update={
        "pose": Pose.from_rt(rot, pos),
        "joints": joints_dict(g.hand, q),
        "pregrasp": PreGrasp(pose=Pose.from_rt(rot, pre_pos), joints=g.pregrasp.joints),
        "squeeze": squeeze,
    })


# ---------------------------------------------------------------------------------------- pipeline
class GraspPipeline:
    """Holds the proposers and hands (created once, warmed) and runs queries, alone or batched."""

    def __init__(self, cfg: PipelineConfig | None = None, device: str = "cpu") -> None:
        self.cfg = cfg or PipelineConfig()
        self.device = device
        self._proposers: dict[tuple[str, str], Any] = {}

    def resolve_method(self, method: str, text: str | None = None) -> str:
        """``auto``: ``dgtr`` when its weights ship and its model card keeps it on the default path;
        otherwise, and for queries with an instruction, ``default_method`` (``fast``): the optimiser
        follows an instruction's generation priors, DGTR only gets re-ranked (measured top-5
        satisfaction 25-39 % through dgtr against 92.5 % through fast, bench/intent.py --pipeline)."""
        if method != "auto":
            return method
        if text is not None and text.strip():
            return self.cfg.default_method
        return "dgtr" if "dgtr" in available_proposers() and self._dgtr_ready() else self.cfg.default_method

    def _dgtr_ready(self) -> bool:
        from .proposers.dgtr import serves_by_default

        return serves_by_default("shadow")

    def proposer(self, method: str, hand: str) -> Any:
        key = (method, hand)
        if key not in self._proposers:
            self._proposers[key] = get_proposer(method, hand=hand, device=self.device)
        return self._proposers[key]

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for name in available_proposers():
            loaded = any(k[0] == name for k in self._proposers)
            p = next((v for k, v in self._proposers.items() if k[0] == name), None)
            out.append({
                "name": name,
                "version": getattr(p, "version", None),
                "loaded": loaded,
                "device": self.device,
                "default": name == self.resolve_method("auto"),
            })
        return out

    def warm_up(self, run: Callable[[GraspQuery], Any] | None = None) -> None:
        """Load the instruction encoder, create the default proposer and run one small query
        (with an instruction) through every stage, with ``run`` (default :meth:`run`; the service
        passes its compute thread so the warm-up never runs beside a request)."""
        from .intent import warm_up as warm_intent

        warm_intent()
        ang = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        ring = [np.stack([0.03 * np.cos(ang), 0.03 * np.sin(ang), np.full_like(ang, z)], 1) for z in np.linspace(0, 0.1, 10)]
        (run or self.run)(GraspQuery(points=np.concatenate(ring), num_grasps=2, seed=0, text="grasp it from the side"))

    def prepare(self, q: GraspQuery) -> Prepared:
        """Validate and preprocess one query exactly as :meth:`run_batch` serves it: the completed
        cloud only for the proposers in ``complete_for`` (or when the query says ``mirror``)."""
        t = time.perf_counter()
        validate_query(q, self.cfg)
        t1 = time.perf_counter()
        prep = preprocess(q, self.cfg)
        prep.timings_ms = {"validate_ms": (t1 - t) * 1e3, "preprocess_ms": (time.perf_counter() - t1) * 1e3, **prep.timings_ms}
        if prep.observed is not None:
            if q.completion == "auto" and self.resolve_method(q.method, q.text) not in self.cfg.complete_for:
                prep.use_observed()
            elif prep.completion_note is not None:
                prep.warnings.append(prep.completion_note)
        return prep

    def run(self, q: GraspQuery) -> PipelineResult:
        res = self.run_batch([q])[0]
        if isinstance(res, BaseException):
            raise res
        return res

    def run_batch(
        self, queries: Sequence[GraspQuery], progress: Callable[[int, int, float], None] | None = None
    ) -> list[PipelineResult | BaseException]:
        """Run queries together: each is validated and preprocessed alone (a bad one fails alone),
        then those sharing a proposer and hand are optimised in one batch."""
        out: list[PipelineResult | BaseException] = [QueryError("not run") for _ in queries]
        prepared: dict[int, Prepared] = {}
        for i, q in enumerate(queries):
            try:
                prepared[i] = self.prepare(q)
            except ValueError as e:
                out[i] = e if isinstance(e, QueryError) else QueryError(str(e))
        groups: dict[tuple[str, str], list[int]] = {}
        for i, prep in prepared.items():
            groups.setdefault((self.resolve_method(prep.query.method, prep.query.text), prep.query.hand), []).append(i)
        for (method, hand), idx in groups.items():
            results: list[PipelineResult | BaseException]
            try:
                results = list(self._run_group(method, hand, [prepared[i] for i in idx], progress))
            except ValueError as e:
                results = [QueryError(str(e)) for _ in idx]
            for i, r in zip(idx, results):
                out[i] = r
        return out

    def _run_group(
        self, method: str, hand_name: str, preps: list[Prepared], progress: Callable[[int, int, float], None] | None
    ) -> list[PipelineResult]:
        cfg = self.cfg
        prop = self.proposer(method, hand_name)
        hand = get_hand(hand_name, device=self.device, dtype="float32")
        t = time.perf_counter()
        intents = [self._parse_intent(p) for p in preps]
        t_intent = (time.perf_counter() - t) * 1e3 / max(1, len(preps))
        problems = []
        for p, it in zip(preps, intents):
            n_cand = max(p.query.num_grasps, math.ceil(cfg.candidates_per_grasp * p.query.num_grasps))
            problems.append(Problem(p.points, p.normals, n_cand, p.plane, p.query.seed, priors=it[1] if it else None, observed=p.observed,
                                    single_view=p.single_view))
        budgets = [p.query.timeout_s for p in preps if p.query.timeout_s is not None]
        # leave a share of the budget for scoring and selection
        budget = None if not budgets else max(0.05, 0.75 * min(budgets) - max(sum(p.timings_ms.values()) for p in preps) / 1e3)
        t = time.perf_counter()
        raw = prop.propose_batch(problems, time_budget_s=budget, progress=progress)
        t_prop = (time.perf_counter() - t) * 1e3
        results = []
        for p, r, it in zip(preps, raw, intents):
            cands = r.grasps
            pos, rot, qj = grasps_to_tensors(cands, device=self.device)
            t = time.perf_counter()
            do_refine = p.query.refine if p.query.refine is not None else method in cfg.refine_by_default
            refine_info: dict[str, Tensor] = {}
            if do_refine:
                # a proposer may carry the refinement it was tuned with (DGTR: its model card)
                rcfg = getattr(prop, "refine_config", None) or cfg.refine
                ref = refine_grasps(hand, pos, rot, qj, ObjectCloud(p.points, p.normals), p.plane, rcfg)
                cands = [_moved(g, ref.root_pos[i], ref.root_rot[i], ref.joints[i], hand) for i, g in enumerate(cands)]
                pos, rot, qj = ref.root_pos, ref.root_rot, ref.joints
                refine_info = {"refine_pen_before": ref.before["pen"], "refine_pen_after": ref.after["pen"]}
            t_refine = (time.perf_counter() - t) * 1e3
            t = time.perf_counter()
            surface = ObjectSurface(p.points, p.normals)
            table = None if p.plane is None else (p.plane.normal, p.plane.offset)
            rank_cfg = getattr(prop, "rank_config", None) or cfg.rank  # a proposer may carry its tuned ranking
            sc = score_grasps(hand, pos, rot, qj, surface, table, rank_cfg)
            t_score0 = (time.perf_counter() - t) * 1e3
            overall = sc["quality"]
            satisfied = None
            intent_json = None
            ist_message = None
            if it is not None:
                intent_obj, _, regions = it
                from .intent import score_intent

                ist = score_intent(intent_obj, hand, pos, rot, qj, p.points, torch.tensor([0.0, 0.0, 1.0]),
                                   regions, viewer=self._viewer(p))
                sc["intent_match"] = ist.score.to(overall.dtype)
                satisfied = ist.satisfied.bool()
                sc["intent_satisfied"] = satisfied.to(overall.dtype)
                ist_message = ist.message()
                overall = (1 - rank_cfg.w_intent) * overall + rank_cfg.w_intent * sc["intent_match"]
                intent_json = intent_obj.to_json() if hasattr(intent_obj, "to_json") else dict(vars(intent_obj))
            sc["overall"] = overall
            sc.update(refine_info)
            t = time.perf_counter()
            span = (hand.upper - hand.lower).clamp_min(1e-6)
            qn = (qj - hand.lower) / span
            dist = grasp_distances(pos, rot, qn, rank_cfg)
            picked = select_diverse(overall, dist, p.query.num_grasps, rank_cfg.diversity, satisfied)
            key = [(-(1 if satisfied is not None and bool(satisfied[i]) else 0), -float(overall[i])) for i in picked]
            picked = [i for _, i in sorted(zip(key, picked))]
            t_select = (time.perf_counter() - t) * 1e3
            grasps = []
            for rank_i, i in enumerate(picked):
                scores = {k: float(v[i]) for k, v in sc.items()}
                scores["rank"] = float(rank_i)
                scores.update({k: v for k, v in cands[i].scores.items() if k.startswith("energy")})
                grasps.append(to_request_frame(cands[i].model_copy(update={"scores": scores}), p.to_request))
            warnings = list(p.warnings)
            n_sat = None
            if satisfied is not None:
                n_sat = int(sum(bool(satisfied[i]) for i in picked))
                if n_sat == 0:
                    why = ist_message or "no grasp satisfies the instruction"
                    warnings.append(f"{why}; returning the best grasps without it")
            timings = dict(p.timings_ms)
            timings.update({"intent_ms": t_intent if it is not None else 0.0, "propose_ms": t_prop, "refine_ms": t_refine, "score_ms": t_score0, "select_ms": t_select})
            results.append(PipelineResult(
                grasps=grasps,
                proposer=method,
                proposer_version=str(getattr(prop, "version", "")),
                timings_ms=timings,
                warnings=warnings,
                points_in=p.points_in,
                points_used=int(p.points.shape[0]),
                intent=intent_json,
                intent_satisfied=n_sat,
                object_points=_points_to_request(p),
            ))
        return results

    def _parse_intent(self, p: Prepared) -> tuple[Any, Any, Any] | None:
        """(intent, priors, object regions) for a query with an instruction, in the canonical frame."""
        text = p.query.text
        if text is None or not text.strip():
            return None
        from .intent import analyze_object, intent_priors, parse_intent

        intent = parse_intent(text)
        hand = get_hand(p.query.hand, device=self.device, dtype="float32")
        up = torch.tensor([0.0, 0.0, 1.0])  # the canonical frame has up = +z
        # "front", "left", "right" are seen from the request frame's origin (the sensor or robot)
        viewer = self._viewer(p)
        regions = analyze_object(p.points, up, viewer=viewer)
        priors = intent_priors(intent, hand, p.points, up, regions, viewer=viewer)
        return intent, priors, regions

    @staticmethod
    def _viewer(p: Prepared) -> Tensor:
        """The request frame's origin (the sensor or robot base) in the canonical frame."""
        inv: Tensor = torch.linalg.inv(p.to_request)
        return inv[:3, 3].float()


__all__ = ["GraspPipeline", "GraspQuery", "PipelineConfig", "PipelineResult", "Prepared", "QueryError", "preprocess", "validate_query"]
