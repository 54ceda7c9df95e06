"""Pictures of grasps: offscreen MuJoCo renders of the hand on the object, one tile per grasp.

``render_grasps`` builds one MjModel per call (the palm-rooted hand on a free
joint, the object mesh as a static mesh geom, an optional table plane and a
few lights), then for each grasp sets the hand's ``qpos``, auto-frames a free
camera on the object + hand (a thumb-side profile, tilted down), draws the point
cloud as small spheres through the scene's user geoms, renders and pastes the
tile into a grid. ``render_grasp_file`` is the file-level convenience behind
``dexgrasp render``.

Offscreen OpenGL: :func:`ensure_gl_backend` picks EGL, then OSMesa (see its
docstring for why this cannot simply be an environment variable set late).
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import trimesh
from numpy.typing import ArrayLike, NDArray
from PIL import Image, ImageDraw, ImageFont

from ..hands import hand_mjcf_xml, load_spec

log = logging.getLogger(__name__)

MAX_TILES = 16  # more grasps than this are cut (with a warning): tiles get too small to read
MAX_POINTS = 3000  # point-cloud spheres per tile; more is slow on software GL and adds nothing visually
GRID_COLS = 4

_PREFIX = "render:"  # names of everything this module adds to the hand's MJCF
OBJECT_RGBA = (0.35, 0.6, 0.9, 1.0)
TABLE_RGBA = (0.86, 0.86, 0.86, 1.0)
HAND_RGBA = (0.62, 0.63, 0.66, 1.0)  # mid grey: the MJCF's near-white washes out against the table
POINT_RGBA = np.array([1.0, 0.45, 0.05, 1.0], dtype=np.float32)
PREGRASP_ALPHA = 0.3
BACKGROUND_RGB = (255, 255, 255)

FloatArray = NDArray[np.float64]
Pose3 = tuple[ArrayLike, ArrayLike, ArrayLike]


class RenderBackendError(RuntimeError):
    """No offscreen OpenGL backend (EGL or OSMesa) could be initialised for MuJoCo."""


# ----------------------------------------------------------------------------- GL backend
_BACKENDS = ("egl", "osmesa")
_chosen_backend: str | None = None

# Renders one frame of a trivial model; run in a fresh interpreter to test a backend
# without committing this process to it.
_PROBE = """
import mujoco
m = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='.1'/></worldbody></mujoco>")
with mujoco.Renderer(m, 8, 8) as r:
    r.update_scene(mujoco.MjData(m))
    r.render()
