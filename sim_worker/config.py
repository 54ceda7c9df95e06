"""Simulation parameters, as data. One place for every number the referee uses.

All backends read the same :class:`SimConfig` so results are comparable. Units:
seconds, metres, radians, kilograms, newtons. Defaults follow the evaluation
protocol (``evaluation.md``) and DexGraspBench's MuJoCo settings where the
protocol is silent; ``docs/simulation.md`` explains each choice.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.hands.spec import HandSim

# PhysicsConfig fields a hand's spec gives (models.hands.spec.HandSim) when left None
_HAND_FIELDS = ("finger_kp", "finger_force_limit", "joint_damping", "joint_armature", "joint_frictionloss")


@dataclass(frozen=True)
class PhysicsConfig:
    """MuJoCo scene parameters. Defaults: the referee of record (DexGraspBench fc-mocap, see
    ``docs/simulation.md``); :func:`SimConfig.preset` ``"pinned"`` restores the project's earlier
    validator. A field set to ``None`` keeps the hand MJCF's own value."""

    timestep_s: float = 0.004  # MuJoCo step
    integrator: str = "implicitfast"  # MuJoCo integrator (the earlier validator: Euler)
    cone: str = "elliptic"  # friction cone model
    impratio: float = 10.0  # frictional-to-normal constraint impedance ratio (less slip)
    noslip_iterations: int = 2  # post-solve slip removal iterations
    solver_iterations: int = 100  # MuJoCo's default
    friction_sliding: float = 0.6  # sliding friction of every geom (hand, object, table)
    friction_torsional: float = 0.02
    friction_rolling: float = 0.0001
    condim: int = 4  # contact dimensionality (normal + 2 tangential + torsional)
    object_density_kg_m3: float = 400.0  # used when no mass is given
    object_mass_kg: float | None = 0.1  # a fixed mass overrides the density
    object_priority: bool = False  # True: the object's geom parameters alone govern hand-object contacts
    # The fingers' actuation is each hand's own (the protocol is not): the five fields below left None take
    # ``finger_defaults``: "hand", the hand spec's ``sim`` block (models/hands/<hand>.json, models.hands.spec.HandSim;
    # the ShadowHand's: kp 5, +-3 N m, damping 0.05, armature 2e-4, frictionloss 0.01, DexGraspBench's); "mjcf",
    # the hand MJCF's own values (the earlier validator). A number set here applies to every hand.
    finger_kp: float | None = None  # position gain of every finger actuator (N m / rad)
    finger_force_limit: float | None = None  # |torque| limit of every finger actuator (N m); None left: MJCF range x scale
    finger_force_scale: float = 2.0  # multiplies the MJCF actuator force ranges when no limit is given
    # coupled distal pairs (a hand's coupling tendons: the ShadowHand's J1/J0 of FF/MF/RF/LF): "sum_tendon", one
    # actuator on their sum (DexGraspBench); "coupling_band": the MJCF's band. Hands without coupling tendons: no effect
    distal_drive: str = "sum_tendon"
    joint_damping: float | None = None  # finger joints (N m s / rad)
    joint_armature: float | None = None  # finger joints (kg m^2)
    joint_frictionloss: float | None = None  # finger joints (N m)
    finger_defaults: str = "hand"  # where the five fields above come from when None: "hand" or "mjcf"
    hand_solref: tuple[float, ...] | None = (0.005, 1.0)  # hand geoms: stiffer contacts (time const s, damping ratio)
    hand_solimp: tuple[float, ...] | None = (0.5, 0.99, 0.0001)  # hand geoms: impedance (dmin, dmax, width m)
    hand_margin_m: float | None = 0.0  # hand geom contact margin
    weld_solref: tuple[float, ...] = (0.02, 1.0)  # palm-to-mocap weld
    weld_solimp: tuple[float, ...] | None = (0.9, 0.95, 0.001, 0.5, 2.0)
    # MuJoCo's arena for contacts and constraints (MB): the default (about 15 MB for this scene) overflowed on a hand
    # pressed into an object of many convex pieces (326 contacts, comp/hammer/0004); the size changes no result
    arena_memory_mb: int = 64

    def for_hand(self, sim: HandSim) -> PhysicsConfig:
        """This config with its finger fields left None filled from the hand's ``sim`` block (with
        ``finger_defaults="hand"``; with ``"mjcf"`` unchanged: None keeps the MJCF's value). What a scene of that
        hand is built with (``scene.build_scene``) and what its reports state."""
        if self.finger_defaults != "hand":
            return self
        given = sim.values()
        fill: dict[str, Any] = {k: given[k] for k in _HAND_FIELDS if getattr(self, k) is None and given[k] is not None}
        return replace(self, **fill)

    def finger_physics(self, sim: HandSim) -> dict[str, Any]:
        """The finger actuation a scene of that hand gets (:meth:`for_hand`), by field; None: the MJCF's own."""
        resolved = self.for_hand(sim)
        return {k: getattr(resolved, k) for k in _HAND_FIELDS}


