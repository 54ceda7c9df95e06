"""Cross-check the project's referee against DexGraspBench's fc-mocap test, grasp by grasp.

Run with the project's Python; DexGraspBench runs in its own environment (``--dgb-python``),
from a checkout given by ``--dgb`` (set-up: ``bench/dexgraspbench/run_fc_mocap.py``'s
docstring). Nothing of DexGraspBench is imported here: grasps are converted with
``bench/dexgraspbench/convert.py``, written to a job file with the object's mesh, and
``bench/dexgraspbench/run_fc_mocap.py`` runs their evaluation on it.

    .venv/bin/python bench/referee_crosscheck.py --dgb ~/DexGraspBench --dgb-python ~/dgb/venv/bin/python \
        --grasps tests/data/sim/box_pinch.json [--object prim/box/0003] [--out verdicts.json]
    .venv/bin/python bench/referee_crosscheck.py --dgb ... --dgb-python ... --check-fk 200
    .venv/bin/python bench/referee_crosscheck.py --dgb ... --dgb-python ... --examples [--dgb-result F]

The object is a catalog id (``models.objects``; its mesh is exported and split by CoACD at
threshold 0.05 on their side, as their object pipeline does), or taken from the grasp file:
its ``primitive`` entry (``{"kind", "size"}`` in MuJoCo size semantics, as the trust grasps in
``tests/data/sim`` carry) or its ``object`` field. Grasps are in the object's frame, the object
at the origin. ``--check-fk`` compares the two hand models' link frames under the conversion.
``--examples`` runs DexGraspBench's 400 shipped grasps (converted to the project's convention)
through both referees: the mixed-quality set for the agreement figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

from bench.dexgraspbench import convert

DRIVER = ROOT / "bench" / "dexgraspbench" / "run_fc_mocap.py"


# --------------------------------------------------------------------------- objects
def _write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> str:
    lines = [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def primitive_mesh(kind: str, size: tuple[float, ...]) -> Any:
    """A convex triangle mesh of a MuJoCo primitive (size semantics as in ``sim_worker.scene``)."""
    import trimesh

    if kind == "box":
        return trimesh.creation.box(extents=[2 * s for s in size])
    if kind == "sphere":
        return trimesh.creation.icosphere(subdivisions=4, radius=size[0])
    if kind == "cylinder":
        return trimesh.creation.cylinder(radius=size[0], height=2 * size[1], sections=64)
    if kind == "capsule":
        return trimesh.creation.capsule(radius=size[0], height=2 * size[1], count=[32, 32])
    if kind == "ellipsoid":
        m = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
        m.apply_scale(size)
        return m
    raise ValueError(f"unknown primitive {kind!r}")


def object_entry(doc: dict[str, Any], object_id: str | None, folder: Path) -> dict[str, Any]:
    """The job file's object record: convex pieces for primitives, a mesh (CoACD) for catalog ids."""
    prim = doc.get("primitive")
    if object_id is None and prim is None:
        obj = str(doc.get("object") or "")
        if obj.startswith("primitive:"):
            _, kind, sizes = obj.split(":")
            prim = {"kind": kind, "size": [float(s) for s in sizes.split(",")]}
        else:
            object_id = obj or None
    if object_id is None and prim is not None:
        m = primitive_mesh(prim["kind"], tuple(prim["size"]))
        return {"pieces": [_write_obj(folder / "piece.obj", m.vertices, m.faces)], "volume": float(m.volume)}
    if object_id is None:
        raise ValueError("no object: give --object or a grasp file with 'primitive' or 'object'")
    from models.objects import load_mesh

    m = load_mesh(object_id)
    return {"mesh": _write_obj(folder / "mesh.obj", m.vertices, m.faces), "volume": float(abs(m.volume))}


# --------------------------------------------------------------------------- the two referees
def dgb_verdicts(grasps: list[dict[str, Any]], obj: dict[str, Any], dgb: Path, dgb_python: Path,
                 folder: Path) -> list[dict[str, Any]]:
    """DexGraspBench's fc-mocap verdict for each grasp (project schema dicts), via its own code."""
    job = {"objects": {"obj": obj},
           "grasps": [{"id": i, "object": "obj", **convert.grasp_to_dgb(g)} for i, g in enumerate(grasps)]}
    job_path, out_path = folder / "job.json", folder / "verdicts.json"
    job_path.write_text(json.dumps(job))
    subprocess.run([str(dgb_python), str(DRIVER), "--dgb", str(dgb), "--job", str(job_path), "--out", str(out_path)],
                   check=True)
    verdicts: list[dict[str, Any]] = json.loads(out_path.read_text())["verdicts"]
    return verdicts