"""


def _gl_module() -> Any:
    # The module whose ``GLContext`` attribute mujoco.Renderer instantiates (looked up
    # at construction time, so replacing it redirects every later Renderer).
    from mujoco.rendering.classic import gl_context

    return gl_context


def _context_class(name: str) -> Any:
    # imported lazily: importing either module commits PyOpenGL to that platform
    if name == "egl":
        from mujoco.egl import GLContext as egl_ctx

        return egl_ctx
    from mujoco.osmesa import GLContext as osmesa_ctx

    return osmesa_ctx


def _smoke_test() -> None:
    exec(compile(_PROBE, "<gl-probe>", "exec"), {})


def _probe_in_subprocess(name: str) -> str | None:
    """None if backend ``name`` renders in a fresh interpreter, else the reason it does not."""
    env = dict(os.environ, MUJOCO_GL=name, PYOPENGL_PLATFORM=name)
    try:
        res = subprocess.run(
            [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"probe failed to run: {err}"
    if res.returncode == 0:
        return None
    lines = [ln for ln in (res.stderr or res.stdout).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {res.returncode}"


def ensure_gl_backend() -> str:
    """Make ``mujoco.Renderer`` usable offscreen; returns the backend name (``egl``/``osmesa``).

    MuJoCo reads ``MUJOCO_GL`` once, when ``mujoco`` is first imported, and an
    unset variable means GLFW, which needs a display. Setting the variable here
    would usually be too late (``models.hands`` already imported mujoco), and
    PyOpenGL binds to one platform per process, so a failed EGL attempt cannot
    be followed by OSMesa in the same process. Hence:

    1. if mujoco already chose EGL or OSMesa (``MUJOCO_GL`` set at start-up) and
       it renders, use it;
    2. otherwise probe EGL, then OSMesa, each in a fresh interpreter; set
       ``MUJOCO_GL`` to the first that works, load its context class here and
       point mujoco's renderer at it.

    Raises :class:`RenderBackendError` naming what was tried and why it failed.
    The result is cached for the process.
    """
    global _chosen_backend
    if _chosen_backend is not None:
        return _chosen_backend
    glc = _gl_module()
    current = getattr(getattr(glc, "GLContext", None), "__module__", "") or ""
    errors: list[str] = []
    for name in _BACKENDS:
        if current == f"mujoco.{name}":
            try:
                _smoke_test()
            except Exception as err:  # any GL failure is reported below, with the others
                errors.append(f"{name} (MUJOCO_GL at start-up): {type(err).__name__}: {err}")
            else:
                _chosen_backend = name
                return name
    for name in _BACKENDS:
        reason = _probe_in_subprocess(name)
        if reason is not None:
            errors.append(f"{name}: {reason}")
            continue
        # it works in a fresh process; adopt it here
        os.environ["MUJOCO_GL"] = name
        previous = glc.GLContext
        try:
            glc.GLContext = _context_class(name)
            _smoke_test()
        except Exception as err:
            glc.GLContext = previous
            errors.append(
                f"{name}: works in a fresh process but not in this one ({type(err).__name__}: {err}); "
                f"set MUJOCO_GL={name} before Python imports mujoco"
            )
            continue
        _chosen_backend = name
        return name
    raise RenderBackendError(
        "no offscreen OpenGL backend could be initialised for MuJoCo rendering; tried "
        + "; ".join(errors)
        + ". Install EGL (libegl1 with a GPU driver or Mesa) or OSMesa (libosmesa6) and set "
        "MUJOCO_GL=egl or MUJOCO_GL=osmesa before starting Python."
    )


# ----------------------------------------------------------------------------- inputs
def _np(x: ArrayLike | Any, shape_tail: tuple[int, ...], what: str) -> FloatArray:
    """Array/tensor -> float64 numpy with a checked trailing shape."""
    if hasattr(x, "detach"):  # torch tensors, without importing torch here
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == len(shape_tail):  # a single grasp given without the batch axis
        a = a[None]
    if a.ndim != len(shape_tail) + 1 or tuple(a.shape[1:]) != shape_tail:
        raise ValueError(f"{what} must have shape (B, {', '.join(map(str, shape_tail))}); got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains non-finite values")
    return a


def _check_batch(pos: Any, rot: Any, joints: Any, num_joints: int, what: str) -> tuple[FloatArray, ...]:
    p = _np(pos, (3,), f"{what} root_pos")
    r = _np(rot, (3, 3), f"{what} root_rot")
    q = _np(joints, (num_joints,), f"{what} joints")
    if not len(p) == len(r) == len(q):
        raise ValueError(f"{what}: batch sizes differ (pos {len(p)}, rot {len(r)}, joints {len(q)})")
    return p, r, q


# ----------------------------------------------------------------------------- model
def _write_obj(mesh: trimesh.Trimesh, path: Path) -> None:
    # A plain OBJ with only v/f lines: every MuJoCo version reads it, it has no face-count cap
    # (binary STL in MuJoCo has one) and it keeps float precision.
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64) + 1
    with path.open("w") as fh:
        np.savetxt(fh, v, fmt="v %.7g %.7g %.7g")
        np.savetxt(fh, f, fmt="f %d %d %d")


def _model_xml(
    hand_name: str, mesh_file: Path | None, table_z: float | None, table_xy: FloatArray, table_half: float,
    width: int, height: int,
) -> str:
    root = ET.fromstring(hand_mjcf_xml(load_spec(hand_name), root="free", with_visual=True))
    visual = root.find("visual")
    if visual is None:
        visual = ET.SubElement(root, "visual")
    # the offscreen framebuffer must be at least the tile size
    ET.SubElement(visual, "global", {"offwidth": str(width), "offheight": str(height)})
    # coarser sphere/capsule tessellation: thousands of point spheres dominate the frame time on
    # software GL at the default 28x16; visual meshes are unaffected
    quality = visual.find("quality")
    if quality is None:
        quality = ET.SubElement(visual, "quality")
    quality.set("numslices", "12")
    quality.set("numstacks", "8")
    ET.SubElement(visual, "headlight", {"ambient": "0.3 0.3 0.3", "diffuse": "0.4 0.4 0.4",
                                        "specular": "0.1 0.1 0.1"})
    asset = root.find("asset")
    if asset is None:
        asset = ET.SubElement(root, "asset")
    # a neutral background instead of the hand XML's green skybox
    for tex in list(asset):
        if tex.tag == "texture" and tex.attrib.get("type") == "skybox":
            asset.remove(tex)
    ET.SubElement(asset, "texture", {"type": "skybox", "builtin": "gradient", "rgb1": "1 1 1",
                                     "rgb2": "0.85 0.87 0.9", "width": "64", "height": "64"})
    for mat in asset.iter("material"):
        if mat.attrib.get("name", "").endswith("MatViz"):
            mat.set("rgba", " ".join(map(str, HAND_RGBA)))
            mat.set("specular", "0.3")
    world = root.find("worldbody")
    assert world is not None  # hand_mjcf_xml always writes one
    static = {"contype": "0", "conaffinity": "0", "group": "0"}  # drawn only, never collides
    if mesh_file is not None:
        # inertia="shell" keeps open / non-watertight scans from failing the volume check
        ET.SubElement(asset, "mesh", {"name": f"{_PREFIX}object", "file": str(mesh_file), "inertia": "shell"})
        ET.SubElement(world, "geom", {"name": f"{_PREFIX}object", "type": "mesh", "mesh": f"{_PREFIX}object",
                                      "rgba": " ".join(map(str, OBJECT_RGBA)), **static})
    if table_z is not None:
        ET.SubElement(world, "geom", {
            "name": f"{_PREFIX}table", "type": "plane",
            "pos": f"{table_xy[0]:.6g} {table_xy[1]:.6g} {table_z:.6g}",
            "size": f"{table_half:.6g} {table_half:.6g} 0.01", "rgba": " ".join(map(str, TABLE_RGBA)), **static,
        })
    # key light from above plus a weaker fill; the headlight follows the camera
    ET.SubElement(world, "light", {"name": f"{_PREFIX}key", "directional": "true", "pos": "0 0 2",
                                   "dir": "0.3 0.2 -1", "diffuse": "0.5 0.5 0.5", "castshadow": "false"})
    ET.SubElement(world, "light", {"name": f"{_PREFIX}fill", "directional": "true", "pos": "0 0 2",
                                   "dir": "-0.4 -0.3 0.5", "diffuse": "0.2 0.2 0.2", "castshadow": "false"})
    return ET.tostring(root, encoding="unicode")


class _MeshRejectedError(ValueError):
    """MuJoCo would not compile the object mesh (e.g. fewer than 4 vertices, all coplanar)."""


def _prepare_points(points: ArrayLike | None) -> FloatArray | None:
    if points is None:
        return None
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) > MAX_POINTS:  # fixed seed: the same call gives the same picture
        pts = pts[np.random.default_rng(0).choice(len(pts), MAX_POINTS, replace=False)]
    return pts if len(pts) else None


def _mesh_as_points(mesh: trimesh.Trimesh) -> FloatArray:
    v = np.asarray(mesh.vertices, dtype=np.float64)
    if float(mesh.area) > 0:
        v = np.concatenate([v, np.asarray(trimesh.sample.sample_surface(mesh, MAX_POINTS, seed=0)[0])])
    return v


@dataclass
class _Scene:
    model: mujoco.MjModel
    root_qpos: int  # qpos address of the free joint
    joint_qpos: NDArray[np.int64]  # qpos address per spec joint, spec order
    hand_geoms: NDArray[np.int64]  # geom ids of the hand
    group: int  # geom group drawn for the hand (1 visual meshes, 4 collision primitives)


def _build_scene(
    hand_name: str, mesh: trimesh.Trimesh | None, table_z: float | None, table_xy: FloatArray,
    table_half: float, width: int, height: int, show_collision: bool,
) -> _Scene:
    spec = load_spec(hand_name)
    with tempfile.TemporaryDirectory(prefix="dexgrasp-render-") as tmp:
        mesh_file = None
        if mesh is not None:
            mesh_file = Path(tmp) / "object.obj"
            _write_obj(mesh, mesh_file)
        xml = _model_xml(hand_name, mesh_file, table_z, table_xy, table_half, width, height)
        try:
            model = mujoco.MjModel.from_xml_string(xml)  # reads the OBJ now; the folder can go afterwards
        except ValueError as err:
            if mesh is None:
                raise
            raise _MeshRejectedError(str(err).splitlines()[0]) from err
    prefix = spec.mjcf.name_prefix
    root_j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "root")
    jq = []
    for name in spec.joints:
        j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, prefix + name)
        if j < 0:
            raise ValueError(f"joint {name} of hand {hand_name!r} not in its MJCF")
        jq.append(int(model.jnt_qposadr[j]))
    palm = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, spec.mjcf.root_body)
    hand_geoms = np.array(
        [g for g in range(model.ngeom) if int(model.body_rootid[model.geom_bodyid[g]]) == palm], dtype=np.int64
    )
    if not show_collision and not bool((model.geom_group[hand_geoms] == 1).any()):
        show_collision = True  # a hand without visual meshes (the Allegro's and LEAP's primitives-only MJCFs)
    group = 4 if show_collision else 1
    if show_collision:
        # the MJCF gives collision primitives alpha 0.1 (meant to be hidden); make them solid
        sel = hand_geoms[model.geom_group[hand_geoms] == 4]
        model.geom_rgba[sel] = (0.5, 0.72, 0.45, 1.0)  # green: distinct from the blue object
    return _Scene(model, int(model.jnt_qposadr[root_j]), np.array(jq, dtype=np.int64), hand_geoms, group)


def _set_pose(scene: _Scene, data: mujoco.MjData, pos: FloatArray, rot: FloatArray, q: FloatArray) -> None:
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rot).reshape(9))
    a = scene.root_qpos
    data.qpos[a : a + 3] = pos
    data.qpos[a + 3 : a + 7] = quat
    data.qpos[scene.joint_qpos] = q
    # positions only, nothing is simulated; mj_camlight places the lights (mj_kinematics alone
    # leaves light directions at zero, i.e. an unlit scene)
    mujoco.mj_kinematics(scene.model, data)
    mujoco.mj_comPos(scene.model, data)
    mujoco.mj_camlight(scene.model, data)


# ----------------------------------------------------------------------------- camera
def _hand_bounds(scene: _Scene, data: mujoco.MjData) -> tuple[FloatArray, FloatArray]:
    g = scene.hand_geoms[scene.model.geom_group[scene.hand_geoms] == 4]  # primitives: tight radii
    if len(g) == 0:
        g = scene.hand_geoms
    c = data.geom_xpos[g]
    r = np.minimum(scene.model.geom_rbound[g], 0.03)[:, None]
    return (c - r).min(axis=0), (c + r).max(axis=0)


def _look_direction(rot: FloatArray, approach: FloatArray) -> FloatArray:
    """Unit view direction: a profile of the grasp from the thumb side, tilted down.

    Looking along the approach shows only the back of the hand, and looking against
    it hides the hand behind the object; from the side (the palm's +x, where the
    right ShadowHand's thumb sits) the fingers are seen wrapping around the object.
    The view keeps 20 to 65 degrees below the horizon so the table never blocks it.
    """
    a = rot @ approach
    side = rot @ np.array([1.0, 0.0, 0.0])
    v = -side + 0.35 * a
    horiz = v[:2]
    if np.linalg.norm(horiz) < 1e-3:  # side axis vertical: fall back to the finger direction
        horiz = (rot @ np.array([0.0, 0.0, 1.0]))[:2]
        if np.linalg.norm(horiz) < 1e-6:
            horiz = np.array([1.0, 0.0])
    az = math.atan2(horiz[1], horiz[0])
    el = math.asin(float(np.clip(v[2] / max(np.linalg.norm(v), 1e-9), -1.0, 1.0)))
    el = float(np.clip(el, math.radians(-65.0), math.radians(-20.0)))
    return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


def _frame_camera(cam: mujoco.MjvCamera, lo: FloatArray, hi: FloatArray, view: FloatArray,
                  fovy_deg: float, aspect: float, margin: float = 1.12) -> None:
    """Point a free camera along ``view`` at the box centre, just far enough to fit all 8 corners."""
    centre = 0.5 * (lo + hi)
    right = np.cross(view, [0.0, 0.0, 1.0])
    right /= max(float(np.linalg.norm(right)), 1e-9)
    up = np.cross(right, view)
    tan_v = math.tan(math.radians(fovy_deg) / 2)
    tan_h = tan_v * aspect
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    rel = corners - centre
    depth = rel @ view  # towards the far side is positive
    # a corner at lateral offset x and depth t fits if |x| <= (d + t) * tan(half fov)
    need = np.maximum(np.abs(rel @ right) / tan_h, np.abs(rel @ up) / tan_v) - depth
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    cam.lookat[:] = centre
    cam.distance = max(margin * float(need.max()), 0.05)
    cam.azimuth = math.degrees(math.atan2(view[1], view[0]))
    cam.elevation = math.degrees(math.asin(float(np.clip(view[2], -1, 1))))


# ----------------------------------------------------------------------------- drawing
def _add_points(scn: mujoco.MjvScene, pts: FloatArray, radius: float) -> None:
    size = np.array([radius, 0.0, 0.0])
    eye = np.eye(3).reshape(9)
    n = min(len(pts), scn.maxgeom - scn.ngeom)
    for i in range(n):
        mujoco.mjv_initGeom(scn.geoms[scn.ngeom], int(mujoco.mjtGeom.mjGEOM_SPHERE), size, pts[i], eye, POINT_RGBA)
        scn.ngeom += 1


def _add_ghost(scene: _Scene, data: mujoco.MjData, opt: mujoco.MjvOption, scn: mujoco.MjvScene) -> None:
    """Append the hand as posed in ``data`` (the pre-grasp) to ``scn``, semi-transparent."""
    start = scn.ngeom
    # same model, second MjData: mesh ids match what the renderer uploaded; the hand's
    # bodies hang off a free joint (dynamic) while object and table are static
    mujoco.mjv_addGeoms(scene.model, data, opt, mujoco.MjvPerturb(), int(mujoco.mjtCatBit.mjCAT_DYNAMIC), scn)
    for i in range(start, scn.ngeom):
        g = scn.geoms[i]
        g.rgba[3] = PREGRASP_ALPHA
        g.transparent = 1
        g.castshadow = 0


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # scalable since Pillow 10.1
    except TypeError:
        return ImageFont.load_default()


def _label(tile: Image.Image, text: str) -> None:
    draw = ImageDraw.Draw(tile, "RGBA")
    font = _font(max(12, tile.height // 24))
    x0, y0, x1, y1 = draw.textbbox((6, 4), text, font=font)
    draw.rectangle((x0 - 4, y0 - 3, x1 + 4, y1 + 3), fill=(255, 255, 255, 200))
    draw.text((6, 4), text, fill=(20, 20, 20, 255), font=font)


def _grid(tiles: list[NDArray[np.uint8]], cols: int) -> NDArray[np.uint8]:
    h, w = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / cols)
    out = np.empty((rows * h, cols * w, 3), dtype=np.uint8)
    out[:] = BACKGROUND_RGB
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * h : (r + 1) * h, c * w : (c + 1) * w] = t
    return out


# ----------------------------------------------------------------------------- public API
def render_grasps(
    hand_name: str,
    root_pos: ArrayLike | Any,
    root_rot: ArrayLike | Any,
    joints: ArrayLike | Any,
    mesh: trimesh.Trimesh | None = None,
    points: ArrayLike | None = None,
    table_z: float | None = None,
    width: int = 640,
    height: int = 480,
    show_collision: bool = False,
    pregrasp: Pose3 | None = None,
    labels: Sequence[str] | None = None,
    cols: int | None = None,
    show_hand: bool = True,
    max_tiles: int = MAX_TILES,
) -> NDArray[np.uint8]:
    """Render B grasps as a grid of tiles; returns an ``(rows*height, cols*width, 3)`` uint8 image.

    ``width``/``height`` are the size of one tile; tiles fill rows of ``cols``
    (default ``min(B, 4)``), so one grasp gives exactly ``height x width``.
    Poses are the palm (grasp root) in the object/world frame (z up), ``root_rot``
    rotation matrices, ``joints`` in the hand spec's joint order; numpy arrays or
    torch tensors. ``mesh`` is drawn as the object, ``points`` (N,3) as small
    spheres (subsampled to ``MAX_POINTS``), ``table_z`` adds a grey plane at that
    height, ``show_collision`` draws the hand's collision primitives instead of
    its meshes (a hand without visual meshes, the Allegro or LEAP, always shows
    them), ``pregrasp`` = (pos, rot, joints) batches aligned with the grasps
    draws the pre-grasp hand semi-transparent, ``labels`` one string per tile.
    ``show_hand=False`` leaves the hand out but frames the camera as if it were
    there (object-only pictures that line up with the grasp pictures).
    At most ``max_tiles`` grasps are drawn (the first ones). Raises ValueError
    for B = 0 or mismatched shapes, :class:`RenderBackendError` without GL.
    """
    spec = load_spec(hand_name)
    pos, rot, q = _check_batch(root_pos, root_rot, joints, len(spec.joints), "grasp")
    b = len(pos)
    if b == 0:
        raise ValueError("no grasps to render (B = 0)")
    if width < 16 or height < 16:
        raise ValueError(f"tile size {width}x{height} is too small (16 px minimum)")
    if b > max_tiles:
        log.warning("rendering the first %d of %d grasps", max_tiles, b)
        b = max_tiles
    pre = None
    if pregrasp is not None:
        pre = _check_batch(*pregrasp, len(spec.joints), "pregrasp")
        if len(pre[0]) < b:
            raise ValueError(f"pregrasp has {len(pre[0])} poses for {b} grasps")
    if labels is not None and len(labels) < b:
        raise ValueError(f"{len(labels)} labels for {b} grasps")

    pts = _prepare_points(points)
    if mesh is not None and len(mesh.faces) == 0:
        raise ValueError("mesh has no faces; pass its vertices as points instead")

    obj_parts = [np.asarray(mesh.vertices, dtype=np.float64)] if mesh is not None else []
    if pts is not None:
        obj_parts.append(pts)
    obj_lo = obj_hi = None
    if obj_parts:
        allv = np.concatenate(obj_parts)
        obj_lo, obj_hi = allv.min(axis=0), allv.max(axis=0)
    # the table is centred under everything that is drawn and a few times its size
    xy_parts = [pos[:b, :2]]
    if obj_lo is not None and obj_hi is not None:
        xy_parts.append(np.stack([obj_lo[:2], obj_hi[:2]]))
    xy = np.concatenate(xy_parts)
    table_xy = 0.5 * (xy.min(axis=0) + xy.max(axis=0))
    table_half = float(max(0.5, 3.0 * np.ptp(xy, axis=0).max()))

    ensure_gl_backend()
    try:
        scene = _build_scene(hand_name, mesh, table_z, table_xy, table_half, width, height, show_collision)
    except _MeshRejectedError as err:
        assert mesh is not None
        # a picture is still useful: show the degenerate mesh as points instead of failing
        log.warning("MuJoCo rejected the object mesh (%s); drawing it as points", err)
        pts = _prepare_points(np.concatenate([_mesh_as_points(mesh)] + ([pts] if pts is not None else [])))
        scene = _build_scene(hand_name, None, table_z, table_xy, table_half, width, height, show_collision)
    model = scene.model
    data = mujoco.MjData(model)
    ghost = mujoco.MjData(model) if pre is not None else None
    approach = np.asarray(spec.approach_direction, dtype=np.float64)

    opt = mujoco.MjvOption()
    opt.geomgroup[:] = 0
    opt.geomgroup[0] = 1  # object, table
    opt.geomgroup[scene.group] = int(show_hand)
    opt.sitegroup[:] = 0  # the hand's touch-sensor and tip sites are clutter here
    ghost_opt = mujoco.MjvOption()
    ghost_opt.geomgroup[:] = 0
    ghost_opt.geomgroup[scene.group] = 1

    max_geom = model.ngeom * 2 + MAX_POINTS + 64
    cam = mujoco.MjvCamera()
    tiles: list[NDArray[np.uint8]] = []
    radius = 0.0
    if pts is not None:
        radius = float(np.clip(0.006 * np.ptp(pts, axis=0).max(), 0.0008, 0.004))
    renderer = mujoco.Renderer(model, height=height, width=width, max_geom=max_geom)
    try:
        for i in range(b):
            _set_pose(scene, data, pos[i], rot[i], q[i])
            lo, hi = _hand_bounds(scene, data)
            if pre is not None and ghost is not None:  # frame the pre-grasp hand too
                _set_pose(scene, ghost, pre[0][i], pre[1][i], pre[2][i])
                glo, ghi = _hand_bounds(scene, ghost)
                lo, hi = np.minimum(lo, glo), np.maximum(hi, ghi)
            if obj_lo is not None and obj_hi is not None:
                lo, hi = np.minimum(lo, obj_lo), np.maximum(hi, obj_hi)
            _frame_camera(cam, lo, hi, _look_direction(rot[i], approach), float(model.vis.global_.fovy),
                          width / height)
            renderer.update_scene(data, camera=cam, scene_option=opt)
            if ghost is not None:
                _add_ghost(scene, ghost, ghost_opt, renderer.scene)
            if pts is not None:
                _add_points(renderer.scene, pts, radius)
            img = renderer.render()
            if labels is not None and labels[i]:
                tile = Image.fromarray(img)
                _label(tile, str(labels[i]))
                img = np.asarray(tile)
            tiles.append(img.copy())
    finally:
        renderer.close()
    return _grid(tiles, cols or min(b, GRID_COLS))


def save_png(image: ArrayLike, path: str | os.PathLike[str]) -> Path:
    """Write an (H, W, 3) or (H, W, 4) uint8 image as PNG; creates parent folders."""
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3|4) uint8 image, got {a.dtype} {a.shape}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(p, format="PNG")
    return p


def load_object(path: str | os.PathLike[str]) -> tuple[trimesh.Trimesh | None, FloatArray | None]:
    """(mesh, points) from a file: a mesh trimesh can read, a vertex-only PLY or an (N,3) ``.npy``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"object file not found: {p}")
    if p.suffix.lower() == ".npy":
        a = np.load(p, allow_pickle=False)
        if a.ndim != 2 or a.shape[1] < 3:
            raise ValueError(f"{p}: expected an (N, 3) point array, got shape {a.shape}")
        return None, np.asarray(a[:, :3], dtype=np.float64)
    loaded = trimesh.load(p, process=False)
    if isinstance(loaded, trimesh.Scene):
        geoms = list(loaded.dump(concatenate=False)) if loaded.geometry else []
        meshes = [g for g in geoms if isinstance(g, trimesh.Trimesh) and len(g.faces)]
        if meshes:
            merged = trimesh.util.concatenate(meshes)
            assert isinstance(merged, trimesh.Trimesh)
            return merged, None
        clouds = [np.asarray(g.vertices) for g in geoms if hasattr(g, "vertices") and len(g.vertices)]
        if clouds:
            return None, np.concatenate(clouds).astype(np.float64)
        raise ValueError(f"{p}: no geometry found")
    if isinstance(loaded, trimesh.Trimesh) and len(loaded.faces):
        return loaded, None
    if hasattr(loaded, "vertices") and len(loaded.vertices):  # PointCloud, or a mesh without faces
        return None, np.asarray(loaded.vertices, dtype=np.float64)
    raise ValueError(f"{p}: neither a mesh with faces nor a point cloud")


