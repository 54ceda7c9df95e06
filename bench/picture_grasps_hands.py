"""A picture of several hands grasping the same object: for each grasp file (``dexgrasp optimize --hand ...`` on one
object), the first ``--per-hand`` grasps that hold under the referee of record (``fc_mocap``, each hand's own
actuators), drawn with ``models.tools.pictures.render_grasps`` (the Allegro and LEAP have no visual meshes: their
collision primitives, green), with ``--pregrasp`` the pregrasp semi-transparent, labelled hand, index and verdict.

  .venv/bin/python bench/picture_grasps_hands.py out/allegro_cyl.json out/leap_cyl.json --out docs/example_grasps_allegro_leap.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("grasps", nargs="+", help="grasp set JSON files, one per hand, all on the same object")
    ap.add_argument("--out", default="docs/example_grasps_allegro_leap.png")
    ap.add_argument("--per-hand", type=int, default=2)
    ap.add_argument("--size", type=int, default=420, help="tile width and height (px)")
    ap.add_argument("--pregrasp", action="store_true", help="also draw each grasp's pregrasp, semi-transparent")
    a = ap.parse_args()

    import mujoco
    import numpy as np
    import torch

    from models import objects
    from models.grasp import Grasp, GraspSet, grasps_to_tensors
    from models.tools.pictures import ensure_gl_backend, render_grasps, save_png
    from sim_worker.arrays import GraspArrays
    from sim_worker.cli import load_sim_object
    from sim_worker.config import SimConfig
    from sim_worker.scene import build_scene
    from sim_worker.validate import validate_grasp

    ensure_gl_backend()
    cfg = SimConfig()
    rows = []
    source = None
    for path in a.grasps:
        doc = json.loads(Path(path).read_text())
        gs = GraspSet.model_validate({k: v for k, v in doc.items() if k in ("hand", "frame", "object", "grasps")})
        if source is not None and gs.object != source:
            raise SystemExit(f"{path}: grasps on {gs.object}, the others on {source}")
        source = gs.object
        assert source is not None
        sim_obj = load_sim_object(source)
        sc = build_scene(sim_obj, cfg.physics, hand=gs.hand)
        data = mujoco.MjData(sc.model)
        picked, labels = [], []
        for i, g in enumerate(gs.grasps):
            ga = GraspArrays.from_grasp(g)
            pre = None if ga.pre_position is None else (ga.pre_position, ga.pre_quaternion_wxyz, ga.pre_joints)
            r = validate_grasp(sc, data, ga.position, ga.quaternion_wxyz, ga.joints, ga.squeeze, cfg, pregrasp=pre)
            if r.success:
                picked.append(g)
                labels.append(f"{gs.hand} #{i}: holds (fc_mocap, kp {sc.finger_physics['finger_kp']:g})")
            if len(picked) == a.per_hand:
                break
        print(f"{path}: {gs.hand}, {len(picked)} holding grasps drawn")
        if not picked:
            continue
        pos, rot, q = grasps_to_tensors(picked, dtype=torch.float64)
        pre_pos, pre_rot, pre_q = grasps_to_tensors(
            [Grasp(hand=g.hand, pose=g.pregrasp.pose, joints=g.pregrasp.joints, pregrasp=g.pregrasp) for g in picked],
            dtype=torch.float64)
        mesh = objects.load_mesh(source)
        rows.append(render_grasps(gs.hand, pos, rot, q, mesh=mesh, width=a.size, height=a.size, labels=labels,
                                  pregrasp=(pre_pos, pre_rot, pre_q) if a.pregrasp else None, cols=a.per_hand))
    if not rows:
        raise SystemExit("no holding grasp to draw")
    w = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    print(save_png(np.concatenate(rows, axis=0), a.out))


if __name__ == "__main__":
    main()