@dataclass(frozen=True)
class ValidationConfig:
    """The six-direction disturbance test. ``protocol`` ``"fc_mocap"`` (default): the referee of
    record (object free from the start, pregrasp -> grasp -> squeeze through the welded mocap, then
    the force); ``"pinned"``: the project's earlier validator (fingers settle on a pinned object),
    kept only as a labelled, non-default option."""

    protocol: str = "fc_mocap"
    approach_s: float = 0.4  # fc_mocap: pregrasp -> grasp (root through the mocap, joint targets linearly)
    squeeze_s: float = 0.4  # fc_mocap: grasp -> squeeze targets
    waypoints: int = 10  # fc_mocap: interpolation waypoints per phase (steps split evenly between them)
    squeeze_rad: float = 0.08  # added to closing joints when the grasp carries no squeeze target (pinned)
    settle_s: float = 0.2  # pinned: fingers from grasp to squeeze targets, no disturbance yet
    pin_object_while_settling: bool = False  # pinned: object held at its grasp pose while the fingers settle
    disturb_s: float = 2.0  # duration of each of the six disturbances
    check_every_s: float = 0.2  # the object's displacement is checked this often during a disturbance
    force_per_kg_n: float = 10.0  # disturbance = this x object mass (N) along each of +-x +-y +-z (object frame)
    max_translation_m: float = 0.05  # a direction passes if the object moved less than this
    max_rotation_deg: float = 15.0  # and rotated less than this (from its pose before the approach)
    max_initial_penetration_m: float = 0.01  # deeper hand-object or hand-hand penetration at the start fails
    fail_fast: bool = True  # stop a grasp at its first failing direction (same verdict, less time)


@dataclass(frozen=True)
class ExecutionConfig:
    table_z: float = 0.0
    object_settle_s: float = 0.3  # object alone on the table (hand far above) before the policy starts
    table_tolerance_m: float = 0.01  # a goal grasp reaching deeper than this under the table is refused
    pregrasp_backoff_m: float = 0.10  # pre-grasp distance along -approach when the grasp carries none
    pregrasp_clearance_m: float = 0.01  # a pre-grasp closer than this to the table is raised straight up
    start_height_m: float = 0.25  # palm start height above the object top, palm down, hand open
    pregrasp_s: float = 1.0  # move to the pre-grasp pose
    approach_s: float = 0.6  # pre-grasp to grasp pose along the approach
    close_s: float = 0.6  # open joints to goal joints
    squeeze_s: float = 0.3  # goal joints to squeeze targets
    lift_s: float = 1.5  # lift by lift_height_m
    hold_s: float = 0.5  # hold at the top before measuring
    lift_height_m: float = 0.3
    success_radius_m: float = 0.05  # object centre within this of the target at the end
    gravity: tuple[float, float, float] = (0.0, 0.0, -9.81)


@dataclass(frozen=True)
class SimConfig:
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)

    @classmethod
    def preset(cls, name: str) -> SimConfig:
        """A named configuration: ``fc_mocap`` (the default, the referee of record) or ``pinned``
        (the project's earlier, more lenient validator; report it only labelled as such)."""
        if name not in PRESETS:
            raise ValueError(f"unknown simulation preset {name!r}; available: {sorted(PRESETS)}")
        return cls.from_dict({"preset": name})

    @property
    def protocol(self) -> str:
        return self.validation.protocol

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimConfig:
        """From sections ``physics`` / ``validation`` / ``execution``; ``preset`` (a name of
        :data:`PRESETS`) gives the values the sections then override."""
        unknown_sections = set(d) - {"preset", "physics", "validation", "execution"}
        if unknown_sections:
            raise ValueError(f"unknown SimConfig sections: {sorted(unknown_sections)}; "
                             "use preset, physics, validation, execution")
        base: dict[str, Any] = {}
        if "preset" in d:
            name = d["preset"]
            if name not in PRESETS:
                raise ValueError(f"unknown simulation preset {name!r}; available: {sorted(PRESETS)}")
            base = PRESETS[name]

        def build(klass: Any, key: str) -> Any:
            given = d.get(key, {})
            if not isinstance(given, dict):
                raise ValueError(f"{key} must be an object of {klass.__name__} fields, got {type(given).__name__}")
            sub = {**base.get(key, {}), **given}
            names = {f.name for f in fields(klass)}
            unknown = set(sub) - names
            if unknown:
                raise ValueError(f"unknown {klass.__name__} fields: {sorted(unknown)}")
            section = klass(**{k: tuple(v) if isinstance(v, list) else v for k, v in sub.items()})
            problems = _check_section(key, section)
            if problems:
                raise ValueError("; ".join(problems))
            return section

        cfg = cls(
            physics=build(PhysicsConfig, "physics"),
            validation=build(ValidationConfig, "validation"),
            execution=build(ExecutionConfig, "execution"),
        )
        if cfg.validation.protocol not in PROTOCOLS:
            raise ValueError(f"unknown validation protocol {cfg.validation.protocol!r}; use one of {list(PROTOCOLS)}")
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> SimConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


