"""Text intent: our MiniLM encoder against sentence-transformers' reference embeddings, parse
accuracy on the instruction set, the parse rules one by one, scoring geometry on hand-built
grasps, object regions on catalogue objects, priors, and the optimiser's optional priors hooks."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from models.stages.intent import Intent, Priors, analyze_object, intent_priors, parse_intent, score_intent
from models.stages.intent.anatomy import anatomy
from models.stages.intent.encoder import get_encoder
from models.stages.intent.parse import content_words
from models.stages.intent.score import Contacts, approach_test, grasp_types

DATA = Path(__file__).resolve().parents[1] / "data" / "intent"
FIELDS = ("approach", "avoid_approach", "grasp_type", "use_fingers", "avoid_fingers", "region", "avoid_region", "unmatched")


@pytest.fixture(scope="session")
def encoder():
    return get_encoder()  # loads once per session (about 0.2 s)


@pytest.fixture(scope="module")
def hand():
    from models.hands import get_hand

    return get_hand("shadow", dtype="float32")


# ------------------------------------------------------------------------------------ encoder
def test_encoder_matches_sentence_transformers_reference(encoder):
    ref = json.loads((DATA / "reference_embeddings.json").read_text())
    ours = encoder.encode(ref["sentences"])
    expected = torch.tensor(ref["embeddings"], dtype=torch.float32)
    assert ours.shape == expected.shape == (len(ref["sentences"]), 384)
    assert float((ours - expected).abs().max()) < 1e-4
    assert torch.allclose(ours.norm(dim=-1), torch.ones(len(ref["sentences"])), atol=1e-5)


def test_encoder_is_batch_independent_and_needs_no_transformers(encoder):
    texts = ["from above", "pinch the neck of the bottle with the thumb and index finger"]
    together = encoder.encode(texts)
    alone = torch.cat([encoder.encode([t]) for t in texts])
    assert float((together - alone).abs().max()) < 1e-5
    assert "transformers" not in sys.modules and "sentence_transformers" not in sys.modules


# ------------------------------------------------------------------------------------ parsing
def _rows():
    return [json.loads(line) for line in (DATA / "instructions.jsonl").read_text().splitlines() if line.strip()]


def test_instruction_set_parse_accuracy(encoder):
    rows = _rows()
    assert len(rows) >= 60
    ok = {}
    for r in rows:
        got = parse_intent(r["text"]).fields()
        ok.setdefault(r["set"], []).append(all(got[k] == r[k] for k in FIELDS))
    total = [v for vs in ok.values() for v in vs]
    assert sum(total) / len(total) >= 0.9, {k: sum(v) / len(v) for k, v in ok.items()}
    for name, vs in ok.items():  # no subset may collapse either
        assert sum(vs) / len(vs) >= 0.85, (name, sum(vs) / len(vs))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("grab it from above", {"approach": "top"}),
        ("top-down, please", {"approach": "top"}),
        ("approach from underneath", {"approach": "bottom"}),
        ("come in from the side", {"approach": "side"}),
        ("from the side facing the camera", {"approach": "front"}),
        ("grasp the top of the bottle", {"region": "top", "approach": None}),
        ("pick up the box from the top", {"approach": "top", "region": None}),
        ("without the pinky", {"avoid_fingers": ["little"], "use_fingers": []}),
        ("don't use the little finger", {"avoid_fingers": ["little"]}),
        ("keep the ring finger off the object", {"avoid_fingers": ["ring"]}),
        ("leave out the pinky and the ring finger", {"avoid_fingers": ["ring", "little"]}),
        ("two fingers", {"grasp_type": "pinch"}),
        ("thumb and index", {"grasp_type": "pinch", "use_fingers": ["thumb", "index"]}),
        ("thumb, index and middle finger", {"grasp_type": "tripod", "use_fingers": ["thumb", "index", "middle"]}),
        ("fingertips of the thumb and forefinger", {"grasp_type": "pinch"}),
        ("lateral pinch", {"grasp_type": "lateral"}),
        ("by the handle", {"region": "handle"}),
        ("not by the handle", {"region": None, "avoid_region": ["handle"]}),
        ("not from above, from the side", {"approach": "side", "avoid_approach": ["top"]}),
        ("grab it from the left", {"approach": "side", "region": "left"}),
        ("power grasp on the neck without using the thumb", {"grasp_type": "power", "region": "neck", "avoid_fingers": ["thumb"]}),
    ],
)
def test_rules(text, expected):
    got = parse_intent(text, use_embedding=False).fields()
    for k, v in expected.items():
        assert got[k] == v, (text, k, got[k], v)


def test_embedding_maps_paraphrases(encoder):
    assert parse_intent("hold it like a pencil").grasp_type == "tripod"
    assert parse_intent("carry it like a suitcase").grasp_type == "hook"
    it = parse_intent("hold it like a pencil")
    assert it.source["grasp_type"] == "embedding" and 0.0 < it.confidence["grasp_type"] <= 1.0


def test_no_intent_and_json_form(encoder):
    for text in ("pick it up", "make me a sandwich", "", "   "):
        it = parse_intent(text)
        assert it.unmatched and it.is_empty, text
    it = parse_intent("Pinch the rim from the top with thumb and index")
    js = it.to_json()
    assert js["grasp_type"] == "pinch" and js["region"] == "rim" and js["approach"] == "top" and not js["unmatched"]
    assert Intent.model_validate(json.loads(json.dumps(js))) == it
    with pytest.raises(ValidationError):  # frozen
        it.region = "handle"  # type: ignore[misc]


def test_content_words_drop_filler():
    assert content_words("Grab the mug from above, please") == "from above"
    assert content_words("hold it like a hammer") == "like hammer"


# ------------------------------------------------------------------------------------ scoring
def _rot_with_approach(hand, approach: torch.Tensor) -> torch.Tensor:
    from models.physics.init_poses import frame_from_approach

    return frame_from_approach(approach[None].float(), hand.approach_direction.float(), torch.zeros(1))[0]


def test_approach_rules(hand):
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    fwd = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    down = _rot_with_approach(hand, torch.tensor([0.0, 0.0, -1.0]))
    tilted = _rot_with_approach(hand, torch.tensor([math.sin(0.6), 0.0, -math.cos(0.6)]))  # 34 deg off vertical
    away = _rot_with_approach(hand, torch.tensor([1.0, 0.0, 0.0]))  # palm moves away from the origin
    toward = _rot_with_approach(hand, torch.tensor([-1.0, 0.0, 0.1]))
    rot = torch.stack([down, tilted, away, toward]).double()
    assert approach_test(hand, rot, up, fwd, "top")[0].tolist() == [True, True, False, False]
    assert approach_test(hand, rot, up, fwd, "side")[0].tolist() == [False, False, True, True]
    assert approach_test(hand, rot, up, fwd, "front")[0].tolist() == [False, False, True, False]
    assert approach_test(hand, rot, up, fwd, "bottom")[0].tolist() == [False, False, False, False]
    assert not approach_test(hand, rot, up, None, "front")[0].any()  # no viewer direction: never front


def _contacts(hand, touching_links: list[list[str]], joints: torch.Tensor | None = None) -> Contacts:
    """Contacts with the named links touching; link poses from FK at ``joints`` (default: open)."""
    b = len(touching_links)
    q = hand.open_pose.expand(b, -1) if joints is None else joints
    frames = hand.forward_kinematics(torch.zeros(b, 3), torch.eye(3).expand(b, 3, 3), q)
    t = torch.zeros(b, hand.num_links, dtype=torch.bool)
    for i, names in enumerate(touching_links):
        for n in names:
            t[i, hand.link_names.index(n)] = True
    pos = frames.translation.double()
    # contact points on the palmar side (palm normal -y) of each link
    point = pos + torch.tensor([0.0, -0.01, 0.01], dtype=torch.float64)
    push = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64).expand(b, hand.num_links, 3)
    return Contacts(t, torch.zeros(b, hand.num_links, dtype=torch.float64), point, frames.rotation.double(), pos, push)


def test_grasp_type_rules(hand):
    c = _contacts(hand, [
        ["thdistal", "ffdistal"],
        ["thdistal", "ffdistal", "mfdistal"],
        ["palm", "thdistal", "ffmiddle", "mfmiddle"],
        ["thdistal", "ffdistal", "mfdistal", "rfdistal"],
        ["thdistal", "ffmiddle"],
        ["thdistal", "ffdistal", "mfmiddle"],
    ])
    types = grasp_types(hand, c)
    assert types[0] == {"pinch", "precision"}
    assert types[1] == {"tripod", "precision"}
    assert types[2] == {"power"}
    assert types[3] == {"precision"}
    assert "pinch" in types[4] and "precision" not in types[4]  # a middle phalanx is not a fingertip
    assert "precision" not in types[5] and "tripod" in types[5]


def test_lateral_and_hook_rules(hand):
    an = anatomy(hand)
    c = _contacts(hand, [["thdistal", "ffmiddle"], ["thdistal", "ffmiddle"]])
    mid = hand.link_names.index("ffmiddle")
    # grasp 0: the contact sits on the index's thumb-facing side; grasp 1: on its palmar side
    side = c.link_rot[0, mid] @ an.index_thumbward[1].double() * 0.01 + c.link_pos[0, mid]
    palmar = c.link_rot[1, mid] @ an.index_palmar[1].double() * 0.01 + c.link_pos[1, mid]
    c.point[0, mid], c.point[1, mid] = side, palmar
    types = grasp_types(hand, c)
    assert "lateral" in types[0] and "lateral" not in types[1]
    # hook: no thumb, two curled fingers (PIP + DIP flexed), vs the same fingers straight
    curled = hand.open_pose.clone()
    for j in ("FFJ1", "FFJ0", "MFJ1", "MFJ0"):
        curled[hand.joint_names.index(j)] = 0.8
    q = torch.stack([curled, hand.open_pose])
    c2 = _contacts(hand, [["ffmiddle", "mfmiddle"], ["ffmiddle", "mfmiddle"]], q)
    t2 = grasp_types(hand, c2)
    assert "hook" in t2[0] and "hook" not in t2[1]


def _box_points(center=(0.5, 0.0, 0.05), size=(0.06, 0.06, 0.1), n=3000, seed=0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    half = np.array(size) / 2
    p = rng.uniform(-1, 1, (n, 3)) * half
    axis = rng.integers(0, 3, n)
    p[np.arange(n), axis] = np.sign(rng.uniform(-1, 1, n)) * half[axis]
    return torch.tensor(p + np.array(center), dtype=torch.float32)


def test_score_top_grasp_on_a_box(hand):
    """An open hand lowered onto the box top, palm down: satisfies 'from above' and 'the top', not 'side'."""
    pts = _box_points()
    rot = _rot_with_approach(hand, torch.tensor([0.0, 0.0, -1.0]))[None]
    palm_c = hand.palm_center.float()
    top = float(pts[:, 2].max())
    pos = torch.tensor([[0.5, 0.0, top]]) - (rot[0] @ palm_c)[None] - torch.tensor([[0.0, 0.0, 0.004]]) * 0
    q = hand.open_pose[None]
    up = torch.tensor([0.0, 0.0, 1.0])
    s = score_intent(parse_intent("grab it from above", use_embedding=False), hand, pos, rot, q, pts, up)
    assert bool(s.satisfied[0]) and s.palm_contact[0]
    s2 = score_intent(parse_intent("grasp the top of it", use_embedding=False), hand, pos, rot, q, pts, up)
    assert bool(s2.satisfied[0])
    s3 = score_intent(parse_intent("side grasp", use_embedding=False), hand, pos, rot, q, pts, up)
    assert not bool(s3.satisfied[0]) and s3.message() is not None and "no grasp satisfies" in s3.message()
    s4 = score_intent(parse_intent("pick it up", use_embedding=False), hand, pos, rot, q, pts, up)
    assert bool(s4.satisfied[0]) and float(s4.score[0]) == 1.0 and s4.message() is None


def test_order_puts_satisfied_first(hand):
    from models.stages.intent.score import IntentScore

    s = IntentScore(
        score=torch.tensor([0.9, 1.0, 0.2, 1.0], dtype=torch.float64),
        satisfied=torch.tensor([False, True, False, True]),
        criteria={}, criteria_satisfied={}, fingers_in_contact=[()] * 4, palm_contact=[False] * 4,
        grasp_types=[()] * 4, applicable={},
    )
    assert s.order(torch.tensor([0.0, 5.0, 1.0, 2.0])).tolist() == [3, 1, 0, 2]


# ------------------------------------------------------------------------------------ regions
def _camera_view(oid: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A single-view depth-camera cloud of ``oid`` standing on a table, in the camera frame
    (the camera is the origin), table removed; and ``up`` in that frame."""
    from models import objects
    from models.core.geometry import remove_support_plane

    mesh = objects.load_mesh(oid).copy()
    mesh.apply_translation([0.0, 0.0, -mesh.bounds[0][2]])
    view = objects.partial_cloud(mesh, seed=seed, with_normals=False)
    r, t = view.camera_pose[:3, :3], view.camera_pose[:3, 3]
    cam = torch.tensor((view.points - t) @ r, dtype=torch.float32)
    up = torch.tensor(r.T @ np.array([0.0, 0.0, 1.0]), dtype=torch.float32)
    kept, _, _ = remove_support_plane(cam, up)
    return kept, up


