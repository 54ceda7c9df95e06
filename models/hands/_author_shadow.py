"""Regenerates ``shadow.json`` (run: ``python -m models.hands._author_shadow``).

The point sets are placed by rule on the MJCF's collision capsules/boxes so they
can be audited: contact candidates on the palmar half of each phalanx (fingers
flex towards -y of their link frames, the thumb's middle/distal towards -x) and
on the palmar face of the palm box; penetration keypoints are spheres along each
capsule axis (radius = capsule radius) and a grid inside the palm boxes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

FINGERS = ("ff", "mf", "rf", "lf")
# (radius, half-length) of the collision capsules, centred at z = half-length in the link frame
CAPSULES = {
    "proximal": (0.01, 0.0225),
    "middle": (0.00805, 0.0125),
    "distal": (0.00705, 0.012),
    "thproximal": (0.013, 0.019),
    "thmiddle": (0.011, 0.016),
    "thdistal": (0.00918, 0.013),
}


def _r(v: float) -> float:
    return round(v, 5)


def palmar_arc(radius: float, half: float, palmar: str, n_along: int, tip: bool) -> list[list[float]]:
    pts = []
    for z in [half * 2 * (i + 0.5) / n_along for i in range(n_along)]:
        for a in (-0.5, 0.5):  # +-29 deg around the palmar direction
            s, c = math.sin(a) * radius, math.cos(a) * radius
            p = [s, -c, z] if palmar == "-y" else [-c, s, z]
            pts.append([_r(v) for v in p])
    if tip:  # on the end cap, 45 deg towards the palmar side, and at the very tip
        e = math.sqrt(0.5) * radius
        pts.append([_r(v) for v in ([0, -e, 2 * half + e] if palmar == "-y" else [-e, 0, 2 * half + e])])
        pts.append([0.0, 0.0, _r(2 * half + radius)])
    return pts


def axis_spheres(radius: float, half: float) -> list[list[float]]:
    n = max(2, math.ceil(2 * half / radius) + 1)
    return [[0.0, 0.0, _r(2 * half * i / (n - 1)), radius] for i in range(n)]


def build() -> dict[str, object]:
    joints = [f"{f.upper()}J{k}" for f in ("ff", "mf", "rf") for k in (3, 2, 1, 0)]
    joints += ["LFJ4", "LFJ3", "LFJ2", "LFJ1", "LFJ0", "THJ4", "THJ3", "THJ2", "THJ1", "THJ0"]
    contact: dict[str, list[list[float]]] = {}
    keypts: dict[str, list[list[float]]] = {}
    for f in FINGERS:
        for seg, n_along in (("proximal", 5), ("middle", 5), ("distal", 4)):
            r, h = CAPSULES[seg]
            contact[f"{f}{seg}"] = palmar_arc(r, h, "-y", n_along, tip=seg == "distal")
            keypts[f"{f}{seg}"] = axis_spheres(r, h)
    for seg, n_along in (("thmiddle", 5), ("thdistal", 4)):
        r, h = CAPSULES[seg]
        contact[seg] = palmar_arc(r, h, "-x", n_along, tip=seg == "thdistal")
    for seg in ("thproximal", "thmiddle", "thdistal"):
        keypts[seg] = axis_spheres(*CAPSULES[seg])
    # palm: palmar face (y = -0.0111) of C_palm0 (centre (0.011, 0, 0.038), half (0.032, 0.0111, 0.049))
    contact["palm"] = [[_r(x), -0.0111, _r(z)] for x in (-0.012, 0.004, 0.02, 0.036) for z in (0.0, 0.025, 0.05, 0.075)]
    palm_kp = [
        [_r(x), 0.0, _r(z), 0.0111]
        for x in (-0.01, 0.006, 0.022, 0.038)
        for z in (0.0, 0.016, 0.032, 0.048, 0.064, 0.08)
    ]
    palm_kp += [[-0.032, 0.0, _r(z), 0.0111] for z in (-0.005, 0.014, 0.033)]
    keypts["palm"] = palm_kp
    keypts["lfmetacarpal"] = [[-0.0165, 0.0, _r(z), 0.0095] for z in (-0.008, 0.01, 0.028)]

    open_pose = dict.fromkeys(joints, 0.0)
    init_pose = dict.fromkeys(joints, 0.0)
    for f in ("FF", "MF", "RF", "LF"):
        init_pose[f"{f}J2"] = 0.3
        init_pose[f"{f}J1"] = 0.3
        init_pose[f"{f}J0"] = 0.3
    init_pose.update({"LFJ4": 0.1, "THJ4": 0.6, "THJ3": 0.8, "THJ2": 0.0, "THJ1": 0.2, "THJ0": -0.2})
    return {
        "name": "shadow",
        "description": "Shadow Dexterous Hand (OpenAI/gymnasium-robotics MJCF), palm-rooted, wrist held at 0.",
        "mjcf": {
            "package": "gymnasium_robotics",
            "dir": "envs/assets/hand",
            "robot": "robot.xml",
            "shared": "shared.xml",
            "assets": "shared_asset.xml",
            "meshdir": "../stls/hand",
            "root_body": "robot0:palm",
            "name_prefix": "robot0:",
            "drop_joints": ["robot0:WRJ1", "robot0:WRJ0"],
        },
        "joints": joints,
        "collision_geoms": ["C_palm0", "C_palm1", "C_lfmetacarpal"]
        + [f"C_{f}{s}" for f in FINGERS for s in ("proximal", "middle", "distal")]
        + ["C_thproximal", "C_thmiddle", "C_thdistal"],
        "contact_candidates": contact,
        "penetration_keypoints": keypts,
        "open_pose": open_pose,
        "init_pose": init_pose,
        "approach_direction": [0.0, -1.0, 0.0],
        "palm_center": [0.011, -0.0111, 0.04],
        "coupling_tendons": ["T_FFJ1c", "T_MFJ1c", "T_RFJ1c", "T_LFJ1c"],
        "coupling_note": (
            "J1 and J0 of FF/MF/RF/LF are coupled by the MJCF's fixed tendon T_xFJ1c: "
            "0.00705*J0 - 0.00805*J1 in [-0.001, 0.001] (J0 ~= 1.14*J1 +- 0.14 rad). Grasps carry all 22 "
            "joints; generation keeps them inside that band (a hinge energy from the same tendon data, and "
            "a projection); simulation drives the 20 MJCF actuators (J1 actuated, J0 follows the tendon)."
        ),
        "self_collision_ignore": [],
        # the referee of record's finger actuation (models.hands.spec.HandSim; N m / rad, N m, N m s / rad, kg m^2, N m)
        "sim": {
            "finger_kp": 5.0, "finger_force_limit": 3.0, "joint_damping": 0.05, "joint_armature": 0.0002,
            "joint_frictionloss": 0.01,
            "note": (
                "The referee of record's ShadowHand (DexGraspBench at commit 1e7a5a6; ../shared/docs/referee.md, "
                "docs/simulation.md): position actuators kp 5 N m/rad, force range +-3 N m, joint damping 0.05 N m s/rad, "
                "armature 2e-4 kg m^2, frictionloss 0.01 N m; the distal J1/J0 pairs driven by one actuator on their sum "
                "(PhysicsConfig.distal_drive). The values every referee figure for this hand was measured with."
            ),
        },
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("shadow.json")
    out.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {out}")
