"""The proposal pipeline behind ``POST /v1/grasps`` and ``dexgrasp propose``.

validate -> preprocess (:mod:`models.stages.preprocess`: table, outliers, downsample, normals, completion,
canonical frame) -> for each group of queries sharing a proposer and a hand: intent (parse an
instruction into priors) -> propose (a registered proposer, batched over the group) -> per query:
refine (:mod:`models.stages.refine`) -> score (:mod:`models.stages.scoring`) -> intent (blend the instruction's
match into the score) -> select (diversity-aware top K) -> finish the selected refined grasps (snap, squeeze,
pregrasp: :mod:`models.stages.squeeze`) -> to request frame.

Every stage is a plain function with a small result type; :class:`GraspPipeline` composes them and
times each. The pipeline names no proposer: what it does with one (refine its output, feed it the
completed cloud, pick it for ``method=auto``, its tuned stage settings) comes from the proposer's
:class:`~models.proposers.base.Capabilities` and attributes. Inputs that no stage can work with
raise :class:`QueryError` (a ``ValueError``) with a message that says what to fix; the service
maps it to a 4xx. Nothing here knows about HTTP.
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

from .core.rotations import matrix_to_quat
from .grasp import Grasp, Pose, PreGrasp, make_grasp
from .hands import get_hand
from .hands.model import HandModel
from .hands.spec import available_hands
from .physics.grasp_batch import GraspBatch
from .proposers import auto_proposer, available_proposers, capabilities, get_proposer
from .proposers.base import Problem, Progress, Proposal, Proposer
from .stages.check import GraspCheck
from .stages.completion import MODES as COMPLETION_MODES
from .stages.preprocess import Prepared, PreprocessConfig, preprocess
from .stages.query import GraspQuery, QueryError
from .stages.refine import RefineConfig, refine_batch
from .stages.scoring import RankConfig, grasp_distances, score_batch, select_diverse
from .stages.squeeze import SqueezeConfig, finish, pregrasp_at_start_only


@dataclass(frozen=True)
class PipelineConfig(PreprocessConfig):
    """Limits and stage settings (units in the names); the preprocess settings are inherited."""

    max_points: int = 2_000_000  # larger clouds are refused (downsample on the robot side)
    max_num_grasps: int = 64
    candidates_per_grasp: float = 2.0  # proposer candidates per returned grasp, for the selection
    refine: RefineConfig = field(default_factory=RefineConfig)  # unless the proposer carries its own
    rank: RankConfig = field(default_factory=RankConfig)  # unless the proposer carries its own
    # finishing refined grasps (models/stages/squeeze.py); the pregrasp checked where it starts, for latency
    squeeze: SqueezeConfig = field(default_factory=pregrasp_at_start_only)


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


# ------------------------------------------------------------------------------------------ validate
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


# ------------------------------------------------------------------------------------------ intent (parse)
@dataclass
class ParsedIntent:
    """A query's instruction, parsed, with the generation priors and object regions it implies."""

    intent: Any  # models.stages.intent.Intent
    priors: Any  # models.stages.intent.Priors, for the proposer
    regions: Any  # models.stages.intent.ObjectRegions, reused by the scoring


def parse_instruction(prep: Prepared, hand: HandModel) -> ParsedIntent | None:
    """The instruction of a query (None without one), in the canonical frame."""
    text = prep.query.text
    if text is None or not text.strip():
        return None
    from .stages.intent import analyze_object, intent_priors, parse_intent

    intent = parse_intent(text)
    up = torch.tensor([0.0, 0.0, 1.0])  # the canonical frame has up = +z
    # "front", "left", "right" are seen from the request frame's origin (the sensor or robot)
    viewer = prep.viewer()
    regions = analyze_object(prep.points, up, viewer=viewer)
    priors = intent_priors(intent, hand, prep.points, up, regions, viewer=viewer)
    return ParsedIntent(intent, priors, regions)


# ------------------------------------------------------------------------------------------ propose
def _spent_s(p: Prepared) -> float:
    """Seconds of the query's budget spent before proposing: waiting in a queue, validation and
    preprocessing (whose sub-stage timings are part of ``preprocess_ms``)."""
    return max(0.0, p.query.queued_s) + (p.timings_ms.get("validate_ms", 0.0) + p.timings_ms.get("preprocess_ms", 0.0)) / 1e3


