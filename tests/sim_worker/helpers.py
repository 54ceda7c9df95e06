"""Shared loaders for the simulator tests."""

from __future__ import annotations

import json
from pathlib import Path

import mujoco
import numpy as np

from models.grasp import GraspSet
from models.hands import get_hand
from sim_worker.arrays import GraspArrays
from sim_worker.scene import SimObject, object_from_primitive

DATA = Path(__file__).resolve().parents[1] / "data" / "sim"


def trust_case(name: str) -> tuple[SimObject, list[GraspArrays]]:
    doc = json.loads((DATA / f"{name}.json").read_text())
    prim = doc.pop("primitive")
    gs = GraspSet.model_validate(doc)
    return object_from_primitive(prim["kind"], tuple(prim["size"])), [GraspArrays.from_grasp(g) for g in gs.grasps]


def backed_off(g: GraspArrays, distance_m: float, hand: str = "shadow") -> GraspArrays:
    """The same grasp with the palm moved ``distance_m`` away from the object along its normal."""
    h = get_hand(hand, dtype="float64")
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, g.quaternion_wxyz)
    away = -rot.reshape(3, 3) @ h.approach_direction.numpy()
    return GraspArrays(g.position + distance_m * away, g.quaternion_wxyz, g.joints, g.squeeze)
