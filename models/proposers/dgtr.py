"""The ``dgtr`` proposer: DGTR's one forward pass to a set of grasps, served by ONNX Runtime.

Weights live in ``models/weights/dgtr_<hand>/`` (``model.safetensors``, ``model.json``,
``model.onnx``; made by ``dexgrasp train dgtr`` and ``dexgrasp export onnx``). Each problem's
canonical cloud is put in farthest-point order and cut or padded to the network's input size,
exactly as the training views were. When more candidates are asked for than the network has
queries, the cloud is also fed rotated about the up axis (k * 360/passes degrees) and the
predictions are rotated back: the network was trained with random rotations about up, so the
passes give different grasps. All problems and passes of a batch go through the network in one
call. Refinement (AB-TTA) is the pipeline's ``refine`` stage, on by default for this proposer.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..core.geometry import ObjectCloud
from ..core.rotations import axis_angle_to_matrix, rot6d_to_matrix
from ..hands import get_hand
from ..physics.energy import object_penetration
from ..stages.squeeze import SqueezeConfig, pregrasp_at_start_only
from .base import Capabilities, Problem, Progress, Proposal, finish_grasps, unfinished_grasps

WEIGHTS_ROOT = Path(__file__).resolve().parents[1] / "weights"  # models/weights


def weights_dir(hand: str) -> Path:
    return WEIGHTS_ROOT / f"dgtr_{hand}"


def weights_available(hand: str = "shadow") -> bool:
    d = weights_dir(hand)
    return (d / "model.json").is_file() and ((d / "model.onnx").is_file() or (d / "model.safetensors").is_file())


def serves_by_default(hand: str = "shadow") -> bool:
    """Whether ``method=auto`` should use the shipped DGTR: its weights are present and its model
    card did not withdraw it from the default path (``"serve_by_default": false`` in
    ``model.json``, set when it measured worse than the optimiser preset; ``method=dgtr`` still
    serves it)."""
    if not weights_available(hand):
        return False
    meta = json.loads((weights_dir(hand) / "model.json").read_text())
    return bool(meta.get("serve_by_default", True))


def _rot_z(angle: float) -> Tensor:
    return axis_angle_to_matrix(torch.tensor([0.0, 0.0, 1.0]), torch.tensor(angle))


class DGTRProposer:
    """``dgtr``: one network pass per batch; the service's default while its weights ship."""

    name: ClassVar[str] = "dgtr"
    capabilities: ClassVar[Capabilities] = Capabilities(
        refined_by_default=True,  # AB-TTA is part of DGTR
        # under completion=auto it keeps the observed cloud: with the completion, validation partial
        # views went from 61.3 to 54.4 % sim success (76.3 -> 74.4 % refined)
        grasps_completed_cloud=False,
        # it only gets re-ranked by an instruction (measured top-5 satisfaction 25-39 % against
        # 92.5 % through fast, bench/intent.py --pipeline), so auto sends text queries elsewhere
        follows_instructions=False,
        auto_priority=2,  # above fast: auto serves it whenever its model card allows
    )

    @classmethod
    def serves_by_default(cls, hand: str) -> bool:
        return serves_by_default(hand)

    def __init__(self, hand: str = "shadow", device: str = "cpu", weights: str | Path | None = None, runtime: str = "auto",
                 squeeze: SqueezeConfig | None = None) -> None:
        from ..device import resolve
        from ..learned.dgtr.export import OnnxRunner, TorchRunner

        # the finishing stage's settings (None: its defaults, the pregrasp checked where it starts: the served default's latency)
        self.squeeze = squeeze or pregrasp_at_start_only()
        d = Path(weights) if weights is not None else weights_dir(hand)
        if not (d / "model.json").is_file():
            raise ValueError(
                f"no DGTR weights for hand {hand!r} in {d}; train them with `dexgrasp train dgtr` "
                "and export with `dexgrasp export onnx`, or use method=fast"
            )
        self.meta: dict[str, Any] = json.loads((d / "model.json").read_text())
        from ..learned.dgtr.model import DGTRConfig

        self.model_cfg = DGTRConfig.from_dict(self.meta["model"])
        if self.model_cfg.hand != hand:
            raise ValueError(f"the weights in {d} are for hand {self.model_cfg.hand!r}, not {hand!r}")
        from ..stages.refine import RefineConfig

        # the refinement tuned for these weights (validation split), used by the pipeline's refine stage
        self.refine_config: RefineConfig | None = RefineConfig(**self.meta["refine"]) if "refine" in self.meta else None
        from ..stages.scoring import RankConfig

        # the score weights tuned for these weights' refined grasps (validation split), for the pipeline's ranking
        self.rank_config: RankConfig | None = RankConfig(**self.meta["rank"]) if "rank" in self.meta else None
        ts = resolve(device, "float32")
        self.device = str(ts.device)
        self.hand = get_hand(hand, device=self.device, dtype="float32")
        self.hand_name = hand
        self.version = str(self.meta.get("version", "1"))
        if runtime not in ("auto", "onnx", "torch"):
            raise ValueError(f"runtime must be auto, onnx or torch, got {runtime!r}")
        onnx_path = d / "model.onnx"
        self.runner: Any
        if runtime == "onnx" or (runtime == "auto" and onnx_path.is_file()):
            self.runner = OnnxRunner(onnx_path, self.device)
        else:
            from ..learned.dgtr.weights import load_weights

            self.runner = TorchRunner(load_weights(d), self.device)

    # ------------------------------------------------------------------ inputs
    def inputs(self, problems: list[Problem]) -> tuple[np.ndarray, list[tuple[int, float]]]:
        """Network inputs (K, P, 7) for every (problem, pass) and what each row is."""
        from ..learned.dgtr.model import fixed_size, model_inputs

        n = self.model_cfg.num_points
        rows, owners = [], []
        for i, pr in enumerate(problems):
            # the network was trained on what a camera sees: the observed cloud, not a completed one
            seen_p, seen_n = pr.observed if pr.observed is not None else (pr.points, pr.normals)
            p, nr = fixed_size(seen_p.detach().cpu().float().numpy(), seen_n.detach().cpu().float().numpy(), n, seed=pr.seed)
            pts, nrm = torch.from_numpy(p), torch.from_numpy(nr)
            if pr.plane is None:
                tz = None
            else:
                nz = float(pr.plane.normal.reshape(-1, 3)[0, 2])
                tz = torch.tensor([-float(pr.plane.offset) / max(nz, 1e-3)])
            passes = math.ceil(pr.num_grasps / self.model_cfg.queries)
            for k in range(passes):
                ang = 2 * math.pi * k / passes
                r = _rot_z(ang)
                rows.append(model_inputs((pts @ r.T)[None], (nrm @ r.T)[None], tz)[0])
                owners.append((i, ang))
        return torch.stack(rows).numpy(), owners

    def propose(self, points: Tensor, normals: Tensor, num_grasps: int = 16, plane: Any = None, seed: int = 0, **_: Any) -> Proposal:
        return self.propose_batch([Problem(points, normals, num_grasps, plane, seed)])[0]

    def propose_batch(
        self, problems: list[Problem], time_budget_s: float | None = None, progress: Progress | None = None
    ) -> list[Proposal]:
        """One network call for every problem (``time_budget_s`` is not needed: one pass is the
        whole computation); returns ``num_grasps`` grasps per problem, network order."""
        from ..core.cloud_checks import check_object_cloud

        for pr in problems:
            check_object_cloud(pr.points)
            if pr.num_grasps < 1:
                raise ValueError("num_grasps must be >= 1")
        if not problems:
            return []
        t0 = time.perf_counter()
        x, owners = self.inputs(problems)
        t_net, r6, ju = self.runner(x)
        h = self.hand
        dev = h.ts.device
        out = []
        for i, pr in enumerate(problems):
            rows = [k for k, (o, _) in enumerate(owners) if o == i]
            pos_l, rot_l = [], []
            for k in rows:
                back = _rot_z(-owners[k][1]).to(dev)
                pos_l.append(torch.from_numpy(t_net[k]).to(dev) @ back.T)
                rot_l.append(back @ rot6d_to_matrix(torch.from_numpy(r6[k]).to(dev)))
            q_all = torch.from_numpy(ju[rows].reshape(-1, ju.shape[-1])).to(dev)
            pos = torch.cat(pos_l)[: pr.num_grasps]
            rot = torch.cat(rot_l)[: pr.num_grasps]
            q = h.project_joints(h.lower + q_all[: pr.num_grasps] * (h.upper - h.lower))
            pts = pr.points.to(dev, torch.float32)
            frames = h.forward_kinematics(pos, rot, q)
            pen = object_penetration(h, frames, ObjectCloud(pts, pr.normals.to(dev, torch.float32)))
            scores = [{"energy_pen": float(pen[j])} for j in range(pos.shape[0])]
            if pr.finish:
                grasps = finish_grasps(h, self.hand_name, pos, rot, q, ObjectCloud(pts, pr.normals.to(dev, torch.float32)), scores,
                                       self.squeeze)
            else:
                grasps = unfinished_grasps(self.hand_name, pos, rot, q, scores)
            out.append(Proposal(grasps=grasps, energy={"pen": pen}, valid=pen < 0.02, steps_run=1,
                                      elapsed_s=time.perf_counter() - t0))
        if progress is not None:
            progress(1, 1, 0.0)
        return out


__all__ = ["WEIGHTS_ROOT", "DGTRProposer", "serves_by_default", "weights_available", "weights_dir"]