@dataclass
class Proposed:
    """The propose stage's output: one proposal per query of the group, and its wall time."""

    proposals: list[Proposal]
    elapsed_ms: float


def propose(
    proposer: Proposer, preps: Sequence[Prepared], intents: Sequence[ParsedIntent | None], candidates_per_grasp: float,
    progress: Progress | None = None, refined: Sequence[bool] | None = None,
) -> Proposed:
    """``candidates_per_grasp`` times the asked grasps per query, in one batch; the tightest query
    budget, less what preprocessing took, leaves a quarter for scoring and selection. Queries whose
    candidates will be ``refined`` ask for them unfinished: the pipeline finishes the ones it returns."""
    problems = []
    for k, (p, it) in enumerate(zip(preps, intents)):
        n_cand = max(p.query.num_grasps, math.ceil(candidates_per_grasp * p.query.num_grasps))
        problems.append(Problem(p.points, p.normals, n_cand, p.plane, p.query.seed, priors=it.priors if it else None,
                                observed=p.observed, single_view=p.single_view, finish=not (refined and refined[k])))
    budgets = [p.query.timeout_s for p in preps if p.query.timeout_s is not None]
    budget = None if not budgets else max(0.05, 0.75 * min(budgets) - max(_spent_s(p) for p in preps))
    t = time.perf_counter()
    raw = proposer.propose_batch(problems, time_budget_s=budget, progress=progress)
    return Proposed(raw, (time.perf_counter() - t) * 1e3)


# ------------------------------------------------------------------------------------------ refine
@dataclass
class Candidates:
    """One query's grasp candidates in the canonical frame: the records and their tensors."""

    grasps: list[Grasp]
    batch: GraspBatch


@dataclass
class Refined:
    """The refine stage's output: the candidates (moved when refined) and what refining changed."""

    candidates: Candidates
    scores: dict[str, Tensor]  # per candidate: penetration before and after (empty when not refined)
    elapsed_ms: float


def refine(cands: Candidates, prep: Prepared, cfg: RefineConfig | None, deadline: float | None = None) -> Refined:
    """Refine the candidates on the query's cloud and table (``cfg`` None: leave them as proposed), no step
    starting after ``deadline`` (``time.perf_counter()``; a warning says when it cut the refinement short). The
    moved grasps are unfinished: :func:`finish_picked` finishes the ones the selection keeps."""
    t = time.perf_counter()
    if cfg is None:
        return Refined(cands, {}, (time.perf_counter() - t) * 1e3)
    b = cands.batch
    ref = refine_batch(b, prep.cloud(), prep.plane, cfg, deadline=deadline)
    if ref.steps_run < cfg.steps:
        prep.warnings.append(f"time budget (timeout_ms) reached: refinement stopped after {ref.steps_run} of {cfg.steps} "
                             "steps; the grasps are the best states so far")
    grasps = [make_grasp(g.hand, ref.root_rot[i], ref.root_pos[i], ref.joints[i], ref.root_rot[i], ref.root_pos[i],
                         ref.joints[i], g.scores) for i, g in enumerate(cands.grasps)]
    dt = b.root_pos.dtype
    moved = Candidates(grasps, GraspBatch(b.hand, ref.root_pos.to(dt), ref.root_rot.to(dt), ref.joints.to(dt)))
    info = {"refine_pen_before": ref.before["pen"], "refine_pen_after": ref.after["pen"]}
    return Refined(moved, info, (time.perf_counter() - t) * 1e3)


# ------------------------------------------------------------------------------------------ finish
@dataclass
class Finished:
    """The finish stage's output: the picked candidates finished, in the order picked."""

    grasps: list[Grasp]
    elapsed_ms: float


