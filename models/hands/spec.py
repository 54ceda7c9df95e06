"""Hand specifications as data.

A hand is described by a JSON file next to this module (``<name>.json``): where
its MJCF lives (an installed package: gymnasium-robotics for the ShadowHand, this
package's ``assets/`` for the hands the project writes itself), which body is the grasp root, the finger
joints in order (short names, e.g. ``FFJ3``), the collision geoms used for
signed distance, contact candidates and penetration keypoints in link frames, a
canonical open pre-shape, a half-closed init pre-shape, and the palm's approach
direction. Limits and joint couplings are *not* repeated here: they are read
from the MJCF at load time so simulation and generation cannot disagree.

Two optional blocks say how the hand is driven:

* ``closing_direction``: per joint +1 / -1 / 0, the sign that closes the hand (flexes a finger
  towards the palm or the thumb towards the fingers); 0 for sideways joints (abduction, rotation
  about a finger's own axis, the thumb's opposition swing) that a blanket squeeze must not push and a
  pregrasp must not mirror. Absent: ``sign(init_pose - open_pose)`` per joint (the ShadowHand's rule).
* ``sim``: the hand's finger actuation in the referee of record (:class:`HandSim`; units N m / rad,
  N m, N m s / rad, kg m^2, N m): the protocol is the same for every hand, the actuators and their
  gains are each hand's own. Absent, or a value null: the MJCF's own value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class MjcfSource:
    """Where a hand's MJCF lives. Two layouts: gymnasium-robotics' split files (``robot`` holds the body
    tree only, ``shared`` the defaults, tendons, actuators and contact pairs, ``assets`` meshes and
    materials), or one self-contained file (``robot`` alone; ``shared``/``assets``/``meshdir`` empty)
    whose sections sit beside its worldbody."""

    package: str  # importable package that ships the XML
    dir: str  # folder inside the package
    robot: str  # body tree file, or the whole self-contained MJCF
    root_body: str  # the grasp root (palm)
    shared: str = ""  # defaults, tendons, actuators, contact pairs ("": in ``robot``)
    assets: str = ""  # meshes and materials ("": in ``robot``, if any)
    meshdir: str = ""  # mesh folder, relative to ``dir`` ("": no meshes)
    name_prefix: str = ""  # prefix of MJCF names (``robot0:``)
    drop_joints: tuple[str, ...] = ()  # joints removed (wrist), full MJCF names


@dataclass(frozen=True)
class PointSet:
    """Points rigidly attached to links: ``link`` names and local coordinates (m)."""

    link: tuple[str, ...]
    xyz: tuple[tuple[float, float, float], ...]
    radius: tuple[float, ...] = ()  # per point, only for penetration keypoints (m)


@dataclass(frozen=True)
class HandSim:
    """A hand's finger actuation in the referee of record (``sim_worker``, ``PhysicsConfig`` fields of the
    same names fill from here). ``None``: the MJCF's own value (for the force limit: the MJCF's range times
    ``PhysicsConfig.finger_force_scale``). The squeeze (``models/stages/squeeze.py``) turns torques into target
    offsets through ``finger_kp``, so generation and simulation read the same gain."""

    finger_kp: float | None = None  # position gain of every finger actuator (N m / rad)
    finger_force_limit: float | None = None  # |torque| limit of every finger actuator (N m)
    joint_damping: float | None = None  # finger joints (N m s / rad)
    joint_armature: float | None = None  # finger joints (kg m^2)
    joint_frictionloss: float | None = None  # finger joints (N m)
    note: str = ""  # where the numbers come from and why

    def values(self) -> dict[str, float | None]:
        """The numbers by field name (no note)."""
        return {"finger_kp": self.finger_kp, "finger_force_limit": self.finger_force_limit,
                "joint_damping": self.joint_damping, "joint_armature": self.joint_armature,
                "joint_frictionloss": self.joint_frictionloss}


@dataclass(frozen=True)
class HandSpec:
    name: str
    description: str
    mjcf: MjcfSource
    joints: tuple[str, ...]  # short names, order of the joint vector
    collision_geoms: tuple[str, ...]  # short MJCF geom names used for SDF
    contact_candidates: PointSet
    penetration_keypoints: PointSet
    open_pose: tuple[float, ...]  # canonical open pre-shape (rad), order of ``joints``
    init_pose: tuple[float, ...]  # half-closed pre-shape used to initialise optimisation (rad)
    approach_direction: tuple[float, float, float]  # palm normal pointing at the object, palm frame
    palm_center: tuple[float, float, float]  # a point on the palmar surface, palm frame (m)
    coupling_tendons: tuple[str, ...]  # short names of fixed tendons that couple joints
    coupling_note: str
    self_collision_ignore: tuple[tuple[str, str], ...]  # extra link pairs never checked
    # False: described as data only (MJCF, kinematics, point sets), not yet planned for by the service;
    # :func:`available_hands` leaves it out, :func:`load_spec` / ``get_hand`` load it
    served: bool = True
    # per joint (order of ``joints``) +1 / -1 / 0: the sign that closes the hand; see the module docstring
    closing_direction: tuple[float, ...] = ()
    sim: HandSim = HandSim()

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def full_name(self, short: str) -> str:
        return self.mjcf.name_prefix + short


def _points(d: dict[str, Any], with_radius: bool) -> PointSet:
    links: list[str] = []
    xyz: list[tuple[float, float, float]] = []
    radius: list[float] = []
    for link, pts in d.items():
        for p in pts:
            links.append(link)
            xyz.append((float(p[0]), float(p[1]), float(p[2])))
            if with_radius:
                radius.append(float(p[3]))
    return PointSet(tuple(links), tuple(xyz), tuple(radius))


def _vec3(v: Any) -> tuple[float, float, float]:
    if len(v) != 3:
        raise ValueError(f"expected 3 numbers, got {v!r}")
    return (float(v[0]), float(v[1]), float(v[2]))


def _sign(a: float) -> float:
    return float((a > 0) - (a < 0))


_SIM_FIELDS = ("finger_kp", "finger_force_limit", "joint_damping", "joint_armature", "joint_frictionloss")


def _sim(d: dict[str, Any]) -> HandSim:
    unknown = set(d) - set(_SIM_FIELDS) - {"note"}
    if unknown:
        raise ValueError(f"sim: unknown fields {sorted(unknown)}; use {', '.join(_SIM_FIELDS)}, note")
    vals: dict[str, float | None] = {}
    for k in _SIM_FIELDS:
        v = d.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0 or v == float("inf")):
            raise ValueError(f"sim.{k} must be a finite number >= 0 or null, got {v!r}")
        vals[k] = None if v is None else float(v)
    if vals["finger_kp"] == 0.0:
        raise ValueError("sim.finger_kp must be > 0")
    return HandSim(**vals, note=str(d.get("note", "")))


def spec_from_dict(d: dict[str, Any]) -> HandSpec:
    m = d["mjcf"]
    joints = tuple(d["joints"])

    def pose(key: str) -> tuple[float, ...]:
        p = d[key]
        missing = set(joints) - set(p)
        if missing:
            raise ValueError(f"{key} lacks joints {sorted(missing)}")
        return tuple(float(p[j]) for j in joints)

    open_pose, init_pose = pose("open_pose"), pose("init_pose")
    if "closing_direction" in d:
        closing = pose("closing_direction")
        bad = [j for j, c in zip(joints, closing) if c not in (-1.0, 0.0, 1.0)]
        if bad:
            raise ValueError(f"closing_direction must be -1, 0 or 1 per joint; not so for {bad}")
    else:  # the rule the ShadowHand has always used
        closing = tuple(_sign(i - o) for i, o in zip(init_pose, open_pose))

    return HandSpec(
        name=d["name"],
        description=d.get("description", ""),
        mjcf=MjcfSource(
            package=m["package"],
            dir=m["dir"],
            robot=m["robot"],
            root_body=m["root_body"],
            shared=m.get("shared", ""),
            assets=m.get("assets", ""),
            meshdir=m.get("meshdir", ""),
            name_prefix=m.get("name_prefix", ""),
            drop_joints=tuple(m.get("drop_joints", ())),
        ),
        joints=joints,
        collision_geoms=tuple(d["collision_geoms"]),
        contact_candidates=_points(d["contact_candidates"], with_radius=False),
        penetration_keypoints=_points(d["penetration_keypoints"], with_radius=True),
        open_pose=open_pose,
        init_pose=init_pose,
        approach_direction=_vec3(d["approach_direction"]),
        palm_center=_vec3(d["palm_center"]),
        coupling_tendons=tuple(d.get("coupling_tendons", ())),
        coupling_note=d.get("coupling_note", ""),
        self_collision_ignore=tuple((str(p[0]), str(p[1])) for p in d.get("self_collision_ignore", ())),
        served=bool(d.get("served", True)),
        closing_direction=closing,
        sim=_sim(d.get("sim", {})),
    )


def known_hands() -> list[str]:
    """Every registered hand: a JSON spec next to this module. What :func:`load_spec` and ``get_hand`` accept."""
    return sorted(p.name[:-5] for p in resources.files(__package__).iterdir() if p.name.endswith(".json"))


@lru_cache(maxsize=32)
def _served(name: str) -> bool:
    return bool(json.loads((resources.files(__package__) / f"{name}.json").read_text()).get("served", True))


def available_hands() -> list[str]:
    """The hands the service plans for (``GET /v1/hands``, request validation): the registered hands whose
    spec does not say ``"served": false``. The Allegro and LEAP hands are data only for now: their energies,
    referee and API support are later work (issue 17)."""
    return [n for n in known_hands() if _served(n)]


def load_spec(name_or_path: str) -> HandSpec:
    """Load a hand spec by registered name (``shadow``, or a data-only hand such as ``allegro``) or from a
    JSON file path."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        text = path.read_text()
    else:
        names = known_hands()
        if name_or_path not in names:
            raise KeyError(f"unknown hand {name_or_path!r}; available: {', '.join(names)}")
        text = (resources.files(__package__) / f"{name_or_path}.json").read_text()
    return spec_from_dict(json.loads(text))
