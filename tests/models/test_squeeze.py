"""The squeeze / pregrasp stage: contact Jacobians against MuJoCo's own (mj_jac), the wrench
balance against the equilibrium it promises, the snap onto the surface, the pregrasp mirror."""

from __future__ import annotations

import json
from pathlib import Path

import mujoco
import numpy as np
import pytest
import torch

from models.core.geometry import ObjectCloud
from models.core.rotations import matrix_to_quat
from models.grasp import Grasp, grasps_to_tensors
from models.hands import get_hand, hand_model
from models.physics.grasp_batch import GraspBatch
from models.physics.quality import contact_wrenches, contacts_and_penetration, max_penetration
from models.stages.squeeze import SqueezeConfig, _balance, snap_contacts, solve_squeeze

DATA = Path(__file__).resolve().parents[1] / "data" / "sim"


@pytest.fixture(scope="module")
def hand():
    return get_hand("shadow", dtype="float64")


def _cylinder_surface(r: float = 0.03, half: float = 0.05, n: int = 6000) -> ObjectCloud:
    """Points and outward normals on a closed cylinder along z (the trust case's object)."""
    gen = np.random.default_rng(0)
    side = int(n * 0.7)
    th = gen.uniform(0, 2 * np.pi, side)
    z = gen.uniform(-half, half, side)
    p_side = np.stack([r * np.cos(th), r * np.sin(th), z], 1)
    n_side = np.stack([np.cos(th), np.sin(th), np.zeros(side)], 1)
    caps = n - side
    rr = r * np.sqrt(gen.uniform(0, 1, caps))
    tc = gen.uniform(0, 2 * np.pi, caps)
    sign = np.where(np.arange(caps) % 2 == 0, 1.0, -1.0)
    p_cap = np.stack([rr * np.cos(tc), rr * np.sin(tc), sign * half], 1)
    n_cap = np.stack([np.zeros(caps), np.zeros(caps), sign], 1)
    return ObjectCloud(torch.tensor(np.vstack([p_side, p_cap])), torch.tensor(np.vstack([n_side, n_cap])))


def _trust_grasps():
    doc = json.loads((DATA / "cylinder_power.json").read_text())
    grasps = [Grasp.model_validate(g) for g in doc["grasps"]]
    return grasps_to_tensors(grasps, dtype=torch.float64)


def test_contact_jacobians_match_mujoco(hand):
    """The hand model's analytic Jacobians of points fixed to links equal mj_jac on the same MJCF."""
    pos, rot, q = _trust_grasps()
    m = hand_model(hand.spec, root="fixed", with_visual=False)
    d = mujoco.MjData(m)
    links = torch.tensor([3, 5, 9, 23 if hand.num_links > 23 else hand.num_links - 1])
    frames = hand.forward_kinematics(pos[:1], rot[:1], q[:1])
    offset = torch.tensor([0.003, -0.006, 0.01], dtype=torch.float64)
    world = frames.translation[:, links] + (frames.rotation[:, links] @ offset[:, None]).squeeze(-1)
    jac = hand.point_jacobians(frames, links, world)[0].numpy()  # (K, 3, J)
    palm = hand.body_ids[0]
    m.body_pos[palm] = pos[0].numpy()
    m.body_quat[palm] = matrix_to_quat(rot[0]).numpy()
    for qi, j in enumerate(hand.mj_joint_ids):
        d.qpos[m.jnt_qposadr[j]] = float(q[0, qi])
    mujoco.mj_kinematics(m, d)
    mujoco.mj_comPos(m, d)
    for k, li in enumerate(links.tolist()):
        jacp = np.zeros((3, m.nv))
        mujoco.mj_jac(m, d, jacp, None, world[0, k].numpy(), hand.body_ids[li])
        ref = np.stack([jacp[:, m.jnt_dofadr[j]] for j in hand.mj_joint_ids], 1)
        assert np.abs(jac[k] - ref).max() < 1e-9


def test_balance_cancels_opposing_contacts():
    """Two opposite contacts on a sphere: equal forces, zero net wrench, total as asked."""
    pos = torch.tensor([[[0.03, 0.0, 0.0], [-0.03, 0.0, 0.0]]], dtype=torch.float64)
    nrm = torch.tensor([[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]], dtype=torch.float64)
    w = contact_wrenches(pos, nrm, torch.zeros(1, 3, dtype=torch.float64), 0.3, 6, 10.0)[0].numpy()
    a, res = _balance(w, 8.0, 1e-3)
    assert res < 1e-6
    assert abs(a.sum() - 8.0) < 1e-3
    assert abs(a[:6].sum() - a[6:].sum()) < 1e-3  # the load is shared equally