def finish_picked(cands: Candidates, picked: Sequence[int], prep: Prepared, squeeze: SqueezeConfig | None,
                  deadline: float | None = None) -> Finished:
    """Finish the picked candidates (:func:`models.stages.squeeze.finish`: contacts onto the surface, the
    squeeze and the pregrasp solved for where the grasps are): only what is returned pays for it. Past
    ``deadline`` the contacts are left where they are (the squeeze and pregrasp are still solved) and a
    warning says so."""
    t = time.perf_counter()
    if deadline is not None and t >= deadline:
        squeeze = replace(squeeze or SqueezeConfig(), snap=False)
        prep.warnings.append("time budget (timeout_ms) reached: the returned grasps' fingers were not snapped onto "
                             "the surface (their squeeze and pregrasp are solved)")
    b = cands.batch
    rows = torch.as_tensor(list(picked), dtype=torch.long)
    done, sol = finish(GraspBatch(b.hand, b.root_pos[rows], b.root_rot[rows], b.joints[rows]), prep.cloud(), squeeze)
    grasps = []
    for k, i in enumerate(picked):
        g = cands.grasps[i]
        sc = {**g.scores, "squeeze_residual_n": float(sol.residual_n[k]), "squeeze_contacts": float(sol.contact_count[k]),
              "squeeze_fingers": float(sol.finger_count[k])}
        grasps.append(make_grasp(g.hand, done.root_rot[k], done.root_pos[k], done.joints[k], done.root_rot[k],
                                 sol.pre_position[k], sol.pre_joints[k], sc, sol.squeeze[k]))
    return Finished(grasps, (time.perf_counter() - t) * 1e3)


# ------------------------------------------------------------------------------------------ score
@dataclass
class Scored:
    """The score stage's output: per-candidate scores (:func:`models.stages.scoring.score_grasps`)."""

    scores: dict[str, Tensor]
    elapsed_ms: float


def score(cands: Candidates, prep: Prepared, cfg: RankConfig) -> Scored:
    """Score the candidates on the query's cloud and table (:func:`models.stages.scoring.score_batch`)."""
    t = time.perf_counter()
    sc = score_batch(cands.batch, prep.cloud(), prep.plane, cfg)
    return Scored(sc, (time.perf_counter() - t) * 1e3)


# ------------------------------------------------------------------------------------------ intent (blend)
@dataclass
class IntentOutcome:
    """How the candidates meet the instruction and the score the selection uses."""

    overall: Tensor  # (B,) the quality blended with the intent match
    scores: dict[str, Tensor]  # per candidate: intent_match, intent_satisfied
    satisfied: Tensor | None  # (B,) bool; None without an instruction
    message: str | None = None  # why no grasp satisfies it, when none does
    intent_json: dict[str, Any] | None = None


def apply_intent(parsed: ParsedIntent | None, cands: Candidates, prep: Prepared, quality: Tensor, cfg: RankConfig) -> IntentOutcome:
    """Without an instruction ``overall`` is the quality; with one it is
    ``(1 - w_intent) * quality + w_intent * intent match``."""
    if parsed is None:
        return IntentOutcome(quality, {}, None)
    from .stages.intent import score_intent

    b = cands.batch
    ist = score_intent(parsed.intent, b.hand, b.root_pos, b.root_rot, b.joints, prep.points, torch.tensor([0.0, 0.0, 1.0]),
                       parsed.regions, viewer=prep.viewer())
    match = ist.score.to(quality.dtype)
    satisfied = ist.satisfied.bool()
    overall = (1 - cfg.w_intent) * quality + cfg.w_intent * match
    obj = parsed.intent
    intent_json = obj.to_json() if hasattr(obj, "to_json") else dict(vars(obj))
    return IntentOutcome(overall, {"intent_match": match, "intent_satisfied": satisfied.to(quality.dtype)}, satisfied,
                         ist.message(), intent_json)


# ------------------------------------------------------------------------------------------ select
@dataclass
class Selected:
    """The select stage's output: candidate indices in the order returned."""

    picked: list[int]
    elapsed_ms: float


def select(cands: Candidates, intent: IntentOutcome, k: int, cfg: RankConfig) -> Selected:
    """Diversity-aware top ``k``: grasps satisfying the instruction first, then among them those that held in
    the proposer's simulated check (``cloud_check_holds``, when it ran one); ordered by (satisfies the
    instruction, held, overall score)."""
    t = time.perf_counter()
    b = cands.batch
    overall, satisfied = intent.overall, intent.satisfied
    held = torch.tensor([int(g.scores.get("cloud_check_holds", 0.0) > 0.5) for g in cands.grasps], dtype=torch.int64)
    sat = torch.zeros_like(held) if satisfied is None else satisfied.cpu().long()
    tier = 2 * sat + held
    dist = grasp_distances(b.root_pos, b.root_rot, b.normalised_joints(), cfg)
    picked = select_diverse(overall, dist, k, cfg.diversity, tier)
    key = [(-int(tier[i]), -float(overall[i])) for i in picked]
    picked = [i for _, i in sorted(zip(key, picked))]
    return Selected(picked, (time.perf_counter() - t) * 1e3)


