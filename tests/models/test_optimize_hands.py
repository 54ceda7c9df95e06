"""The optimiser, the squeeze and the metrics for the Allegro and LEAP hands: what was the ShadowHand's by name
(contact links, finger count, keypoints, closing directions, the referee's gain) comes from each hand's data."""

from __future__ import annotations

import pytest
import torch

from models.hands import get_hand, load_spec
from models.physics.grasp_batch import GraspBatch
from models.proposers import get_proposer
from models.proposers.optimize import OptimizeConfig, contact_link_names
from models.stages.squeeze import SqueezeConfig, hand_finger_count, hand_gain, solve_squeeze

HANDS = ("allegro", "leap")


def _sphere(n: int = 400, r: float = 0.04) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    d = torch.randn(n, 3, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    return d * r, d


def test_default_contact_links_are_each_hands_distal_and_middle_links():
    """One default serves every hand: the ShadowHand gets the ten links it always had, in the same order."""
    default = OptimizeConfig().contact_links
    assert contact_link_names(default, get_hand("shadow").link_names) == (
        "ffdistal", "mfdistal", "rfdistal", "lfdistal", "thdistal", "ffmiddle", "mfmiddle", "rfmiddle", "lfmiddle", "thmiddle")
    for name in HANDS:
        assert contact_link_names(default, get_hand(name).link_names) == (
            "ff_distal", "mf_distal", "rf_distal", "th_distal", "ff_middle", "mf_middle", "rf_middle", "th_middle")
    assert contact_link_names(("ffdistal", "th*"), get_hand("shadow").link_names)[:2] == ("ffdistal", "thbase")
    with pytest.raises(ValueError, match="lfdistal"):
        contact_link_names(("lfdistal",), get_hand("allegro").link_names)


@pytest.mark.parametrize("name,fingers,kp", [("shadow", 5, 5.0), ("allegro", 4, 1.0), ("leap", 4, 3.0)])
def test_finger_count_and_gain_come_from_the_hand(name, fingers, kp):
    h = get_hand(name)
    assert hand_finger_count(h) == fingers
    assert hand_gain(h) == kp == load_spec(name).sim.finger_kp


@pytest.mark.parametrize("name", HANDS)
def test_closing_direction_is_the_specs(name):
    """Flexion joints close (+1); the abduction / rotation joints and the thumb's opposition swing do not (0),
    where the ShadowHand's rule sign(init - open) would say +1 for the thumb's."""
    h = get_hand(name, dtype="float64")
    spec = h.spec
    c = dict(zip(spec.joints, h.closing_direction.tolist()))
    assert c["th_cmc"] == 0 and c["th_rot"] == 0 and c["th_mcp"] == 1 and c["th_ip"] == 1
    rule = torch.sign(h.init_pose - h.open_pose)
    assert rule[spec.joints.index("th_cmc")] == 1  # why the spec states its own
    shadow = get_hand("shadow", dtype="float64")
    assert torch.equal(shadow.closing_direction, torch.sign(shadow.init_pose - shadow.open_pose))


@pytest.mark.parametrize("name", HANDS)
def test_squeeze_uses_the_hands_gain(name):
    """The squeeze's joint offsets are torques over the hand's own gain, for the force scaled to that gain: the same
    offsets as asking the reference force of a hand of the reference gain."""
    h = get_hand(name, dtype="float64")
    p, n = _sphere()
    g = torch.Generator().manual_seed(1)
    pos = torch.tensor([[0.0, 0.075, 0.0]], dtype=torch.float64)
    rot = torch.tensor([[[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]], dtype=torch.float64)  # palm (-y) faces the sphere
    q = (h.init_pose + 0.05 * torch.randn(h.num_joints, generator=g, dtype=torch.float64))[None]
    from models.core.geometry import ObjectCloud

    cloud = ObjectCloud(p.double(), n.double())
    batch = GraspBatch(h, pos, rot, h.project_joints(q))
    kp = hand_gain(h)
    own = solve_squeeze(batch, cloud, SqueezeConfig(pregrasp_candidates=()))
    explicit = solve_squeeze(batch, cloud, SqueezeConfig(kp=kp, total_normal_force_n=40.0 * kp / 5.0, reference_kp=kp,
                                                         pregrasp_candidates=()))
    torch.testing.assert_close(own.squeeze, explicit.squeeze)
    # pregrasp: only closing joints are opened; the sideways ones keep the grasp's angle
    side = [h.spec.joints.index(j) for j in h.spec.joints if h.closing_direction[h.spec.joints.index(j)] == 0]
    torch.testing.assert_close(own.pre_joints[:, side], batch.joints[:, side])


@pytest.mark.parametrize("name", HANDS)
def test_optimiser_makes_grasps_for_the_hand(name):
    """A short run: grasps in the shared schema for that hand, with a squeeze and a pregrasp, contacts only on its
    distal and middle links."""
    p, n = _sphere()
    prop = get_proposer("optimize", hand=name, cfg=OptimizeConfig(steps=8, extra_rounds=0, oversample=1.0))
    assert prop.finger_count == 4
    res = prop.propose(p, n, 2, seed=0)
    assert len(res.grasps) == 2
    for g in res.grasps:
        assert g.hand == name and set(g.joints) == set(load_spec(name).joints)
        assert g.squeeze is not None and set(g.squeeze) == set(g.joints)
        assert g.scores["squeeze_fingers"] <= 4