@pytest.fixture(scope="module")
def catalogue_regions():
    from models import objects

    out = {}
    for oid in ("comp/bottle/0002", "prim/sphere/0004"):
        p, _ = objects.complete_cloud(objects.load_mesh(oid), n=4096, seed=0)
        pts = torch.tensor(p) + torch.tensor([0.5, 0.1, 0.0])
        out[oid] = (pts, analyze_object(pts))
    pts, up = _camera_view("comp/mug/0000")
    out["mug-view"] = (pts, analyze_object(pts, up))
    return out


def test_regions_find_thin_parts(catalogue_regions):
    from models.stages.intent.regions import region_points

    _, mug = catalogue_regions["mug-view"]
    _, bottle = catalogue_regions["comp/bottle/0002"]
    _, sphere = catalogue_regions["prim/sphere/0004"]
    assert mug.has_thin_part and bottle.has_thin_part and not sphere.has_thin_part
    # the mug's handle sticks out sideways, away from the body's axis; the bottle's neck is its top
    handle = mug.points[region_points(mug, "handle")]
    body = mug.points[~region_points(mug, "handle")]
    up = mug.up
    axis_point = body.mean(0)

    def radial(x: np.ndarray) -> np.ndarray:
        rel = x - axis_point
        return np.linalg.norm(rel - np.outer(rel @ up, up), axis=1)

    assert np.median(radial(handle)) > np.median(radial(body)) + 0.01
    neck = bottle.points[region_points(bottle, "neck")]
    assert neck[:, 2].min() > bottle.points[:, 2].min() + 0.5 * (np.ptp(bottle.points[:, 2]))
    assert not region_points(sphere, "handle").any()