def test_balance_reports_what_cannot_balance():
    """Both contacts on one side: nothing can cancel the push; the residual says so."""
    pos = torch.tensor([[[0.03, 0.0, 0.0], [0.03, 0.01, 0.0]]], dtype=torch.float64)
    nrm = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], dtype=torch.float64)
    w = contact_wrenches(pos, nrm, torch.zeros(1, 3, dtype=torch.float64), 0.3, 6, 10.0)[0].numpy()
    _, res = _balance(w, 8.0, 1e-3)
    assert res > 7.0


def test_squeeze_closes_only_touching_fingers_and_pregrasp_mirrors_it(hand):
    pos, rot, q = _trust_grasps()
    surf = _cylinder_surface()
    cfg = SqueezeConfig(pregrasp_candidates=())  # the plain mirror, palm pregrasp_backoff_m back
    out = solve_squeeze(GraspBatch(hand, pos, rot, q), surf, cfg)
    delta = out.squeeze - q
    assert delta.abs().max() <= cfg.max_offset_rad + 1e-12
    assert (out.contact_count >= 2).all()
    frames = hand.forward_kinematics(pos, rot, q)
    contacts, _ = contacts_and_penetration(hand, frames, surf, threshold=cfg.contact_distance_m)
    # a joint none of whose descendant links touches the object does not move
    touching = {int(contacts.link[k]) for k in range(len(contacts.link)) if bool(contacts.mask[0, k])}
    for ji in range(hand.num_joints):
        moved_links = {li for li in range(hand.num_links) if _joint_moves_link(hand, ji, li)}
        if not (moved_links & touching):
            assert abs(float(delta[0, ji])) < 1e-9
    closing = torch.sign(hand.init_pose - hand.open_pose)
    opened = (q - out.pre_joints) * closing
    assert (opened >= -1e-9).all()  # the pregrasp never closes a joint
    flex = (delta * closing).clamp_min(0) * closing
    assert torch.allclose(out.pre_joints, torch.maximum(torch.minimum(q - flex, hand.upper), hand.lower))
    back = ((pos - out.pre_position) * (rot @ hand.approach_direction)).sum(-1)
    assert torch.allclose(back, torch.full_like(back, cfg.pregrasp_backoff_m))


def test_pregrasp_is_the_first_candidate_that_clears_the_object(hand):
    # a candidate that puts the hand into the object (here: the palm 3 cm forwards, into the
    # cylinder; on wrap grasps, pulling the palm back does it with the fingers behind the object) is
    # skipped for the next
    pos, rot, q = _trust_grasps()
    surf = _cylinder_surface()
    deep, none = (-0.03, 0.0), (0.0, 0.6)

    def clearance(backoff: float, share: float) -> torch.Tensor:
        out = solve_squeeze(GraspBatch(hand, pos, rot, q), surf, SqueezeConfig(pregrasp_candidates=((backoff, share),)))
        frames = hand.forward_kinematics(out.pre_position, rot, out.pre_joints)
        contacts, _ = contacts_and_penetration(hand, frames, surf, threshold=0.01)
        return contacts.distance.min(dim=1).values

    assert (clearance(*deep) < 0).all()  # the first candidate penetrates the object
    cfg = SqueezeConfig(pregrasp_candidates=(deep, none), pregrasp_clearance_m=0.0)
    out = solve_squeeze(GraspBatch(hand, pos, rot, q), surf, cfg)
    back = ((pos - out.pre_position) * (rot @ hand.approach_direction)).sum(-1)
    assert torch.allclose(back, torch.zeros_like(back))  # the second candidate: no backoff
    assert (clearance(*none) >= 0).all()
    # the opening moves closing joints towards the open pose, never past it and never closes one
    closing = torch.sign(hand.init_pose - hand.open_pose)
    assert ((q - out.pre_joints) * closing >= -1e-9).all()


