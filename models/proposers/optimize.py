"""The ``optimize`` proposer: DexGraspNet-style annealed optimisation of the synthesis energy.

Per grasp: palm placements from an inflated hull of the cloud (palm facing the object, jittered
cone, random roll), fingers in the spec's half-closed pre-shape with a truncated-normal jitter;
then ``steps`` iterations of an RMSProp-normalised gradient step on pose and joints, with each
grasp's active contacts resampled (probability ``switch_prob``) and the proposal accepted by the
Metropolis rule at a temperature that decays geometrically. The best state seen per grasp is kept,
so a time budget can stop early and still return the best so far. Batched over grasps; CPU or CUDA;
deterministic for a seed on one device.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..cloud_checks import check_object_cloud
from ..device import resolve
from ..energy import EnergyWeights, ObjectCloud, SupportPlane, grasp_energy
from ..grasp import Grasp, make_grasp
from ..hands import get_hand
from ..hands.model import HandModel
from ..init_poses import palm_placements
from ..rotations import matrix_to_rot6d, rot6d_to_matrix

Progress = Callable[[int, int, float], None]  # (step, steps, mean energy)


@dataclass(frozen=True)
class OptimizeConfig:
    """Every knob of the optimiser; units in the comments."""

    steps: int = 400  # annealing iterations
    num_contacts: int = 8  # active contact candidates per grasp (4 as in DexGraspNet: 11% sim success vs 38%)
    step_size: float = 0.005  # initial normalised step (m for translation, rad for joints)
    step_decay: float = 0.95  # multiplied every ``decay_every`` steps
    decay_every: int = 50
    ema: float = 0.98  # RMSProp average of squared gradients
    switch_prob: float = 0.5  # chance per grasp and step to resample one active contact
    temperature: float = 18.0  # Metropolis start temperature (energy units)
    temperature_decay: float = 0.95  # per ``temperature_every`` steps
    temperature_every: int = 30
    standoff_m: float = 0.02  # initial palm-centre distance outside the cloud
    cone_deg: float = 30.0  # jitter of the approach direction
    joint_jitter: float = 0.1  # truncated-normal std of initial joints, as a share of each range
    min_elevation_deg: float = -20.0  # with a table: palm directions no lower than this above the table
    squeeze_rad: float = 0.2  # squeeze target = joints + this in each closing direction (0.08: 38%, 0.15: 58%, 0.25: 68% sim success)
    pregrasp_back_m: float = 0.08  # pre-grasp palm backed off along the approach (grown until clear)
    oversample: float = 1.0  # optimise ceil(oversample * num_grasps) candidates, return the best num_grasps
    max_pen_rank: float = 0.002  # ranking: candidates with E_pen (m, summed depths) above this go last
    weights: EnergyWeights = field(default_factory=EnergyWeights)
    # acceptance filter (DexGraspNet's thresholds, our units)
    max_fc: float = 0.3
    max_dis: float = 0.02  # sum over the contacts of |distance| (m)
    max_pen: float = 0.02  # sum of object-point depths inside the hand (m)


@dataclass
class OptimizeResult:
    grasps: list[Grasp]
    energy: dict[str, Tensor]  # per returned grasp, every term
    valid: Tensor  # (B,) bool: passed the energy filter
    steps_run: int
    elapsed_s: float


def _closing_direction(hand: HandModel) -> Tensor:
    return torch.sign(hand.init_pose - hand.open_pose)


class OptimizeProposer:
    name = "optimize"
    version = "0.1.0"

    def __init__(self, hand: str = "shadow", device: str = "cpu", cfg: OptimizeConfig | None = None) -> None:
        ts = resolve(device, "float32")
        self.hand = get_hand(hand, device=str(ts.device), dtype="float32")
        self.hand_name = hand
        self.cfg = cfg or OptimizeConfig()

    def propose(
        self,
        points: Tensor,
        normals: Tensor,
        num_grasps: int = 16,
        plane: SupportPlane | None = None,
        seed: int = 0,
        time_budget_s: float | None = None,
        progress: Progress | None = None,
    ) -> OptimizeResult:
        """Optimise ``num_grasps`` grasps on a cloud (points and outward normals, (N,3)), frame as given."""
        check_object_cloud(points)
        if normals.shape != points.shape or not torch.isfinite(normals).all():
            raise ValueError("normals must be finite and shaped like the points")
        if num_grasps < 1:
            raise ValueError("num_grasps must be >= 1")
        t0 = time.perf_counter()
        h, cfg = self.hand, self.cfg
        wanted = num_grasps
        num_grasps = max(wanted, math.ceil(cfg.oversample * wanted))
        dev, dt = h.ts.device, h.ts.dtype
        obj = ObjectCloud(points.to(dev, dt), torch.nn.functional.normalize(normals.to(dev, dt), dim=-1))
        gen = torch.Generator().manual_seed(seed)
        up = None if plane is None else plane.normal.to(dev, dt)
        pos, rot = palm_placements(
            h, obj.points.cpu(), num_grasps, standoff_m=cfg.standoff_m, cone_deg=cfg.cone_deg,
            up=None if up is None else up.cpu(), min_elevation_deg=cfg.min_elevation_deg, generator=gen,
        )
        pos, rot = pos.to(dev, dt), rot.to(dev, dt)
        span = (h.upper - h.lower).cpu()
        jit = torch.randn(num_grasps, h.num_joints, generator=gen, dtype=torch.float32).clamp(-2, 2)
        q = h.project_joints((h.init_pose.cpu() + jit * cfg.joint_jitter * span).to(dev, dt))
        n_cand = h.contact_link.shape[0]
        contacts = torch.randint(n_cand, (num_grasps, cfg.num_contacts), generator=gen).to(dev)
        plane_d = None if plane is None else SupportPlane(plane.normal.to(dev, dt), plane.offset)

        x = torch.cat([pos, matrix_to_rot6d(rot), q], dim=-1)

        def energy(xx: Tensor, cc: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
            xx = xx.detach().requires_grad_(True)
            terms = grasp_energy(h, xx[:, :3], rot6d_to_matrix(xx[:, 3:9]), xx[:, 9:], cc, obj, plane_d, cfg.weights)
            (g,) = torch.autograd.grad(terms["total"].sum(), xx)
            return terms["total"].detach(), g, {k: v.detach() for k, v in terms.items()}

        e, grad, _ = energy(x, contacts)
        ema = grad * grad
        best_x, best_c, best_e = x.clone(), contacts.clone(), e.clone()
        steps_run = 0
        for step in range(cfg.steps):
            # the budget is checked between steps; at least one step always runs
            if step > 0 and time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                break
            lr = cfg.step_size * cfg.step_decay ** (step // cfg.decay_every)
            temp = cfg.temperature * cfg.temperature_decay ** (step / cfg.temperature_every)
            ema = cfg.ema * ema + (1 - cfg.ema) * grad * grad
            x_new = x - lr * grad / (ema.sqrt() + 1e-6)
            x_new[:, 9:] = h.project_joints(x_new[:, 9:])
            c_new = contacts.clone()
            switch = torch.rand(num_grasps, generator=gen) < cfg.switch_prob
            which = torch.randint(cfg.num_contacts, (num_grasps,), generator=gen)
            new_idx = torch.randint(n_cand, (num_grasps,), generator=gen)
            rows = torch.nonzero(switch)[:, 0]
            c_new[rows.to(dev), which[rows].to(dev)] = new_idx[rows].to(dev)
            e_new, g_new, _ = energy(x_new, c_new)
            u = torch.rand(num_grasps, generator=gen).to(dev, dt)
            accept = u < torch.exp(((e - e_new) / temp).clamp(max=0.0))
            a = accept[:, None]
            x = torch.where(a, x_new, x)
            grad = torch.where(a, g_new, grad)
            contacts = torch.where(a, c_new, contacts)
            e = torch.where(accept, e_new, e)
            better = e < best_e
            best_x = torch.where(better[:, None], x, best_x)
            best_c = torch.where(better[:, None], contacts, best_c)
            best_e = torch.where(better, e, best_e)
            steps_run = step + 1
            if progress is not None and (step % 10 == 0 or step == cfg.steps - 1):
                progress(steps_run, cfg.steps, float(e.mean()))
        _, _, terms = energy(best_x, best_c)
        valid = (terms["fc"] < cfg.max_fc) & (terms["dis"] < cfg.max_dis) & (terms["pen"] < cfg.max_pen)
        if "table" in terms:
            valid &= terms["table"] < 0.01
        # rank: no noticeable penetration first, then the energy filter, then energy
        key = terms["total"] + (~valid).to(dt) * 1e3 + (terms["pen"] > cfg.max_pen_rank).to(dt) * 1e6
        order = torch.argsort(key)[:wanted].tolist()
        best_x, terms, valid = best_x[order], {k: v[order] for k, v in terms.items()}, valid[order]
        grasps = self._to_grasps(best_x, terms, obj, plane_d)
        order = list(range(wanted))
        return OptimizeResult(
            grasps=[grasps[i] for i in order],
            energy={k: v[order] for k, v in terms.items()},
            valid=valid[order],
            steps_run=steps_run,
            elapsed_s=time.perf_counter() - t0,
        )

    def _to_grasps(self, x: Tensor, terms: dict[str, Tensor], obj: ObjectCloud, plane: SupportPlane | None) -> list[Grasp]:
        h, cfg = self.hand, self.cfg
        pos, rot, q = x[:, :3], rot6d_to_matrix(x[:, 3:9]), h.project_joints(x[:, 9:])
        squeeze = h.project_joints(q + cfg.squeeze_rad * _closing_direction(h))
        approach = (rot @ h.approach_direction)  # (B, 3) palm normal towards the object
        open_q = h.open_pose.expand_as(q)
        back = torch.full((x.shape[0],), cfg.pregrasp_back_m, device=x.device, dtype=x.dtype)
        # grow the back-off until the open hand clears the object by 1 cm (and the table)
        for _ in range(6):
            pre_pos = pos - approach * back[:, None]
            frames = h.forward_kinematics(pre_pos, rot, open_q)
            clear = h.signed_distance(frames, obj.points.expand(x.shape[0], -1, -1)).min(dim=1).values > 0.01
            if plane is not None:
                c, r = h.penetration_keypoints(frames)
                clear &= ((c @ plane.normal + plane.offset) - r).min(dim=1).values > 0.0
            if bool(clear.all()):
                break
            back = torch.where(clear, back, back + 0.03)
        out = []
        for i in range(x.shape[0]):
            scores = {f"energy_{k}": float(v[i]) for k, v in terms.items() if k != "total"}
            scores["energy"] = float(terms["total"][i])
            out.append(make_grasp(self.hand_name, rot[i], pos[i], q[i], rot[i], pre_pos[i], open_q[i], scores, squeeze[i]))
        return out


def _demo() -> None:  # pragma: no cover - manual check
    import trimesh

    mesh = trimesh.creation.cylinder(0.03, 0.1, sections=64)
    pts, idx = trimesh.sample.sample_surface_even(mesh, 2048, seed=0)
    p = OptimizeProposer()
    res = p.propose(torch.tensor(pts, dtype=torch.float32), torch.tensor(mesh.face_normals[idx], dtype=torch.float32), 16)
    print(res.steps_run, round(res.elapsed_s, 1), int(res.valid.sum()))


if __name__ == "__main__":  # pragma: no cover
    _demo()
