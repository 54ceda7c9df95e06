"""The Allegro and LEAP hands as data (``models/hands/assets``, ``allegro.json``, ``leap.json``): their MJCFs
load through the same palm-rooted path as the ShadowHand, torch FK matches MuJoCo, the specs' joints,
limits and actuators are in the MJCFs, the point sets sit where they should, the canonical poses are
clean; and the ShadowHand's MJCF string is the one it was before the loader learned single-file hands."""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest
import torch

from models.core.rotations import matrix_to_quat
from models.hands import available_hands, get_hand, hand_mjcf_xml, hand_model, known_hands, load_spec
from models.hands.model import GEOM_BOX, GEOM_CAPSULE, LinkFrames

from .test_kinematics import _mujoco_frames, _random_config

HANDS = ["allegro", "leap"]
FINGERS = ("ff", "mf", "rf")
FLEX = ("mcp", "pip", "dip")  # the finger joints that curl a finger towards the palm, in both hands


@pytest.fixture(scope="module", params=HANDS)
def hand(request):
    return get_hand(request.param, dtype="float64")


def _at(h, q):
    eye = torch.eye(3, dtype=torch.float64)[None]
    return h.forward_kinematics(torch.zeros(1, 3, dtype=torch.float64), eye, q[None])


def _own_geoms(h, link: int) -> tuple[int, ...]:
    return tuple(g for g in range(len(h.geom_names)) if int(h.geom_link[g]) == link)


def _own_distance(h, frames, link_of_point, pts):
    """(P,) signed distance of each point to the union of its own link's primitives."""
    sd = h.signed_distance_per_geom(frames, pts[None])[0]  # (G, P)
    mask = h.geom_link[:, None] == link_of_point[None, :]
    return torch.where(mask, sd, torch.full_like(sd, float("inf"))).min(dim=0).values


# ----------------------------------------------------------------------------------------- registry and data
def test_registered_next_to_shadow_as_data_only():
    assert {"shadow", "allegro", "leap"} <= set(known_hands())
    # the service plans for the ShadowHand alone until the pipeline handles other hands
    assert available_hands() == ["shadow"] and load_spec("shadow").served
    for name in HANDS:
        spec = load_spec(name)
        assert not spec.served
        assert spec.num_joints == 16 and spec.coupling_tendons == ()
        assert spec.mjcf.package == "models.hands" and spec.mjcf.shared == "" and spec.mjcf.assets == ""
        assert spec.mjcf.name_prefix == "" and spec.mjcf.drop_joints == ()


def test_mjcf_is_primitives_only_and_every_primitive_is_in_the_spec(hand):
    m = hand_model(hand.spec, root="fixed", with_visual=True)
    assert m.nmesh == 0 and m.nhfield == 0
    types = {int(t) for t in m.geom_type}
    assert types <= {GEOM_BOX, GEOM_CAPSULE}
    assert sorted(hand.geom_names) == sorted(m.geom(g).name for g in range(m.ngeom))
    # the palm is the root and every other link carries exactly one hinge (HandModel checks this too)
    assert hand.link_names[0] == "palm" and hand.num_links == 17
    assert sorted(hand.joint_of_link[1:]) == list(range(16))
    # masses: a plausible hand (the Allegro is about 1 kg, the LEAP hand about 0.75 kg)
    assert 0.6 < float(m.body_subtreemass[1]) < 1.2


def test_every_spec_joint_has_limits_and_one_position_actuator(hand):
    m = hand_model(hand.spec, root="free", with_visual=False)
    assert m.nu == hand.num_joints
    driven = {}
    for a in range(m.nu):
        assert int(m.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT)
        driven.setdefault(m.joint(int(m.actuator_trnid[a, 0])).name, []).append(a)
    for qi, name in enumerate(hand.joint_names):
        j = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)
        assert j >= 0, f"{name} not in the MJCF"
        assert int(m.jnt_type[j]) == int(mujoco.mjtJoint.mjJNT_HINGE) and bool(m.jnt_limited[j])
        lo, hi = (float(v) for v in m.jnt_range[j])
        assert lo < hi and (lo, hi) == (float(hand.lower[qi]), float(hand.upper[qi]))
        assert float(m.dof_damping[m.jnt_dofadr[j]]) > 0 and float(m.dof_armature[m.jnt_dofadr[j]]) > 0
        (a,) = driven[name]  # exactly one actuator
        kp = float(m.actuator_gainprm[a, 0])
        assert kp > 0 and float(m.actuator_biasprm[a, 1]) == -kp  # a position servo
        assert bool(m.actuator_ctrllimited[a]) and tuple(float(v) for v in m.actuator_ctrlrange[a]) == (lo, hi)
        assert bool(m.actuator_forcelimited[a]) and float(m.actuator_forcerange[a, 1]) > 0


