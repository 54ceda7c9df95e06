"""Regenerate the simulator trust-check grasps in ``tests/data/sim/`` (known-good grasps).

Run: ``.venv/bin/python bench/make_trust_grasps.py``. For a cylinder (power grasp, all contact
links) and a small box (pinch: thumb and index distal only), run the foundation descent, keep the
grasps the MuJoCo six-direction test passes robustly (also with the palm moved 1 mm along each
axis), and write the best few with the primitive's size.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
import trimesh

from models.core.geometry import ObjectCloud
from models.grasp import GraspSet, make_grasp
from models.hands import get_hand
from models.tools.demo import descend
from sim_worker.arrays import GraspArrays
from sim_worker.config import SimConfig
from sim_worker.scene import object_from_primitive
from sim_worker.validate import validate_grasp

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "sim"
CASES = {
    # name: (primitive, MuJoCo size, trimesh builder, contact links, grasps to try)
    "cylinder_power": ("cylinder", (0.03, 0.05), lambda: trimesh.creation.cylinder(0.03, 0.1, sections=64), None),
    "box_pinch": ("box", (0.015, 0.015, 0.015), lambda: trimesh.creation.box((0.03, 0.03, 0.03)), ("thdistal", "ffdistal")),
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    hand = get_hand("shadow", dtype="float64")
    cfg = SimConfig()
    for name, (kind, size, builder, links) in CASES.items():
        mesh = builder()
        pts, idx = trimesh.sample.sample_surface_even(mesh, 3000, seed=0)
        cloud = ObjectCloud(torch.tensor(pts, dtype=torch.float32), torch.tensor(mesh.face_normals[idx], dtype=torch.float32))
        pos, rot, q, terms = descend("shadow", cloud, 48, 400, seed=1, contact_links=links, num_contacts=4 if links is None else 2)
        sim_obj = object_from_primitive(kind, size)  # type: ignore[arg-type]
        from sim_worker.backends.mujoco_backend import MujocoBackend

        be = MujocoBackend()
        sc, data = be.scene(sim_obj, cfg, "shadow", None, (0.0, 0.0, 0.0))
        keep = []
        for i in torch.argsort(terms["total"]).tolist():
            g = make_grasp("shadow", rot[i], pos[i], q[i], rot[i], pos[i] - rot[i] @ hand.approach_direction.float() * 0.1,
                           hand.open_pose.float(), scores={"energy": float(terms["total"][i])})
            # validate what the file will hold (after the JSON round trip), and demand robustness:
            # the grasp must also pass with the palm shifted by 1 mm along each axis
            ga = GraspArrays.from_grasp(type(g).model_validate_json(g.model_dump_json()))
            shifts = [np.zeros(3)] + [s * 0.001 * e for e in np.eye(3) for s in (1, -1)]
            if all(
                validate_grasp(sc, data, ga.position + d, ga.quaternion_wxyz, ga.joints, None, cfg).success
                for d in shifts
            ):
                keep.append(g)
            if len(keep) == 3:
                break
        print(f"{name}: {len(keep)} validated grasps")
        gs = GraspSet(hand="shadow", frame="object", grasps=keep, object=f"primitive:{kind}:{','.join(map(str, size))}")
        doc = json.loads(gs.model_dump_json())
        doc["primitive"] = {"kind": kind, "size": list(size)}
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