def project_verdicts(grasps: list[dict[str, Any]], obj: dict[str, Any],
                     protocol: str = "fc_mocap") -> list[bool] | None:
    """The project's own referee on the same grasps (same object, frame and protocol).

    ``grasps``: project-schema grasp dicts in the object's frame, the object at the origin.
    ``obj``: the job file's object record: ``pieces`` (convex OBJ files) or ``mesh`` (one OBJ,
    split by CoACD at threshold 0.05 as the project's scenes are), ``scale`` (default 1: vertices
    are multiplied by it). One pass/fail per grasp, in order.
    """
    import trimesh

    from models.grasp import Grasp
    from sim_worker.arrays import GraspArrays
    from sim_worker.backends import get_backend
    from sim_worker.config import SimConfig
    from sim_worker.scene import ConvexPart, SimObject, object_from_mesh

    scale = float(obj.get("scale", 1.0))
    if "pieces" in obj:
        parts = []
        volume = 0.0
        for f in obj["pieces"]:
            m = trimesh.load(f, force="mesh", process=False)
            v = np.asarray(m.vertices, dtype=np.float64) * scale
            hull = trimesh.Trimesh(v, np.asarray(m.faces)).convex_hull
            parts.append(ConvexPart("mesh", (), np.asarray(hull.vertices), np.asarray(hull.faces, dtype=np.int64)))
            volume += float(hull.volume)
        sim_obj = SimObject(tuple(parts), volume, source="dexgraspbench")
    else:
        m = trimesh.load(obj["mesh"], force="mesh", process=False)
        sim_obj = object_from_mesh(np.asarray(m.vertices) * scale, np.asarray(m.faces), decomposition="coacd")
    arrays = [GraspArrays.from_grasp(Grasp.model_validate(g)) for g in grasps]
    with get_backend("mujoco") as be:
        results = be.validate(sim_obj, arrays, SimConfig.preset(protocol))
    return [bool(r["success"]) for r in results]


def agreement(dgb: list[bool], ours: list[bool]) -> dict[str, Any]:
    a, b = np.asarray(dgb, bool), np.asarray(ours, bool)
    return {"n": len(a), "agree": float((a == b).mean()), "dgb_pass": int(a.sum()), "project_pass": int(b.sum()),
            "dgb_only": int((a & ~b).sum()), "project_only": int((~a & b).sum())}


def run_examples(dgb: Path, dgb_python: Path, every: int, result: Path | None, folder: Path) -> dict[str, Any]:
    """DexGraspBench's shipped example grasps (mixed quality: about 70 % pass) through both referees.

    Their verdicts come from ``result`` (an earlier ``run_fc_mocap.py --examples`` output) or a
    fresh run; each grasp is converted back to the project's convention for ``project_verdicts``.
    """
    if result is None:
        result = folder / "examples.json"
        subprocess.run([str(dgb_python), str(DRIVER), "--dgb", str(dgb), "--examples", "--every", str(every),
                        "--out", str(result), "--quiet"], check=True)
    out = json.loads(result.read_text())
    job, verdicts = out["job"], out["verdicts"]
    theirs = {v["id"]: bool(v["succ_flag"]) for v in verdicts}
    report: dict[str, Any] = {"dgb": out["summary"], "example_stats": out.get("example_stats")}
    pairs: list[tuple[bool, bool]] = []
    for name, rec in job["objects"].items():
        members = [g for g in job["grasps"] if g["object"] == name]
        if any(np.abs(np.asarray(g["obj_pose"]) - [0, 0, 0, 1, 0, 0, 0]).max() > 1e-9 for g in members):
            raise ValueError(f"{name}: example grasps with a non-identity object pose are not handled")
        obj = {"pieces": sorted(str(p) for p in (Path(rec["dgb_dir"]) / "urdf" / "meshes").glob("*.obj")),
               "scale": rec["scale"]}
        grasps = [convert.grasp_from_dgb(g["pregrasp"], g["grasp"], g["squeeze"]) for g in members]
        ours = project_verdicts(grasps, obj)
        if ours is not None:
            pairs += [(theirs[g["id"]], o) for g, o in zip(members, ours)]
    if pairs:
        report["agreement"] = agreement([a for a, _ in pairs], [b for _, b in pairs])
    return report


# --------------------------------------------------------------------------- kinematics
FK_TIP_M = 0.02  # a point this far along each distal link's z axis (both models' fingers point along z)