def test_spec_link_and_geom_names_are_short_and_systematic(hand):
    for n in hand.joint_names:
        assert re.fullmatch(r"(ff|mf|rf)_(rot|abd|mcp|pip|dip)|th_(cmc|rot|mcp|ip)", n), n
    for n in hand.link_names[1:]:
        assert re.fullmatch(r"(ff|mf|rf|th)_(base|proximal|middle|distal)", n), n


# ----------------------------------------------------------------------------------------- kinematics
def test_fk_matches_mujoco_fixed_root(hand):
    gen = torch.Generator().manual_seed(0)
    pos, rot, q = _random_config(hand, 64, gen)
    frames = hand.forward_kinematics(pos, rot, q)
    ref_p, ref_r = _mujoco_frames(hand, pos, rot, q)
    err_p = np.abs(frames.translation.numpy() - ref_p).max()
    err_r = np.abs(frames.rotation.numpy() - ref_r).max()
    assert err_p < 1e-5, f"max link position error {err_p:.3e} m"
    assert err_r < 1e-5, f"max link rotation error {err_r:.3e}"


def test_fk_matches_mujoco_free_root(hand):
    """Through the free-joint model the simulator uses (qpos = palm pose + joints)."""
    m = hand_model(hand.spec, root="free", with_visual=False)
    d = mujoco.MjData(m)
    gen = torch.Generator().manual_seed(1)
    pos, rot, q = _random_config(hand, 16, gen)
    frames = hand.forward_kinematics(pos, rot, q)
    bodies = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, n) for n in hand.link_names]
    jadr = [m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n)] for n in hand.joint_names]
    worst = 0.0
    for i in range(16):
        d.qpos[0:3] = pos[i].numpy()
        d.qpos[3:7] = matrix_to_quat(rot[i]).numpy()
        d.qpos[jadr] = q[i].numpy()
        mujoco.mj_kinematics(m, d)
        worst = max(worst, float(np.abs(frames.translation[i].numpy() - d.xpos[bodies]).max()))
    assert worst < 1e-5, f"max link position error {worst:.3e} m"


def test_sdf_matches_mujoco_geom_distance(hand):
    """The analytic SDF of the primitives (the LEAP thumb tip is a rotated capsule) against mj_geomDistance."""
    root = ET.fromstring(hand_mjcf_xml(hand.spec, root="fixed", with_visual=False))
    wb = root.find("worldbody")
    probe_body = ET.SubElement(wb, "body", {"name": "probe", "mocap": "true"})
    ET.SubElement(probe_body, "geom", {"name": "probe", "type": "sphere", "size": "1e-5", "contype": "0",
                                       "conaffinity": "0"})
    m = mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"))
    d = mujoco.MjData(m)
    gen = torch.Generator().manual_seed(3)
    pos, rot, q = _random_config(hand, 2, gen)
    frames = hand.forward_kinematics(pos, rot, q)
    geom_ids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, g) for g in hand.geom_names]
    probe = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "probe")
    worst, inside = 0.0, 0
    for i in range(2):
        fi = LinkFrames(frames.rotation[i : i + 1], frames.translation[i : i + 1])
        _, gpos = hand.geom_frames(fi)
        pts = gpos[0][torch.randint(len(geom_ids), (40,), generator=gen)]
        pts = pts + torch.randn(40, 3, generator=gen, dtype=torch.float64) * 0.012
        ours = hand.signed_distance_per_geom(fi, pts[None])[0]
        m.body_pos[hand.body_ids[0]] = pos[i].numpy()
        m.body_quat[hand.body_ids[0]] = matrix_to_quat(rot[i]).numpy()
        for qi, j in enumerate(hand.mj_joint_ids):
            d.qpos[m.jnt_qposadr[j]] = float(q[i, qi])
        for k in range(40):
            d.mocap_pos[0] = pts[k].numpy()
            mujoco.mj_forward(m, d)
            for g, gid in enumerate(geom_ids):
                ref = mujoco.mj_geomDistance(m, d, gid, probe, 1.0, None) + 1e-5
                worst = max(worst, abs(ref - float(ours[g, k])))
                inside += int(ref < 0)
    assert inside > 10
    assert worst < 1e-6, f"max |SDF - MuJoCo| = {worst:.3e} m"


