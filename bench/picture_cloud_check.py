"""A picture of the referee's protocol on the cloud (``sim_worker.cloud_check``) beside the referee of record:
two validation candidates of ``optimize`` (round 0, as ``bench/proxy_referee.py`` draws them), each at the
pregrasp and after the squeeze, on the object's mesh (top) and on the proxy built from its 1 024-point cloud
(bottom). The mug's candidate has a high Q1 and is flicked in both; the bottle's holds in both.

  .venv/bin/python bench/picture_cloud_check.py --out docs/example_cloud_check.png
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = [("comp/mug/0000", 11), ("comp/bottle/0002", 9)]  # (object, candidate index in round 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/example_cloud_check.png")
    a = ap.parse_args()

    import mujoco
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from models import objects
    from models.proposers import get_proposer
    from models.proposers.base import Problem
    from models.proposers.optimize import OptimizeConfig
    from models.tools.pictures import ensure_gl_backend
    from sim_worker.arrays import GraspArrays
    from sim_worker.config import SimConfig
    from sim_worker.scene import build_scene, object_from_cloud, object_from_mesh
    from sim_worker.validate import _displacement, _drive, set_hand

    ensure_gl_backend()
    cfg = SimConfig()
    v = cfg.validation
    prop = get_proposer("optimize", cfg=OptimizeConfig(steps=200, extra_rounds=0))
    tiles = []
    for oid, k in CASES:
        mesh = objects.load_mesh(oid)
        p, n = objects.complete_cloud(mesh, n=1024, seed=0)
        pool = prop._round([Problem(torch.tensor(p), torch.tensor(n), 16, None, 0, single_view=False)], None, None, time.perf_counter())[0][0]
        g = GraspArrays.from_grasp(pool.grasps[k])
        q1 = float(pool.q1[k]) if pool.q1 is not None else float("nan")
        for name, obj in (("mesh (referee of record)", object_from_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), source=oid)),
                          ("cloud proxy (the check)", object_from_cloud(p, n))):
            sc = build_scene(obj, cfg.physics)
            data = mujoco.MjData(sc.model)
            r = mujoco.Renderer(sc.model, 300, 300)
            cam = mujoco.MjvCamera()
            cam.type = mujoco.mjtCamera.mjCAMERA_FREE
            cam.lookat[:] = p.mean(0)
            cam.distance, cam.azimuth, cam.elevation = 0.38, 135.0, -25.0
            opt = mujoco.MjvOption()
            opt.geomgroup[2] = 1
            opt.geomgroup[4] = 1
            assert g.pre_position is not None and g.pre_quaternion_wxyz is not None and g.pre_joints is not None and g.squeeze is not None
            mujoco.mj_resetData(sc.model, data)
            set_hand(sc, data, g.pre_position, g.pre_quaternion_wxyz, g.pre_joints)
            mujoco.mj_forward(sc.model, data)
            p0, q0 = data.qpos[sc.object_qpos:sc.object_qpos + 3].copy(), np.array([1.0, 0, 0, 0])
            r.update_scene(data, cam, opt)
            before = Image.fromarray(r.render())
            _drive(sc, data, g.pre_position, g.pre_quaternion_wxyz, g.pre_joints, g.position, g.quaternion_wxyz, g.joints, v.approach_s, v.waypoints)
            _drive(sc, data, g.position, g.quaternion_wxyz, g.joints, g.position, g.quaternion_wxyz, g.squeeze, v.squeeze_s, v.waypoints)
            moved, turned = _displacement(sc, data, p0, q0)
            r.update_scene(data, cam, opt)
            after = Image.fromarray(r.render())
            r.close()
            for im, label in ((before, "pregrasp"), (after, f"after the squeeze: moved {moved * 100:.1f} cm, {turned:.0f} deg")):
                d = ImageDraw.Draw(im)
                d.text((6, 4), f"{oid} #{k} (Q1 {q1:.2f})", fill=(255, 255, 255))
                d.text((6, 16), name, fill=(255, 255, 255))
                d.text((6, 284), label, fill=(255, 255, 255))
            tiles.append([before, after])
    # columns: per case, pregrasp and after the squeeze; rows: mesh, proxy
    w = 300
    sheet = Image.new("RGB", (4 * w, 2 * w), "white")
    for c in range(len(CASES)):
        for row in range(2):
            b, af = tiles[2 * c + row]
            sheet.paste(b, ((2 * c) * w, row * w))
            sheet.paste(af, ((2 * c + 1) * w, row * w))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(a.out)
    print(a.out)


if __name__ == "__main__":
    main()
