"""Build a palm-rooted MJCF of a hand from the XML shipped in an installed package.

The ShadowHand XML in ``gymnasium-robotics`` hangs the palm under a forearm and
two wrist joints. Grasps here are expressed in the palm frame with the wrist
held at zero, so this module rewrites the XML in memory: the root body (palm)
is moved to the world (optionally on a free joint or as a mocap-driven body),
the dropped joints and every tendon, actuator, sensor and contact pair that
references them are removed. Nothing is copied into the repository; the files
are read from the installed package at run time.

Two layouts are read (:class:`~.spec.MjcfSource`): gymnasium-robotics' split
files (body tree, shared sections, assets) and a single self-contained MJCF
(the hands this project writes, ``assets/<hand>/<hand>.xml`` in this package),
whose sections beside the worldbody play the part of the shared file.
"""

from __future__ import annotations

import copy
import importlib.util
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path
from typing import Literal

import mujoco

from .spec import HandSpec, MjcfSource

RootMode = Literal["fixed", "free"]


def package_dir(package: str) -> Path:
    found = importlib.util.find_spec(package)
    if found is None or found.origin is None:
        raise FileNotFoundError(
            f"package {package!r} is not installed; it ships the hand's MJCF (pip install {package.replace('_', '-')})"
        )
    return Path(found.origin).parent


def asset_dir(src: MjcfSource) -> Path:
    d = package_dir(src.package) / src.dir
    if not (d / src.robot).is_file():
        raise FileNotFoundError(f"hand MJCF not found at {d / src.robot}; is {src.package} intact?")
    return d


def _joint_refs(el: ET.Element) -> set[str]:
    refs = set()
    for sub in el.iter():
        for key in ("joint", "joint1", "joint2"):
            if key in sub.attrib:
                refs.add(sub.attrib[key])
    return refs


def _geom_refs(el: ET.Element) -> set[str]:
    return {el.attrib[k] for k in ("geom1", "geom2") if k in el.attrib}


@lru_cache(maxsize=16)
def hand_mjcf_xml(spec: HandSpec, root: RootMode = "fixed", with_visual: bool = True) -> str:
    """A complete, self-contained MJCF string (absolute mesh paths) of the palm-rooted hand.

    ``root='fixed'``: the palm is welded to the world at the origin (kinematics and
    rendering set the pose through ``body_pos``/``body_quat``). ``root='free'``: the palm
    carries a free joint named ``root`` (qpos[0:7] = position + wxyz quaternion).
    """
    src = spec.mjcf
    d = asset_dir(src)
    robot = ET.parse(d / src.robot).getroot()
    shared = ET.parse(d / src.shared).getroot() if src.shared else _own_sections(robot)
    assets = ET.parse(d / src.assets).getroot() if src.assets else _own_assets(robot)

    root_body = None
    for b in robot.iter("body"):
        if b.attrib.get("name") == src.root_body:
            root_body = copy.deepcopy(b)
    if root_body is None:
        raise ValueError(f"root body {src.root_body!r} not in {d / src.robot}")
    root_body.attrib.pop("pos", None)
    root_body.attrib.pop("euler", None)
    root_body.attrib.pop("quat", None)
    # the palm's own joint(s) (WRJ0) are dropped; nested bodies keep theirs
    dropped = set(src.drop_joints)
    for parent in list(root_body.iter()):
        for child in list(parent):
            if child.tag == "joint" and child.attrib.get("name") in dropped:
                parent.remove(child)
            elif child.tag == "geom" and not with_visual and child.attrib.get("class", "").endswith("Vizual"):
                parent.remove(child)
    # the original palm inherits the childclass of an ancestor (the forearm)
    childclass = None
    for b in robot.iter("body"):
        if "childclass" in b.attrib:
            childclass = b.attrib["childclass"]
            break
    if childclass and "childclass" not in root_body.attrib:
        root_body.set("childclass", childclass)
    if root == "free":
        fj = ET.Element("freejoint", {"name": "root"})
        root_body.insert(0, fj)

    kept_geoms = {g.attrib.get("name") for g in root_body.iter("geom")}
    out = ET.Element("mujoco", {"model": f"{spec.name}_hand"})
    compiler = {"angle": "radian", "coordinate": "local"}
    if src.meshdir:
        compiler["meshdir"] = str((d / src.meshdir).resolve())
    own = robot.find("compiler")  # a self-contained file's own settings (autolimits, ...), never its folders
    if own is not None:
        compiler.update({k: v for k, v in own.attrib.items() if k not in ("meshdir", "assetdir", "texturedir")})
    ET.SubElement(out, "compiler", compiler)
    for child in shared:
        sec = copy.deepcopy(child)
        if sec.tag in ("tendon", "actuator", "sensor", "equality"):
            for item in list(sec):
                if _joint_refs(item) & dropped:
                    sec.remove(item)
        if sec.tag == "contact":
            for item in list(sec):
                if not _geom_refs(item) <= kept_geoms:
                    sec.remove(item)
        if sec.tag == "size":
            continue
        out.append(sec)
    # actuators that drive a tendon which no longer exists
    tendons = {t.attrib.get("name") for sec in out.findall("tendon") for t in sec}
    for sec in out.findall("actuator"):
        for item in list(sec):
            if "tendon" in item.attrib and item.attrib["tendon"] not in tendons:
                sec.remove(item)
    asset = ET.SubElement(out, "asset")
    for child in assets:
        if not with_visual and child.tag == "mesh":
            continue
        asset.append(copy.deepcopy(child))
    if not with_visual:
        for mat in list(asset):
            if mat.tag == "texture" and mat.attrib.get("type") == "skybox":
                asset.remove(mat)
    wb = ET.SubElement(out, "worldbody")
    wb.append(root_body)
    return ET.tostring(out, encoding="unicode")


def _own_sections(robot: ET.Element) -> ET.Element:
    """A self-contained MJCF's sections other than its body tree, assets and compiler (which
    :func:`hand_mjcf_xml` writes itself), in file order: the part a split layout keeps in ``shared``."""
    out = ET.Element("mujoco")
    out.extend(c for c in robot if c.tag not in ("worldbody", "asset", "compiler"))
    return out


def _own_assets(robot: ET.Element) -> ET.Element:
    """The children of a self-contained MJCF's ``<asset>`` sections (none for a primitives-only hand)."""
    out = ET.Element("asset")
    for sec in robot.findall("asset"):
        out.extend(sec)
    return out


def hand_model(spec: HandSpec, root: RootMode = "fixed", with_visual: bool = True) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(hand_mjcf_xml(spec, root, with_visual))


def subtree_bodies(m: mujoco.MjModel, root: int) -> list[int]:
    """Body ids of ``root`` and all its descendants, in id order (parents before children)."""
    inside = {root}
    for b in range(root + 1, m.nbody):
        if int(m.body_parentid[b]) in inside:
            inside.add(b)
    return sorted(inside)