# What from_dict accepts: every number finite and of its field's type, and inside these ranges
# (lo, hi, lo excluded?). Not listed: "*_s" durations in (0, 60] s, any other number >= 0.
_POSITIVE = (0.0, math.inf, True)
_SIGNED = (-math.inf, math.inf, False)
_RANGES: dict[str, tuple[float, float, bool]] = {
    "timestep_s": (1e-4, 0.05, False),  # larger steps blow up hand contacts; smaller ones never finish
    "noslip_iterations": (0, 1000, False), "solver_iterations": (1, 1000, False), "waypoints": (1, 1000, False),
    "impratio": _POSITIVE, "object_density_kg_m3": _POSITIVE, "object_mass_kg": _POSITIVE,
    "finger_force_limit": _POSITIVE, "finger_force_scale": _POSITIVE, "max_translation_m": _POSITIVE,
    "max_rotation_deg": _POSITIVE, "success_radius_m": _POSITIVE,
    "squeeze_rad": _SIGNED, "table_z": _SIGNED, "gravity": _SIGNED, "hand_solref": _SIGNED, "weld_solref": _SIGNED,
}
_DURATION = (0.0, 60.0, True)
_LENGTHS: dict[str, tuple[int, ...]] = {
    "gravity": (3,), "hand_solref": (2,), "weld_solref": (2,), "hand_solimp": (3, 5), "weld_solimp": (3, 5),
}
# MuJoCo's own option names (integrator, cone) are left to MuJoCo, which names the bad value
_CHOICES: dict[str, tuple[Any, ...]] = {"distal_drive": ("sum_tendon", "coupling_band"), "condim": (1, 3, 4, 6),
                                        "finger_defaults": ("hand", "mjcf")}


def _check_section(section: str, cfg: Any) -> list[str]:
    """What is wrong with one section's values (empty: nothing), each naming ``section.field``."""
    out = []
    for f in fields(cfg):
        v, name, typ = getattr(cfg, f.name), f"{section}.{f.name}", str(f.type)
        if v is None and "None" in typ:
            continue
        if f.name in _CHOICES:
            if v not in _CHOICES[f.name] or isinstance(v, bool):
                out.append(f"{name} must be one of {list(_CHOICES[f.name])}, got {v!r}")
            continue
        if typ.startswith(("str", "bool")):
            if not isinstance(v, str if typ.startswith("str") else bool):
                out.append(f"{name} must be a {typ.split()[0]}, got {v!r}")
            continue
        values = v if isinstance(v, tuple) else (v,)
        if isinstance(v, tuple) != typ.startswith("tuple") or (f.name in _LENGTHS and len(values) not in _LENGTHS[f.name]):
            size = " or ".join(str(n) for n in _LENGTHS.get(f.name, ())) or "1"
            out.append(f"{name} must be {'a list of ' + size + ' numbers' if typ.startswith('tuple') else 'a number'}, got {v!r}")
            continue
        lo, hi, open_lo = _RANGES.get(f.name, _DURATION if f.name.endswith("_s") else (0.0, math.inf, False))
        for x in values:
            if isinstance(x, bool) or not isinstance(x, int | float) or (typ.startswith("int") and not isinstance(x, int)):
                out.append(f"{name} must be {'an integer' if typ.startswith('int') else 'a number'}, got {x!r}")
            elif not math.isfinite(x) or x < lo or x > hi or (open_lo and x == lo):
                bounds = f"{'(' if open_lo else '['}{lo:g}, {hi:g}{']' if math.isfinite(hi) else ')'}"
                out.append(f"{name} must be finite and in {bounds}, got {x!r}")
                break
    return out


# The earlier validator, field by field (docs/simulation.md, "pinned").
_PINNED: dict[str, Any] = {
    "physics": {
        "integrator": "Euler", "noslip_iterations": 0, "solver_iterations": 50, "friction_sliding": 1.0,
        "object_mass_kg": None, "object_priority": True, "finger_kp": 5.0, "finger_defaults": "mjcf",
        "finger_force_limit": None, "distal_drive": "coupling_band",
        "joint_damping": None, "joint_armature": None, "joint_frictionloss": None, "hand_solref": None,
        "hand_solimp": None, "hand_margin_m": None, "weld_solref": (0.005, 1.0), "weld_solimp": None,
    },
    "validation": {
        "protocol": "pinned", "pin_object_while_settling": True, "disturb_s": 1.0, "check_every_s": 0.1,
        "force_per_kg_n": 9.81, "max_translation_m": 0.02,
    },
}
PRESETS: dict[str, dict[str, Any]] = {"fc_mocap": {}, "pinned": _PINNED}
PROTOCOLS = ("fc_mocap", "pinned")
