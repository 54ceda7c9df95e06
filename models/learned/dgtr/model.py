"""DGTR network: a PointNet++-style encoder written in plain tensor ops (its farthest point sampling
and kNN export to ONNX) and a transformer decoder whose N learned queries each predict one grasp.

Input: (B, P, 7) per point: xyz in the canonical frame (object centroid at the origin, up = +z,
metres), outward normal, height above the support plane (the table; ``z - min z`` when there is
none). Output per query: palm translation (metres, bounded by ``translation_scale_m``), palm
rotation as the continuous 6-D representation (two matrix columns; no quaternion sign ambiguity
for the matcher to fight), and joints in [0, 1] of each joint's range. ``forward`` returns every
decoder layer's predictions (auxiliary losses); :class:`DGTRExport` the last layer only.
:func:`fixed_size` and :func:`model_inputs` turn a cloud into that input, for training and serving alike.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

IN_FEATURES = 7


@dataclass(frozen=True)
class DGTRConfig:
    """Sized for ~10^4 grasps over ~10^3 objects on CPU (see models/weights/dgtr_shadow.md)."""

    num_points: int = 512  # the first points of a farthest-point-ordered cloud
    sa1_centres: int = 128
    sa1_k: int = 24
    sa1_mlp: tuple[int, ...] = (64, 64, 128)
    sa2_centres: int = 32
    sa2_k: int = 16
    sa2_mlp: tuple[int, ...] = (128, 128, 256)
    d_model: int = 256
    heads: int = 4
    ffn: int = 512
    layers: int = 3
    queries: int = 16
    dropout: float = 0.0
    num_joints: int = 22
    translation_scale_m: float = 0.25
    hand: str = "shadow"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DGTRConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("sa1_mlp", "sa2_mlp"):
            if k in known:
                known[k] = tuple(known[k])
        return cls(**known)


def farthest_point_indices(xyz: Tensor, k: int) -> Tensor:
    """(B, P, 3) -> (B, k) indices; starts from the point farthest from the centroid. Plain ops
    (unrolled when traced), so it exports to ONNX and runs the same in both."""
    centre = xyz.mean(dim=1, keepdim=True)
    idx = ((xyz - centre) ** 2).sum(-1).argmax(-1)
    dist = torch.full_like(xyz[..., 0], 1e10)
    out = []
    for _ in range(k):
        out.append(idx)
        c = torch.gather(xyz, 1, idx[:, None, None].expand(-1, 1, 3))
        dist = torch.minimum(dist, ((xyz - c) ** 2).sum(-1))
        idx = dist.argmax(-1)
    return torch.stack(out, dim=1)


def gather_rows(x: Tensor, idx: Tensor) -> Tensor:
    """x (B, P, C), idx (B, ...) -> (B, ..., C)."""
    b, c = x.shape[0], x.shape[-1]
    flat = idx.reshape(b, -1)
    out = torch.gather(x, 1, flat[..., None].expand(-1, -1, c))
    return out.reshape(*idx.shape, c)


def knn_indices(query: Tensor, points: Tensor, k: int) -> Tensor:
    """(B, S, 3), (B, P, 3) -> (B, S, k) indices of the k nearest points."""
    d = (query * query).sum(-1)[..., None] - 2 * query @ points.transpose(1, 2) + (points * points).sum(-1)[:, None, :]
    return torch.topk(d, k, dim=-1, largest=False).indices


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.ReLU()]
    return nn.Sequential(*layers)


class SetAbstraction(nn.Module):
    """FPS centres, kNN groups, a shared MLP on (relative xyz / scale, features), max over the group."""

    def __init__(self, centres: int, k: int, in_ch: int, mlp: tuple[int, ...], scale_m: float) -> None:
        super().__init__()
        self.centres, self.k, self.scale = centres, k, scale_m
        self.mlp = _mlp([in_ch + 3, *mlp])

    def forward(self, xyz: Tensor, feats: Tensor) -> tuple[Tensor, Tensor]:
        idx = farthest_point_indices(xyz, self.centres)
        centre = gather_rows(xyz, idx)  # (B, S, 3)
        nb = knn_indices(centre, xyz, self.k)  # (B, S, k)
        rel = (gather_rows(xyz, nb) - centre[:, :, None, :]) / self.scale
        grouped = torch.cat([rel, gather_rows(feats, nb)], dim=-1)
        return centre, self.mlp(grouped).max(dim=2).values


class DGTR(nn.Module):
    def __init__(self, cfg: DGTRConfig | None = None) -> None:
        super().__init__()
        c = self.cfg = cfg or DGTRConfig()
        self.sa1 = SetAbstraction(c.sa1_centres, c.sa1_k, IN_FEATURES, c.sa1_mlp, 0.02)
        self.sa2 = SetAbstraction(c.sa2_centres, c.sa2_k, c.sa1_mlp[-1], c.sa2_mlp, 0.05)
        self.token = nn.Linear(c.sa2_mlp[-1], c.d_model)
        self.pos = nn.Sequential(nn.Linear(3, c.d_model), nn.ReLU(), nn.Linear(c.d_model, c.d_model))
        self.global_token = nn.Linear(c.sa2_mlp[-1], c.d_model)
        self.queries = nn.Parameter(torch.randn(c.queries, c.d_model) * 0.1)
        self.decoder = nn.ModuleList(
            nn.TransformerDecoderLayer(c.d_model, c.heads, c.ffn, c.dropout, batch_first=True, norm_first=True)
            for _ in range(c.layers)
        )
        self.norm = nn.LayerNorm(c.d_model)
        self.head = nn.Sequential(nn.Linear(c.d_model, c.d_model), nn.ReLU(), nn.Linear(c.d_model, 3 + 6 + c.num_joints))

    def encode(self, points: Tensor) -> Tensor:
        xyz = points[..., :3]
        c1, f1 = self.sa1(xyz, points)
        c2, f2 = self.sa2(c1, f1)
        tokens = self.token(f2) + self.pos(c2 / self.cfg.translation_scale_m)
        glob = self.global_token(f2.max(dim=1).values)[:, None, :]
        return torch.cat([glob, tokens], dim=1)

    def _decode_head(self, h: Tensor) -> dict[str, Tensor]:
        out = self.head(self.norm(h))
        base = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], device=out.device, dtype=out.dtype)
        return {
            "translation": torch.tanh(out[..., :3]) * self.cfg.translation_scale_m,
            "rot6d": out[..., 3:9] + base,  # identity at zero output
            "joints_unit": torch.sigmoid(out[..., 9:]),
        }

    def forward(self, points: Tensor) -> list[dict[str, Tensor]]:
        """(B, P, 7) -> one prediction dict per decoder layer, the last is the model's answer."""
        memory = self.encode(points)
        h = self.queries[None].expand(points.shape[0], -1, -1)
        outs = []
        for layer in self.decoder:
            h = layer(h, memory)
            outs.append(self._decode_head(h))
        return outs