def test_left_right_follow_the_viewer(catalogue_regions):
    from models.stages.intent.regions import region_points

    pts, reg = catalogue_regions["prim/sphere/0004"]
    # the viewer at the origin looks along +x: its left is +y
    left = reg.points[region_points(reg, "left")]
    assert left[:, 1].mean() > reg.points[:, 1].mean() + 0.01
    behind = analyze_object(pts, viewer=torch.tensor([1.0, 0.1, 0.0]))  # seen from the other side
    left_b = behind.points[region_points(behind, "left")]
    assert left_b[:, 1].mean() < behind.points[:, 1].mean() - 0.01
    at_origin = analyze_object(pts - pts.mean(0))
    assert at_origin.forward is None and not region_points(at_origin, "left").any()


# ------------------------------------------------------------------------------------ priors
def test_priors_top_cone_and_pinch_mask(hand):
    pts = _box_points()
    up = torch.tensor([0.0, 0.0, 1.0])
    pri = intent_priors(parse_intent("pinch it from the top", use_embedding=False), hand, pts, up)
    assert pri.approach_dirs is not None
    assert float((pri.approach_dirs @ up).min()) >= math.cos(math.radians(30.0)) - 1e-6
    names = {hand.link_names[li] for li, m in zip(hand.contact_link.tolist(), pri.contact_mask.tolist()) if m}
    assert names == {"thdistal", "ffdistal"}
    assert pri.standoff_m is not None and pri.init_joint_mask is not None
    avoid = intent_priors(parse_intent("don't use the little finger", use_embedding=False), hand, pts, up)
    names = {hand.link_names[li] for li, m in zip(hand.contact_link.tolist(), avoid.contact_mask.tolist()) if m}
    assert names and not any(n.startswith("lf") for n in names) and "palm" in names
    assert intent_priors(parse_intent("pick it up", use_embedding=False), hand, pts, up).is_empty