def check_fk(dgb: Path, dgb_python: Path, n: int, seed: int, folder: Path) -> dict[str, Any]:
    """Link origins and distal-link points of both hand models under the conversion, for ``n``
    random joint configurations within the project's limits and random palm poses."""
    import mujoco

    from models.hands import hand_model, load_spec

    m = hand_model(load_spec("shadow"), root="fixed", with_visual=False)
    d = mujoco.MjData(m)
    rng = np.random.default_rng(seed)
    jids = [m.joint(f"robot0:{j}").id for j in convert.PROJECT_JOINTS]
    lo, hi = m.jnt_range[jids, 0], m.jnt_range[jids, 1]
    ours, qposes = [], []
    for _ in range(n):
        q = rng.uniform(lo, hi)
        quat = rng.normal(size=4)
        quat /= np.linalg.norm(quat)
        pos = rng.uniform(-0.2, 0.2, size=3)
        r = convert.quat_to_matrix(quat)
        d.qpos[[m.jnt_qposadr[j] for j in jids]] = q
        mujoco.mj_kinematics(m, d)
        ours.append({b: (r @ d.xpos[m.body(b).id] + pos, r @ d.xmat[m.body(b).id].reshape(3, 3))
                     for b in convert.BODY_MAP})
        qposes.append(convert.to_dgb_qpos(pos, quat, q).tolist())
    query, out = folder / "fk.json", folder / "fk_out.json"
    query.write_text(json.dumps({"bodies": list(convert.BODY_MAP.values()), "qpos": qposes}))
    subprocess.run([str(dgb_python), str(DRIVER), "--dgb", str(dgb), "--fk", str(query), "--out", str(out)],
                   check=True)
    theirs = json.loads(out.read_text())["frames"]
    origin_err: dict[str, float] = {}
    tip_err: dict[str, float] = {}
    for o, t in zip(ours, theirs):
        for pb, db in convert.BODY_MAP.items():
            p, r = o[pb]
            tp, tr = np.asarray(t[db]["pos"]), np.asarray(t[db]["rot"])
            origin_err[pb] = max(origin_err.get(pb, 0.0), float(np.linalg.norm(p - tp)))
            if pb.endswith("distal"):
                e = float(np.linalg.norm(p + FK_TIP_M * r[:, 2] - tp - FK_TIP_M * tr[:, 2]))
                tip_err[pb] = max(tip_err.get(pb, 0.0), e)
    return {"n": n, "max_origin_err_mm": {k: round(1e3 * v, 2) for k, v in origin_err.items()},
            "max_tip_err_mm": {k: round(1e3 * v, 2) for k, v in tip_err.items()},
            "worst_tip_err_mm": round(1e3 * max(tip_err.values()), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dgb", required=True, type=Path, help="DexGraspBench checkout (commit 1e7a5a6)")
    ap.add_argument("--dgb-python", required=True, type=Path, help="Python of DexGraspBench's environment")
    ap.add_argument("--grasps", type=Path, help="grasp set JSON (models.grasp.GraspSet), object frame")
    ap.add_argument("--object", default=None, help="catalog object id; default: from the grasp file")
    ap.add_argument("--out", type=Path, default=None, help="write the per-grasp verdicts here")
    ap.add_argument("--check-fk", type=int, default=0, metavar="N", help="compare FK on N random configurations")
    ap.add_argument("--examples", action="store_true", help="DexGraspBench's shipped example grasps")
    ap.add_argument("--every", type=int, default=1, help="with --examples: every N-th grasp")
    ap.add_argument("--dgb-result", type=Path, default=None,
                    help="with --examples: reuse this run_fc_mocap.py --examples output")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    dgb = a.dgb.resolve()
    with tempfile.TemporaryDirectory(prefix="crosscheck_") as tmp:
        folder = Path(tmp)
        if a.check_fk:
            print(json.dumps(check_fk(dgb, a.dgb_python, a.check_fk, a.seed, folder), indent=1))
        if a.examples:
            report = run_examples(dgb, a.dgb_python, a.every, a.dgb_result, folder)
            print(json.dumps(report, indent=1))
            if a.out:
                a.out.write_text(json.dumps(report, indent=1))
        if a.grasps is None:
            return 0
        from models.grasp import GraspSet

        doc = json.loads(a.grasps.read_text())
        grasps = [g.model_dump(mode="json") for g in GraspSet.model_validate(
            {k: v for k, v in doc.items() if k != "primitive"}).grasps]
        obj = object_entry(doc, a.object, folder)
        theirs = dgb_verdicts(grasps, obj, dgb, a.dgb_python, folder)
        ours = project_verdicts(grasps, obj)
    for i, v in enumerate(theirs):
        mine = "" if ours is None else f"  project={'PASS' if ours[i] else 'fail'}"
        print(f"grasp {i}: dgb={'PASS' if v['succ_flag'] else 'fail'} delta_pos={1e3 * v['delta_pos']:.1f} mm "
              f"delta_angle={v['delta_angle']:.1f} deg pregrasp_pene={1e3 * v['pregrasp_ho_pene']:.1f} mm{mine}")
    report: dict[str, Any] = {"dgb": theirs, "dgb_pass": sum(v["succ_flag"] for v in theirs), "n": len(theirs)}
    if ours is not None:
        report["agreement"] = agreement([v["succ_flag"] for v in theirs], ours)
        print(json.dumps(report["agreement"]))
    if a.out:
        a.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
