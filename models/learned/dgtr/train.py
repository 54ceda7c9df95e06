"""Training DGTR: Hungarian matching, the dynamic-static matching schedule (DSMT), resumable.

Loss per matched (prediction, ground truth) pair, on every decoder layer (auxiliary losses):
Huber on the palm translation (in units of ``translation_scale_m``) and on the joints (in units of
each joint's range), both x10; rotation ``||R - R*||_F^2 / 8`` x10; and, on the last layer, the
hand chamfer distance between surface samples of the predicted and the true hand (x1, same units
as the translation), self-penetration (x10, m) and, in the last phase, object penetration (x50, m;
object points inside the predicted hand). Matching cost ``1 L1(joints) + 2 L1(t) + 2 d_rot`` with
``d_rot = (3 - tr(R^T R*)) / 4``, i.e. ``1 - <q, q*>^2``.

DSMT (DGTR Sec. 3.3): epochs ``[0, dynamic)`` re-match every step with the network being trained;
at the switch the network is frozen as a *matcher*, and from then on (``[dynamic, static)``, then
the last phase that adds the object-penetration loss) every sample's assignment is the matcher's
Hungarian matching. DGTR freezes each object's assignment; our samples are re-augmented every
time (random view, rotation about up), so a stored per-scene assignment would pair queries with
grasps for a different rotation. The frozen matcher is the same idea made augmentation-proof: the
assignment is a fixed function of the input, no longer chasing the network being trained. A scene has fewer ground-truth grasps than queries more often
than not, so ground truths are tiled before matching: every query gets a target, no target gets
more than ``ceil(Q / G)`` queries.

The run directory holds ``config.json``, ``log.jsonl`` (one line per epoch), ``checkpoint.pt``
(tensors only, loaded with ``weights_only=True``; written atomically every epoch, so a killed run
resumes from its last epoch) and, at the end, ``model.safetensors`` with ``model.json``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from tqdm import tqdm

from ...core.rotations import axis_angle_to_matrix, rot6d_to_matrix
from ...hands import get_hand
from ...hands.model import HandModel
from .data import ViewConfig, build_views
from .model import DGTR, DGTRConfig, model_inputs
from .weights import save_weights


@dataclass(frozen=True)
class TrainConfig:
    data: str = "models/data/shadow_v1"
    epochs: int = 60
    dynamic_share: float = 0.6  # DSMT phase lengths as shares of the epochs (DGTR: 15 / 5 / 5 of 25)
    static_share: float = 0.2
    batch: int = 32
    lr: float = 2e-4
    lr_final: float = 2e-5
    weight_decay: float = 1e-4
    seed: int = 0
    partial_prob: float = 0.6  # chance a sample uses a partial single-view cloud
    noise_m: float = 0.001  # Gaussian jitter of the points
    hand_points: int = 128  # surface samples for the chamfer loss
    pen_points: int = 256  # object points for the penetration loss
    w_t: float = 10.0
    w_joints: float = 10.0
    w_rot: float = 10.0
    w_chamfer: float = 1.0
    w_spen: float = 10.0
    w_pen: float = 50.0
    cost_joints: float = 1.0
    cost_t: float = 2.0
    cost_rot: float = 2.0
    views: ViewConfig = field(default_factory=ViewConfig)
    model: DGTRConfig = field(default_factory=DGTRConfig)
    init: str | None = None  # weights folder to start from (fine-tuning; same architecture); None: random init


@dataclass
class SceneViews:
    """All views of one scene, in memory."""

    points: Tensor  # (V, P, 3)
    normals: Tensor
    table_z: Tensor  # (V,), nan: no table
    partial: Tensor  # (V,) bool
    translation: Tensor  # (V, G, 3) ground-truth palms in each view's canonical frame
    rotation: Tensor  # (V, G, 3, 3)
    joints: Tensor  # (G, J)
    object_id: str = ""


def load_views(files: list[Path]) -> list[SceneViews]:
    out = []
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            out.append(SceneViews(
                torch.from_numpy(z["points"]), torch.from_numpy(z["normals"]), torch.from_numpy(z["table_z"]),
                torch.from_numpy(z["partial"]).bool(), torch.from_numpy(z["translation"]),
                torch.from_numpy(z["rotation"]), torch.from_numpy(z["joints"]), str(z["object_id"]),
            ))
    return out


def _rot_z(angle: Tensor) -> Tensor:
    """Rotations about +z by ``angle`` (...) -> (..., 3, 3)."""
    return axis_angle_to_matrix(torch.tensor([0.0, 0.0, 1.0]).expand(*angle.shape, 3), angle)


def make_batch(scenes: list[SceneViews], idx: list[int], cfg: TrainConfig, hand: HandModel, gen: torch.Generator) -> dict[str, Any]:
    """Inputs (B, P, 7) and padded targets for the scenes ``idx``: one view each (partial with
    probability ``partial_prob`` when the scene has one), a random rotation about +z, point jitter."""
    pts, nrm, tz, gt_t, gt_r, gt_q, counts = [], [], [], [], [], [], []
    span = (hand.upper - hand.lower).clamp_min(1e-6)
    for i in idx:
        s = scenes[i]
        partial = torch.nonzero(s.partial)[:, 0]
        complete = torch.nonzero(~s.partial)[:, 0]
        use_partial = len(partial) > 0 and (len(complete) == 0 or float(torch.rand(1, generator=gen)) < cfg.partial_prob)
        pool = partial if use_partial else complete
        v = int(pool[torch.randint(len(pool), (1,), generator=gen)])
        r = _rot_z(torch.rand(1, generator=gen) * 2 * math.pi)[0]
        n_in = cfg.model.num_points
        p = s.points[v, :n_in] @ r.T + torch.randn(n_in, 3, generator=gen) * cfg.noise_m
        pts.append(p)
        nrm.append(s.normals[v, :n_in] @ r.T)
        tz.append(s.table_z[v])
        gt_t.append(s.translation[v] @ r.T)
        gt_r.append(r @ s.rotation[v])
        gt_q.append((s.joints - hand.lower) / span)
        counts.append(s.joints.shape[0])
    gmax = max(counts)

    def pad(xs: list[Tensor]) -> Tensor:
        return torch.stack([torch.cat([x, x[:1].expand(gmax - x.shape[0], *x.shape[1:])]) for x in xs])

    points, normals = torch.stack(pts), torch.stack(nrm)
    table = torch.stack(tz)
    lowest = points[..., 2].min(dim=1).values
    table = torch.where(torch.isnan(table), lowest, table)
    return {
        "inputs": model_inputs(points, normals, table),
        "points": points,
        "table_z": table,
        "t": pad(gt_t), "r": pad(gt_r), "q": pad(gt_q), "count": torch.tensor(counts),
    }


def match_cost(pred: dict[str, Tensor], gt_t: Tensor, gt_r: Tensor, gt_q: Tensor, cfg: TrainConfig) -> Tensor:
    """(Q, G) cost for one sample; translations in units of the translation scale."""
    scale = cfg.model.translation_scale_m
    ct = torch.cdist(pred["translation"] / scale, gt_t / scale, p=1)
    cq = torch.cdist(pred["joints_unit"], gt_q, p=1) / gt_q.shape[-1]
    rp = rot6d_to_matrix(pred["rot6d"])
    tr = torch.einsum("qij,gij->qg", rp, gt_r)
    cr = (3.0 - tr) / 4.0
    return cfg.cost_joints * cq + cfg.cost_t * ct + cfg.cost_rot * cr


def hungarian(cost: Tensor, g: int) -> Tensor:
    """Query -> ground-truth index (Q,), ground truths tiled to cover every query."""
    q = cost.shape[0]
    reps = math.ceil(q / g)
    tiled = cost[:, :g].repeat(1, reps).detach().cpu().numpy()
    rows, cols = linear_sum_assignment(tiled)
    out = np.zeros(q, dtype=np.int64)
    out[rows] = cols % g
    return torch.from_numpy(out)


def _huber(a: Tensor, b: Tensor) -> Tensor:
    return torch.nn.functional.smooth_l1_loss(a, b, reduction="none", beta=0.05).mean(-1)


def losses(
    outs: list[dict[str, Tensor]], batch: dict[str, Any], assign: Tensor, cfg: TrainConfig, hand: HandModel, with_pen: bool
) -> dict[str, Tensor]:
    """Every loss term, averaged over the batch and queries (aux layers for the pose terms)."""
    scale = cfg.model.translation_scale_m
    bsz, nq = assign.shape
    bi = torch.arange(bsz)[:, None].expand(bsz, nq)
    tt, tr, tq = batch["t"][bi, assign], batch["r"][bi, assign], batch["q"][bi, assign]
    terms: dict[str, Tensor] = {"t": torch.zeros(()), "joints": torch.zeros(()), "rot": torch.zeros(())}
    for o in outs:
        terms["t"] = terms["t"] + _huber(o["translation"] / scale, tt / scale).mean()
        terms["joints"] = terms["joints"] + _huber(o["joints_unit"], tq).mean()
        rp = rot6d_to_matrix(o["rot6d"])
        terms["rot"] = terms["rot"] + ((rp - tr) ** 2).sum((-1, -2)).mean() / 8.0
    for k in ("t", "joints", "rot"):
        terms[k] = terms[k] / len(outs)
    last = outs[-1]
    span = hand.upper - hand.lower
    pos = last["translation"].reshape(-1, 3)
    rot = rot6d_to_matrix(last["rot6d"]).reshape(-1, 3, 3)
    q = (hand.lower + last["joints_unit"] * span).reshape(-1, hand.num_joints)
    frames = hand.forward_kinematics(pos, rot, q)
    hp = hand.surface_points(frames, cfg.hand_points)
    with torch.no_grad():
        gf = hand.forward_kinematics(tt.reshape(-1, 3), tr.reshape(-1, 3, 3), (hand.lower + tq * span).reshape(-1, hand.num_joints))
        gp = hand.surface_points(gf, cfg.hand_points)
    d = torch.cdist(hp, gp)
    terms["chamfer"] = (d.min(dim=2).values.mean(-1) + d.min(dim=1).values.mean(-1)).mean() / scale
    from ...physics.energy import self_penetration

    terms["spen"] = self_penetration(hand, frames).mean()
    if with_pen:
        pts = batch["points"][:, : cfg.pen_points]  # the cloud was FPS-ordered: its first points cover it
        pts = pts[:, None].expand(bsz, nq, *pts.shape[1:]).reshape(bsz * nq, -1, 3)
        terms["pen"] = torch.relu(-hand.signed_distance(frames, pts)).sum(-1).mean()
    w = {"t": cfg.w_t, "joints": cfg.w_joints, "rot": cfg.w_rot, "chamfer": cfg.w_chamfer, "spen": cfg.w_spen, "pen": cfg.w_pen}
    total = sum(w[k] * v for k, v in terms.items())
    assert isinstance(total, Tensor)
    terms["total"] = total
    return terms


@torch.no_grad()
def assignments(pred: dict[str, Tensor], batch: dict[str, Any], cfg: TrainConfig) -> Tensor:
    """(B, Q) ground-truth index per query: Hungarian matching of ``pred`` to each sample's grasps."""
    out = []
    for j in range(pred["translation"].shape[0]):
        g = int(batch["count"][j])
        cost = match_cost({k: v[j] for k, v in pred.items()}, batch["t"][j, :g], batch["r"][j, :g], batch["q"][j, :g], cfg)
        out.append(hungarian(cost, g))
    return torch.stack(out)


