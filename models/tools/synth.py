"""Dataset synthesis: table-top scenes, optimised grasps, energy + penetration + simulation filter.

One shard per (object, resting pose): the object is dropped on a table in a stable resting pose
(``objects.place_on_table``), the ``optimize`` proposer runs on a complete cloud of the object with
the table plane as a constraint, grasps are filtered (max penetration < 5 mm, table penetration
< 1 cm, the simulation test) and stored compactly in the OBJECT frame with the resting
pose beside them, so meshes and clouds are never duplicated: ``load_mesh(object_id)`` rebuilds
everything. Shards are written atomically and skipped when present, so a killed run resumes.

The simulation test is not this module's: the caller passes a :class:`SimFilter` (``models`` never
imports the simulator). ``sim_worker.synth`` provides the MuJoCo one and ``run_synth`` wired with it,
which is what ``dexgrasp synth`` runs.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

if TYPE_CHECKING:
    from ..grasp import Grasp

FORMAT = "dexgrasp-synth/1"


@dataclass(frozen=True)
class SynthConfig:
    split: str = "train"
    hand: str = "shadow"  # a registered hand (models.hands.known_hands); shards record it
    poses_per_object: int = 2
    grasps_per_scene: int = 32
    steps: int = 200
    cloud_points: int = 1024
    max_objects: int | None = None
    seed: int = 0
    procs: int = 2  # simulation processes (in all: with workers, each worker gets procs // workers, at least 1)
    # scene processes, each optimising its own scenes on one torch thread beside its own referee processes
    # (sim_worker.synth.run_synth). The optimiser's small batched ops gain little from a second thread (one
    # 96-candidate scene: 17.1 s on two threads, 22.3 s on one, 2-core AVX2 VM), so two scenes at a time on
    # two cores keep both busy where one leaves one idle for most of the optimisation
    workers: int = 1
    simulate: bool = True
    # optimise ceil(oversample x grasps_per_scene) candidates per scene and referee every one that passes the
    # penetration filters, in the optimiser's rank order, ``referee_chunk`` at a time, until grasps_per_scene
    # pass (until session 15 only the optimiser's best grasps_per_scene of the same candidates were refereed:
    # the referee is cheap on a grasp that fails, it stops at the first push that moves the object)
    oversample: float = 3.0
    referee_chunk: int = 16
    # where the optimiser runs ("cpu", "cuda", "auto"; models/device.py); the referee is MuJoCo on CPU processes
    # either way. Grasps are repeatable for a seed on one device only: shards record the device
    device: str = "cpu"


class SimFilter(Protocol):
    """The simulation test of one scene's grasps: ``True`` for each grasp that holds the object.

    ``vertices`` (V, 3) and ``faces`` (F, 3) are the object's mesh in its own frame (metres), the
    frame the ``grasps`` are in; ``source`` names the object (its catalogue id) in the simulator's
    records. Verdicts come back in the order of ``grasps``."""

    def __call__(self, vertices: np.ndarray, faces: np.ndarray, grasps: Sequence[Grasp], source: str) -> list[bool]: ...


def shard_name(object_id: str, pose: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", object_id) + f"__p{pose}.npz"


SELECTION = "every candidate refereed"  # shards without a ``selection`` referee the optimiser's best grasps_per_scene


def synth_scene(object_id: str, pose_index: int, cfg: SynthConfig, sim_filter: SimFilter | None) -> dict[str, np.ndarray]:
    """Grasps for one scene; returns the shard's arrays (object frame). ``sim_filter`` is used when
    ``cfg.simulate`` (and then required): every candidate that passes the penetration filters goes to it, best
    ranked first, until ``cfg.grasps_per_scene`` pass; those are stored. Without it the best
    ``grasps_per_scene`` non-penetrating candidates are."""
    from .. import objects
    from ..core.geometry import ObjectCloud as ObjectSurface
    from ..core.geometry import Plane as SupportPlane
    from ..device import resolve_device
    from ..grasp import grasps_to_tensors
    from ..hands import get_hand
    from ..physics.quality import grasp_quality
    from ..proposers import get_proposer
    from ..proposers.optimize import OptimizeConfig

    mesh = objects.load_mesh(object_id)
    _, pose, _ = objects.place_on_table(mesh, seed=cfg.seed * 1000 + pose_index)
    rot, trans = pose[:3, :3], pose[:3, 3]
    # the table plane z = 0 (world) expressed in the object frame: n_o = R^T e_z, offset = t_z
    plane = SupportPlane(torch.tensor(rot.T @ np.array([0.0, 0.0, 1.0]), dtype=torch.float32), float(trans[2]))
    p, n = objects.complete_cloud(mesh, n=cfg.cloud_points, seed=pose_index)
    # no extra rounds: a round costs a scene's whole optimisation time, and synthesis is paid in valid grasps per
    # minute. Every candidate comes back (oversample 1 over all of them: the same candidates, in the same rank order)
    n_cand = max(cfg.grasps_per_scene, math.ceil(cfg.oversample * cfg.grasps_per_scene))
    prop = get_proposer("optimize", hand=cfg.hand, device=cfg.device,
                        cfg=OptimizeConfig(steps=cfg.steps, extra_rounds=0, oversample=1.0))
    res = prop.propose(torch.tensor(p), torch.tensor(n), n_cand, plane=plane,
                       seed=cfg.seed * 7919 + pose_index, progress=None)
    hand = get_hand(cfg.hand, dtype="float64")
    pos, rotm, q = grasps_to_tensors(res.grasps, dtype=torch.float64)
    dense_p, dense_n = objects.complete_cloud(mesh, n=12000, seed=99)
    surf = ObjectSurface(torch.tensor(dense_p, dtype=torch.float64), torch.tensor(dense_n, dtype=torch.float64))
    table = (plane.normal.double(), plane.offset)
    per = grasp_quality(hand, pos, rotm, q, surf, table=table)
    keep = (per["max_penetration_m"] < 0.005) & (per["table_penetration_m"] < 0.01)
    idx = torch.nonzero(keep)[:, 0].tolist()  # rank order
    refereed = 0
    if cfg.simulate:
        if sim_filter is None:
            raise ValueError("cfg.simulate needs a sim_filter (sim_worker.synth provides one)")
        passed: list[int] = []
        for lo in range(0, len(idx), max(1, cfg.referee_chunk)):
            rows = idx[lo:lo + max(1, cfg.referee_chunk)]
            verdicts = sim_filter(np.asarray(mesh.vertices), np.asarray(mesh.faces), [res.grasps[i] for i in rows], object_id)
            passed += [i for i, ok in zip(rows, verdicts) if ok]
            refereed += len(rows)
            if len(passed) >= cfg.grasps_per_scene:
                break
        idx = passed
    sel = np.array(idx[: cfg.grasps_per_scene], dtype=np.int64)
    names = hand.joint_names

    def arr(fn: Any, width: int) -> np.ndarray:
        return np.array([fn(res.grasps[i]) for i in sel], dtype=np.float32).reshape(len(sel), width)

    return {
        "format": np.array(FORMAT),
        "object_id": np.array(object_id),
        "hand": np.array(cfg.hand),
        "scale": np.array(objects.entry(object_id).scale, dtype=np.float64),
        "rest_pose": pose.astype(np.float64),
        "palm_position": arr(lambda g: g.pose.position, 3),
        "palm_quaternion_wxyz": arr(lambda g: g.pose.quaternion_wxyz, 4),
        "joints": arr(lambda g: [g.joints[k] for k in names], len(names)),
        "squeeze": arr(lambda g: [g.squeeze[k] for k in names], len(names)),
        "pregrasp_position": arr(lambda g: g.pregrasp.pose.position, 3),
        "pregrasp_joints": arr(lambda g: [g.pregrasp.joints[k] for k in names], len(names)),
        "q1": per["q1"].numpy()[sel].astype(np.float32),
        "energy": res.energy["total"].detach().cpu().numpy()[sel].astype(np.float32),
        "stats": np.array([len(res.grasps), int(keep.sum()), len(sel)], dtype=np.int64),
        "refereed": np.array(refereed, dtype=np.int64),
        "optimizer_s": np.array(res.elapsed_s),
        "optimizer": np.array(f"optimize {prop.version}"),
        "selection": np.array(SELECTION),
        "optimizer_device": np.array(resolve_device(cfg.device).type),
    }


def scene_order(ids: Sequence[str], poses: int) -> list[tuple[str, int]]:
    """The order scenes are synthesised in: every object's first resting pose before any later pose, so that a
    partial run covers as many objects as it can; then each object's later poses one after another, so that a run
    computes its collision decomposition (CoACD, 15-80 s for a non-convex mesh on a 2-core VM; cached on disk,
    which a fresh machine has not) once for all of them instead of once per pose (until session 15 the later
    poses were pose-major too)."""
    return [(oid, 0) for oid in ids] + [(oid, k) for oid in ids for k in range(1, poses)]


def scenes(cfg: SynthConfig) -> list[tuple[str, int]]:
    """Every scene of ``cfg`` as (object id, resting pose), in the order they are synthesised: objects
    round-robin over families, so that a partial (killed) run already spans every family; then
    :func:`scene_order`."""
    from .. import objects

    by_family: dict[str, list[str]] = {}
    for e in objects.objects(cfg.split):
        by_family.setdefault(e.family, []).append(e.id)
    ids = []
    while any(by_family.values()):
        for fam in sorted(by_family):
            if by_family[fam]:
                ids.append(by_family[fam].pop(0))
    if cfg.max_objects is not None:
        ids = ids[: cfg.max_objects]
    return scene_order(ids, cfg.poses_per_object)


def part_of(all_scenes: Sequence[tuple[str, int]], part: tuple[int, int]) -> list[tuple[str, int]]:
    """The scenes of ``part=(i, n)``: those of the objects whose place among the objects (in the order their first
    scene comes in ``all_scenes``) is i modulo n. One object's resting poses stay with one process, so its collision
    decomposition (CoACD, cached on disk) is computed once, not by two processes at the same time for its adjacent
    later poses (session 19: splitting scene by scene did that on every object a machine had no cache for)."""
    i_part, n_part = part
    place: dict[str, int] = {}
    for oid, _ in all_scenes:
        place.setdefault(oid, len(place))
    return [(oid, k) for oid, k in all_scenes if place[oid] % n_part == i_part]


def run_synth(out_dir: str | Path, cfg: SynthConfig, progress: bool = True, sim_filter: SimFilter | None = None,
              part: tuple[int, int] = (0, 1), should_stop: Callable[[], bool] | None = None,
              summary: bool = True) -> dict[str, Any]:
    """Synthesise every scene of ``cfg`` not yet in ``out_dir`` and return the summary card.
    With ``cfg.simulate`` grasps must pass ``sim_filter`` (``sim_worker.synth.run_synth`` supplies
    the MuJoCo one); without, the penetration filter alone decides. ``part=(i, n)`` takes only the
    scenes of the objects whose place is i modulo n (:func:`part_of`; n processes share a run that way: a shard
    is written whole or not at all, and each scene belongs to one part); ``should_stop`` is asked before each
    scene (True: return now); ``summary=False`` returns ``{}`` instead of reading every shard for the card."""
    i_part, n_part = part
    if not 0 <= i_part < n_part:
        raise ValueError(f"part must be (i, n) with 0 <= i < n, got {part}")
    if cfg.simulate and sim_filter is None:
        raise ValueError("simulate=True needs a sim_filter: use sim_worker.synth.run_synth, or simulate=False")

    out = Path(out_dir)
    shards = out / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({"format": FORMAT, **asdict(cfg)}, indent=1) + "\n")
    mine = part_of(scenes(cfg), part)
    for oid, k in mine:  # a run killed while writing leaves its shard's temporary file: that scene is redone
        (shards / (shard_name(oid, k) + ".tmp.npz")).unlink(missing_ok=True)
    todo = [(oid, k) for oid, k in mine if not (shards / shard_name(oid, k)).exists()]
    total = len(mine)
    bar = tqdm(total=total, initial=total - len(todo), desc=f"synth {cfg.split}", unit="scene", disable=not progress)
    kept = 0
    for oid, k in todo:
        if should_stop is not None and should_stop():
            break
        try:
            arrays = synth_scene(oid, k, cfg, sim_filter)
        except (ValueError, RuntimeError) as exc:  # a bad mesh must not stop the run
            arrays = {"format": np.array(FORMAT), "object_id": np.array(oid), "error": np.array(str(exc)[:500]),
                      "stats": np.array([0, 0, 0], dtype=np.int64)}
        tmp = shards / (shard_name(oid, k) + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, shards / shard_name(oid, k))
        kept += int(arrays["stats"][2])
        bar.update(1)
        bar.set_postfix(valid=kept)
    bar.close()
    return summarize_dataset(out) if summary else {}


def shard_hand(shard: dict[str, Any]) -> str:
    """The hand a shard's grasps are for (shards written before it was recorded: the ShadowHand's)."""
    return str(shard["hand"]) if "hand" in shard else "shadow"


def shard_files(out_dir: str | Path) -> list[Path]:
    """The dataset's written shards, in name order (a ``.tmp.npz`` is a shard being written, or left by a killed run)."""
    return [f for f in sorted((Path(out_dir) / "shards").glob("*.npz")) if not f.name.endswith(".tmp.npz")]