def test_pregrasp_path_to_the_grasp_must_clear_the_object(hand):
    """A pregrasp that clears the object but whose straight path to the grasp runs through it (the palm 5 cm back
    with the fingers curled round a cylinder: on the way in they meet its near side) is skipped when the path is
    checked, taken when only the pregrasp is (``pregrasp_path_samples=(0.0,)``, the earlier rule)."""
    pos, rot, q = _trust_grasps()
    surf = _cylinder_surface()
    curled, open_in_place = (0.05, 0.0), (0.0, 0.6)

    def path_clearance(cfg: SqueezeConfig, ts: list[float]) -> torch.Tensor:
        out = solve_squeeze(GraspBatch(hand, pos, rot, q), surf, cfg)
        rows = []
        for t in ts:
            frames = hand.forward_kinematics(out.pre_position + t * (pos - out.pre_position), rot,
                                             out.pre_joints + t * (q - out.pre_joints))
            contacts, _ = contacts_and_penetration(hand, frames, surf, threshold=0.01)
            rows.append(contacts.distance.min(dim=1).values)
        return torch.stack(rows)  # (T, B)

    only = SqueezeConfig(pregrasp_candidates=(curled,))
    assert (path_clearance(only, [0.0]) >= only.pregrasp_clearance_m).all()  # every pregrasp itself clears
    margins = torch.tensor([only.pregrasp_clearance_m * (1 - t) for t in (0.25, 0.5, 0.75)], dtype=torch.float64)[:, None]
    through = (path_clearance(only, [0.25, 0.5, 0.75]) < margins).any(0)  # (B,) the grasps whose path runs into it
    assert bool(through.any()) and not bool(through.all())  # the wrap does, the pinches do not
    old = SqueezeConfig(pregrasp_candidates=(curled, open_in_place), pregrasp_path_samples=(0.0,))
    new = SqueezeConfig(pregrasp_candidates=(curled, open_in_place))
    back = lambda cfg: ((pos - solve_squeeze(GraspBatch(hand, pos, rot, q), surf, cfg).pre_position)  # noqa: E731
                        * (rot @ hand.approach_direction)).sum(-1)
    assert torch.allclose(back(old), torch.full_like(back(old), 0.05))  # the earlier rule: the first candidate for all
    assert torch.allclose(back(new), torch.where(through, 0.0, 0.05).to(torch.float64))
    # where no candidate's path clears, the one that comes least short of it is taken
    samples = new.pregrasp_path_samples
    margins = torch.tensor([new.pregrasp_clearance_m * (1 - t) for t in samples], dtype=torch.float64)[:, None]
    short_new = (path_clearance(new, list(samples)) - margins).min(0).values
    short_curled = (path_clearance(only, list(samples)) - margins).min(0).values
    assert (short_new[through] > short_curled[through]).all()


@pytest.mark.parametrize("clearance_m", [0.003, 0.03])  # 3 cm: no candidate clears, the least short is taken
def test_pregrasp_choice_matches_checking_every_candidate(hand, clearance_m):
    """The pregrasp search checks a candidate only for the grasps no earlier one cleared; it picks what checking
    every candidate's whole path for every grasp picks (the first that clears, else the least short, the earlier on a tie)."""
    from models.stages.squeeze import _path_shortfall

    pos, rot, q = _trust_grasps()
    surf = _cylinder_surface()
    cfg = SqueezeConfig(pregrasp_clearance_m=clearance_m)
    out = solve_squeeze(GraspBatch(hand, pos, rot, q), surf, cfg)
    mirror = solve_squeeze(GraspBatch(hand, pos, rot, q), surf, SqueezeConfig(pregrasp_candidates=()))
    closing = torch.sign(hand.init_pose - hand.open_pose)
    towards_open = ((hand.open_pose - mirror.pre_joints) * closing).clamp_max(0.0) * closing
    approach = rot @ hand.approach_direction
    cands = [(pos - back * approach, hand.project_joints(mirror.pre_joints + share * towards_open))
             for back, share in cfg.pregrasp_candidates]
    short = torch.stack([_path_shortfall(hand, cp, cq, pos, q, rot, surf, cfg) for cp, cq in cands])  # (C, B)
    clear = short >= 0
    pick = torch.where(clear.any(0), clear.to(torch.int64).argmax(0), short.argmax(0))
    assert bool(clear.any(0).all()) == (clearance_m < 0.01)
    rows = torch.arange(pos.shape[0])
    assert torch.allclose(out.pre_position, torch.stack([c[0] for c in cands])[pick, rows], atol=1e-12, rtol=0)
    assert torch.allclose(out.pre_joints, torch.stack([c[1] for c in cands])[pick, rows], atol=1e-12, rtol=0)


def _joint_moves_link(hand, joint: int, link: int) -> bool:
    li = link
    while li > 0:
        if hand.joint_of_link[li] == joint:
            return True
        li = hand.parent[li]
    return False


