"""The shared grasp schema: round trips and clear refusals of bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from pydantic import ValidationError

from models.core.rotations import random_rotations
from models.grasp import Grasp, GraspSet, Pose, grasps_to_tensors, make_grasp
from models.hands import get_hand


def _grasp(i: int = 0) -> Grasp:
    h = get_hand("shadow", dtype="float64")
    rot = random_rotations(1, torch.Generator().manual_seed(i))[0]
    pos = torch.tensor([0.01 * i, -0.08, 0.05], dtype=torch.float64)
    return make_grasp(
        "shadow",
        rot,
        pos,
        h.init_pose,
        rot,
        pos - 0.1 * rot[:, 1],
        h.open_pose,
        scores={"q1": 0.05},
        squeeze=h.init_pose + 0.05,
    )


def test_round_trip_through_json_and_tensors():
    gs = GraspSet(grasps=[_grasp(i) for i in range(3)], object="prim/box/0001")
    back = GraspSet.model_validate_json(gs.model_dump_json())
    assert back == gs
    pos, rot, q = grasps_to_tensors(back.grasps, dtype=torch.float64)
    assert pos.shape == (3, 3) and rot.shape == (3, 3, 3) and q.shape == (3, 22)
    m = torch.tensor(back.grasps[1].pose.matrix, dtype=torch.float64)
    assert torch.allclose(m[:3, :3], rot[1], atol=1e-9) and torch.allclose(m[:3, 3], pos[1])


def test_pose_from_matrix_only():
    g = _grasp(1)
    p = Pose.model_validate({"matrix": g.pose.matrix})
    assert max(abs(a - b) for a, b in zip(p.position, g.pose.position)) < 1e-12
    assert abs(abs(sum(a * b for a, b in zip(p.quaternion_wxyz, g.pose.quaternion_wxyz))) - 1) < 1e-9


def _bad(mutate, match: str) -> None:
    d = json.loads(_grasp().model_dump_json())
    mutate(d)
    with pytest.raises(ValidationError, match=match):
        Grasp.model_validate(d)


def test_unknown_joint_name_is_refused_with_names():
    def f(d):
        d["joints"]["FFJ9"] = 0.1

    _bad(f, r"unknown joint names \['FFJ9'\]")


def test_missing_joint_is_refused():
    def f(d):
        del d["pregrasp"]["joints"]["THJ0"]

    _bad(f, r"pregrasp.joints: missing joints \['THJ0'\]")


def test_nan_is_refused():
    def f(d):
        d["joints"]["FFJ2"] = math.nan

    _bad(f, "non-finite joint angles")

    def g(d):
        d["pose"]["position"][0] = math.inf

    _bad(g, "position contains non-finite")


def test_non_unit_quaternion_is_refused():
    def f(d):
        d["pose"]["quaternion_wxyz"] = [0.9, 0.1, 0.0, 0.0]
        d["pose"]["matrix"] = None

    _bad(f, "must be a unit quaternion")


def test_inconsistent_matrix_is_refused():
    def f(d):
        d["pose"]["matrix"][0][3] += 0.01

    _bad(f, "matrix disagrees with position")


def test_unknown_hand_is_refused():
    def f(d):
        d["hand"] = "allegro_v9"

    _bad(f, "unknown hand 'allegro_v9'")


def test_file_with_bad_grasp_names_the_problem(tmp_path):
    d = json.loads(GraspSet(grasps=[_grasp()]).model_dump_json())
    d["grasps"][0]["joints"]["XXJ1"] = 0.0
    path = tmp_path / "g.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ValidationError, match="XXJ1"):
        GraspSet.model_validate_json(path.read_text())