def _default_label(i: int, scores: dict[str, float]) -> str:
    parts = [f"#{i}"] + [f"{k}={v:.3g}" for k, v in list(scores.items())[:3]]
    return "  ".join(parts)


def render_grasp_file(
    grasps_json_path: str | os.PathLike[str],
    object_path: str | os.PathLike[str] | None,
    out_png: str | os.PathLike[str],
    table_z: float | None = None,
    show_pregrasp: bool = False,
    show_collision: bool = False,
    width: int = 640,
    height: int = 480,
    max_tiles: int = MAX_TILES,
) -> NDArray[np.uint8]:
    """Render a grasp file (a ``GraspSet`` JSON, or a bare list of grasps) on its object; writes ``out_png``.

    ``object_path``: a mesh (.obj/.stl/.ply with faces, ...) drawn as a surface, or a
    point cloud (.ply without faces, .npy (N,3)) drawn as points; None draws the hands only.
    Tiles are labelled with the grasp index and its first scores. Returns the image.
    """
    import json

    from ..grasp import GraspSet, grasps_to_tensors

    raw = json.loads(Path(grasps_json_path).read_text())
    gs = GraspSet.model_validate({"grasps": raw} if isinstance(raw, list) else raw)
    if not gs.grasps:
        raise ValueError(f"{grasps_json_path}: no grasps")
    grasps = gs.grasps[:max_tiles]
    pos, rot, q = grasps_to_tensors(grasps)
    pre: Pose3 | None = None
    if show_pregrasp:
        from ..grasp import Grasp

        pre_grasps = [
            Grasp(hand=g.hand, pose=g.pregrasp.pose, joints=g.pregrasp.joints, pregrasp=g.pregrasp) for g in grasps
        ]
        pre = grasps_to_tensors(pre_grasps)
    mesh, points = (None, None) if object_path is None else load_object(object_path)
    image = render_grasps(
        gs.hand, pos, rot, q, mesh=mesh, points=points, table_z=table_z, width=width, height=height,
        show_collision=show_collision, pregrasp=pre, labels=[_default_label(i, g.scores) for i, g in enumerate(grasps)],
        max_tiles=max_tiles,
    )
    save_png(image, out_png)
    return image