def test_snap_brings_hovering_fingers_onto_the_surface(hand):
    pos, rot, q = _trust_grasps()
    surf = _cylinder_surface()
    cfg = SqueezeConfig()
    # open every flexion joint a little: the fingers now hover
    closing = torch.sign(hand.init_pose - hand.open_pose)
    hovering = hand.project_joints(q - 0.08 * closing)
    before, _ = contacts_and_penetration(hand, hand.forward_kinematics(pos, rot, hovering), surf, threshold=0.008)
    snapped = snap_contacts(GraspBatch(hand, pos, rot, hovering), surf, cfg).joints
    after, _ = contacts_and_penetration(hand, hand.forward_kinematics(pos, rot, snapped), surf, threshold=0.008)
    jointed = torch.tensor([hand.joint_of_link[int(li)] >= 0 for li in before.link])
    sel = before.mask & (before.distance > 0.002) & jointed
    assert int(sel.sum()) >= 6
    # many hovering links end on the surface (some are held back by a neighbouring finger)
    assert (after.distance[sel].abs() < 0.0015).double().mean() > 0.4
    assert after.distance[sel].abs().mean() < 0.5 * before.distance[sel].mean()
    assert (snapped <= hand.upper + 1e-9).all() and (snapped >= hand.lower - 1e-9).all()


def test_snap_does_not_press_the_hand_deeper_than_its_cap(hand):
    """The hovering trust grasps snapped onto a sparse cloud (where the snap presses links in): with
    ``snap_max_penetration_m`` no grasp ends deeper in the cloud than the cap or its depth before the
    snap, while the snap still closes hovering links; without it, at least one goes deeper."""
    pos, rot, q = _trust_grasps()
    surf = _cylinder_surface(n=700)
    closing = torch.sign(hand.init_pose - hand.open_pose)
    hovering = hand.project_joints(q - 0.08 * closing)
    before, pen0 = contacts_and_penetration(hand, hand.forward_kinematics(pos, rot, hovering), surf, threshold=0.008)
    cap = 0.0005
    free = snap_contacts(GraspBatch(hand, pos, rot, hovering), surf, SqueezeConfig(snap_max_penetration_m=None)).joints
    capped = snap_contacts(GraspBatch(hand, pos, rot, hovering), surf, SqueezeConfig(snap_max_penetration_m=cap)).joints
    _, pen_free = contacts_and_penetration(hand, hand.forward_kinematics(pos, rot, free), surf)
    after, pen_capped = contacts_and_penetration(hand, hand.forward_kinematics(pos, rot, capped), surf, threshold=0.008)
    limit = pen0.clamp_min(cap)
    assert bool((pen_free > limit + 1e-6).any())  # the case needs the cap
    assert bool((pen_capped <= limit + 1e-9).all())
    sel = before.mask & (before.distance > 0.002)
    assert after.distance[sel].mean() < 0.7 * before.distance[sel].mean()  # and the snap still closes


def test_finger_count_counts_fingers_not_links(hand):
    """Links of one finger count once, the palm never; checked against the MJCF's own body tree."""
    from models.stages.squeeze import finger_count

    m = hand_model(hand.spec, root="fixed", with_visual=False)
    names = hand.link_names
    palm = m.body(hand.spec.mjcf.name_prefix + names[0]).id

    def finger_of(link: str) -> int:  # the palm's child this link hangs from, by MuJoCo's parent ids
        b = m.body(hand.spec.mjcf.name_prefix + link).id
        while int(m.body_parentid[b]) != palm:
            b = int(m.body_parentid[b])
        return b

    idx = {n: i for i, n in enumerate(names)}
    links = torch.tensor([idx[n] for n in ("palm", "ffproximal", "ffdistal", "mfdistal", "thdistal", "thmiddle", "lfdistal")])
    mask = torch.tensor([
        [True, True, True, False, False, False, False],  # palm + one finger twice
        [False, True, False, True, True, True, True],  # ff, mf, th (twice), lf
        [True, False, False, False, False, False, False],  # palm only
    ])
    expect = [len({finger_of(names[int(links[k])]) for k in range(len(links)) if row[k] and int(links[k]) != 0})
              for row in mask.tolist()]
    assert expect == [1, 4, 0]
    assert finger_count(hand, links, mask).tolist() == expect