def test_priors_front_and_avoid(hand):
    pts = _box_points()
    up = torch.tensor([0.0, 0.0, 1.0])
    front = intent_priors(parse_intent("from the front", use_embedding=False), hand, pts, up)
    d = front.approach_dirs
    assert d is not None and float(d[:, 0].max()) < -0.5  # object -> palm points back towards the origin
    no_top = intent_priors(parse_intent("not from above", use_embedding=False), hand, pts, up)
    assert no_top.approach_dirs is not None and float((no_top.approach_dirs @ up).max()) < math.cos(math.radians(40.0))
    centred = intent_priors(parse_intent("from the front", use_embedding=False), hand, pts - pts.mean(0), up)
    assert centred.notes  # undefined without a viewer direction: said, not guessed


def test_optimizer_accepts_priors(hand):
    from models.physics.init_poses import palm_placements
    from models.proposers import get_proposer
    from models.proposers.optimize import OptimizeConfig, _allowed_contacts

    pts = _box_points(n=600)
    nrm = torch.nn.functional.normalize(pts - pts.mean(0), dim=-1)
    up = torch.tensor([0.0, 0.0, 1.0])
    pri = intent_priors(parse_intent("pinch it from the top", use_embedding=False), hand, pts, up)
    g = torch.Generator().manual_seed(0)
    _, rot = palm_placements(hand, pts, 8, up=up, generator=g, approach_dirs=pri.approach_dirs)
    approach = rot @ hand.approach_direction.float()
    assert float((approach @ -up).min()) >= math.cos(math.radians(30.0)) - 1e-5
    allowed = _allowed_contacts(pri, hand.contact_link.shape[0])
    assert allowed is not None and set(allowed.tolist()) == set(torch.nonzero(pri.contact_mask)[:, 0].tolist())
    prop = get_proposer("optimize", cfg=OptimizeConfig(steps=8))
    a = prop.propose(pts, nrm, 4, seed=1)
    b = prop.propose(pts, nrm, 4, seed=1, priors=Priors())  # empty priors change nothing
    assert [x.pose.position for x in a.grasps] == [x.pose.position for x in b.grasps]
    c = prop.propose(pts, nrm, 4, seed=1, priors=pri)
    assert len(c.grasps) == 4 and [x.pose.position for x in a.grasps] != [x.pose.position for x in c.grasps]