def test_right_handed_and_fingers_flex_towards_the_approach_side(hand):
    """Index on the side of ``fingers x approach`` (a right hand, like the ShadowHand), the thumb's root on that
    side too, and curling a finger moves its tip along the spec's approach direction."""
    a = hand.approach_direction
    open_f = _at(hand, hand.open_pose)
    tip = {f: hand.link_names.index(f"{f}_distal") for f in (*FINGERS, "th")}
    t = open_f.translation[0]
    fingers = t[tip["mf"]] / t[tip["mf"]].norm()
    index_side = torch.linalg.cross(fingers, a)
    assert float((t[tip["ff"]] - t[tip["rf"]]) @ index_side) > 0.05
    assert float(t[hand.link_names.index("th_base")] @ index_side) > 0.01
    for f in FINGERS:
        closed = hand.open_pose.clone()
        for j in FLEX:
            closed[hand.joint_names.index(f"{f}_{j}")] = 0.8
        move = _at(hand, closed).translation[0, tip[f]] - t[tip[f]]
        assert float(move @ a) > 0.03, f"{hand.spec.name} {f}"


def test_shadow_is_right_handed_by_the_same_rule(shadow64):
    t = _at(shadow64, shadow64.open_pose).translation[0]
    ff, lf, mf = (t[shadow64.link_names.index(n)] for n in ("ffdistal", "lfdistal", "mfdistal"))
    assert float((ff - lf) @ torch.linalg.cross(mf / mf.norm(), shadow64.approach_direction)) > 0.05


# ----------------------------------------------------------------------------------------- point sets
@pytest.mark.parametrize("pose", ["open", "init"])
def test_contact_candidates_lie_on_their_links_surface(hand, pose):
    q = hand.open_pose if pose == "open" else hand.init_pose
    frames = _at(hand, q)
    cc = hand.contact_candidates(frames)[0]
    own = _own_distance(hand, frames, hand.contact_link, cc)
    assert own.abs().max() < 1e-4, f"a candidate is {own.abs().max():.2e} m off its link's primitives"
    if pose == "open":  # none is buried inside another primitive of the hand
        assert hand.signed_distance(frames, cc[None]).min() > -1e-4


def test_contact_candidates_face_the_palmar_side(hand):
    """Outward normals (the SDF gradient of the candidate's own link): fingers and palm look along the approach
    direction in the open pose; the thumb's pads look at the index and middle fingertips in the init pose."""
    links = hand.spec.contact_candidates.link

    def normals(q):
        frames = _at(hand, q)
        cc = hand.contact_candidates(frames)[0].detach().requires_grad_(True)
        own = _own_distance(hand, frames, hand.contact_link, cc)
        (g,) = torch.autograd.grad(own.sum(), cc)
        return cc.detach(), g / g.norm(dim=-1, keepdim=True)

    _, n = normals(hand.open_pose)
    fingers = torch.tensor([not ln.startswith("th") for ln in links])
    facing = n[fingers] @ hand.approach_direction
    assert (facing > -1e-6).all()
    assert (facing > 0.5).double().mean() > 0.9
    p, n = normals(hand.init_pose)
    thumb = torch.tensor([ln in ("th_middle", "th_distal") for ln in links])
    tips = torch.tensor([ln in ("ff_distal", "mf_distal") for ln in links])
    to_tips = p[tips].mean(0) - p[thumb]
    cos = (n[thumb] * to_tips).sum(-1) / to_tips.norm(dim=-1)
    assert (cos > 0).all() and cos.mean() > 0.5


def test_penetration_keypoints_are_inside_their_link(hand):
    """Each sphere is inscribed in a primitive of its own link (its centre at least a radius deep)."""
    frames = _at(hand, hand.init_pose)
    c, r = hand.penetration_keypoints(frames)
    own = _own_distance(hand, frames, hand.keypoint_link, c[0])
    assert (own <= -r + 1e-6).all(), f"worst margin {(own + r).max():.2e} m"
    # every link that moves an object carries keypoints
    assert {hand.link_names[i] for i in hand.keypoint_link.tolist()} >= {
        f"{f}_{s}" for f in (*FINGERS, "th") for s in ("middle", "distal")
    } | {"palm"}


def test_palm_center_is_on_the_palmar_surface(hand):
    frames = _at(hand, hand.open_pose)
    c = hand.palm_center[None, None]
    palm = torch.tensor(_own_geoms(hand, 0))
    sd = hand.signed_distance_per_geom(frames, c)[0, palm, 0]
    assert float(sd.abs().min()) < 1e-9
    # just outside it along the approach direction is free space
    assert float(hand.signed_distance(frames, c + 0.005 * hand.approach_direction)[0, 0]) > 0


