"""Learned grasp-success predictor for the ranking stage.

``grasp_features`` turns B grasps and the object cloud the scorer sees (points with normals, the
table plane) into a fixed feature vector per grasp; it never needs the mesh, so it runs at
serving time on exactly what :func:`models.stages.scoring.score_grasps` receives. ``SuccessRanker`` is a
small MLP (or, with no hidden layer, logistic regression) over the standardised features whose
output is the probability that the grasp passes the six-direction simulation test. It is stored
as data: ``ranker.json`` in a folder under ``models/weights/`` (feature names, normalisation,
layer weights); ``fit_ranker`` trains one (``bench/train_ranker.py``).

Frame: the features are rotation-invariant about the up axis and translation-invariant, so any
frame works as long as the table plane (or, without one, ``up``) is given in it; the pipeline
scores in its canonical frame (up = +z).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core.geometry import ObjectCloud, PlaneArg, unit_plane
from ..hands.model import HandModel
from ..physics.grasp_batch import GraspBatch
from ..physics.quality import CONTACT_THRESHOLD_M, collision_links, contacts_and_penetration, metrics_from_contacts

FORMAT = "dexgrasp-ranker/1"
WEIGHTS_ROOT = Path(__file__).resolve().parents[1] / "weights"  # models/weights, beside models/learned/
DISTANCE_CLIP_M = (-0.02, 0.08)  # per-link distances beyond these carry no extra information
FINGERTIP_SUFFIX = "distal"  # links whose name ends so are fingertips (ff/mf/rf/lf/th distal)


def feature_names(hand: HandModel) -> list[str]:
    """Names of the columns of :func:`grasp_features` for ``hand`` (stored with the weights)."""
    links, _ = collision_links(hand)
    link_names = [hand.link_names[i] for i in links.tolist()]
    return [
        *(f"dist_{n}" for n in link_names),
        "contact_count", "tips_5mm", "tips_10mm", "tips_mean_dist",
        "max_penetration", "table_penetration", "q1", "q1_ungated",
        *(f"joint_{n}" for n in hand.joint_names),
        "palm_to_centre", "palm_height", "approach_up", "palm_lateral",
        "extent_0", "extent_1", "extent_2", "object_height", "cloud_points",
        "thumb_opposition", "normal_balance", "contact_spread", "contact_centre_offset",
    ]


def _up_and_floor(surface_pts: Tensor, table: PlaneArg, up: Tensor | None) -> tuple[Tensor, Tensor]:
    """Unit up (3,) and the floor height along it: the table plane, else the lowest cloud point."""
    plane = unit_plane(table, surface_pts)
    if plane is not None:
        n, d = plane
        return n, -d
    u = torch.tensor([0.0, 0.0, 1.0], dtype=surface_pts.dtype) if up is None else up.to(surface_pts)
    u = u / u.norm()
    return u, (surface_pts @ u).min()


def grasp_features(
    hand: HandModel,
    root_pos: Tensor,
    root_rot: Tensor,
    joints: Tensor,
    surface: ObjectCloud,
    table: PlaneArg = None,
    up: Tensor | None = None,
) -> Tensor:
    """Features (B, F) of B grasps on one object cloud, columns named by :func:`feature_names`.

    ``surface`` is the object cloud (N, 3) with outward normals, in the grasps' frame; ``table``
    the support plane (n, d) with n.x + d = 0 and n pointing up, or None; ``up`` is used only
    without a table (default +z). Lengths are metres."""
    return features_and_metrics(GraspBatch(hand, root_pos, root_rot, joints), surface, table, up)[0]


def features_and_metrics(
    grasps: GraspBatch, surface: ObjectCloud, table: PlaneArg = None, up: Tensor | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """:func:`grasp_features` and, from the same contacts, the metrics of
    :func:`models.physics.quality.batch_quality` (same keys and values), so scoring computes them once."""
    hand, root_pos, root_rot = grasps.hand, grasps.root_pos, grasps.root_rot
    pts = surface.points.to(root_pos)
    nrm = surface.normals.to(root_pos)
    if pts.dim() != 2:
        raise ValueError("grasp_features takes one object cloud (N, 3) for all grasps")
    b = root_pos.shape[0]
    frames = grasps.frames()
    contacts, pen = contacts_and_penetration(hand, frames, ObjectCloud(pts, nrm))
    centre = pts.mean(dim=0)
    metrics = metrics_from_contacts(hand, frames, contacts, pen, centre, table)
    q1, q1_raw, table_pen = metrics["q1"], metrics["q1_ungated"], metrics["table_penetration_m"]

    dist = contacts.distance  # (B, K)
    names = [hand.link_names[i] for i in contacts.link.tolist()]
    tips = [k for k, n in enumerate(names) if n.endswith(FINGERTIP_SUFFIX)]
    thumb = [k for k in tips if names[k].startswith("th")]
    fingers = [k for k in tips if not names[k].startswith("th")]
    tip_d = dist[:, tips]
    contact = contacts.mask.to(dist.dtype)

    qn = grasps.normalised_joints()

    u, floor = _up_and_floor(pts, table, up)
    palm_c = root_pos + torch.einsum("bij,j->bi", root_rot, hand.palm_center.to(root_pos))
    rel = palm_c - centre
    approach = torch.einsum("bij,j->bi", root_rot, hand.approach_direction.to(root_pos))
    height = palm_c @ u - floor
    lateral = (rel - (rel @ u)[:, None] * u).norm(dim=-1)
    # cloud shape: principal extents (sorted, std along each axis) and height above the floor
    centred = pts - centre
    ext = torch.linalg.svdvals(centred) / math.sqrt(max(1, pts.shape[0]))
    obj_h = (pts @ u).max() - floor
    n_pts = torch.tensor(pts.shape[0] / 1024.0, dtype=pts.dtype)

    # contact normals: thumb against the best-opposed finger (-1 = opposite), and the length of the
    # mean normal over the links in contact (0 = forces can balance, 1 = all push one way)
    cn = contacts.normal
    if thumb and fingers:
        dots = (cn[:, thumb[0]][:, None] * cn[:, fingers]).sum(-1)  # (B, 4)
        both = contacts.mask[:, thumb[0]][:, None] & contacts.mask[:, fingers]
        opp = torch.where(both, dots, torch.ones_like(dots)).min(dim=1).values
    else:
        opp = torch.ones(b, dtype=dist.dtype)
    cnt = contact.sum(dim=1)
    mean_n = (cn * contact[..., None]).sum(dim=1) / cnt.clamp_min(1.0)[:, None]
    balance = torch.where(cnt > 0, mean_n.norm(dim=-1), torch.ones_like(cnt))

    # where the contacts sit: their spread, and how far their centroid is from the cloud centre
    # (relative to the cloud's size), i.e. whether the grasp surrounds the object's mass
    cpos = contacts.position
    c_mean = (cpos * contact[..., None]).sum(dim=1) / cnt.clamp_min(1.0)[:, None]
    spread = (((cpos - c_mean[:, None]) ** 2).sum(-1) * contact).sum(1) / cnt.clamp_min(1.0)
    size = ext.norm().clamp_min(1e-3)
    offset = torch.where(cnt > 0, (c_mean - centre).norm(dim=-1) / size, torch.full_like(cnt, 3.0))

    lo, hi = DISTANCE_CLIP_M
    cols = [
        dist.clamp(lo, hi),
        cnt[:, None],
        (tip_d <= 0.005).to(dist.dtype).sum(1, keepdim=True),
        (tip_d <= CONTACT_THRESHOLD_M).to(dist.dtype).sum(1, keepdim=True),
        tip_d.clamp(lo, hi).mean(1, keepdim=True),
        pen[:, None],
        table_pen[:, None],
        q1[:, None],
        q1_raw[:, None],
        qn,
        rel.norm(dim=-1, keepdim=True),
        height[:, None],
        (approach @ u)[:, None],
        lateral[:, None],
        ext.expand(b, 3),
        obj_h.expand(b, 1),
        n_pts.expand(b, 1),
        opp[:, None],
        balance[:, None],
        spread.sqrt()[:, None],
        offset[:, None],
    ]
    return torch.cat([c.to(root_pos.dtype) for c in cols], dim=1), metrics


# ------------------------------------------------------------------------------------------ model
@dataclass(frozen=True)
class SuccessRanker:
    """Standardise -> (Linear -> ReLU)* -> Linear -> sigmoid. Held as plain tensors (float64)."""

    features: tuple[str, ...]
    mean: Tensor  # (F,)
    std: Tensor  # (F,)
    weights: tuple[Tensor, ...]  # each (out, in)
    biases: tuple[Tensor, ...]
    meta: dict[str, Any]

    def logits(self, x: Tensor) -> Tensor:
        """(B, F) raw features -> (B,) logits."""
        h = (x.double() - self.mean) / self.std
        for i, (w, bias) in enumerate(zip(self.weights, self.biases)):
            h = h @ w.T + bias
            if i < len(self.weights) - 1:
                h = torch.relu(h)
        return h[:, 0]

    def predict(self, x: Tensor) -> Tensor:
        """(B, F) raw features -> (B,) success probability in [0, 1]."""
        return torch.sigmoid(self.logits(x))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "features": list(self.features),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "layers": [{"weight": w.tolist(), "bias": b.tolist()} for w, b in zip(self.weights, self.biases)],
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SuccessRanker:
        if d.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file (format {d.get('format')!r})")
        def t(v: Any) -> Tensor:
            return torch.tensor(v, dtype=torch.float64)

        return cls(
            features=tuple(d["features"]),
            mean=t(d["mean"]),
            std=t(d["std"]),
            weights=tuple(t(layer["weight"]) for layer in d["layers"]),
            biases=tuple(t(layer["bias"]) for layer in d["layers"]),
            meta=dict(d.get("meta", {})),
        )

    def save(self, folder: str | Path) -> Path:
        p = Path(folder)
        p.mkdir(parents=True, exist_ok=True)
        out = p / "ranker.json"
        out.write_text(json.dumps(self.to_json(), separators=(",", ":")) + "\n")
        return out


def ranker_dir(name: str) -> Path:
    """``name`` is a folder under ``models/weights`` (e.g. ``ranker_shadow``) or a path."""
    p = Path(name)
    return p if p.is_absolute() or p.exists() else WEIGHTS_ROOT / name


@lru_cache(maxsize=8)
def load_ranker(name: str) -> SuccessRanker:
    """The ranker stored in ``models/weights/<name>/ranker.json`` (cached)."""
    f = ranker_dir(name) / "ranker.json"
    if not f.is_file():
        raise ValueError(f"no grasp-success ranker at {f}; train one with bench/train_ranker.py")
    return SuccessRanker.from_json(json.loads(f.read_text()))


def predict_success(
    ranker: SuccessRanker, grasps: GraspBatch, cloud: ObjectCloud, table: PlaneArg = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """Success probability (B,) of each grasp, in the dtype of its positions, and the
    :func:`models.physics.quality.batch_quality` metrics computed on the way."""
    if tuple(feature_names(grasps.hand)) != ranker.features:
        raise ValueError(f"the ranker was trained on other features than hand {grasps.hand.spec.name!r} gives")
    x, metrics = features_and_metrics(grasps, cloud, table)
    return ranker.predict(x).to(grasps.root_pos.dtype), metrics


# ------------------------------------------------------------------------------------------ fitting
def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); nan when one class is missing."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def top_k_success(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int = 4) -> float:
    """Mean over groups (one query each) of the success rate of the ``k`` best-scored grasps."""
    rates = []
    for g in np.unique(groups):
        m = groups == g
        top = np.argsort(-np.asarray(scores)[m], kind="stable")[:k]
        rates.append(float(np.asarray(labels)[m][top].mean()))
    return float(np.mean(rates)) if rates else float("nan")


@dataclass(frozen=True)
class FitConfig:
    """Training settings of :func:`fit_ranker`."""

    hidden: tuple[int, ...] = (32,)  # hidden layer widths; () = logistic regression
    weight_decay: float = 1e-3  # L2 penalty on the weights (not the biases), per sample
    epochs: int = 400  # full-batch Adam steps
    lr: float = 0.01
    seed: int = 0
    listwise: float = 0.0  # weight of a per-query softmax loss that ranks each query's successes first


def _padded_groups(groups: np.ndarray) -> tuple[Tensor, Tensor]:
    """Index (G, M) of each group's samples padded with 0, and its validity mask (G, M)."""
    _, inv = np.unique(groups, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    counts = np.bincount(inv)
    idx = np.zeros((len(counts), int(counts.max())), dtype=np.int64)
    mask = np.zeros(idx.shape, dtype=bool)
    start = 0
    for g, c in enumerate(counts):
        idx[g, :c] = order[start:start + c]
        mask[g, :c] = True
        start += c
    return torch.from_numpy(idx), torch.from_numpy(mask)


def fit_ranker(
    x: np.ndarray, y: np.ndarray, names: list[str], cfg: FitConfig, meta: dict[str, Any] | None = None,
    groups: np.ndarray | None = None,
) -> SuccessRanker:
    """Fit a :class:`SuccessRanker` on features ``x`` (S, F) and labels ``y`` (S,) by full-batch
    Adam on the binary cross-entropy (classes re-weighted to equal total weight), plus, with
    ``cfg.listwise`` and ``groups`` (S,) query ids, a per-query softmax loss: minus the mean log
    share of the query's probability mass that lands on its successful grasps."""
    torch.manual_seed(cfg.seed)
    xt = torch.tensor(x, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64)
    mean = xt.mean(0)
    std = xt.std(0).clamp_min(1e-6)
    xs = (xt - mean) / std
    sizes = [xt.shape[1], *cfg.hidden, 1]
    layers = [torch.nn.Linear(a, b, dtype=torch.float64) for a, b in itertools.pairwise(sizes)]
    params = [p for layer in layers for p in layer.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    pos = float(yt.mean().clamp(1e-3, 1 - 1e-3))
    w = torch.where(yt > 0.5, 0.5 / pos, 0.5 / (1 - pos))
    use_list = cfg.listwise > 0 and groups is not None
    if use_list:
        assert groups is not None
        gidx, gmask = _padded_groups(np.asarray(groups))
        gy = yt[gidx] * gmask
        mixed = (gy.sum(1) > 0) & ((gmask & (gy < 0.5)).sum(1) > 0)  # groups with both outcomes
        gidx, gmask, gy = gidx[mixed], gmask[mixed], gy[mixed]

    def forward(h: Tensor) -> Tensor:
        for i, layer in enumerate(layers):
            h = layer(h)
            if i < len(layers) - 1:
                h = torch.relu(h)
        return h[:, 0]

    for _ in range(cfg.epochs):
        opt.zero_grad()
        z = forward(xs)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, yt, weight=w)
        if use_list and gidx.shape[0]:
            zg = z[gidx].masked_fill(~gmask, -torch.inf)
            lse_all = torch.logsumexp(zg, dim=1)
            lse_ok = torch.logsumexp(zg.masked_fill(gy < 0.5, -torch.inf), dim=1)
            loss = loss + cfg.listwise * (lse_all - lse_ok).mean()
        loss = loss + cfg.weight_decay * sum((layer.weight**2).sum() for layer in layers)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return SuccessRanker(
        features=tuple(names),
        mean=mean,
        std=std,
        weights=tuple(layer.weight.detach().clone() for layer in layers),
        biases=tuple(layer.bias.detach().clone() for layer in layers),
        meta=dict(meta or {}),
    )


__all__ = [
    "FitConfig", "SuccessRanker", "feature_names", "features_and_metrics", "fit_ranker", "grasp_features", "load_ranker",
    "predict_success", "ranker_dir", "roc_auc", "top_k_success",
]
