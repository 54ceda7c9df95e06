"""Regenerates ``allegro.json`` and ``leap.json`` (run: ``python -m models.hands._author_allegro_leap``).

Both hands are the project's own primitives-only MJCFs (``assets/<hand>/<hand>.xml``); the point
sets are placed by rule on the boxes and capsules read from the compiled MJCF, so they follow the
geometry and can be audited:

* contact candidates: on the palmar side of each phalanx (``HandDef.palmar``: -y of every Allegro
  link and of the LEAP fingers, +z of the LEAP thumb links, whose flexion curls them towards +z)
  and of the palm: a grid of cell centres on the box face that looks that way, and on capsules two
  rows +-29 deg around the palmar direction plus, on fingertips, a point 45 deg towards the pad
  on the end cap and the very tip. A point buried inside another primitive of the hand in the
  open pose is dropped.
* penetration keypoints: spheres inscribed in each primitive, centres along its axis (capsules,
  radius = capsule radius) or on a grid over a box's long axes (radius = its smallest half-extent,
  spacing at most 1.5 radii); primitives thinner than ``MIN_KEYPOINT_RADIUS`` (plates) get none.
* ``self_collision_ignore``: the MJCF's own ``<exclude>`` pairs that are not parent and child.

Neither hand has coupled joints: every joint has its own position actuator. Both specs say
``"served": false``: ``load_spec`` / ``get_hand`` load them, ``available_hands`` (what the service plans
for) leaves them out until the whole pipeline (refinement, learned proposers, intents, the API) handles
hands other than the ShadowHand; the optimiser, the squeeze and the referee do (issue 17).

* ``closing_direction``: +1 on the flexion joints (MCP, PIP, DIP; the thumb's MCP and IP, which bend it
  towards the fingertips), 0 on the sideways ones: the fingers' abduction / rotation and the thumb's
  opposition swing and axial rotation (``th_cmc``, ``th_rot``), which move the thumb tip across the palm
  (measured at the init pose: 0.06-0.10 m/rad along -x, 0.0-0.3 of it towards the fingertips), so a
  blanket squeeze must not push them nor a pregrasp mirror them. ``sign(init - open)``, the
  ShadowHand's rule, would say +1 for both.
* ``sim``: the hand's actuation in the referee of record (``HandDef.sim``; its note says why).
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np
from numpy.typing import NDArray

HERE = Path(__file__).parent
F64 = NDArray[np.float64]

GRID_STEP = 0.009  # spacing of contact candidates along a phalanx face (m)
GRID_STEP_ACROSS = 0.013  # across a phalanx: two columns on a 27.5 mm wide Allegro link
PALM_STEP = 0.022  # on the palm, both ways (about the density of the ShadowHand's palm candidates)
SPHERE_STEP = 1.5  # penetration keypoints on a box: centre spacing at most this many radii
MIN_KEYPOINT_RADIUS = 0.004  # thinner primitives carry no penetration keypoints (m)
ARC = 0.5  # contact rows on a capsule: +-0.5 rad (29 deg) around the palmar direction


@dataclass(frozen=True)
class HandDef:
    name: str
    description: str
    joints: tuple[str, ...]
    palmar: dict[str, tuple[float, float, float]]  # link -> palmar direction, link frame; links with candidates
    open_pose: dict[str, float]
    init_pose: dict[str, float]
    palm_center: tuple[float, float, float]
    closing: dict[str, float]  # joint -> +1 / -1 / 0, every joint
    sim: dict[str, object]  # the referee's finger actuation (models.hands.spec.HandSim)
    approach_direction: tuple[float, float, float] = (0.0, -1.0, 0.0)
    extra: dict[str, object] = field(default_factory=dict)


def _r(v: float) -> float:
    return round(float(v), 5)


def _pt(p: F64) -> list[float]:
    return [_r(v) for v in p]


def mjcf_path(name: str) -> Path:
    return HERE / "assets" / name / f"{name}.xml"


def _box_face_grid(size: F64, pos: F64, rot: F64, palmar: F64, step: float, step_across: float) -> list[F64]:
    """Points on the face of a box (half ``size``, pose ``pos``/``rot`` in the link frame) whose outward
    normal is closest to ``palmar``; none if no face looks within 25 deg of it."""
    local = rot.T @ palmar
    k = int(np.argmax(np.abs(local)))
    if abs(local[k]) < math.cos(math.radians(25)):
        return []
    sign = 1.0 if local[k] > 0 else -1.0
    u_axis, v_axis = [a for a in range(3) if a != k]
    # the long axis of the face gets ``step``, the short one ``step_across``
    if size[u_axis] > size[v_axis]:
        u_axis, v_axis = v_axis, u_axis
    n_u = max(1, round(2 * size[u_axis] / step_across))
    n_v = max(1, round(2 * size[v_axis] / step))
    out = []
    for i in range(n_u):
        for j in range(n_v):
            p = np.zeros(3)
            p[k] = sign * size[k]
            p[u_axis] = -size[u_axis] + (i + 0.5) * 2 * size[u_axis] / n_u
            p[v_axis] = -size[v_axis] + (j + 0.5) * 2 * size[v_axis] / n_v
            out.append(rot @ p + pos)
    return out


def _capsule_arc(radius: float, half: float, pos: F64, rot: F64, palmar: F64, tip: bool) -> list[F64]:
    axis = rot[:, 2]
    p = palmar - (palmar @ axis) * axis
    if np.linalg.norm(p) < 1e-9:
        return []
    p /= np.linalg.norm(p)
    w = np.cross(axis, p)
    # the capsule's far end: the one away from the link origin (its joint)
    out_dir = axis if axis @ pos >= 0 else -axis
    n_along = max(1, round(2 * half / (GRID_STEP * 0.6)))
    pts = []
    for i in range(n_along):
        s = -half + (i + 0.5) * 2 * half / n_along
        for a in (-ARC, ARC):
            pts.append(pos + s * out_dir + radius * (math.cos(a) * p + math.sin(a) * w))
    if tip:
        e = math.sqrt(0.5) * radius
        pts.append(pos + (half + e) * out_dir + e * p)
        pts.append(pos + (half + radius) * out_dir)
    return pts


def _box_spheres(size: F64, pos: F64, rot: F64) -> list[list[float]]:
    r = float(size.min())
    if r < MIN_KEYPOINT_RADIUS:
        return []
    axes = [a for a in range(3) if size[a] > r + 1e-9]
    grids = []
    for a in range(3):
        if a in axes:
            n = math.ceil(2 * (size[a] - r) / (SPHERE_STEP * r)) + 1
            grids.append(np.linspace(-(size[a] - r), size[a] - r, n))
        else:
            grids.append(np.zeros(1))
    out = []
    for x in grids[0]:
        for y in grids[1]:
            for z in grids[2]:
                out.append([*_pt(rot @ np.array([x, y, z]) + pos), _r(r)])
    return out


def _capsule_spheres(radius: float, half: float, pos: F64, rot: F64) -> list[list[float]]:
    n = max(2, math.ceil(2 * half / radius) + 1)
    return [[*_pt(pos + s * rot[:, 2]), _r(radius)] for s in np.linspace(-half, half, n)]


def _excludes(path: Path) -> list[tuple[str, str]]:
    root = ET.parse(path).getroot()
    return [(e.attrib["body1"], e.attrib["body2"]) for e in root.iter("exclude")]


def build(h: HandDef) -> dict[str, object]:
    path = mjcf_path(h.name)
    m = mujoco.MjModel.from_xml_path(str(path))
    d = mujoco.MjData(m)
    names = [m.joint(j).name for j in range(m.njnt)]
    if sorted(names) != sorted(h.joints):
        raise ValueError(f"{h.name}: joints {names} vs {h.joints}")
    for j, v in h.open_pose.items():
        d.qpos[m.jnt_qposadr[m.joint(j).id]] = v
    mujoco.mj_kinematics(m, d)

    geoms = list(range(m.ngeom))
    contact: dict[str, list[list[float]]] = {}
    keypts: dict[str, list[list[float]]] = {}
    for g in geoms:
        body = m.body(int(m.geom_bodyid[g])).name
        size = np.array(m.geom_size[g], dtype=np.float64)
        pos = np.array(m.geom_pos[g], dtype=np.float64)
        flat = np.zeros(9)
        mujoco.mju_quat2Mat(flat, m.geom_quat[g])
        rot = flat.reshape(3, 3)
        is_capsule = int(m.geom_type[g]) == int(mujoco.mjtGeom.mjGEOM_CAPSULE)
        if is_capsule:
            kp = _capsule_spheres(float(size[0]), float(size[1]), pos, rot)
        else:
            kp = _box_spheres(size, pos, rot)
        if kp:
            keypts.setdefault(body, []).extend(kp)
        if body not in h.palmar:
            continue
        palmar = np.array(h.palmar[body], dtype=np.float64)
        if is_capsule:
            pts = _capsule_arc(float(size[0]), float(size[1]), pos, rot, palmar, tip=m.geom(g).name.endswith("_tip"))
        else:
            step = (PALM_STEP, PALM_STEP) if body == "palm" else (GRID_STEP, GRID_STEP_ACROSS)
            pts = _box_face_grid(size, pos, rot, palmar, *step)
        # drop points buried inside another primitive of the hand (open pose)
        bid = int(m.geom_bodyid[g])
        keep = []
        for p in pts:
            world = d.xmat[bid].reshape(3, 3) @ p + d.xpos[bid]
            if all(_signed_distance(m, d, other, world) > -1e-4 for other in geoms if other != g):
                keep.append(_pt(p))
        contact.setdefault(body, []).extend(keep)

    bodies = {m.body(b).name: b for b in range(m.nbody)}
    ignore = [
        [a, b]
        for a, b in _excludes(path)
        if int(m.body_parentid[bodies[b]]) != bodies[a] and int(m.body_parentid[bodies[a]]) != bodies[b]
    ]
    return {
        "name": h.name,
        "description": h.description,
        "mjcf": {"package": "models.hands", "dir": f"assets/{h.name}", "robot": f"{h.name}.xml", "root_body": "palm"},
        "joints": list(h.joints),
        "collision_geoms": [m.geom(g).name for g in geoms],
        "contact_candidates": contact,
        "penetration_keypoints": keypts,
        "open_pose": {j: h.open_pose.get(j, 0.0) for j in h.joints},
        "init_pose": {j: h.init_pose.get(j, 0.0) for j in h.joints},
        "approach_direction": list(h.approach_direction),
        "palm_center": list(h.palm_center),
        "coupling_tendons": [],
        "coupling_note": "No coupled joints: each of the 16 joints has its own position actuator.",
        "self_collision_ignore": ignore,
        "closing_direction": {j: h.closing[j] for j in h.joints},
        "sim": h.sim,
        # not offered by the service yet: refinement, the learned proposers, intents and the API still assume the
        # ShadowHand; the optimiser, the squeeze and the referee handle this hand (issue 17)
        "served": False,
        **h.extra,
    }


def _signed_distance(m: mujoco.MjModel, d: mujoco.MjData, g: int, p: F64) -> float:
    """Signed distance of world point ``p`` to box/capsule ``g`` (< 0 inside)."""
    x = d.geom_xmat[g].reshape(3, 3).T @ (p - d.geom_xpos[g])
    s = m.geom_size[g]
    if int(m.geom_type[g]) == int(mujoco.mjtGeom.mjGEOM_CAPSULE):
        z = min(max(x[2], -s[1]), s[1])
        return float(np.linalg.norm(x - np.array([0.0, 0.0, z])) - s[0])
    q = np.abs(x) - s[:3]
    return float(np.linalg.norm(np.maximum(q, 0.0)) + min(float(q.max()), 0.0))


FINGERS = ("ff", "mf", "rf")

# The referee's finger actuation (units: N m / rad, N m, N m s / rad, kg m^2, N m). The protocol (timestep,
# contacts, friction, mass, forces, thresholds) is the same for every hand; the actuators are each hand's own.
ALLEGRO_SIM: dict[str, object] = {
    "finger_kp": 1.0, "finger_force_limit": 0.7, "joint_damping": 0.1, "joint_armature": 0.001,
    "joint_frictionloss": 0.001,
    "note": (
        "The published actuators, as the MJCF states them (assets/allegro/allegro.xml): position servos kp 1 N m/rad and "
        "joint damping 0.1 N m s/rad (mujoco_menagerie wonik_allegro); force limit +-0.7 N m, armature 1e-3 kg m^2 and "
        "frictionloss 1e-3 N m the MJCF's choices. Enough for the referee's 0.1 kg object and 1 N push: the squeeze asks "
        "8 N of grip (40 N x kp / 5, models/stages/squeeze.py; friction 0.6 resists about 5 N), a finger at the squeeze's "
        "0.35 rad cap pushes about 3.5 N at 0.1 m, under its 0.7 N m limit. DexGraspBench's own Allegro model uses kp 2 "
        "and no force limit: figures for this hand are not directly comparable with BODex's."
    ),
}
LEAP_SIM: dict[str, object] = {
    "finger_kp": 3.0, "finger_force_limit": 0.95, "joint_damping": 0.03, "joint_armature": 0.001,
    "joint_frictionloss": 0.001,
    "note": (
        "The published actuators, as the MJCF states them (assets/leap/leap.xml): position servos kp 3 N m/rad, joint "
        "damping 0.03 N m s/rad, frictionloss 1e-3 N m (mujoco_menagerie leap_hand), force limit +-0.95 N m (dex-urdf's "
        "effort limit, the Dynamixel XC330's), armature 1e-3 kg m^2 the MJCF's choice. Enough for the referee's 0.1 kg "
        "object and 1 N push: the squeeze asks 24 N of grip (40 N x kp / 5), a finger at the squeeze's 0.35 rad cap "
        "pushes about 1 N m, at its limit."
    ),
}

ALLEGRO = HandDef(
    name="allegro",
    description=(
        "Wonik Allegro Hand, right, 16 DoF: the project's primitives-only MJCF (kinematics, limits and "
        "collision boxes of mujoco_menagerie's wonik_allegro), palm-rooted."
    ),
    joints=(*(f"{f}_{j}" for f in FINGERS for j in ("rot", "mcp", "pip", "dip")), "th_cmc", "th_rot", "th_mcp", "th_ip"),
    palmar={
        "palm": (0.0, -1.0, 0.0),
        **{f"{f}_{s}": (0.0, -1.0, 0.0) for f in FINGERS for s in ("proximal", "middle", "distal")},
        "th_middle": (0.0, -1.0, 0.0),
        "th_distal": (0.0, -1.0, 0.0),
    },
    # fingers straight, thumb at the bottom of its opposition range (beside the palm)
    open_pose={"th_cmc": 0.263},
    # half-closed: fingers bent 0.3 rad per joint, thumb opposed, its pad about 0.11 m from the index and
    # middle fingertips' pads and facing them
    init_pose={
        **{f"{f}_{j}": 0.3 for f in FINGERS for j in ("mcp", "pip", "dip")},
        "th_cmc": 1.3, "th_rot": 0.3, "th_mcp": 0.8, "th_ip": 0.2,
    },
    palm_center=(0.0, -0.0111, 0.0475),
    closing={**{f"{f}_{j}": (0.0 if j == "rot" else 1.0) for f in FINGERS for j in ("rot", "mcp", "pip", "dip")},
             "th_cmc": 0.0, "th_rot": 0.0, "th_mcp": 1.0, "th_ip": 1.0},
    sim=ALLEGRO_SIM,
)

LEAP = HandDef(
    name="leap",
    description=(
        "LEAP Hand (CMU), right, 16 DoF: the project's primitives-only MJCF (kinematics of "
        "mujoco_menagerie's leap_hand / dexsuite dex-urdf, limits, boxes merged from their collision "
        "boxes), palm-rooted."
    ),
    joints=(*(f"{f}_{j}" for f in FINGERS for j in ("mcp", "abd", "pip", "dip")), "th_cmc", "th_rot", "th_mcp", "th_ip"),
    palmar={
        "palm": (0.0, -1.0, 0.0),
        **{f"{f}_{s}": (0.0, -1.0, 0.0) for f in FINGERS for s in ("proximal", "middle", "distal")},
        "th_middle": (0.0, 0.0, 1.0),
        "th_distal": (0.0, 0.0, 1.0),
    },
    # fingers straight, thumb stretched out beside the palm in its plane
    open_pose={},
    # half-closed: fingers bent 0.3 rad per joint, thumb swung out of the palm plane (opposed) and bent
    # towards the fingers, its pad about 0.11 m from the index and middle fingertips' pads and facing them
    init_pose={
        **{f"{f}_{j}": 0.3 for f in FINGERS for j in ("mcp", "pip", "dip")},
        "th_cmc": 1.4, "th_rot": 0.2, "th_mcp": 0.8, "th_ip": 0.1,
    },
    palm_center=(0.0, -0.023, 0.05),
    closing={**{f"{f}_{j}": (0.0 if j == "abd" else 1.0) for f in FINGERS for j in ("mcp", "abd", "pip", "dip")},
             "th_cmc": 0.0, "th_rot": 0.0, "th_mcp": 1.0, "th_ip": 1.0},
    sim=LEAP_SIM,
)


if __name__ == "__main__":
    for hand in (ALLEGRO, LEAP):
        out = HERE / f"{hand.name}.json"
        out.write_text(json.dumps(build(hand), indent=1) + "\n")
        print(f"wrote {out}")