# ----------------------------------------------------------------------------------------- canonical poses
@pytest.mark.parametrize("pose", ["open", "init"])
def test_canonical_poses_are_within_limits_and_free_of_self_penetration(hand, pose):
    q = hand.open_pose if pose == "open" else hand.init_pose
    assert (q >= hand.lower).all() and (q <= hand.upper).all()
    c, r = hand.penetration_keypoints(_at(hand, q))
    i, j = hand.self_pairs[:, 0], hand.self_pairs[:, 1]
    gap = (c[0, i] - c[0, j]).norm(dim=-1) - r[i] - r[j]
    assert gap.min() > 0, f"keypoint pair overlaps by {-gap.min():.4f} m"
    # and MuJoCo finds no contact inside the hand there (the simulator's free-root model)
    m = hand_model(hand.spec, root="free", with_visual=False)
    d = mujoco.MjData(m)
    d.qpos[3] = 1.0
    for qi, name in enumerate(hand.joint_names):
        d.qpos[m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)]] = float(q[qi])
    mujoco.mj_forward(m, d)
    pairs = [(m.geom(c.geom1).name, m.geom(c.geom2).name) for c in d.contact[: d.ncon]]
    assert pairs == [], pairs


def test_init_pose_is_half_closed(hand):
    """Each finger is bent (not the open pose) and the thumb's pad is in front of the palm."""
    assert (hand.init_pose - hand.open_pose).abs().sum() > 2.0
    t = _at(hand, hand.init_pose).translation[0]
    th = t[hand.link_names.index("th_distal")]
    assert float((th - hand.palm_center) @ hand.approach_direction) > 0.02


# ----------------------------------------------------------------------------------------- the ShadowHand
# sha256 of ``hand_mjcf_xml(shadow, root, with_visual)`` with the (install-dependent) meshdir blanked, as
# computed before the loader was generalised (issue 17); the gymnasium-robotics release they were taken with
SHADOW_XML_SHA256 = {
    ("fixed", True): "40dd0e5080ff621492faa16d14cd8aea2839b8205bc860889d4bec086d7ed061",
    ("fixed", False): "43d7c283dbc729a5afddc836f1991ca92a73fa643309e70ac463256dee2fe440",
    ("free", True): "47a593eefeda18406b87dedc6ba88453c875b86af194ef7b2eba95566bd8be4a",
    ("free", False): "3691b427c742fa7087bd2e7fe7c75caa20dca2a90d09c41704c55b7b4b04ed72",
}
SHADOW_GYMNASIUM_ROBOTICS = "1.4.2"


@pytest.mark.parametrize("root", ["fixed", "free"])
@pytest.mark.parametrize("with_visual", [True, False])
def test_shadow_mjcf_is_unchanged(root, with_visual):
    spec = load_spec("shadow")
    xml = hand_mjcf_xml(spec, root=root, with_visual=with_visual)
    out = ET.fromstring(xml)
    # structure: split files merged in their order, the wrist gone, the palm at the world's origin
    assert [c.tag for c in out] == ["compiler", "visual", "default", "contact", "tendon", "sensor", "actuator",
                                    "asset", "worldbody"]
    compiler = out.find("compiler")
    assert compiler is not None and list(compiler.attrib) == ["angle", "coordinate", "meshdir"]
    assert compiler.attrib["meshdir"].endswith("stls/hand")
    palm = out.find("worldbody/body")
    assert palm is not None and palm.attrib["name"] == "robot0:palm" and "pos" not in palm.attrib
    assert palm.attrib["childclass"] == "robot0:asset_class"
    m = mujoco.MjModel.from_xml_string(xml)
    assert (m.nbody, m.njnt, m.nu, m.ntendon, m.npair, m.nsensor) == (24, 22 + (root == "free"), 18, 40, 19, 27)
    assert (m.nmesh, m.ngeom) == ((12, 41) if with_visual else (0, 20))
    assert not any("WRJ" in m.joint(j).name for j in range(m.njnt))
    # byte for byte, where the installed gymnasium-robotics is the release the hashes were taken with
    if importlib.metadata.version("gymnasium-robotics") != SHADOW_GYMNASIUM_ROBOTICS:
        pytest.skip(f"hashes recorded with gymnasium-robotics {SHADOW_GYMNASIUM_ROBOTICS}")
    blank = re.sub(r'meshdir="[^"]*"', 'meshdir="MESHDIR"', xml)
    assert hashlib.sha256(blank.encode()).hexdigest() == SHADOW_XML_SHA256[(root, with_visual)]