def test_snap_cap_checks_only_the_moving_finger(hand, monkeypatch):
    """The cap is checked on the moving finger's primitives only (the others did not move and stayed
    within it): the same snap as checking every primitive; the fingers' primitives and the palm's
    cover the hand (the max over them is the whole hand's penetration)."""
    import models.stages.squeeze as squeeze
    from models.physics.quality import max_penetration

    pos, rot, q = _trust_grasps()
    surf = _cylinder_surface(n=700)
    closing = torch.sign(hand.init_pose - hand.open_pose)
    hovering = hand.project_joints(q - 0.08 * closing)
    frames = hand.forward_kinematics(pos, rot, hovering)
    groups = squeeze._finger_geoms(hand)
    palm_geoms = [g for g in range(len(hand.geom_type)) if g not in {x for gr in groups for x in gr}]
    assert len(groups) == 5 and all(hand.geom_link[g] == 0 for g in palm_geoms)
    per_finger = torch.stack([max_penetration(hand, frames, surf, gr) for gr in [*groups, tuple(palm_geoms)]], 1)
    torch.testing.assert_close(per_finger.max(1).values, max_penetration(hand, frames, surf))
    cfg = SqueezeConfig(snap_max_penetration_m=0.0005)
    fast = snap_contacts(GraspBatch(hand, pos, rot, hovering), surf, cfg).joints
    every = tuple(range(len(hand.geom_type)))
    monkeypatch.setattr(squeeze, "_finger_geoms", lambda h: [every] * len(groups))
    torch.testing.assert_close(snap_contacts(GraspBatch(hand, pos, rot, hovering), surf, cfg).joints, fast, rtol=0, atol=0)


def test_a_fingers_self_pairs_carry_all_the_self_penetration_its_move_changes(hand):
    """Moving one finger's joints changes the hand's self-penetration by exactly what it changes over the pairs
    that finger is part of (what the snap checks per finger); the pairs of all fingers cover every pair
    that is not palm-palm, and none twice within a finger."""
    import models.stages.squeeze as squeeze
    from models.physics.energy import self_penetration

    pos, rot, q = _trust_grasps()
    frames = hand.forward_kinematics(pos, rot, q)
    kp, r = hand.penetration_keypoints(frames)
    groups, pairs = squeeze._finger_joint_groups(hand), squeeze._finger_self_pairs(hand)
    assert len(pairs) == len(groups) == 5
    covered = set()
    for own, mask in pairs:
        for r_, c_ in torch.nonzero(mask).tolist():
            covered.add(tuple(sorted((int(own[r_]), c_))))
    palm = {k for k, li in enumerate(hand.keypoint_link.tolist()) if li == 0}
    finger_of = [squeeze._link_fingers(hand)[li] for li in hand.keypoint_link.tolist()]
    for f, (_, mask) in enumerate(pairs):  # each of the finger's pairs once
        assert int(mask.sum()) == sum(1 for a, b in hand.self_pairs.tolist() if f in (finger_of[a], finger_of[b]))
    assert covered == {tuple(x) for x in hand.self_pairs.tolist() if not (x[0] in palm and x[1] in palm)}
    closing = torch.sign(hand.init_pose - hand.open_pose)
    changed = 0
    for group, fp in zip(groups, pairs):
        moved = q.clone()
        moved[:, group] += 0.4 * closing[group]  # close this finger hard into its neighbours
        fr = hand.forward_kinematics(pos, rot, moved)
        kp2 = hand.penetration_keypoints(fr)[0]
        total = self_penetration(hand, fr) - self_penetration(hand, frames)
        part = squeeze._pair_penetration(kp2, r, fp) - squeeze._pair_penetration(kp, r, fp)
        torch.testing.assert_close(part, total, rtol=0, atol=1e-12)
        changed += int((total.abs() > 1e-6).sum())
    assert changed > 0  # the moves did change the self-penetration somewhere


def test_snap_keeps_self_penetration_within_its_tolerance(hand):
    """Fingers whose steps are checked one by one against the hand before the step, then taken together:
    no grasp ends with more self-penetration than it began with plus the tolerance per finger move, from
    hovering fingers and from fingers closed hard onto each other."""
    from models.physics.energy import self_penetration

    pos, rot, q = _trust_grasps()
    surf = _cylinder_surface()
    closing = torch.sign(hand.init_pose - hand.open_pose)
    for shift in (-0.08, 0.3):
        start = hand.project_joints(q + shift * closing)
        cfg = SqueezeConfig(snap_max_step_rad=0.3)
        snapped = snap_contacts(GraspBatch(hand, pos, rot, start), surf, cfg).joints
        before = self_penetration(hand, hand.forward_kinematics(pos, rot, start))
        after = self_penetration(hand, hand.forward_kinematics(pos, rot, snapped))
        assert bool((after <= before + cfg.snap_iterations * 5 * cfg.snap_self_tolerance_m + 1e-12).all())
        assert not torch.equal(snapped, start)