def _read_shard(f: Path) -> dict[str, Any]:
    with np.load(f, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_dataset(out_dir: str | Path) -> list[dict[str, Any]]:
    return [_read_shard(f) for f in shard_files(out_dir)]


def _newest_scenes(out_dir: str | Path, scenes: int) -> list[dict[str, Any]]:
    """The ``scenes`` shards with grasps written last (file modification time), newest first; reads no more
    shards than it needs."""
    picked = []
    for f in sorted(shard_files(out_dir), key=lambda f: (f.stat().st_mtime, f.name), reverse=True):
        r = _read_shard(f)
        if "joints" in r and len(r["joints"]):
            picked.append(r)
        if len(picked) >= scenes:
            break
    return picked


def dataset_picture(out_dir: str | Path, path: str | Path, scenes: int = 8, cols: int = 4, newest: bool = False) -> dict[str, Any]:
    """A look at the dataset: ``scenes`` scenes with grasps, one family after another (families and their
    scenes in name order), or with ``newest`` the scenes written last (what synthesis makes today), each drawn
    in its resting pose on the table with its highest-Q1 grasp and that grasp's pregrasp (semi-transparent);
    labelled object, Q1 and the scene's count of grasps. Writes a PNG at ``path`` and returns what it drew."""
    from .. import objects
    from ..core.rotations import quat_to_matrix
    from .pictures import render_grasps, save_png

    picked: list[dict[str, Any]] = []
    if newest:
        picked = _newest_scenes(out_dir, scenes)
    else:
        by_family: dict[str, list[dict[str, Any]]] = {}
        for r in load_dataset(out_dir):
            if "joints" in r and len(r["joints"]):
                by_family.setdefault(str(r["object_id"]).rsplit("/", 1)[0], []).append(r)
        while len(picked) < scenes and any(by_family.values()):
            for fam in sorted(by_family):
                if by_family[fam] and len(picked) < scenes:
                    picked.append(by_family[fam].pop(0))
    if not picked:
        raise ValueError(f"{out_dir}: no scene with grasps to draw")
    tiles, drawn = [], []
    for r in picked:
        i = int(np.argmax(r["q1"]))
        rest = np.asarray(r["rest_pose"], dtype=np.float64)
        world = objects.load_mesh(str(r["object_id"])).copy()
        world.apply_transform(rest)
        rot = rest[:3, :3] @ quat_to_matrix(torch.tensor(r["palm_quaternion_wxyz"][i], dtype=torch.float64)).numpy()
        pos = rest[:3, :3] @ r["palm_position"][i] + rest[:3, 3]
        pregrasp = None
        if "pregrasp_position" in r and "pregrasp_joints" in r:  # v1 shards have no pregrasp joints: no pregrasp drawn; it keeps the grasp's rotation
            pre = rest[:3, :3] @ r["pregrasp_position"][i] + rest[:3, 3]
            pregrasp = (pre[None], rot[None], r["pregrasp_joints"][i][None])
        label = f"{r['object_id']}  Q1 {float(r['q1'][i]):.2f}  ({len(r['q1'])} in the scene)"
        tiles.append(render_grasps(shard_hand(r), pos[None], rot[None], r["joints"][i][None], mesh=world, table_z=0.0,
                                   pregrasp=pregrasp, labels=[label]))
        drawn.append({"object_id": str(r["object_id"]), "q1": round(float(r["q1"][i]), 4), "grasps_in_scene": len(r["q1"])})
    h, w, _ = tiles[0].shape
    rows_n = -(-len(tiles) // cols)
    grid = np.full((rows_n * h, min(cols, len(tiles)) * w, 3), 255, dtype=np.uint8)
    for k, t in enumerate(tiles):
        grid[(k // cols) * h:(k // cols + 1) * h, (k % cols) * w:(k % cols + 1) * w] = t
    save_png(grid, path)
    return {"picture": str(path), "scenes": drawn}


def scene_diversity(rows: list[dict[str, Any]], hand_name: str = "shadow") -> dict[str, Any]:
    """DGTR's occupancies (``models.physics.diversity``, 16 bins) per scene with two or more grasps, averaged:
    delta_t over palm directions from the object's centre (the object frame's origin: meshes are
    centred), delta_r over the palm's Euler angles, delta_q over the joint ranges."""
    from ..core.rotations import quat_to_matrix
    from ..hands import get_hand
    from ..physics.diversity import joint_occupancy, rotation_occupancy, translation_occupancy

    hand = get_hand(hand_name, dtype="float64")
    rows = [r for r in rows if len(r.get("joints", ())) >= 2]
    if not rows:
        return {"scenes": 0, "delta_t": None, "delta_r": None, "delta_q": None, "grasps_per_scene": None}
    dt, dr, dq = [], [], []
    for r in rows:
        pos = torch.from_numpy(r["palm_position"]).double()
        dt.append(translation_occupancy(pos, torch.zeros(3, dtype=torch.float64)))
        dr.append(rotation_occupancy(quat_to_matrix(torch.from_numpy(r["palm_quaternion_wxyz"]).double())))
        dq.append(joint_occupancy(torch.from_numpy(r["joints"]).double(), hand.lower, hand.upper))
    return {
        "scenes": len(rows),
        "delta_t": round(float(np.mean(dt)), 4),
        "delta_r": round(float(np.mean(dr)), 4),
        "delta_q": round(float(np.mean(dq)), 4),
        "grasps_per_scene": round(float(np.mean([len(r["joints"]) for r in rows])), 2),
    }


def _by_optimizer(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Scenes, grasps optimised and referee-valid per optimizer version (a resumed run may mix them)."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if "error" in r:
            continue
        v = str(r["optimizer"]) if "optimizer" in r else "unrecorded"
        if "selection" in r:
            v += f", {r['selection']}"
        d = out.setdefault(v, {"scenes": 0, "grasps_optimised": 0, "grasps_sim_validated": 0})
        d["scenes"] += 1
        d["grasps_optimised"] += int(r["stats"][0])
        d["grasps_sim_validated"] += int(r["stats"][2])
    for d in out.values():
        d["pass_rate_sim_of_optimised"] = round(d["grasps_sim_validated"] / max(1, d["grasps_optimised"]), 4)
    return out


def summarize_dataset(out_dir: str | Path) -> dict[str, Any]:
    rows = load_dataset(out_dir)
    stats = np.array([r["stats"] for r in rows]) if rows else np.zeros((0, 3), dtype=np.int64)
    with_grasps = [r for r in rows if "joints" in r and len(r["joints"])]
    objects_with = {str(r["object_id"]) for r in with_grasps}
    q1 = np.concatenate([r["q1"] for r in with_grasps]) if with_grasps else np.zeros(0)
    summary = {
        "format": FORMAT,
        "scenes": len(rows),
        "scenes_failed": sum("error" in r for r in rows),
        "objects": len({str(r["object_id"]) for r in rows}),
        "objects_with_grasps": len(objects_with),
        "grasps_optimised": int(stats[:, 0].sum()),
        "grasps_passing_penetration": int(stats[:, 1].sum()),
        "grasps_sim_validated": int(stats[:, 2].sum()),
        "pass_rate_penetration": round(float(stats[:, 1].sum() / max(1, stats[:, 0].sum())), 4),
        "pass_rate_sim_of_optimised": round(float(stats[:, 2].sum() / max(1, stats[:, 0].sum())), 4),
        "mean_q1": round(float(q1.mean()), 4) if len(q1) else None,
        "diversity": scene_diversity(with_grasps, shard_hand(with_grasps[0]) if with_grasps else "shadow"),
        "by_optimizer": _by_optimizer(rows),
    }
    Path(out_dir, "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


__all__ = ["SimFilter", "SynthConfig", "load_dataset", "run_synth", "scene_diversity", "scene_order", "scenes", "shard_hand", "shard_name",
           "summarize_dataset", "synth_scene"]
