"""Simulation parameters, as data. One place for every number the referee uses.

All backends read the same :class:`SimConfig` so results are comparable. Units:
seconds, metres, radians, kilograms, newtons. Defaults follow the evaluation
protocol (``evaluation.md``) and DexGraspBench's MuJoCo settings where the
protocol is silent; ``docs/simulation.md`` explains each choice.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PhysicsConfig:
    timestep_s: float = 0.004  # MuJoCo step
    cone: str = "elliptic"  # friction cone model
    impratio: float = 10.0  # frictional-to-normal constraint impedance ratio (less slip)
    noslip_iterations: int = 0  # post-solve slip removal; 2 (DexGraspBench) is 1.6x slower and passed 1 more of 16 test grasps
    solver_iterations: int = 50
    friction_sliding: float = 1.0  # object/hand sliding friction (the Q1 metric also uses mu = 1)
    friction_torsional: float = 0.02
    friction_rolling: float = 0.0001
    condim: int = 4  # contact dimensionality for object contacts (normal + 2 tangential + torsional)
    object_density_kg_m3: float = 400.0  # used when no mass is given
    object_mass_kg: float | None = None  # a fixed mass overrides the density (DexGraspBench uses 0.1 kg)
    finger_kp: float = 5.0  # position gain of every finger actuator (N m / rad)
    finger_force_scale: float = 2.0  # multiplies the MJCF actuator force ranges
    weld_solref: tuple[float, float] = (0.005, 1.0)  # stiffness of the palm-to-mocap weld


@dataclass(frozen=True)
class ValidationConfig:
    squeeze_rad: float = 0.08  # added to closing joints when the grasp carries no squeeze target
    settle_s: float = 0.2  # fingers from grasp to squeeze targets, no disturbance yet
    pin_object_while_settling: bool = True  # object held at its grasp pose while the fingers settle
    disturb_s: float = 1.0  # duration of each of the six disturbances
    force_g: float = 1.0  # disturbance = force_g * m * 9.81 N along each of +-x +-y +-z (object frame)
    max_translation_m: float = 0.02  # a direction passes if the object moved less than this
    max_rotation_deg: float = 15.0  # and rotated less than this
    max_initial_penetration_m: float = 0.01  # deeper initial hand-object penetration fails at once
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimConfig:
        def build(klass: Any, sub: dict[str, Any]) -> Any:
            names = {f.name for f in fields(klass)}
            unknown = set(sub) - names
            if unknown:
                raise ValueError(f"unknown {klass.__name__} fields: {sorted(unknown)}")
            return klass(**{k: tuple(v) if isinstance(v, list) else v for k, v in sub.items()})

        return cls(
            physics=build(PhysicsConfig, d.get("physics", {})),
            validation=build(ValidationConfig, d.get("validation", {})),
            execution=build(ExecutionConfig, d.get("execution", {})),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> SimConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
