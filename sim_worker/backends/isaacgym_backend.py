"""Isaac Gym backend (GPU PhysX), usable only where the user installed NVIDIA's Isaac Gym.

UNTESTED: no Isaac Gym is available on the development machines or in CI (it needs
Python <= 3.8; this project needs >= 3.10, see ``docs/simulation.md``). Only the
pure-Python parts below are tested, against the MuJoCo backend on the same inputs.

Same scene, same criteria, by construction:

* the scene is the MuJoCo one: :func:`sim_worker.scene.build_scene` compiles it and
  :func:`describe_scene` reads everything Isaac needs from that compiled model (object
  mass, centre of mass and inertia; finger gains, force limits and joint ranges; the
  weld stiffness). The hand is the same palm-rooted MJCF (``hand_mjcf_xml``) with the
  free root replaced by six drivable root joints (x, y, z slides, then x, y, z hinges),
  because Isaac Gym cannot weld a floating base to a moving target stably with external
  forces at a 4 ms step; the root joints' PD drives get the weld's stiffness. Objects are
  the same convex parts (primitives; CoACD parts or hulls as meshes) in a URDF;
* the numbers come from :class:`~sim_worker.config.SimConfig`, and the verdicts from
  :mod:`sim_worker.validate` / :mod:`sim_worker.execute` themselves: initial penetration
  and contact counts are measured by MuJoCo's collision on the same geometry posed as
  Isaac left it, and the six-direction verdict is computed from the recorded object
  trajectory by :func:`direction_outcome` / :func:`validation_result`, which reproduce
  ``validate_grasp``'s fail-fast checks step for step (a test feeds them MuJoCo's own
  trajectories and compares with ``validate_grasp``'s results);
* batched: one env per grasp; env ``i`` holds object ``i mod n`` of the objects loaded
  up front. The gym and sim are created once per build; a different object set, hand,
  physics or mode (validation: no gravity, no table; execution: gravity and a table)
  needs a rebuild, and after ``max_rebuilds`` rebuilds the backend raises
  :class:`IsaacGymRestartRequired` (Isaac Gym leaks when sims are re-created): restart
  the process. Pass ``objects=`` to load a known set up front.

Everything that touches Isaac Gym sits behind :func:`_require_isaacgym`, so this module
imports (and its pure parts run) without it.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import mujoco
import numpy as np
from numpy.typing import NDArray

from models.core.rotations_np import quat_angle_deg, quat_to_matrix, wxyz_to_xyzw, xyzw_to_wxyz
from models.hands import hand_mjcf_xml, load_spec
from models.hands.mjcf import subtree_bodies

from ..config import ExecutionConfig, PhysicsConfig, SimConfig, ValidationConfig
from ..scene import Scene, SimObject, build_scene
from ..validate import (
    _DIR_VEC,
    DIRECTIONS,
    ValidationResult,
    closing_direction,
    hand_object_penetration,
    set_hand,
    squeeze_targets,
)
from .base import GraspArrays, Progress

F64 = NDArray[np.float64]

INSTALL_HINT = (
    "the 'isaacgym' backend needs NVIDIA Isaac Gym (Preview 4, Python <= 3.8), which is not "
    "installed here: download it from NVIDIA, `pip install -e isaacgym/python`, or use --backend mujoco"
)
ROOT_JOINTS = ("isaac_root_x", "isaac_root_y", "isaac_root_z", "isaac_root_rx", "isaac_root_ry", "isaac_root_rz")
PARK_HEIGHT_M = 1.0  # idle envs lift their hand this far above the object
# PhysX knobs MuJoCo has no counterpart for (Isaac Gym Preview 4 defaults / IsaacGymEnvs' shadow hand)
PHYSX_DEFAULTS: dict[str, Any] = {
    "solver_type": 1,  # TGS
    "num_velocity_iterations": 0,
    "contact_offset": 0.002,
    "rest_offset": 0.0,
    "bounce_threshold_velocity": 0.2,
    "max_depenetration_velocity": 1000.0,
    "friction_offset_threshold": 0.01,
    "friction_correlation_distance": 0.00625,
}
TENDON_LIMIT_STIFFNESS = 30.0  # IsaacGymEnvs' values for the ShadowHand's coupling tendons
TENDON_DAMPING = 0.1
# PhysicsConfig fields with no PhysX counterpart (documented in docs/simulation.md), and the referee
# scene's fields: this backend implements only the ``pinned`` preset, whose values for them are None
# or MuJoCo's defaults
UNMAPPED_PHYSICS = ("cone", "impratio", "noslip_iterations", "condim", "integrator", "object_priority",
                    "finger_force_limit", "distal_drive", "joint_damping", "joint_armature", "joint_frictionloss", "finger_defaults",
                    "hand_solref", "hand_solimp", "hand_margin_m", "weld_solimp", "arena_memory_mb")


class IsaacGymUnavailable(ImportError, RuntimeError):
    """Isaac Gym is not installed (an ImportError; also a RuntimeError for callers that catch that)."""


class IsaacGymRestartRequired(RuntimeError):
    """The sim was rebuilt ``max_rebuilds`` times; restart the process (Isaac Gym leaks on re-creation)."""


def _require_isaacgym() -> tuple[Any, Any, Any]:
    """(gymapi, gymtorch, torch); isaacgym must be imported before torch."""
    try:
        from isaacgym import gymapi, gymtorch
    except ImportError as exc:
        raise IsaacGymUnavailable(INSTALL_HINT) from exc
    import torch

    return gymapi, gymtorch, torch


# =============================================================================== pure parts
def sim_params_dict(physics: PhysicsConfig, gravity: tuple[float, float, float], use_gpu: bool = True) -> dict[str, Any]:
    """``SimConfig.physics`` as Isaac ``SimParams`` (a plain dict; :func:`_apply_sim_params` sets it).
    The CPU tensor pipeline keeps the control code in numpy (PhysX itself may still run on the GPU)."""
    physx = dict(PHYSX_DEFAULTS)
    physx.update({"num_position_iterations": int(physics.solver_iterations), "use_gpu": use_gpu})
    return {
        "dt": float(physics.timestep_s),
        "substeps": 1,
        "up_axis": "z",
        "gravity": tuple(float(g) for g in gravity),
        "use_gpu_pipeline": False,
        "physx": physx,
    }


def shape_friction(physics: PhysicsConfig) -> dict[str, float]:
    """Friction of every hand and object shape. MuJoCo takes the object's values for hand-object
    contacts (``priority=1``); PhysX averages the two shapes', so both get the object's."""
    return {
        "friction": float(physics.friction_sliding),
        "torsion_friction": float(physics.friction_torsional),
        "rolling_friction": float(physics.friction_rolling),
        "restitution": 0.0,
    }


def weld_gains(solref: tuple[float, ...]) -> tuple[float, float]:
    """(stiffness 1/s^2, damping 1/s) per unit mass of MuJoCo's weld ``solref = (timeconst, dampratio)``:
    b = 2 / timeconst, k = 1 / (timeconst * dampratio)^2 (MuJoCo's reference acceleration, impedance 1)."""
    tc, zeta = float(solref[0]), float(solref[1])
    return 1.0 / (tc * zeta) ** 2, 2.0 / tc


def quat_to_root_euler(q_wxyz: F64) -> F64:
    """Root hinge angles (a, b, c) with R = Rx(a) Ry(b) Rz(c), the chain's intrinsic x, y, z order."""
    m = quat_to_matrix(q_wxyz)
    b = math.asin(max(-1.0, min(1.0, float(m[0, 2]))))
    a = math.atan2(-float(m[1, 2]), float(m[2, 2]))
    c = math.atan2(-float(m[0, 1]), float(m[0, 0]))
    return np.array([a, b, c])


def root_dofs(pos: F64, q_wxyz: F64, current: F64 | None = None) -> F64:
    """The six root joint values for a palm pose; hinge angles unwrapped next to ``current``."""
    ang = quat_to_root_euler(q_wxyz)
    if current is not None:
        cur = np.asarray(current, dtype=np.float64)[3:6]
        ang = cur + (ang - cur + np.pi) % (2 * np.pi) - np.pi
    return np.concatenate([np.asarray(pos, dtype=np.float64), ang])


def hand_mjcf_for_isaac(hand: str) -> str:
    """The palm-rooted hand MJCF (collision geometry, same bodies, joints, tendons and contact
    exclusions as ``build_scene``'s) with the palm under six root joints instead of a free joint;
    actuators and sensors are dropped (Isaac drives DOFs through their drive properties)."""
    spec = load_spec(hand)
    root = ET.fromstring(hand_mjcf_xml(spec, root="fixed", with_visual=False))
    for tag in ("actuator", "sensor"):
        for sec in root.findall(tag):
            root.remove(sec)
    wb = root.find("worldbody")
    assert wb is not None
    palm = wb.find("body")
    assert palm is not None
    wb.remove(palm)
    parent = wb
    axes = ("1 0 0", "0 1 0", "0 0 1")
    for i, name in enumerate(ROOT_JOINTS):
        b = ET.SubElement(parent, "body", {"name": name})
        ET.SubElement(b, "inertial", {"pos": "0 0 0", "mass": "0.001", "diaginertia": "1e-6 1e-6 1e-6"})
        ET.SubElement(
            b, "joint",
            {"name": name, "type": "slide" if i < 3 else "hinge", "axis": axes[i % 3], "limited": "false",
             "damping": "0", "armature": "0"},
        )
        parent = b
    parent.append(palm)
    return ET.tostring(root, encoding="unicode")


@dataclass(frozen=True)
class ObjectPart:
    """One URDF collision element in the object frame."""

    kind: str  # "box" | "sphere" | "mesh"
    size: tuple[float, ...] = ()  # box: full extents; sphere: (radius,)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    vertices: F64 | None = None
    faces: NDArray[np.int64] | None = None


def object_parts(obj: SimObject) -> list[ObjectPart]:
    """The object's convex parts for Isaac. Boxes and spheres are exact PhysX primitives; capsules are
    a cylinder mesh plus two spheres; cylinders and ellipsoids become convex meshes (64 sections /
    icosphere level 3: PhysX has no such primitives), meshes (CoACD parts or hulls) stay meshes."""
    import trimesh

    out: list[ObjectPart] = []
    for p in obj.parts:
        s = p.size
        if p.kind == "box":
            out.append(ObjectPart("box", (2 * s[0], 2 * s[1], 2 * s[2])))
        elif p.kind == "sphere":
            out.append(ObjectPart("sphere", (s[0],)))
        elif p.kind in ("cylinder", "capsule"):
            m = trimesh.creation.cylinder(radius=s[0], height=2 * s[1], sections=64)
            out.append(ObjectPart("mesh", (), vertices=np.asarray(m.vertices), faces=np.asarray(m.faces, dtype=np.int64)))
            if p.kind == "capsule":
                out += [ObjectPart("sphere", (s[0],), (0.0, 0.0, z)) for z in (s[1], -s[1])]
        elif p.kind == "ellipsoid":
            m = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
            v = np.asarray(m.vertices) * np.asarray(s[:3])
            out.append(ObjectPart("mesh", (), vertices=v, faces=np.asarray(m.faces, dtype=np.int64)))
        elif p.kind == "mesh":
            assert p.vertices is not None and p.faces is not None
            out.append(ObjectPart("mesh", (), vertices=np.asarray(p.vertices), faces=np.asarray(p.faces, dtype=np.int64)))
        else:
            raise ValueError(f"no Isaac Gym shape for object part {p.kind!r}")
    return out


@dataclass(frozen=True)
class IsaacScene:
    """Everything an Isaac env needs, read from the compiled MuJoCo scene (same numbers)."""

    hand: str
    hand_mjcf: str
    joint_names: tuple[str, ...]  # spec order, MJCF names (prefixed)
    joint_lower: F64
    joint_upper: F64
    joint_stiffness: F64  # finger_kp on actuated joints, 0 on tendon-coupled ones
    joint_effort: F64  # |forcerange| (already scaled by finger_force_scale), 0 on coupled ones
    actuated: NDArray[np.bool_]
    root_stiffness: F64  # (6,): weld stiffness x hand mass (slides) / hand inertia (hinges)
    root_damping: F64
    object_mass: float
    object_com: F64  # object frame
    object_inertia: F64  # (3, 3) about the centre of mass, object frame
    parts: tuple[ObjectPart, ...]
    friction: dict[str, float] = field(default_factory=dict)


def _hand_mass_inertia(sc: Scene) -> tuple[float, float]:
    """Hand mass and its largest principal inertia about the palm origin (scene at its reference pose)."""
    m = sc.model
    d = mujoco.MjData(m)
    mujoco.mj_kinematics(m, d)
    bodies = subtree_bodies(m, sc.palm_body)
    origin = d.xpos[sc.palm_body]
    total = np.zeros((3, 3))
    mass = 0.0
    for b in bodies:
        mb = float(m.body_mass[b])
        r = d.ximat[b].reshape(3, 3)
        rel = d.xipos[b] - origin
        total += r @ np.diag(m.body_inertia[b]) @ r.T + mb * (float(rel @ rel) * np.eye(3) - np.outer(rel, rel))
        mass += mb
    return mass, float(np.linalg.eigvalsh(total).max())


def describe_scene(obj: SimObject, physics: PhysicsConfig, hand: str = "shadow", sc: Scene | None = None) -> IsaacScene:
    """The Isaac scene description of ``build_scene(obj, physics, hand)``."""
    if sc is None:
        sc = build_scene(obj, physics, hand=hand)
    m = sc.model
    names = tuple(sc.spec.full_name(j) for j in sc.spec.joints)
    rng = m.jnt_range[[int(m.dof_jntid[d]) for d in sc.joint_dof]]
    n = len(names)
    kp, eff = np.zeros(n), np.zeros(n)
    act = np.zeros(n, dtype=bool)
    for a, j in enumerate(sc.actuator_joint):
        act[j] = True
        kp[j] = float(m.actuator_gainprm[a, 0])
        eff[j] = float(np.abs(m.actuator_forcerange[a]).max()) if m.actuator_forcelimited[a] else 0.0
    k, b = weld_gains(physics.weld_solref)
    hm, hi = _hand_mass_inertia(sc)
    ob = sc.object_body
    r = quat_to_matrix(m.body_iquat[ob])
    return IsaacScene(
        hand=hand,
        hand_mjcf=hand_mjcf_for_isaac(hand),
        joint_names=names,
        joint_lower=np.array(rng[:, 0]),
        joint_upper=np.array(rng[:, 1]),
        joint_stiffness=kp,
        joint_effort=eff,
        actuated=act,
        root_stiffness=np.array([k * hm] * 3 + [k * hi] * 3),
        root_damping=np.array([b * hm] * 3 + [b * hi] * 3),
        object_mass=float(m.body_mass[ob]),
        object_com=np.array(m.body_ipos[ob]),
        object_inertia=r @ np.diag(m.body_inertia[ob]) @ r.T,
        parts=tuple(object_parts(obj)),
        friction=shape_friction(physics),
    )


def _f(a: Sequence[float] | F64) -> str:
    return " ".join(f"{float(x):.9g}" for x in np.asarray(a, dtype=np.float64).ravel())


def object_urdf(desc: IsaacScene, mesh_files: Sequence[str]) -> str:
    """URDF of the object: one link, the MuJoCo inertial, one collision element per part
    (``mesh_files`` holds the OBJ path of each mesh part, in order)."""
    robot = ET.Element("robot", {"name": "object"})
    link = ET.SubElement(robot, "link", {"name": "object"})
    inertial = ET.SubElement(link, "inertial")
    ET.SubElement(inertial, "origin", {"xyz": _f(desc.object_com), "rpy": "0 0 0"})
    ET.SubElement(inertial, "mass", {"value": f"{desc.object_mass:.9g}"})
    i = desc.object_inertia
    ET.SubElement(
        inertial, "inertia",
        {k: f"{v:.9g}" for k, v in
         {"ixx": i[0, 0], "ixy": i[0, 1], "ixz": i[0, 2], "iyy": i[1, 1], "iyz": i[1, 2], "izz": i[2, 2]}.items()},
    )
    meshes = iter(mesh_files)
    for p in desc.parts:
        col = ET.SubElement(link, "collision")
        ET.SubElement(col, "origin", {"xyz": _f(p.origin), "rpy": "0 0 0"})
        geo = ET.SubElement(col, "geometry")
        if p.kind == "box":
            ET.SubElement(geo, "box", {"size": _f(p.size)})
        elif p.kind == "sphere":
            ET.SubElement(geo, "sphere", {"radius": f"{p.size[0]:.9g}"})
        else:
            ET.SubElement(geo, "mesh", {"filename": next(meshes)})
    return ET.tostring(robot, encoding="unicode")


def write_assets(desc: IsaacScene, folder: str) -> tuple[str, str]:
    """Write the hand MJCF and the object URDF (+ OBJ parts) under ``folder``; returns their file names."""
    os.makedirs(folder, exist_ok=True)
    hand_file = "hand.xml"
    with open(os.path.join(folder, hand_file), "w") as fh:
        fh.write(desc.hand_mjcf)
    meshes = []
    for i, p in enumerate(desc.parts):
        if p.kind != "mesh":
            continue
        assert p.vertices is not None and p.faces is not None
        name = f"object_part_{i}.obj"
        with open(os.path.join(folder, name), "w") as fh:
            fh.writelines(f"v {x:.9g} {y:.9g} {z:.9g}\n" for x, y, z in p.vertices)
            fh.writelines(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in p.faces)
        meshes.append(name)
    obj_file = "object.urdf"
    with open(os.path.join(folder, obj_file), "w") as fh:
        fh.write(object_urdf(desc, meshes))
    return hand_file, obj_file


def env_objects(num_envs: int, n_objects: int) -> list[int]:
    """Env ``i`` holds object ``i mod n``."""
    return [i % n_objects for i in range(num_envs)]


def grasp_batches(n_grasps: int, object_index: int, num_envs: int, n_objects: int) -> list[list[tuple[int, int]]]:
    """(env, grasp) pairs per round: the grasps of one object spread over that object's envs."""
    envs = [i for i, o in enumerate(env_objects(num_envs, n_objects)) if o == object_index]
    if not envs:
        raise ValueError(f"no env holds object {object_index} ({num_envs} envs, {n_objects} objects)")
    return [
        [(envs[k], g) for k, g in enumerate(range(start, min(start + len(envs), n_grasps)))]
        for start in range(0, n_grasps, len(envs))
    ]


def disturbance_forces(mass: float, v: ValidationConfig, object_quat_wxyz: F64 | None = None) -> F64:
    """(6, 3) world forces, in ``DIRECTIONS`` order: ``force_per_kg_n * m`` along the object's axes."""
    q = np.array([1.0, 0, 0, 0]) if object_quat_wxyz is None else np.asarray(object_quat_wxyz, dtype=np.float64)
    rot = quat_to_matrix(q)
    force = v.force_per_kg_n * mass
    return np.stack([rot @ d * force for d in _DIR_VEC])


def direction_outcome(pos: F64, quat_wxyz: F64, p0: F64, q0: F64, v: ValidationConfig) -> tuple[bool, float, float]:
    """(passed, moved m, turned deg) of one direction from the object's pose after each of its steps
    (``pos`` (T, 3), ``quat_wxyz`` (T, 4), T = the direction's step count), measured where
    ``validate_grasp`` measures: at the first failing check when ``fail_fast``, else at the end."""
    n = len(pos)
    k_end = n - 1
    if v.fail_fast:
        every = max(1, n // 10)
        for k in range(every - 1, n, every):
            moved = float(np.linalg.norm(pos[k] - p0))
            if not (moved < v.max_translation_m and quat_angle_deg(q0, quat_wxyz[k]) < v.max_rotation_deg):
                k_end = k
                break
    moved = float(np.linalg.norm(pos[k_end] - p0))
    turned = quat_angle_deg(q0, quat_wxyz[k_end])
    return bool(moved < v.max_translation_m and turned < v.max_rotation_deg), moved, turned


def validation_result(
    penetration: float, contact_count: int, outcomes: Sequence[tuple[bool, float, float]], v: ValidationConfig,
) -> ValidationResult:
    """``validate_grasp``'s result from the per-direction outcomes (``DIRECTIONS`` order; only the
    directions that ran). ``outcomes`` is ignored when the initial penetration fails the grasp."""
    res = ValidationResult(success=False, initial_penetration_m=penetration, protocol=v.protocol)
    if penetration > v.max_initial_penetration_m:
        res.reason = f"initial penetration {penetration * 100:.1f} cm > {v.max_initial_penetration_m * 100:.1f} cm"
        return res
    res.contact_count = contact_count
    all_ok = True
    for name, (ok, moved, turned) in zip(DIRECTIONS, outcomes):
        res.passed[name] = ok
        res.translation_m[name] = moved
        res.rotation_deg[name] = turned
        all_ok &= ok
        if not ok and v.fail_fast:
            break
    res.success = all_ok
    if not all_ok:
        failed = [k for k, ok in res.passed.items() if not ok]
        res.reason = f"object slipped under {', '.join(failed)}"
    return res


def settle_targets(sc: Scene, joints: F64, squeeze: F64 | None, v: ValidationConfig) -> tuple[F64, F64, int]:
    """(start, end) finger targets in spec order and the settle step count, as ``validate_grasp``:
    actuated joints ramp from the grasp joints to the squeeze targets over the first half of the
    settle; tendon-coupled joints keep their start value (their drive is off: they follow)."""
    start = np.asarray(joints, dtype=np.float64).copy()
    end = start.copy()
    if squeeze is None:
        end[sc.actuator_joint] = squeeze_targets(sc, start, v.squeeze_rad)
    else:
        end[sc.actuator_joint] = np.asarray(squeeze, dtype=np.float64)[sc.actuator_joint]
    return start, end, max(1, round(v.settle_s / sc.model.opt.timestep))


def ramp(start: F64, end: F64, k: int, n: int) -> F64:
    """Step ``k``'s target: ``validate_grasp``'s linear ramp over the first half of ``n`` steps."""
    out: F64 = start + (end - start) * min(1.0, (k + 1) / (0.5 * n))
    return out


def execution_verdict(com1: F64, target: F64, finished: bool, unstable: bool, e: ExecutionConfig) -> tuple[bool, str]:
    """``execute_grasp``'s success test and reason for a rollout that was not canceled."""
    if unstable or not np.isfinite(com1).all():
        return False, "simulation became unstable"
    miss = float(np.linalg.norm(np.asarray(com1) - np.asarray(target)))
    if miss <= e.success_radius_m:
        return True, ""
    why = f"object centre {miss * 100:.1f} cm from the target (> {e.success_radius_m * 100:.0f} cm)"
    if not finished:
        why += "; the policy did not finish within its horizon"
    return False, why


def build_key(objects: Sequence[SimObject], hand: str, cfg: SimConfig, mode: str, envs_per_object: int) -> tuple[str, ...]:
    e = cfg.execution
    extra = (repr(e.table_z), repr(e.gravity)) if mode == "execute" else ()
    return (mode, hand, repr(cfg.physics), str(envs_per_object), *(o.digest + repr(o.mass_kg) for o in objects), *extra)


# =============================================================================== the backend
def _apply_sim_params(gymapi: Any, d: dict[str, Any]) -> Any:
    p = gymapi.SimParams()
    p.dt = d["dt"]
    p.substeps = d["substeps"]
    p.up_axis = gymapi.UP_AXIS_Z
    p.gravity = gymapi.Vec3(*d["gravity"])
    p.use_gpu_pipeline = d["use_gpu_pipeline"]
    for k, val in d["physx"].items():
        setattr(p.physx, k, val)
    return p


@dataclass
class _Build:
    key: tuple[str, ...]
    sim: Any
    envs: list[Any]
    objects: list[SimObject]
    scenes: list[Scene]  # MuJoCo scene per object (kinematics and collision queries)
    descs: list[IsaacScene]
    hand_dof: NDArray[np.int64]  # (E, 6 + J) sim DOF index: root joints then spec-order joints
    hand_actor: NDArray[np.int32]
    obj_actor: NDArray[np.int32]
    obj_body: NDArray[np.int64]
    palm_body: NDArray[np.int64]
    keypoint_body: NDArray[np.int64]  # (E, K)
    origin: F64  # (E, 3) where an actor at env-local 0 appears in the root-state tensor
    root: Any  # torch views (CPU pipeline)
    dof: Any
    bodies: Any
    targets: Any
    forces: Any
    tmp: tempfile.TemporaryDirectory[str]


class IsaacGymBackend:
    """See the module docstring. ``device``: CUDA device for PhysX; ``envs_per_object``: envs per
    loaded object (a validation batch runs that many grasps at once); ``objects``: loaded up front."""

    name = "isaacgym"

    def __init__(
        self, device: int = 0, envs_per_object: int = 64, max_rebuilds: int = 8, use_gpu: bool = True,
        objects: Sequence[SimObject] = (), **_: Any,
    ) -> None:
        self._gymapi, self._gymtorch, self._torch = _require_isaacgym()
        self._gym = self._gymapi.acquire_gym()
        self._device = device
        self._per_object = envs_per_object
        self._max_rebuilds = max_rebuilds
        self._use_gpu = use_gpu
        self._preload = list(objects)
        self._rebuilds = 0
        self._build: _Build | None = None

    # ----------------------------------------------------------------------- building
    def _ensure(self, obj: SimObject, cfg: SimConfig, hand: str, mode: str) -> tuple[_Build, int]:
        objects = list(self._preload)
        if all(o.digest != obj.digest or o.mass_kg != obj.mass_kg for o in objects):
            objects.append(obj)
        idx = next(i for i, o in enumerate(objects) if o.digest == obj.digest and o.mass_kg == obj.mass_kg)
        key = build_key(objects, hand, cfg, mode, self._per_object)
        if self._build is not None and self._build.key == key:
            return self._build, idx
        if self._build is not None:
            if self._rebuilds >= self._max_rebuilds:
                raise IsaacGymRestartRequired(
                    f"the Isaac Gym sim was rebuilt {self._rebuilds} times; restart the worker process "
                    "(Isaac Gym leaks when sims are re-created; load known objects up front with objects=)"
                )
            self._destroy()
            self._rebuilds += 1
        self._build = self._create(objects, cfg, hand, mode, key)
        return self._build, idx

    def _create(self, objects: list[SimObject], cfg: SimConfig, hand: str, mode: str, key: tuple[str, ...]) -> _Build:
        gymapi, gym, torch = self._gymapi, self._gym, self._torch
        e = cfg.execution
        table_z = e.table_z if mode == "execute" else None
        gravity = e.gravity if mode == "execute" else (0.0, 0.0, 0.0)
        params = _apply_sim_params(gymapi, sim_params_dict(cfg.physics, gravity, self._use_gpu))
        sim = gym.create_sim(self._device, -1, gymapi.SIM_PHYSX, params)
        if sim is None:
            raise RuntimeError("Isaac Gym could not create the sim (check the CUDA device and driver)")
        fr = shape_friction(cfg.physics)
        if table_z is not None:
            plane = gymapi.PlaneParams()
            plane.normal = gymapi.Vec3(0.0, 0.0, 1.0)
            plane.distance = -table_z
            plane.static_friction = plane.dynamic_friction = fr["friction"]
            gym.add_ground(sim, plane)
        tmp = tempfile.TemporaryDirectory(prefix="dexgrasp-isaac-")
        scenes = [build_scene(o, cfg.physics, hand=hand, table_z=table_z, gravity=gravity) for o in objects]
        descs = [describe_scene(o, cfg.physics, hand, sc) for o, sc in zip(objects, scenes)]
        hand_opt = gymapi.AssetOptions()
        hand_opt.fix_base_link = True  # the root joints carry the palm
        hand_opt.disable_gravity = True  # MuJoCo: gravity compensation on every hand body
        hand_opt.collapse_fixed_joints = False
        hand_opt.default_dof_drive_mode = gymapi.DOF_MODE_POS
        obj_opt = gymapi.AssetOptions()
        obj_opt.override_com = obj_opt.override_inertia = False  # the URDF carries MuJoCo's inertial
        obj_opt.vhacd_enabled = False  # parts are convex already (CoACD / hulls)
        obj_opt.disable_gravity = mode != "execute"
        hand_assets, obj_assets = [], []
        for i, d in enumerate(descs):
            folder = os.path.join(tmp.name, f"object_{i}")
            hf, of = write_assets(d, folder)
            hand_assets.append(gym.load_asset(sim, folder, hf, hand_opt))
            obj_assets.append(gym.load_asset(sim, folder, of, obj_opt))
        n_env = self._per_object * len(objects)
        spacing = 1.5
        lower, upper = gymapi.Vec3(-spacing, -spacing, 0.0), gymapi.Vec3(spacing, spacing, spacing)
        per_row = max(1, int(math.sqrt(n_env)))
        envs, hand_h, obj_h = [], [], []
        for i, oi in enumerate(env_objects(n_env, len(objects))):
            env = gym.create_env(sim, lower, upper, per_row)
            d = descs[oi]
            ha, oa = hand_assets[oi], obj_assets[oi]
            pose = gymapi.Transform()
            h = gym.create_actor(env, ha, pose, "hand", i, 0, 0)
            o = gym.create_actor(env, oa, pose, "object", i, 0, 0)
            dp = gym.get_asset_dof_properties(ha)
            names = list(gym.get_asset_dof_names(ha))
            for j, nm in enumerate(ROOT_JOINTS):
                k = names.index(nm)
                dp["driveMode"][k] = gymapi.DOF_MODE_POS
                dp["stiffness"][k], dp["damping"][k] = d.root_stiffness[j], d.root_damping[j]
                dp["effort"][k] = 1e9
            for j, nm in enumerate(d.joint_names):
                k = names.index(nm)
                dp["driveMode"][k] = gymapi.DOF_MODE_POS if d.actuated[j] else gymapi.DOF_MODE_NONE
                dp["stiffness"][k] = d.joint_stiffness[j]
                dp["damping"][k] = 0.0
                dp["effort"][k] = d.joint_effort[j] if d.joint_effort[j] > 0 else 1e9
                dp["lower"][k], dp["upper"][k] = d.joint_lower[j], d.joint_upper[j]
            gym.set_actor_dof_properties(env, h, dp)
            for actor in (h, o):
                props = gym.get_actor_rigid_shape_properties(env, actor)
                for sp in props:
                    for k2, val in fr.items():
                        setattr(sp, k2, val)
                gym.set_actor_rigid_shape_properties(env, actor, props)
            envs.append(env)
            hand_h.append(h)
            obj_h.append(o)
        # the coupling tendons (J0 follows J1), as IsaacGymEnvs sets them for the same MJCF
        for ha in hand_assets:
            tp = gym.get_asset_tendon_properties(ha)
            for t in tp:
                t.limit_stiffness, t.damping = TENDON_LIMIT_STIFFNESS, TENDON_DAMPING
            gym.set_asset_tendon_properties(ha, tp)
        gym.prepare_sim(sim)
        sim_dom = gymapi.DOMAIN_SIM
        spec = scenes[0].spec
        hand_dof = np.zeros((n_env, 6 + len(spec.joints)), dtype=np.int64)
        from models.hands import get_hand
        from models.physics.diversity import keypoint_links

        kp_links = keypoint_links(get_hand(spec.name).link_names)
        kp = np.zeros((n_env, len(kp_links)), dtype=np.int64)
        palm = np.zeros(n_env, dtype=np.int64)
        obody = np.zeros(n_env, dtype=np.int64)
        for i, env in enumerate(envs):
            h = hand_h[i]
            for j, nm in enumerate(ROOT_JOINTS + tuple(spec.full_name(n) for n in spec.joints)):
                hand_dof[i, j] = gym.find_actor_dof_index(env, h, nm, sim_dom)
            palm[i] = gym.find_actor_rigid_body_index(env, h, spec.mjcf.root_body, sim_dom)
            kp[i] = [gym.find_actor_rigid_body_index(env, h, spec.full_name(n), sim_dom) for n in kp_links]
            obody[i] = gym.get_actor_rigid_body_index(env, obj_h[i], 0, sim_dom)
        wrap = self._gymtorch.wrap_tensor
        root = wrap(gym.acquire_actor_root_state_tensor(sim))
        dof = wrap(gym.acquire_dof_state_tensor(sim))
        bodies = wrap(gym.acquire_rigid_body_state_tensor(sim))
        gym.refresh_actor_root_state_tensor(sim)
        obj_actor = np.array([gym.get_actor_index(env, o, sim_dom) for env, o in zip(envs, obj_h)], dtype=np.int32)
        origin = root.numpy()[obj_actor, :3].astype(np.float64).copy()
        n_dof = dof.shape[0]
        return _Build(
            key=key, sim=sim, envs=envs, objects=objects, scenes=scenes, descs=descs, hand_dof=hand_dof,
            hand_actor=np.array([gym.get_actor_index(env, h, sim_dom) for env, h in zip(envs, hand_h)], dtype=np.int32),
            obj_actor=obj_actor, obj_body=obody, palm_body=palm, keypoint_body=kp, origin=origin,
            root=root, dof=dof, bodies=bodies,
            targets=torch.zeros(n_dof, dtype=torch.float32), forces=torch.zeros((bodies.shape[0], 3), dtype=torch.float32),
            tmp=tmp,
        )

    # ----------------------------------------------------------------------- stepping helpers
    def _push_targets(self, b: _Build) -> None:
        self._gym.set_dof_position_target_tensor(b.sim, self._gymtorch.unwrap_tensor(b.targets))

    def _set_state(self, b: _Build, env_ids: Sequence[int]) -> None:
        g, u = self._gym, self._gymtorch.unwrap_tensor
        idx = self._torch.tensor(
            np.concatenate([b.hand_actor[list(env_ids)], b.obj_actor[list(env_ids)]]), dtype=self._torch.int32,
        )
        g.set_dof_state_tensor_indexed(b.sim, u(b.dof), u(idx), len(idx))
        oidx = self._torch.tensor(b.obj_actor[list(env_ids)], dtype=self._torch.int32)
        g.set_actor_root_state_tensor_indexed(b.sim, u(b.root), u(oidx), len(oidx))

    def _step(self, b: _Build, forces: bool = False) -> None:
        g = self._gym
        if forces:
            g.apply_rigid_body_force_tensors(b.sim, self._gymtorch.unwrap_tensor(b.forces), None, self._gymapi.ENV_SPACE)
        g.simulate(b.sim)
        g.fetch_results(b.sim, True)
        g.refresh_dof_state_tensor(b.sim)
        g.refresh_actor_root_state_tensor(b.sim)
        g.refresh_rigid_body_state_tensor(b.sim)

    def _put_object(self, b: _Build, env: int, pos: F64, quat_wxyz: F64) -> None:
        r = b.root.numpy()
        a = b.obj_actor[env]
        r[a, :3] = b.origin[env] + pos
        r[a, 3:7] = wxyz_to_xyzw(quat_wxyz)
        r[a, 7:13] = 0.0

    def _put_hand(self, b: _Build, env: int, pos: F64, quat_wxyz: F64, joints: F64) -> None:
        d, t = b.dof.numpy(), b.targets.numpy()
        q = np.concatenate([root_dofs(pos, quat_wxyz), joints])
        d[b.hand_dof[env], 0] = q
        d[b.hand_dof[env], 1] = 0.0
        t[b.hand_dof[env]] = q

    def _object_pose(self, b: _Build, env: int) -> tuple[F64, F64]:
        r = b.root.numpy()[b.obj_actor[env]].astype(np.float64)
        return r[:3] - b.origin[env], xyzw_to_wxyz(r[3:7])

    def _hand_pose(self, b: _Build, env: int) -> tuple[F64, F64, F64]:
        s = b.bodies.numpy()[b.palm_body[env]].astype(np.float64)
        joints = b.dof.numpy()[b.hand_dof[env, 6:], 0].astype(np.float64)
        return s[:3] - b.origin[env], xyzw_to_wxyz(s[3:7]), joints

    def _park_idle(self, b: _Build, busy: set[int]) -> None:
        for env in range(len(b.envs)):
            if env not in busy:
                sc = b.scenes[env % len(b.objects)]
                self._put_hand(b, env, np.array([0.0, 0.0, PARK_HEIGHT_M]), np.array([1.0, 0, 0, 0]),
                               np.asarray(sc.spec.open_pose, dtype=np.float64))

    # ----------------------------------------------------------------------- validation
    def validate(
        self, obj: SimObject, grasps: Sequence[GraspArrays], cfg: SimConfig, hand: str = "shadow",
        progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
    ) -> list[dict[str, Any]]:
        if cfg.validation.protocol != "pinned":
            raise NotImplementedError(
                f"the Isaac Gym backend implements only the 'pinned' validation protocol, not "
                f"{cfg.validation.protocol!r} (the referee of record): run validation on the 'mujoco' backend, or "
                "send sim={'preset': 'pinned'} to use Isaac Gym with the earlier, lenient protocol")
        b, oi = self._ensure(obj, cfg, hand, "validate")
        sc = b.scenes[oi]
        kin = mujoco.MjData(sc.model)
        out: list[dict[str, Any]] = []
        for batch in grasp_batches(len(grasps), oi, len(b.envs), len(b.objects)):
            if should_stop is not None and should_stop():
                break
            results = self._validate_batch(b, sc, kin, [(env, grasps[g]) for env, g in batch], cfg, should_stop)
            if results is None:
                break
            for r in results:
                out.append(r.to_dict())
                if progress is not None:
                    progress(len(out), len(grasps))
        return out

    def _penetration(self, sc: Scene, kin: mujoco.MjData, pos: F64, quat: F64, joints: F64, opos: F64, oquat: F64) -> tuple[float, int]:
        """MuJoCo's collision on the same geometry, posed as given (engine-independent)."""
        mujoco.mj_resetData(sc.model, kin)
        kin.qpos[sc.object_qpos : sc.object_qpos + 3] = opos
        kin.qpos[sc.object_qpos + 3 : sc.object_qpos + 7] = oquat
        set_hand(sc, kin, pos, quat, joints)
        mujoco.mj_forward(sc.model, kin)
        return hand_object_penetration(sc, kin)

    def _validate_batch(
        self, b: _Build, sc: Scene, kin: mujoco.MjData, jobs: list[tuple[int, GraspArrays]], cfg: SimConfig,
        should_stop: Callable[[], bool] | None,
    ) -> list[ValidationResult] | None:
        v = cfg.validation
        ident = np.array([1.0, 0.0, 0.0, 0.0])
        pens = [self._penetration(sc, kin, g.position, g.quaternion_wxyz, g.joints, np.zeros(3), ident)[0] for _, g in jobs]
        live = [(env, g) for (env, g), p in zip(jobs, pens) if p <= v.max_initial_penetration_m]
        ramps: dict[int, tuple[F64, F64]] = {}
        n_settle = max(1, round(v.settle_s / sc.model.opt.timestep))
        self._park_idle(b, {env for env, _ in live})
        for env, g in live:
            self._put_hand(b, env, g.position, g.quaternion_wxyz, g.joints)
            self._put_object(b, env, np.zeros(3), ident)
            start, end, n_settle = settle_targets(sc, g.joints, g.squeeze, v)
            ramps[env] = (start, end)
        self._set_state(b, range(len(b.envs)))
        t = b.targets.numpy()
        for k in range(n_settle):
            for env, (start, end) in ramps.items():
                t[b.hand_dof[env, 6:]] = ramp(start, end, k, n_settle)
            self._push_targets(b)
            self._step(b)
            if v.pin_object_while_settling:
                for env in ramps:
                    self._put_object(b, env, np.zeros(3), ident)
                self._set_state(b, list(ramps))  # object pinned, as validate_grasp
        contacts = {}
        for env, _g in live:
            hp, hq, hj = self._hand_pose(b, env)
            op, oq = self._object_pose(b, env)
            contacts[env] = self._penetration(sc, kin, hp, hq, hj, op, oq)[1]
        settled_dof = b.dof.numpy().copy()
        settled_root = b.root.numpy().copy()
        p0 = {env: self._object_pose(b, env) for env in ramps}
        forces = disturbance_forces(sc.object_mass, v)
        n_dist = max(1, round(v.disturb_s / sc.model.opt.timestep))
        traj = {env: (np.zeros((6, n_dist, 3)), np.zeros((6, n_dist, 4))) for env in ramps}
        for di in range(6):
            if should_stop is not None and should_stop():
                return None
            b.dof.numpy()[:] = settled_dof
            b.root.numpy()[:] = settled_root
            self._set_state(b, list(ramps))
            f = b.forces.numpy()
            f[:] = 0.0
            for env in ramps:
                f[b.obj_body[env]] = forces[di]
            for k in range(n_dist):
                self._step(b, forces=True)
                for env in ramps:
                    pos, quat = self._object_pose(b, env)
                    traj[env][0][di, k], traj[env][1][di, k] = pos, quat
        b.forces.numpy()[:] = 0.0
        out = []
        for (env, _), pen in zip(jobs, pens):
            if env not in ramps:
                out.append(validation_result(pen, 0, [], v))
                continue
            pp, qq = p0[env]
            outcomes = [direction_outcome(traj[env][0][d], traj[env][1][d], pp, qq, v) for d in range(6)]
            out.append(validation_result(pen, contacts[env], outcomes, v))
        return out

    # ----------------------------------------------------------------------- execution
    def execute(
        self, obj: SimObject, grasps: Sequence[GraspArrays], cfg: SimConfig, hand: str = "shadow",
        policy: str = "scripted", render: bool = False, seed: int = 0, gif: bool = False,
        progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Approach-close-lift, one env per grasp, the policy and the goal placement of
        :mod:`sim_worker.execute`; no keyframes or GIF (``render``/``gif`` are ignored)."""
        b, oi = self._ensure(obj, cfg, hand, "execute")
        out: list[dict[str, Any]] = []
        for batch in grasp_batches(len(grasps), oi, len(b.envs), len(b.objects)):
            if should_stop is not None and should_stop():
                break
            for r in self._execute_batch(b, oi, [(env, gi, grasps[gi]) for env, gi in batch], cfg, policy, seed, should_stop):
                out.append(r.to_dict())
                if progress is not None:
                    progress(len(out), len(grasps))
        return out

    def _execute_batch(
        self, b: _Build, oi: int, jobs: list[tuple[int, int, GraspArrays]], cfg: SimConfig, policy: str, seed: int,
        should_stop: Callable[[], bool] | None,
    ) -> list[Any]:
        from .. import execute as ex
        from ..policies import Goal, Observation, get_policy

        wall0 = time.perf_counter()
        sc, e = b.scenes[oi], cfg.execution
        m = sc.model
        dt = float(m.opt.timestep)
        kin = mujoco.MjData(m)
        hand_geoms = ex._hand_geoms(sc)
        open_j = np.asarray(sc.spec.open_pose, dtype=np.float64)
        ident = np.array([1.0, 0.0, 0.0, 0.0])
        mujoco.mj_resetData(m, kin)
        mujoco.mj_kinematics(m, kin)
        low = ex._lowest_z(m, kin, sc.object_geoms)
        height = ex._highest_z(m, kin, sc.object_geoms) - low
        opos = np.array([0.0, 0.0, e.table_z - low])
        centre = kin.xipos[sc.object_body] + opos
        results: dict[int, Any] = {}
        plans: dict[int, tuple[GraspArrays, F64, F64, F64]] = {}

        def place(g: GraspArrays, joints: F64, pre_joints: F64, p: F64, q: F64) -> tuple[Any, str]:
            wg = ex._to_world(g, sc, p, q, e.pregrasp_backoff_m)
            depth = e.table_z - ex._hand_lowest(sc, kin, wg.pos, wg.quat, joints, hand_geoms)
            if depth > e.table_tolerance_m:
                return wg, f"grasp under the table ({depth * 100:.1f} cm below its surface)"
            lift = e.table_z + e.pregrasp_clearance_m - ex._hand_lowest(sc, kin, wg.pre_pos, wg.pre_quat, pre_joints, hand_geoms)
            if lift > 0:
                wg = ex._WorldGrasp(wg.pos, wg.quat, wg.pre_pos + np.array([0.0, 0.0, lift]), wg.pre_quat)
            return wg, ""

        for env, gi, g in jobs:
            res = ex.ExecutionResult(success=False, policy=policy, seed=seed + gi)
            joints = np.asarray(g.joints, dtype=np.float64)
            pre_j = open_j if g.pre_joints is None else np.asarray(g.pre_joints, dtype=np.float64)
            if g.squeeze is not None:
                sq = np.asarray(g.squeeze, dtype=np.float64)
            else:
                lo, hi = ex._joint_ranges(sc)
                sq = np.clip(joints + cfg.validation.squeeze_rad * closing_direction(sc), lo, hi)
                sq[sc.actuator_joint] = squeeze_targets(sc, joints, cfg.validation.squeeze_rad)
            wg, refusal = place(g, joints, pre_j, opos, ident)
            if refusal:
                res.reason = refusal
                results[env] = res
                continue
            start_pos, start_quat = ex._start_pose(sc, wg.pre_quat, centre, e.table_z + height, e.start_height_m)
            self._put_hand(b, env, start_pos, start_quat, open_j)
            self._put_object(b, env, opos, ident)
            plans[env] = (g, joints, pre_j, sq)
            results[env] = res
        self._park_idle(b, set(plans))
        self._set_state(b, range(len(b.envs)))
        self._push_targets(b)
        n_settle = max(1, round(e.object_settle_s / dt))
        for _ in range(n_settle):
            self._step(b)
        pols: dict[int, Any] = {}
        goals: dict[int, Any] = {}
        com0s: dict[int, F64] = {}
        for env, (g, joints, pre_j, sq) in list(plans.items()):
            res = results[env]
            p, q = self._object_pose(b, env)
            wg, refusal = place(g, joints, pre_j, p, q)
            if refusal:
                res.reason, res.sim_steps, res.sim_time_s = refusal, n_settle, n_settle * dt
                del plans[env]
                continue
            com0 = self._com(b, env)
            target = com0 + np.array([0.0, 0.0, e.lift_height_m])
            res.object_start, res.target = com0.tolist(), target.tolist()
            goals[env] = Goal(
                palm_pos=wg.pos, palm_quat_wxyz=wg.quat, joints=joints, squeeze=sq, pre_palm_pos=wg.pre_pos,
                pre_palm_quat_wxyz=wg.pre_quat, pre_joints=pre_j, lift_height_m=e.lift_height_m, lift_target=target,
                table_z=e.table_z,
            )
            pols[env] = get_policy(policy, e, res.seed)
            com0s[env] = com0
        clouds = {env: ex._object_cloud(sc, ex.POINT_CLOUD_SIZE, results[env].seed) for env in pols if pols[env].needs_point_cloud}
        kp_mj = ex._keypoint_bodies(sc)

        def observe(env: int, t: float) -> Any:
            hp, hq, hj = self._hand_pose(b, env)
            op, oq = self._object_pose(b, env)
            pts = None
            if env in clouds:
                pts = clouds[env] @ quat_to_matrix(oq).T + op
            return Observation(
                time_s=t, palm_pos=hp, palm_quat_wxyz=hq, joint_pos=hj,
                joint_vel=b.dof.numpy()[b.hand_dof[env, 6:], 1].astype(np.float64),
                object_pos=op, object_quat_wxyz=oq, object_points=pts,
            )

        def mpe(env: int) -> float:
            op, oq = self._object_pose(b, env)
            here = ex._to_world(plans[env][0], sc, op, oq, e.pregrasp_backoff_m)
            set_hand(sc, kin, here.pos, here.quat, plans[env][1])
            mujoco.mj_kinematics(m, kin)
            sim_kp = b.bodies.numpy()[b.keypoint_body[env], :3].astype(np.float64) - b.origin[env]
            return float(np.linalg.norm(sim_kp - kin.xpos[kp_mj], axis=1).mean())

        state = {env: {"phase": "", "lifting": False, "finished": False, "action": None} for env in pols}
        for env in pols:
            pols[env].reset(observe(env, 0.0), goals[env])
        horizon = max((math.ceil(p.horizon_s / dt) + 1 for p in pols.values()), default=0)
        t_arr = b.targets.numpy()
        canceled, k = False, 0
        steps_of = dict.fromkeys(pols, 0)
        while k < horizon and any(not s["finished"] for s in state.values()):
            if should_stop is not None and k % ex.STOP_CHECK_STEPS == 0 and should_stop():
                canceled = True
                break
            for env, pol in pols.items():
                s = state[env]
                if s["finished"] or k >= math.ceil(pol.horizon_s / dt) + 1:
                    continue
                every = max(1, round(pol.control_dt_s / dt)) if pol.control_dt_s > 0 else 1
                if k % every == 0 or s["action"] is None:
                    act = pol.act(observe(env, k * dt), k * dt)
                    s["action"] = act
                    if act.phase != s["phase"]:
                        if act.phase == "lift" and not s["lifting"]:
                            s["lifting"] = True
                            results[env].object_displacement_before_lift_m = float(np.linalg.norm(self._com(b, env) - com0s[env]))
                            results[env].mpe_m = mpe(env)
                        s["phase"] = act.phase
                    if act.done:
                        s["finished"] = True
                        continue
                    cur = b.dof.numpy()[b.hand_dof[env, :6], 0].astype(np.float64)
                    t_arr[b.hand_dof[env, :6]] = root_dofs(act.root_pos, act.root_quat_wxyz, cur)
                    lo = np.asarray(b.descs[oi].joint_lower)
                    hi = np.asarray(b.descs[oi].joint_upper)
                    t_arr[b.hand_dof[env, 6:]] = np.clip(np.asarray(act.joint_targets, dtype=np.float64), lo, hi)
                steps_of[env] = k + 1
                if not s["lifting"] and not results[env].table_contact:
                    results[env].table_contact = self._touches_table(b, sc, kin, env, hand_geoms)
            self._push_targets(b)
            self._step(b)
            k += 1
        out = []
        for env, _gi, _g in jobs:
            res = results[env]
            if env in pols:
                com1 = self._com(b, env)
                res.object_end = com1.tolist()
                res.lift_height_m = float(com1[2] - com0s[env][2])
                if res.mpe_m is None:
                    res.mpe_m = mpe(env)
                if canceled:
                    res.reason = "canceled"
                else:
                    res.success, res.reason = execution_verdict(
                        com1, np.array(res.target), bool(state[env]["finished"]), False, e,
                    )
                res.sim_steps = n_settle + steps_of[env]
                res.sim_time_s = res.sim_steps * dt
            res.wall_time_s = time.perf_counter() - wall0
            out.append(res)
        return out

    def _com(self, b: _Build, env: int) -> F64:
        p, q = self._object_pose(b, env)
        com: F64 = p + quat_to_matrix(q) @ b.descs[env % len(b.objects)].object_com
        return com

    def _touches_table(self, b: _Build, sc: Scene, kin: mujoco.MjData, env: int, hand_geoms: NDArray[np.int64]) -> bool:
        """Hand-table contact by MuJoCo's collision on the hand as Isaac posed it (same rule as execute)."""
        from .. import execute as ex

        hp, hq, hj = self._hand_pose(b, env)
        op, oq = self._object_pose(b, env)
        mujoco.mj_resetData(sc.model, kin)
        kin.qpos[sc.object_qpos : sc.object_qpos + 3] = op
        kin.qpos[sc.object_qpos + 3 : sc.object_qpos + 7] = oq
        set_hand(sc, kin, hp, hq, hj)
        mujoco.mj_forward(sc.model, kin)
        return ex._table_touched(sc, kin, hand_geoms)

    # ----------------------------------------------------------------------- lifetime
    def _destroy(self) -> None:
        if self._build is not None:
            self._gym.destroy_sim(self._build.sim)
            self._build.tmp.cleanup()
            self._build = None

    def close(self) -> None:
        self._destroy()

    def __enter__(self) -> IsaacGymBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def physics_fields() -> list[str]:
    """Every :class:`PhysicsConfig` field (the test checks each is mapped or listed as unmapped)."""
    return [f.name for f in fields(PhysicsConfig)]