def test_fingers_that_clash_when_moved_together_are_moved_one_by_one(hand, monkeypatch):
    """Where the fingers' moves, taken together, add more self-penetration than allowed, the snap falls back
    to moving them finger after finger for those grasps: forced here by fingers all driven closed at once."""
    import models.stages.squeeze as squeeze
    from models.physics.energy import self_penetration

    pos, rot, q = _trust_grasps()
    closing = torch.sign(hand.init_pose - hand.open_pose)
    fell_back = []
    real = squeeze._finger_by_finger

    def every_finger_closes(h, p, r, qq, step, *rest):  # every finger moves, unchecked, hard into the others
        return 0.6 * closing.expand_as(qq), torch.full((qq.shape[0],), 5.0, dtype=qq.dtype)

    def recording(h, p, r, qq, *rest):
        fell_back.append(qq.shape[0])
        return real(h, p, r, qq, *rest)

    monkeypatch.setattr(squeeze, "_finger_moves", every_finger_closes)
    monkeypatch.setattr(squeeze, "_finger_by_finger", recording)
    cfg = SqueezeConfig(snap_iterations=1)
    snapped = snap_contacts(GraspBatch(hand, pos, rot, q), _cylinder_surface(), cfg).joints
    before = self_penetration(hand, hand.forward_kinematics(pos, rot, q))
    after = self_penetration(hand, hand.forward_kinematics(pos, rot, snapped))
    assert sum(fell_back) >= 1
    assert bool((after <= before + 5 * cfg.snap_self_tolerance_m + 1e-12).all())


@pytest.mark.parametrize("threshold", [0.003, 0.008, 0.04])
def test_near_contacts_are_the_dense_contacts_within_reach(hand, threshold):
    """The broad-phase contacts: the dense function's mask and penetration, and for every contact its point,
    normal and distance; a link that is not a contact reads ``threshold`` (below its true distance)."""
    from models.physics.quality import near_contacts_and_penetration, near_max_penetration

    pos, rot, q = _trust_grasps()
    surf = _cylinder_surface()
    closing = torch.sign(hand.init_pose - hand.open_pose)
    for shift in (-0.08, 0.0, 0.15):  # hovering, as synthesised, pressed in
        frames = hand.forward_kinematics(pos, rot, hand.project_joints(q + shift * closing))
        dense, pen = contacts_and_penetration(hand, frames, surf, threshold=threshold)
        near, pen_n = near_contacts_and_penetration(hand, frames, surf, threshold=threshold)
        assert torch.equal(dense.mask, near.mask) and torch.equal(dense.link, near.link)
        m = dense.mask
        torch.testing.assert_close(pen_n, pen, rtol=0, atol=1e-9)
        torch.testing.assert_close(near.distance[m], dense.distance[m], rtol=0, atol=1e-9)
        assert torch.equal(near.position[m], dense.position[m]) and torch.equal(near.normal[m], dense.normal[m])
        assert bool((near.distance[~m] == threshold).all()) and bool((dense.distance[~m] > threshold).all())
        geoms = (3, 4, 5)
        torch.testing.assert_close(near_max_penetration(hand, frames, surf, geoms),
                                   max_penetration(hand, frames, surf, geoms), rtol=0, atol=1e-9)
    assert bool(pen.gt(0).any())  # the pressed-in case penetrates


def test_latency_bound_paths_check_the_pregrasp_where_it_starts():
    """The path check (0.12.0) is ``optimize``'s (synthesis, method=optimize); the served default's paths (``fast``,
    ``dgtr``'s finishing, the pipeline's re-finishing of refined grasps) keep the start-only rule and its latency."""
    from models.pipeline import PipelineConfig
    from models.proposers.optimize import OptimizeConfig, fast_config
    from models.stages.squeeze import pregrasp_at_start_only

    assert len(OptimizeConfig().squeeze.pregrasp_path_samples) > 1
    assert fast_config().squeeze.pregrasp_path_samples == (0.0,)
    assert PipelineConfig().squeeze.pregrasp_path_samples == (0.0,)
    kept = SqueezeConfig(total_normal_force_n=20.0)
    assert pregrasp_at_start_only(kept) == SqueezeConfig(total_normal_force_n=20.0, pregrasp_path_samples=(0.0,))
