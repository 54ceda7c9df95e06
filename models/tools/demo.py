"""Foundation demo: a short energy descent on one object, then metrics and a picture.

This is not the synthesis engine (that is the optimiser proposer); it exists to
exercise kinematics, energies, metrics and rendering end to end from one
command, and to give ``make serve`` something real to run until the HTTP
service lands.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..core.geometry import ObjectCloud
from ..core.rotations import matrix_to_rot6d, rot6d_to_matrix
from ..grasp import GraspSet, make_grasp
from ..hands import get_hand
from ..physics.energy import EnergyWeights, grasp_energy
from ..physics.init_poses import palm_placements


def descend(
    hand_name: str,
    obj: ObjectCloud,
    num_grasps: int,
    steps: int,
    seed: int,
    num_contacts: int = 4,
    lr: float = 2e-3,
    progress: bool = True,
    contact_links: tuple[str, ...] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Adam on the synthesis energy from palm placements around the cloud; contacts are drawn from
    the candidates of ``contact_links`` (all links when None)."""
    hand = get_hand(hand_name, dtype="float32")
    gen = torch.Generator().manual_seed(seed)
    pos0, rot0 = palm_placements(hand, obj.points, num_grasps, generator=gen)
    pos = pos0.clone().requires_grad_(True)
    r6 = matrix_to_rot6d(rot0).clone().requires_grad_(True)
    q = hand.init_pose.expand(num_grasps, -1).clone().requires_grad_(True)
    if contact_links is None:
        pool = torch.arange(hand.contact_link.shape[0])
    else:
        wanted = [hand.link_names.index(n) for n in contact_links]
        pool = torch.nonzero(torch.isin(hand.contact_link, torch.tensor(wanted)))[:, 0]
    contacts = pool[torch.randint(len(pool), (num_grasps, num_contacts), generator=gen)]
    opt = torch.optim.Adam([pos, r6, q], lr=lr)
    weights = EnergyWeights()
    it = tqdm(range(steps), desc="descent", disable=not progress)
    for step in it:
        terms = grasp_energy(hand, pos, rot6d_to_matrix(r6), q, contacts, obj, weights=weights)
        opt.zero_grad()
        terms["total"].sum().backward()  # type: ignore[no-untyped-call]
        opt.step()
        with torch.no_grad():
            q.copy_(hand.project_joints(q))
            if step % 50 == 49:  # resample one contact per grasp to escape bad assignments
                k = torch.randint(num_contacts, (num_grasps,), generator=gen)
                contacts[torch.arange(num_grasps), k] = pool[torch.randint(len(pool), (num_grasps,), generator=gen)]
        if step % 20 == 0:
            it.set_postfix(E=float(terms["total"].detach().mean()))
    with torch.no_grad():
        terms = grasp_energy(hand, pos, rot6d_to_matrix(r6), q, contacts, obj, weights=weights)
    return pos.detach(), rot6d_to_matrix(r6).detach(), q.detach(), {k: v.detach() for k, v in terms.items()}


def run_demo(
    out: Path, object_id: str | None = None, num_grasps: int = 16, steps: int = 300, seed: int = 0
) -> dict[str, Any]:
    from .. import objects
    from ..physics.diversity import diversity
    from ..physics.quality import grasp_quality, summarize
    from .pictures import render_grasps, save_png

    out.mkdir(parents=True, exist_ok=True)
    if object_id is None:
        object_id = next(e.id for e in objects.objects("validation") if "cylinder" in e.id)
    mesh = objects.load_mesh(object_id)
    pts, nrm = objects.complete_cloud(mesh, n=2048, seed=seed)
    obj = ObjectCloud(torch.as_tensor(pts, dtype=torch.float32), torch.as_tensor(nrm, dtype=torch.float32))
    t0 = time.perf_counter()
    pos, rot, q, terms = descend("shadow", obj, num_grasps, steps, seed)
    elapsed = time.perf_counter() - t0
    hand = get_hand("shadow", dtype="float64")
    dense_p, dense_n = objects.complete_cloud(mesh, n=20000, seed=seed + 1)
    surface = ObjectCloud(
        torch.as_tensor(dense_p, dtype=torch.float64), torch.as_tensor(dense_n, dtype=torch.float64)
    )
    per = grasp_quality(hand, pos.double(), rot.double(), q.double(), surface)
    summary: dict[str, Any] = {k: float(v) for k, v in summarize(per).items()}
    summary.update(
        {
            k: float(v)
            for k, v in diversity(hand, pos.double(), rot.double(), q.double(), surface.points.mean(0)).items()
        }
    )
    order = torch.argsort(terms["total"])
    grasps = []
    for i in order.tolist():
        pre_pos = pos[i] - rot[i] @ hand.approach_direction.float() * 0.1
        grasps.append(
            make_grasp(
                "shadow",
                rot[i],
                pos[i],
                q[i],
                rot[i],
                pre_pos,
                hand.open_pose.float(),
                scores={
                    "energy": float(terms["total"][i]),
                    "q1": float(per["q1"][i]),
                    "max_penetration_m": float(per["max_penetration_m"][i]),
                },
            )
        )
    gs = GraspSet(hand="shadow", frame="object", grasps=grasps, object=object_id)
    (out / "grasps.json").write_text(gs.model_dump_json(indent=1))
    top = order[:4]
    img = render_grasps(
        "shadow",
        pos[top].double(),
        rot[top].double(),
        q[top].double(),
        mesh=mesh,
        labels=[f"E={float(terms['total'][i]):.3f} Q1={float(per['q1'][i]):.3f}" for i in top.tolist()],
    )
    save_png(img, out / "grasps.png")
    summary.update(
        {
            "object": object_id,
            "num_grasps": num_grasps,
            "steps": steps,
            "descent_s": round(elapsed, 2),
            "files": [str(out / "grasps.json"), str(out / "grasps.png")],
        }
    )
    (out / "metrics.json").write_text(json.dumps(summary, indent=1))
    return summary
