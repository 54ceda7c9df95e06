"""Is it the finishing or the grasp poses? BODex's example grasps, their own squeeze and pregrasp
against the project's finishing of the same grasp poses, both under the project's referee.

The finishing (``models.stages.squeeze.finish``: snap, wrench-balanced squeeze, cleared pregrasp)
only sees a cloud sampled from the object (1024 points with normals, as a proposer would). If it
holds about as often as BODex's own squeeze, the gap to BODex lies in the poses the optimiser finds.

Input: the ``--out`` file of ``bench/dexgraspbench/run_fc_mocap.py --examples`` (run in the
DexGraspBench environment, see its docstring; plain JSON, no pickles), and the checkout it ran on::

    .venv/bin/python bench/finish_crosscheck.py --dgb-result ex.json [--every 4] [--points 1024]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch

from bench.dexgraspbench import convert
from bench.foundation import hardware
from bench.referee_crosscheck import project_verdicts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dgb-result", required=True, type=Path, help="run_fc_mocap.py --examples output")
    ap.add_argument("--every", type=int, default=1, help="every N-th grasp")
    ap.add_argument("--points", type=int, default=1024)
    a = ap.parse_args()
    import trimesh

    from models.core.geometry import ObjectCloud
    from models.grasp import Grasp, grasps_to_tensors
    from models.hands import get_hand
    from models.proposers.base import finish_grasps

    job = json.loads(a.dgb_result.read_text())["job"]
    hand = get_hand("shadow", dtype="float64")
    grasps = job["grasps"][:: a.every]
    theirs, ours, rows = [], [], []
    for name, rec in job["objects"].items():
        members = [g for g in grasps if g["object"] == name]
        if not members:
            continue
        odir, scale = Path(rec["dgb_dir"]), float(rec["scale"])
        obj = {"pieces": sorted(str(p) for p in (odir / "urdf" / "meshes").glob("*.obj")), "scale": scale}
        mesh = trimesh.load(odir / "mesh" / "coacd.obj", force="mesh", process=False)
        mesh = trimesh.Trimesh(np.asarray(mesh.vertices) * scale, np.asarray(mesh.faces))
        pts, face = trimesh.sample.sample_surface(mesh, a.points, seed=0)
        cloud = ObjectCloud(torch.tensor(np.asarray(pts)), torch.tensor(np.asarray(mesh.face_normals[face])))
        given = [Grasp.model_validate(convert.grasp_from_dgb(g["pregrasp"], g["grasp"], g["squeeze"])) for g in members]
        pos, rot, q = grasps_to_tensors(given, dtype=torch.float64)
        mine = finish_grasps(hand, "shadow", pos, rot, q, cloud, [{} for _ in given])
        v_theirs = project_verdicts([g.model_dump(mode="json") for g in given], obj)
        v_ours = project_verdicts([g.model_dump(mode="json") for g in mine], obj)
        if v_theirs is None or v_ours is None:
            raise SystemExit("the project's referee could not run (see project_verdicts)")
        theirs += v_theirs
        ours += v_ours
        rows += [{"object": name, "their_finishing": t, "our_finishing": o,
                  "our_residual_n": g.scores["squeeze_residual_n"], "our_fingers": g.scores["squeeze_fingers"]}
                 for t, o, g in zip(v_theirs, v_ours, mine)]
        print(f"{name}: theirs {np.mean(v_theirs):.2f} ours {np.mean(v_ours):.2f} ({len(members)})", file=sys.stderr)
    balanced = [r for r in rows if r["our_residual_n"] < 1.0]
    print(json.dumps({
        "hardware": hardware(), "protocol": "fc_mocap (referee of record), the project's implementation",
        "grasps": len(rows), "cloud_points": a.points,
        "their_finishing_success": round(float(np.mean(theirs)), 4),
        "our_finishing_success": round(float(np.mean(ours)), 4),
        "our_finishing_success_balanced": round(float(np.mean([r["our_finishing"] for r in balanced])), 4) if balanced else None,
        "balanced_share": round(len(balanced) / max(1, len(rows)), 4),
        "rows": rows,
    }, indent=1))


if __name__ == "__main__":
    main()