def _frozen_copy(model: DGTR) -> DGTR:
    m = copy.deepcopy(model).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def _phase(epoch: int, cfg: TrainConfig) -> str:
    dyn = round(cfg.epochs * cfg.dynamic_share)
    stat = dyn + round(cfg.epochs * cfg.static_share)
    return "dynamic" if epoch < dyn else ("static" if epoch < stat else "static+pen")


def _lr(epoch: int, cfg: TrainConfig) -> float:
    return cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * epoch / max(1, cfg.epochs)))


def train(
    out_dir: str | Path, cfg: TrainConfig, cache_dir: str | Path | None = None, progress: bool = True,
    stop_after: int | None = None, procs: int = 1,
) -> dict[str, Any]:
    """Train (or resume) into ``out_dir``; returns the last epoch's log line. ``stop_after``: end
    this call after that epoch (a chunk of a longer run; the next call resumes), weights are only
    written when the run reaches ``cfg.epochs``. ``procs``: processes rendering the training views."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_json = json.dumps(asdict(cfg), indent=1, default=list)
    (out / "config.json").write_text(cfg_json + "\n")
    torch.manual_seed(cfg.seed)
    files = build_views(cfg.data, cache_dir or out / "views", cfg.views, progress, procs=procs)
    scenes = load_views(files)
    if not scenes:
        raise ValueError(f"no scenes with grasps under {cfg.data}")
    hand = get_hand(cfg.model.hand, dtype="float32")
    model = DGTR(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    matcher: DGTR | None = None
    start = 0
    ck = out / "checkpoint.pt"
    if cfg.init is not None and not ck.exists():
        from .weights import load_weights

        init = load_weights(cfg.init)
        if init.cfg != cfg.model:
            raise ValueError(f"--init {cfg.init}: its architecture {init.cfg} differs from this run's {cfg.model}")
        model.load_state_dict(init.state_dict())
    if ck.exists():
        state = torch.load(ck, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
        if "matcher" in state:
            matcher = _frozen_copy(model)
            matcher.load_state_dict(state["matcher"])
    gen = torch.Generator().manual_seed(cfg.seed * 7_919 + start)
    last: dict[str, Any] = {}
    end = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    for epoch in range(start, end):
        phase = _phase(epoch, cfg)
        if phase != "dynamic" and matcher is None:
            matcher = _frozen_copy(model)
        for group in opt.param_groups:
            group["lr"] = _lr(epoch, cfg)
        model.train()
        order = torch.randperm(len(scenes), generator=gen).tolist()
        sums: dict[str, float] = {}
        n_batches = math.ceil(len(order) / cfg.batch)
        t0 = time.perf_counter()
        bar = tqdm(range(n_batches), desc=f"epoch {epoch + 1}/{cfg.epochs} {phase}", unit="batch", disable=not progress, leave=False)
        for b in bar:
            idx = order[b * cfg.batch: (b + 1) * cfg.batch]
            batch = make_batch(scenes, idx, cfg, hand, gen)
            outs = model(batch["inputs"])
            assign = assignments(outs[-1] if matcher is None else matcher(batch["inputs"])[-1], batch, cfg)
            terms = losses(outs, batch, assign, cfg, hand, with_pen=phase == "static+pen")
            opt.zero_grad()
            terms["total"].backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.set_postfix(loss=f"{float(terms['total'].detach()):.3f}")
        bar.close()
        last = {"epoch": epoch + 1, "phase": phase, "lr": _lr(epoch, cfg), "seconds": round(time.perf_counter() - t0, 1),
                **{k: round(v / n_batches, 5) for k, v in sums.items()}}
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(last) + "\n")
        if progress:
            tqdm.write(json.dumps(last))
        tmp = out / "checkpoint.tmp.pt"
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": torch.tensor(epoch + 1)}
        if matcher is not None:
            state["matcher"] = matcher.state_dict()
        torch.save(state, tmp)
        os.replace(tmp, ck)
    if end == cfg.epochs:
        save_weights(model, out, {
            "train": json.loads(cfg_json), "scenes": len(scenes), "grasps": sum(int(s.joints.shape[0]) for s in scenes),
            "objects": sorted({s.object_id for s in scenes}), "last_epoch": last,
            "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
        })
    return last


__all__ = ["TrainConfig", "assignments", "hungarian", "losses", "make_batch", "match_cost", "train"]
