"""Regenerate the referee's trust grasps for the Allegro and LEAP hands (``tests/data/sim/<hand>_box.json``).

Run: ``.venv/bin/python bench/make_hand_trust_grasps.py [--hands allegro leap] [--seed 0]``. The object is the
objects registry's ``prim/box/0006`` (10.8 x 10.0 x 3.7 cm) simulated as the exact MuJoCo box of the same size.
The optimiser (``optimize``, fixed seed, no check, one round) proposes grasps on the registry's 1 024-point complete
cloud of it; the referee of record (``fc_mocap``, each hand's own actuation from its spec's ``sim`` block) keeps the
ones that hold, and of those the ones that also hold with the palm moved 1 mm along each axis (robust to the
numerics of another machine); the first ``--keep`` of them are written with the primitive's size. The test that
reads them: ``tests/sim_worker/test_referee_hands.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from models import objects
from models.grasp import GraspSet
from models.proposers import get_proposer
from models.proposers.optimize import OptimizeConfig
from sim_worker.arrays import GraspArrays
from sim_worker.config import SimConfig
from sim_worker.scene import build_scene, object_from_primitive
from sim_worker.validate import validate_grasp

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "sim"
OBJECT = "prim/box/0006"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hands", nargs="+", default=["allegro", "leap"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grasps", type=int, default=8, help="grasps the optimiser returns")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--keep", type=int, default=2)
    a = ap.parse_args()
    import mujoco

    mesh = objects.load_mesh(OBJECT)
    half = tuple(round(float(x) / 2, 7) for x in mesh.extents)
    sim_obj = object_from_primitive("box", half)
    p, n = objects.complete_cloud(mesh, n=1024, seed=0)
    cfg = SimConfig()
    for hand in a.hands:
        t0 = time.perf_counter()
        prop = get_proposer("optimize", hand=hand, cfg=OptimizeConfig(steps=a.steps, extra_rounds=0))
        res = prop.propose(torch.tensor(p), torch.tensor(n), a.grasps, seed=a.seed)
        sc = build_scene(sim_obj, cfg.physics, hand=hand)
        data = mujoco.MjData(sc.model)
        keep, held = [], 0
        for g in res.grasps:
            # what the file will hold (after the JSON round trip), robust to a 1 mm shift of the whole path
            ga = GraspArrays.from_grasp(type(g).model_validate_json(g.model_dump_json()))
            assert ga.pre_position is not None and ga.pre_quaternion_wxyz is not None and ga.pre_joints is not None
            shifts = [np.zeros(3)] + [s * 0.001 * e for e in np.eye(3) for s in (1, -1)]
            ok = [validate_grasp(sc, data, ga.position + d, ga.quaternion_wxyz, ga.joints, ga.squeeze, cfg,
                                 pregrasp=(ga.pre_position + d, ga.pre_quaternion_wxyz, ga.pre_joints)).success
                  for d in shifts]
            held += ok[0]
            if all(ok) and len(keep) < a.keep:
                keep.append(g)
        print(f"{hand}: {held} of {len(res.grasps)} hold, {len(keep)} kept (robust to 1 mm); "
              f"{time.perf_counter() - t0:.0f} s")
        if not keep:
            continue
        gs = GraspSet(hand=hand, frame="object", grasps=keep, object=f"primitive:box:{','.join(map(str, half))}")
        doc = json.loads(gs.model_dump_json())
        doc["primitive"] = {"kind": "box", "size": list(half)}
        doc["made_by"] = (f"bench/make_hand_trust_grasps.py --seed {a.seed} --grasps {a.grasps} --steps {a.steps}: optimize "
                          f"{prop.version} on {OBJECT}'s 1024-point complete cloud")
        (OUT / f"{hand}_box.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
