"""A picture of the hands the project describes as data next to the ShadowHand: the Allegro and LEAP hands
(their primitives-only MJCFs, ``models/hands/assets``) in the open pre-shape and the half-closed init pose
of their specs. The collision primitives are drawn as MuJoCo renders them from the palm-rooted MJCF
(``models.hands.hand_mjcf_xml``: grey phalanges, white fingertips), the contact candidates as orange
dots and the spec's approach direction as a blue arrow from ``palm_center``. Two views per pose: into the
palm (from the approach side, a little from the thumb side and above) and from the thumb side.

The hand stands in its palm frame: fingers up (+z), palm facing -y (the approach direction), thumb
towards +x.

  .venv/bin/python bench/picture_hands.py --out docs/example_hands_allegro_leap.png
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# camera positions relative to the hand, as directions from the look-at point (palm frame)
VIEWS = {"into the palm": (0.45, -1.0, 0.35), "thumb side": (1.0, -0.25, 0.25)}
POINT_RGBA = (1.0, 0.45, 0.05, 1.0)
ARROW_RGBA = (0.1, 0.3, 0.95, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/example_hands_allegro_leap.png")
    ap.add_argument("--size", type=int, default=400, help="tile width and height (px)")
    a = ap.parse_args()

    import xml.etree.ElementTree as ET

    import mujoco
    import numpy as np
    import torch
    from PIL import Image, ImageDraw, ImageFont

    from models.hands import get_hand, hand_mjcf_xml
    from models.tools.pictures import ensure_gl_backend, save_png

    ensure_gl_backend()
    try:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.load_default(size=max(12, a.size // 22))
    except TypeError:  # Pillow < 10.1: a fixed-size bitmap font
        font = ImageFont.load_default()
    rows = []
    for name in ("allegro", "leap"):
        h = get_hand(name, dtype="float64")
        root = ET.fromstring(hand_mjcf_xml(h.spec, root="fixed", with_visual=True))
        asset = root.find("asset")
        assert asset is not None
        ET.SubElement(asset, "texture", {"type": "skybox", "builtin": "gradient", "rgb1": "1 1 1",
                                         "rgb2": "0.85 0.87 0.9", "width": "64", "height": "64"})
        vis = ET.SubElement(root, "visual")
        ET.SubElement(vis, "global", {"offwidth": str(a.size), "offheight": str(a.size)})
        ET.SubElement(vis, "headlight", {"ambient": "0.35 0.35 0.35", "diffuse": "0.5 0.5 0.5"})
        wb = root.find("worldbody")
        assert wb is not None
        ET.SubElement(wb, "light", {"directional": "true", "pos": "0 -1 2", "dir": "0.2 0.6 -1", "diffuse": "0.5 0.5 0.5"})
        m = mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"))
        d = mujoco.MjData(m)
        eye = torch.eye(3, dtype=torch.float64)[None]
        zero = torch.zeros(1, 3, dtype=torch.float64)
        tiles = []
        for pose_name in ("open", "init"):
            q = h.open_pose if pose_name == "open" else h.init_pose
            for j, v in zip(h.mj_joint_ids, q.tolist()):
                d.qpos[m.jnt_qposadr[j]] = v
            mujoco.mj_forward(m, d)
            cc = h.contact_candidates(h.forward_kinematics(zero, eye, q[None]))[0].numpy()
            lo = d.geom_xpos.min(axis=0) - 0.02
            hi = d.geom_xpos.max(axis=0) + 0.02
            for view, direction in VIEWS.items():
                cam = mujoco.MjvCamera()
                cam.type = mujoco.mjtCamera.mjCAMERA_FREE
                cam.lookat[:] = 0.5 * (lo + hi)
                back = np.array(direction) / np.linalg.norm(direction)  # from the target towards the camera
                cam.azimuth = math.degrees(math.atan2(-back[1], -back[0]))
                cam.elevation = math.degrees(math.asin(-back[2]))
                cam.distance = 1.25 * float(np.linalg.norm(hi - lo))
                opt = mujoco.MjvOption()
                opt.geomgroup[:] = 1
                with mujoco.Renderer(m, a.size, a.size) as r:
                    r.update_scene(d, camera=cam, scene_option=opt)
                    scn = r.scene
                    for p in cc:
                        mujoco.mjv_initGeom(scn.geoms[scn.ngeom], int(mujoco.mjtGeom.mjGEOM_SPHERE),
                                            np.array([0.0016, 0, 0]), p, np.eye(3).reshape(9), np.array(POINT_RGBA))
                        scn.ngeom += 1
                    c = np.array(h.spec.palm_center)
                    tip = c + 0.06 * np.array(h.spec.approach_direction)
                    mujoco.mjv_initGeom(scn.geoms[scn.ngeom], int(mujoco.mjtGeom.mjGEOM_ARROW), np.zeros(3),
                                        np.zeros(3), np.eye(3).reshape(9), np.array(ARROW_RGBA))
                    mujoco.mjv_connector(scn.geoms[scn.ngeom], int(mujoco.mjtGeom.mjGEOM_ARROW), 0.003, c, tip)
                    scn.ngeom += 1
                    img = Image.fromarray(r.render())
                draw = ImageDraw.Draw(img)
                draw.text((8, 6), f"{name} {pose_name}: {view}", fill=(20, 20, 20), font=font)
                tiles.append(np.asarray(img))
        rows.append(np.concatenate(tiles, axis=1))
    print(save_png(np.concatenate(rows, axis=0), a.out))


if __name__ == "__main__":
    main()
