"""The DexGraspBench grasp conversion: joint table in the project's order, exact round trips.

The forward-kinematics agreement with DexGraspBench's hand needs its checkout and meshes, so it
is a bench flag (``bench/referee_crosscheck.py --check-fk``), not a test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.dexgraspbench import convert
from models.grasp import Grasp, GraspSet
from models.hands import load_spec

DATA = Path(__file__).resolve().parents[1] / "data" / "sim"


def test_joint_table_follows_the_project_spec() -> None:
    assert convert.PROJECT_JOINTS == tuple(load_spec("shadow").joints)
    assert len(set(convert.DGB_JOINTS)) == 22
    flipped = {p for p, _, s in convert.JOINT_MAP if s < 0}
    assert flipped == {"FFJ3", "MFJ3", "THJ1", "THJ0"}


def test_root_is_the_palm_moved_back_along_its_z() -> None:
    q = np.array([0.5, 0.5, -0.5, 0.5])
    root = convert.palm_to_root([0.1, 0.2, 0.3], q)
    z = convert.quat_to_matrix(q)[:, 2]
    assert np.allclose(root[:3], np.array([0.1, 0.2, 0.3]) - 0.034 * z)
    assert np.allclose(root[3:], q)
    p, back = convert.root_to_palm(root)
    assert np.allclose(p, [0.1, 0.2, 0.3]) and np.allclose(back, q)


def test_grasp_round_trip() -> None:
    doc = json.loads((DATA / "box_pinch.json").read_text())
    doc.pop("primitive")
    g = GraspSet.model_validate(doc).grasps[0].model_dump(mode="json")
    d = convert.grasp_to_dgb(g)
    assert all(len(v) == 29 for v in d.values())
    assert d["squeeze"] == d["grasp"]  # no squeeze in the file: squeeze to the grasp itself
    back = Grasp.model_validate(convert.grasp_from_dgb(d["pregrasp"], d["grasp"], d["squeeze"]))
    assert np.allclose(back.pose.position, g["pose"]["position"])
    assert np.allclose(back.pose.quaternion_wxyz, g["pose"]["quaternion_wxyz"])
    assert np.allclose([back.joints[n] for n in convert.PROJECT_JOINTS], [g["joints"][n] for n in convert.PROJECT_JOINTS])
    assert np.allclose(back.pregrasp.pose.position, g["pregrasp"]["pose"]["position"])