# ------------------------------------------------------------------------------------------ to request frame
def to_request_frame(g: Grasp, transform: Tensor) -> Grasp:
    """``g`` with its palm and pre-grasp poses mapped by ``transform`` (4, 4)."""

    def move(pose: Pose) -> Pose:
        m = transform @ pose.as_matrix()
        return Pose(position=m[:3, 3].tolist(), quaternion_wxyz=matrix_to_quat(m[:3, :3]).tolist())

    return g.model_copy(update={"pose": move(g.pose), "pregrasp": PreGrasp(pose=move(g.pregrasp.pose), joints=g.pregrasp.joints)})


def returned_grasps(cands: Candidates, picked: Sequence[int], scores: dict[str, Tensor], prep: Prepared) -> list[Grasp]:
    """The picked grasps in the request frame, with their scores, rank, the proposer's energies and its check's verdicts."""
    out = []
    for rank_i, i in enumerate(picked):
        g = cands.grasps[i]
        s = {k: float(v[i]) for k, v in scores.items()}
        s["rank"] = float(rank_i)
        s.update({k: v for k, v in g.scores.items() if k.startswith(("energy", "cloud_check"))})
        out.append(to_request_frame(g.model_copy(update={"scores": s}), prep.to_request))
    return out


# ------------------------------------------------------------------------------------------ pipeline
class GraspPipeline:
    """Holds the proposers and hands (created once, warmed) and runs queries, alone or batched."""

    def __init__(self, cfg: PipelineConfig | None = None, device: str = "cpu", check: GraspCheck | None = None) -> None:
        self.cfg = cfg or PipelineConfig()
        self.device = device
        self.check = check  # given to the proposers that rank by one (Capabilities.ranks_by_check)
        self._proposers: dict[tuple[str, str], Proposer] = {}

    def resolve_method(self, method: str, text: str | None = None) -> str:
        """``auto``: the registered proposer of highest ``auto_priority`` that serves by default
        (:func:`models.proposers.auto_proposer`); for a query with an instruction, only one that
        follows instructions (the optimiser follows an instruction's generation priors, a learned
        proposer's grasps only get re-ranked)."""
        if method != "auto":
            return method
        name = auto_proposer(instruction=text is not None and bool(text.strip()))
        if name is None:
            raise QueryError(f"no registered proposer serves method=auto; name one of {', '.join(available_proposers())}")
        return name

    def proposer(self, method: str, hand: str) -> Proposer:
        key = (method, hand)
        if key not in self._proposers:
            kw = {"check": self.check} if self.check is not None and capabilities(method).ranks_by_check else {}
            self._proposers[key] = get_proposer(method, hand=hand, device=self.device, **kw)
        return self._proposers[key]

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for name in available_proposers():
            loaded = any(k[0] == name for k in self._proposers)
            p = next((v for k, v in self._proposers.items() if k[0] == name), None)
            out.append({
                "name": name,
                "version": None if p is None else p.version,
                "loaded": loaded,
                "device": self.device,
                "default": name == self.resolve_method("auto"),
            })
        return out

    def warm_up(self, run: Callable[[GraspQuery], Any] | None = None) -> None:
        """Load the instruction encoder, create the default proposer and run one small query
        (with an instruction) through every stage, with ``run`` (default :meth:`run`; the service
        passes its compute thread so the warm-up never runs beside a request)."""
        from .stages.intent import warm_up as warm_intent

        warm_intent()
        ang = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        ring = [np.stack([0.03 * np.cos(ang), 0.03 * np.sin(ang), np.full_like(ang, z)], 1) for z in np.linspace(0, 0.1, 10)]
        (run or self.run)(GraspQuery(points=np.concatenate(ring), num_grasps=2, seed=0, text="grasp it from the side"))

    def prepare(self, q: GraspQuery) -> Prepared:
        """Validate and preprocess one query exactly as :meth:`run_batch` serves it: the completed
        cloud only for proposers that grasp it (or when the query says ``mirror``)."""
        t = time.perf_counter()
        validate_query(q, self.cfg)
        t1 = time.perf_counter()
        prep = preprocess(q, self.cfg)
        prep.timings_ms = {"validate_ms": (t1 - t) * 1e3, "preprocess_ms": (time.perf_counter() - t1) * 1e3, **prep.timings_ms}
        if q.timeout_s is not None and q.queued_s >= 0.5 * q.timeout_s:
            prep.warnings.append(f"the query waited {q.queued_s * 1e3:.0f} ms in the queue, of its {q.timeout_s * 1e3:.0f} ms "
                                 "budget (timeout_ms); the server is busy")
        if prep.observed is not None:
            if q.completion == "auto" and not capabilities(self.resolve_method(q.method, q.text)).grasps_completed_cloud:
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
        self, queries: Sequence[GraspQuery], progress: Progress | None = None
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

    def _run_group(self, method: str, hand_name: str, preps: list[Prepared], progress: Progress | None) -> list[PipelineResult]:
        """propose (one batch) -> per query: refine -> score -> intent -> select -> finish -> to request frame."""
        prop = self.proposer(method, hand_name)
        hand = get_hand(hand_name, device=self.device, dtype="float32")
        t = time.perf_counter()
        intents = [parse_instruction(p, hand) for p in preps]
        t_intent = (time.perf_counter() - t) * 1e3 / max(1, len(preps))
        started = time.perf_counter()
        do_refine = [p.query.refine if p.query.refine is not None else prop.capabilities.refined_by_default for p in preps]
        proposed = propose(prop, preps, intents, self.cfg.candidates_per_grasp, progress, refined=do_refine)
        rank_cfg = prop.rank_config or self.cfg.rank
        results = []
        for p, proposal, it, refining in zip(preps, proposed.proposals, intents, do_refine):
            cands = Candidates(proposal.grasps, GraspBatch.from_grasps(hand, proposal.grasps, device=self.device))
            deadline = None  # the query's budget from here (preprocessing spent part of it)
            if p.query.timeout_s is not None:
                deadline = started + p.query.timeout_s - _spent_s(p)
            # refinement may take half of what is left; scoring, selection and finishing the rest
            now = time.perf_counter()
            refined = refine(cands, p, (prop.refine_config or self.cfg.refine) if refining else None,
                             None if deadline is None else now + 0.5 * max(0.0, deadline - now))
            cands = refined.candidates
            scored = score(cands, p, rank_cfg)
            intent = apply_intent(it, cands, p, scored.scores["quality"], rank_cfg)
            scores = {**scored.scores, **intent.scores, "overall": intent.overall, **refined.scores}
            selected = select(cands, intent, p.query.num_grasps, rank_cfg)
            stage_ms = {"intent_ms": t_intent if it is not None else 0.0, "propose_ms": proposed.elapsed_ms,
                        "refine_ms": refined.elapsed_ms, "score_ms": scored.elapsed_ms, "select_ms": selected.elapsed_ms}
            picked = list(selected.picked)
            if refining:  # refined grasps moved: finish the returned ones where they now are
                done = finish_picked(cands, picked, p, self.cfg.squeeze, deadline)
                cands = Candidates(list(cands.grasps), cands.batch)
                for k, i in enumerate(picked):
                    cands.grasps[i] = done.grasps[k]
                stage_ms["finish_ms"] = done.elapsed_ms
            results.append(self._result(method, prop, p, cands, picked, scores, intent, stage_ms))
        return results

    @staticmethod
    def _result(
        method: str, prop: Proposer, p: Prepared, cands: Candidates, picked: list[int], scores: dict[str, Tensor],
        intent: IntentOutcome, stage_ms: dict[str, float],
    ) -> PipelineResult:
        warnings = list(p.warnings)
        n_sat = None
        if intent.satisfied is not None:
            n_sat = int(sum(bool(intent.satisfied[i]) for i in picked))
            if n_sat == 0:
                why = intent.message or "no grasp satisfies the instruction"
                warnings.append(f"{why}; returning the best grasps without it")
        return PipelineResult(
            grasps=returned_grasps(cands, picked, scores, p),
            proposer=method,
            proposer_version=str(prop.version),
            timings_ms={**p.timings_ms, **stage_ms},
            warnings=warnings,
            points_in=p.points_in,
            points_used=int(p.points.shape[0]),
            intent=intent.intent_json,
            intent_satisfied=n_sat,
            object_points=p.points_in_request_frame(),
        )


__all__ = [
    "GraspPipeline", "GraspQuery", "PipelineConfig", "PipelineResult", "Prepared", "QueryError", "preprocess",
    "to_request_frame", "validate_query",
]