class DGTRExport(nn.Module):
    """The graph that is exported and served: last layer, three tensors."""

    def __init__(self, model: DGTR) -> None:
        super().__init__()
        self.model = model

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        o = self.model(points)[-1]
        return o["translation"], o["rot6d"], o["joints_unit"]


def fixed_size(points: np.ndarray, normals: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Exactly ``n`` points in farthest-point order (so any prefix covers the object; the model
    reads the first ``num_points``), sparse partial views padded with random repeats. Training views
    and served clouds both pass through here, so the network serves the distribution it trained on."""
    from ...core.geometry import farthest_point_sample

    m = points.shape[0]
    order = farthest_point_sample(torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))[None], min(m, n))[0].numpy()
    if m < n:
        order = np.concatenate([order, np.random.default_rng(seed).choice(m, n - m, replace=True)])
    return points[order], normals[order]


def model_inputs(points: Tensor, normals: Tensor, table_height: Tensor | None) -> Tensor:
    """Per-point features (B, P, 7) from canonical points/normals (B, P, 3) and the table's z
    ((B,), None: no table -> the lowest point stands in)."""
    z = points[..., 2]
    floor = z.min(dim=1).values if table_height is None else table_height
    return torch.cat([points, normals, (z - floor[:, None])[..., None]], dim=-1)


__all__ = ["DGTR", "IN_FEATURES", "DGTRConfig", "DGTRExport", "farthest_point_indices", "fixed_size", "knn_indices", "model_inputs"]
