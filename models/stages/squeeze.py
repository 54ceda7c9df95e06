"""The squeeze and pregrasp of a grasp, from its contacts: the stage that makes a grasp hold.

Under the referee of record (``docs/simulation.md``) the object is free from the start and the
hand is driven pregrasp -> grasp -> squeeze by position actuators (gain ``kp``). The squeeze is the
only thing that makes grip force, and a squeeze that pushes harder on one side than the other
flicks the object away before any disturbance. So the squeeze is solved per grasp:

1. **Contacts.** Per hand link with collision geometry, the nearest object surface point and its
   outward normal (``quality.near_contacts_and_penetration``); links within ``contact_distance_m`` push.
2. **Wrench balance.** Forces ``f_i`` in linearised friction cones (``friction_mu``, below the
   simulation's 0.6 to leave room) with total normal force ``total_normal_force_n`` (scaled by the hand's
   gain over ``reference_kp``: the ShadowHand's 40 N, the Allegro's 8 N, the LEAP's 24 N), chosen to make
   the net wrench on the object as close to zero as possible (non-negative least squares over the
   cone edges, with a small ridge that spreads the force over the contacts). The residual is the
   grasp's ``squeeze_residual`` (N): near zero when the contacts can balance.
3. **Joint targets.** The actuator torques that apply those forces, ``tau = sum_i J_i^T f_i``
   (``J_i`` the Jacobian of the hand point at contact ``i``), become target offsets through the
   gain, ``tau / kp`` (the hand's own gain, :func:`hand_gain`); a finger that hovers ``d`` off the
   surface also gets the joint motion that closes the gap (``J_i^+ (-n_i d)``). Coupled pairs (J1/J0, driven in the referee by one actuator
   on their sum) share their offset in the ratio of the hand's coupling band. Joints of links with
   no contact do not move.
4. **Pregrasp.** The mirror of the squeeze about the grasp (the fingers opened by as much as the
   squeeze closes them) with the palm ``pregrasp_backoff_m`` back along its approach direction, as
   the grasps the referee's authors publish do. A pregrasp must clear the object: pulling the palm
   back drives the inside of fingers that wrap the object into its far side, and the free object
   is then kicked away before the approach begins; and a hand that touches the object on its way in
   sets it drifting (gravity is off in the referee), so it is gone by the end of the squeeze. So
   candidates (``pregrasp_candidates``: palm backoff, extra opening towards the open pose) are tried
   in order; the first whose straight path to the grasp keeps every cloud point
   ``pregrasp_clearance_m x (1 - t)`` from the hand at the ``pregrasp_path_samples`` t is taken, else
   the one that comes least short of it.

Inputs are batched torch tensors in the object frame; nothing here runs simulation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.optimize import nnls
from torch import Tensor

from ..core.geometry import ObjectCloud
from ..hands.model import HandModel, LinkFrames
from ..physics.energy import self_penetration
from ..physics.grasp_batch import GraspBatch
from ..physics.quality import contact_wrenches, near_contacts_and_penetration, near_max_penetration


@dataclass(frozen=True)
class SqueezeConfig:
    """How the squeeze is solved. Units: m, N, rad, N m / rad."""

    contact_distance_m: float = 0.005  # a link nearer the object surface than this pushes
    friction_mu: float = 0.3  # friction assumed by the balance (the referee simulates 0.6)
    cone_edges: int = 6  # linearised friction cone
    # sum of the normal forces asked of the contacts of a hand driven with gain ``reference_kp`` (ShadowHand, train-split
    # sweep: 10 N 11 %, 20 N 16-20 %, 40 N 25 % hold). A hand of another gain is asked this x kp / reference_kp, the
    # force that gives its joints the squeeze offsets (tau / kp) the ShadowHand's were tuned at: the Allegro (kp 1) 8 N,
    # the LEAP (kp 3) 24 N. 40 N at kp 1 put a third of the Allegro's pushing joints on max_offset_rad (unbalanced:
    # 1 of 8 grasps held on a validation box against 2 of 8 at 8 N); 8 N still holds the referee's 1 N push
    # (friction 0.6: about 5 N of grip)
    total_normal_force_n: float = 40.0
    reference_kp: float = 5.0  # N m / rad: the gain total_normal_force_n was tuned at (the ShadowHand's in the referee)
    ridge: float = 1e-3  # spreads the force over the contacts (relative to a unit wrench)
    torque_scale: float = 10.0  # 1/m: torques count like forces at 10 cm
    # finger actuator gain of the referee scene (N m / rad); None: the hand's, its spec's sim block (the ShadowHand's 5,
    # the Allegro's 1, the LEAP's 3: what sim_worker's PhysicsConfig.for_hand gives the scene), else its MJCF's
    kp: float | None = None
    close_gap: bool = True  # drive hovering fingers onto the surface
    max_offset_rad: float = 0.35  # per-joint cap of squeeze - grasp
    pregrasp_backoff_m: float = 0.01  # palm distance back along its approach at the pregrasp
    pregrasp_open_scale: float = 1.0  # pregrasp joints = grasp - scale * (squeeze - grasp)
    # (palm backoff m, share of the way to the open pose) tried in order; the first that clears the
    # object by pregrasp_clearance_m is the pregrasp, else the one that clears it most
    pregrasp_candidates: tuple[tuple[float, float], ...] = (
        (0.01, 0.0), (0.01, 0.3), (0.01, 0.6), (0.005, 0.3), (0.005, 0.6), (0.0, 0.3), (0.0, 0.6), (0.0, 0.0))
    pregrasp_clearance_m: float = 0.003
    # where along the straight path pregrasp -> grasp (0: the pregrasp, 1: the grasp; palm and joints interpolated
    # as the referee drives them) a pregrasp candidate must clear the cloud, by pregrasp_clearance_m x (1 - t).
    # (0.0,): the pregrasp alone (until session 16). A free object touched on the way in is set drifting (gravity is
    # off in the referee) and leaves during the squeeze; see docs/optimizer.md, "The approach"
    pregrasp_path_samples: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    snap: bool = True  # move hovering fingers onto the surface before solving the squeeze
    snap_distance_m: float = 0.008  # links nearer than this are moved onto the surface first
    snap_target_m: float = 0.001  # distance the snapped links end at (<0: pressed in); 0 -> 1 mm: eta_np 83 -> 91 %, fc_mocap 21 -> 24 % (validation replay)
    snap_iterations: int = 6  # damped Gauss-Newton steps of the snap
    snap_damping: float = 1e-4  # Levenberg-Marquardt damping (m^2)
    snap_max_step_rad: float = 0.1  # per joint and iteration
    snap_self_tolerance_m: float = 1e-4  # a snap step may not add more finger-finger overlap than this
    # a snap step may not press the hand deeper into the cloud than max(this, the depth before the snap) (m);
    # None: unchecked. 0.5 mm (optimize 0.8.0, validation, fc_mocap): 53.1 -> 53.7 % and 51.2 -> 52.5 %,
    # eta_np 85.6 -> 95.0 % and 81.9 -> 88.1 % on two sets of 10 objects (unchecked, the snap pressed links
    # moved by the snapped joints 1-2 mm in; replay: 0 mm 42.5 %, 0.5 mm 43.8 %, 1 mm 41.9 %, None 40.6 %)
    snap_max_penetration_m: float | None = 0.0005


def pregrasp_at_start_only(cfg: SqueezeConfig | None = None) -> SqueezeConfig:
    """``cfg`` (default: the defaults) with its pregrasp checked where the path starts only, the rule before the
    path check (``pregrasp_path_samples=(0.0,)``). For the latency-bound paths (``dgtr``, ``fast``, the pipeline's
    re-finishing of refined grasps), which the path check would slow by about 0.9 s a request on a 2-core CPU
    (docs/optimizer.md, "The approach") before anyone has measured whether it helps their grasps."""
    return replace(cfg or SqueezeConfig(), pregrasp_path_samples=(0.0,))


@dataclass(frozen=True)
class SqueezeResult:
    """Per grasp: squeeze joints (B, J), pregrasp palm position (B, 3) (same orientation) and
    joints (B, J), the balance residual (B,) in N, the number of pushing contacts (B,) and of
    fingers with at least one pushing contact (B,)."""

    squeeze: Tensor
    pre_position: Tensor
    pre_joints: Tensor
    residual_n: Tensor
    contact_count: Tensor
    finger_count: Tensor


def _balance(wrench_edges: np.ndarray, total_normal: float, ridge: float) -> tuple[np.ndarray, float]:
    """Edge weights (K*E,) >= 0 with sum = total_normal (every edge has a unit normal component)
    minimising |W a|^2 + ridge * |a|^2; and the residual wrench norm."""
    n = wrench_edges.shape[0]
    w = wrench_edges.T  # (6, n)
    big = 100.0
    a_mat = np.vstack([w, big * np.ones((1, n)), np.sqrt(ridge) * np.eye(n)])
    b_vec = np.concatenate([np.zeros(6), [big * total_normal], np.zeros(n)])
    a, _ = nnls(a_mat, b_vec, maxiter=50 * n)
    return a, float(np.linalg.norm(w @ a))


def _float64(grasps: GraspBatch, cloud: ObjectCloud) -> tuple[HandModel, Tensor, Tensor, Tensor, ObjectCloud]:
    dt = torch.float64
    hand = grasps.hand
    if hand.lower.dtype != dt:
        from ..hands import get_hand

        hand = get_hand(hand.spec.name, dtype="float64")
    surf = ObjectCloud(cloud.points.to(dt), cloud.normals.to(dt),
                       None if cloud.center_point is None else cloud.center_point.to(dt))
    return hand, grasps.root_pos.to(dt), grasps.root_rot.to(dt), grasps.joints.to(dt), surf


def snap_contacts(grasps: GraspBatch, cloud: ObjectCloud, cfg: SqueezeConfig | None = None) -> GraspBatch:
    """The grasps with their fingers moved onto the object: every link within ``snap_distance_m``
    of the surface (or inside it) is driven to ``snap_target_m`` by damped Gauss-Newton steps on
    the joints (the palm stays), within the joint limits and coupling bands. A finger's step that
    drives it into another finger or deeper into the cloud than allowed is halved, then dropped.
    Every finger's step (whole and halved) is checked in one batch against where the hand was
    (:func:`_finger_moves`); the fingers' accepted steps are then taken together, and a grasp whose
    fingers, moved together, overlap each other more than each alone was allowed to falls back to
    checking them finger by finger. Float64 throughout."""
    cfg = cfg or SqueezeConfig()
    hand, pos, rot, q, surf = _float64(grasps, cloud)
    dt = torch.float64
    pen_cap = None
    if cfg.snap_max_penetration_m is not None:
        pen_cap = near_max_penetration(hand, hand.forward_kinematics(pos, rot, q), surf).clamp_min(cfg.snap_max_penetration_m)
    groups, geoms = _finger_joint_groups(hand), _finger_geoms(hand)
    spen = None
    for _ in range(cfg.snap_iterations):
        frames = hand.forward_kinematics(pos, rot, q)
        if spen is None:
            spen = self_penetration(hand, frames)
        contacts, _ = near_contacts_and_penetration(hand, frames, surf, threshold=cfg.snap_distance_m)
        hand_pt = contacts.position + contacts.normal * contacts.distance[..., None]
        jac = hand.point_jacobians(frames, contacts.link, hand_pt)  # (B, K, 3, J)
        rows = torch.einsum("bkc,bkcj->bkj", contacts.normal, jac)  # d(distance)/dq
        resid = (contacts.distance - cfg.snap_target_m) * contacts.mask
        rows = rows * contacts.mask[..., None]
        gram = rows @ rows.transpose(1, 2) + cfg.snap_damping * torch.eye(rows.shape[1], dtype=dt)
        step = -(rows.transpose(1, 2) @ torch.linalg.solve(gram, resid[..., None])).squeeze(-1)
        step = step.clamp(-cfg.snap_max_step_rad, cfg.snap_max_step_rad)
        move, n_moved = _finger_moves(hand, pos, rot, q, frames, step, surf, pen_cap, groups, geoms, cfg)
        q_new = torch.where((n_moved > 0)[:, None], hand.project_joints(q + move), q)
        spen_new = self_penetration(hand, hand.forward_kinematics(pos, rot, q_new))
        clash = spen_new > spen + n_moved * cfg.snap_self_tolerance_m
        if bool(clash.any()):
            rows_c = torch.nonzero(clash).flatten()
            sub = surf if surf.points.dim() == 2 else ObjectCloud(surf.points[rows_c], surf.normals[rows_c])
            q_seq = _finger_by_finger(hand, pos[rows_c], rot[rows_c], q[rows_c], step[rows_c], sub,
                                      None if pen_cap is None else pen_cap[rows_c], groups, geoms, cfg)
            q_new = q_new.index_copy(0, rows_c, q_seq)
            spen_new = spen_new.index_copy(0, rows_c, self_penetration(hand, hand.forward_kinematics(pos[rows_c], rot[rows_c], q_seq)))
        q, spen = q_new, spen_new
    return GraspBatch(hand, pos, rot, q)


_SNAP_SCALES = (1.0, 0.5)  # a finger's snap step is tried whole, then halved, then dropped


def _finger_moves(hand: HandModel, pos: Tensor, rot: Tensor, q: Tensor, frames_q: LinkFrames, step: Tensor, surf: ObjectCloud,
                  pen_cap: Tensor | None, groups: list[list[int]], geoms: list[tuple[int, ...]],
                  cfg: SqueezeConfig) -> tuple[Tensor, Tensor]:
    """Every finger's snap step, whole and halved, checked at once against the hand at ``q``: a move passes
    when it adds at most ``snap_self_tolerance_m`` of self-penetration (over the keypoint pairs the finger is
    part of, the only ones its move changes) and keeps the finger's primitives within ``pen_cap``. Returns the sum of the accepted moves (B, J), the whole step
    where it passes, else the halved one, and how many fingers moved (B,)."""
    b, nj = q.shape
    nf, ns = len(groups), len(_SNAP_SCALES)
    parts = torch.zeros(nf, ns, b, nj, dtype=q.dtype, device=q.device)
    for f, group in enumerate(groups):
        for k, scale in enumerate(_SNAP_SCALES):
            parts[f, k][:, group] = step[:, group] * scale
    cand = hand.project_joints((q + parts).reshape(nf * ns * b, nj))
    frames = hand.forward_kinematics(pos.repeat(nf * ns, 1), rot.repeat(nf * ns, 1, 1), cand)
    base = hand.penetration_keypoints(frames_q)[0]  # the hand at q (its frames: the caller's)
    keypoints, radius = hand.penetration_keypoints(frames)
    cloud = surf if surf.points.dim() == 2 else ObjectCloud(surf.points.repeat(ns, 1, 1), surf.normals.repeat(ns, 1, 1))
    ok = torch.zeros(nf, ns, b, dtype=torch.bool, device=q.device)
    for f, (pairs, finger_geoms) in enumerate(zip(_finger_self_pairs(hand), geoms)):
        # only this finger's links moved: only the pairs it is part of, and its primitives, can change
        sl = slice(f * ns * b, (f + 1) * ns * b)
        before = _pair_penetration(base, radius, pairs)  # (B,)
        after = _pair_penetration(keypoints[sl], radius, pairs).reshape(ns, b)
        ok[f] = after <= before + cfg.snap_self_tolerance_m
        if pen_cap is not None:
            fr = LinkFrames(frames.rotation[sl], frames.translation[sl])
            ok[f] &= (near_max_penetration(hand, fr, cloud, finger_geoms) <= pen_cap.repeat(ns)).reshape(ns, b)
    zero = torch.zeros_like(parts[:, 0])
    chosen = torch.where(ok[:, 0, :, None], parts[:, 0], torch.where(ok[:, 1, :, None], parts[:, 1], zero))  # (F, B, J)
    moved = (ok[:, 0] | ok[:, 1]) & (chosen != 0).any(-1)
    return chosen.sum(0), moved.sum(0).to(q.dtype)


def _finger_self_pairs(hand: HandModel) -> list[tuple[Tensor, Tensor]]:
    """Per finger (the order of :func:`_finger_joint_groups`), the self-collision keypoint pairs with at least
    one keypoint on that finger, as that finger's keypoints (F,) and a (F, K) 0/1 matrix over them and every
    keypoint (each pair once); cached on the hand."""
    cache: list[tuple[Tensor, Tensor]] | None = hand.__dict__.get("_finger_self_pairs_cache")
    if cache is None:
        fingers = torch.tensor(_link_fingers(hand))[hand.keypoint_link.cpu()]  # (K,) finger of each keypoint
        n_kp = fingers.shape[0]
        pairs = hand.self_pairs.cpu().tolist()
        cache = []
        for f in sorted(_by_finger(hand, "joints")):
            own = torch.nonzero(fingers == f).flatten()
            row = {int(k): r for r, k in enumerate(own.tolist())}
            mask = torch.zeros(len(row), n_kp, dtype=hand.lower.dtype)
            for a, b in pairs:
                if a in row:
                    mask[row[a], b] = 1.0
                elif b in row:
                    mask[row[b], a] = 1.0
            cache.append((own.to(hand.self_pairs.device), mask.to(hand.lower.device)))
        hand.__dict__["_finger_self_pairs_cache"] = cache
    return cache


def _pair_penetration(keypoints: Tensor, radius: Tensor, pairs: tuple[Tensor, Tensor]) -> Tensor:
    """(B,) the keypoint spheres' overlap relu(r_i + r_j - d_ij) (m) summed over one finger's ``pairs``
    (:func:`_finger_self_pairs`): its keypoints against every keypoint, masked to the self-collision pairs."""
    own, mask = pairs
    d = torch.cdist(keypoints[:, own], keypoints, compute_mode="donot_use_mm_for_euclid_dist")  # (B, F, K)
    overlap = torch.relu(radius[own][:, None] + radius[None, :] - d)
    return (overlap * mask.to(overlap)).sum((1, 2))


def _finger_by_finger(hand: HandModel, pos: Tensor, rot: Tensor, q: Tensor, step: Tensor, surf: ObjectCloud,
                      pen_cap: Tensor | None, groups: list[list[int]], geoms: list[tuple[int, ...]],
                      cfg: SqueezeConfig) -> Tensor:
    """The snap step taken finger after finger, each checked against the hand as the fingers before it
    left it (the fallback of :func:`snap_contacts` where fingers moved together run into each other)."""
    for group, finger_geoms in zip(groups, geoms):
        part = torch.zeros_like(step)
        part[:, group] = step[:, group]
        for _ in _SNAP_SCALES:
            spen0 = self_penetration(hand, hand.forward_kinematics(pos, rot, q))
            cand = hand.project_joints(q + part)
            cand_frames = hand.forward_kinematics(pos, rot, cand)
            ok = self_penetration(hand, cand_frames) <= spen0 + cfg.snap_self_tolerance_m
            if pen_cap is not None:
                ok = ok & (near_max_penetration(hand, cand_frames, surf, finger_geoms) <= pen_cap)
            q = torch.where(ok[:, None], cand, q)
            if bool(ok.all()):
                break
            part = torch.where(ok[:, None], torch.zeros_like(part), 0.5 * part)
    return q


def _link_fingers(hand: HandModel) -> list[int]:
    """Per link: the index of its finger (fingers numbered by the palm's children their chains hang
    from, in link order), -1 for the palm."""
    tops = []
    for li in range(hand.num_links):
        top = li
        while top > 0 and hand.parent[top] > 0:
            top = hand.parent[top]
        tops.append(top)
    number = {t: i for i, t in enumerate(sorted({t for t in tops if t > 0}))}
    return [number.get(t, -1) for t in tops]


def hand_finger_count(hand: HandModel) -> int:
    """How many fingers the hand has (thumb included): the chains that hang from the palm and carry a joint
    (ShadowHand 5, Allegro and LEAP 4)."""
    return len(_by_finger(hand, "joints"))


def finger_count(hand: HandModel, link: Tensor, mask: Tensor) -> Tensor:
    """(B,) the number of fingers with at least one of the links ``link`` (K,) active in ``mask`` (B, K)."""
    fingers = torch.tensor(_link_fingers(hand), dtype=torch.int64)[link.cpu()].to(mask.device)  # (K,)
    n = int(fingers.max()) + 1 if fingers.numel() else 0
    if n <= 0:
        return torch.zeros(mask.shape[0], dtype=torch.int64, device=mask.device)
    onehot = torch.nn.functional.one_hot(fingers.clamp_min(0), n).double() * (fingers >= 0)[:, None].double()
    return ((mask.double() @ onehot) > 0).sum(1)


def _finger_joint_groups(hand: HandModel) -> list[list[int]]:
    """Joint indices grouped by finger: the chain below each child link of the palm."""
    return [sorted(g) for _, g in sorted(_by_finger(hand, "joints").items())]


def _finger_geoms(hand: HandModel) -> list[tuple[int, ...]]:
    """The collision primitives of each finger, in the order of :func:`_finger_joint_groups`."""
    joints, geoms = _by_finger(hand, "joints"), _by_finger(hand, "geoms")
    return [tuple(geoms.get(f, [])) for f in sorted(joints)]


def _by_finger(hand: HandModel, what: str) -> dict[int, list[int]]:
    fingers = _link_fingers(hand)
    groups: dict[int, list[int]] = {}
    if what == "joints":
        for li, finger in enumerate(fingers):
            qi = hand.joint_of_link[li]
            if qi >= 0 and finger >= 0:
                groups.setdefault(finger, []).append(qi)
    else:
        for g, li in enumerate(hand.geom_link.tolist()):
            if fingers[li] >= 0:
                groups.setdefault(fingers[li], []).append(g)
    return groups


def hand_gain(hand: HandModel) -> float:
    """The finger actuators' position gain the referee drives ``hand`` with (N m / rad): its spec's ``sim`` block,
    else the mean gain of its MJCF's position actuators."""
    kp = hand.spec.sim.finger_kp
    if kp is not None:
        return float(kp)
    m = hand.mj_model
    gains = [float(m.actuator_gainprm[a, 0]) for a in range(m.nu)]
    if not gains:
        raise ValueError(f"hand {hand.spec.name!r}: no finger gain (no sim.finger_kp and no actuators)")
    return sum(gains) / len(gains)


def solve_squeeze(grasps: GraspBatch, cloud: ObjectCloud, cfg: SqueezeConfig | None = None) -> SqueezeResult:
    """Squeeze and pregrasp for B grasps against the object ``cloud`` (points and outward normals,
    the grasps' frame); torques are balanced about the cloud's centre. Float64 results."""
    cfg = cfg or SqueezeConfig()
    hand, pos, rot, q, surf = _float64(grasps, cloud)
    dt = torch.float64
    b, nj = q.shape
    frames = hand.forward_kinematics(pos, rot, q)
    contacts, _ = near_contacts_and_penetration(hand, frames, surf, threshold=cfg.contact_distance_m)
    c = surf.center.expand(b, 3)
    # the hand point of each link nearest the object: the object point moved back along its normal
    gap = contacts.distance.clamp_min(0.0)  # (B, K)
    hand_pt = contacts.position + contacts.normal * gap[..., None]
    jac = hand.point_jacobians(frames, contacts.link, hand_pt)  # (B, K, 3, J)
    edges = contact_wrenches(contacts.position, contacts.normal, c, cfg.friction_mu, cfg.cone_edges,
                             cfg.torque_scale)  # (B, K*E, 6)
    e = cfg.cone_edges
    k = contacts.position.shape[1]
    force_dir = edges[..., :3].reshape(b, k, e, 3)
    offsets = torch.zeros(b, nj, dtype=dt)
    residual = torch.zeros(b, dtype=dt)
    kp = hand_gain(hand) if cfg.kp is None else cfg.kp
    total_normal = cfg.total_normal_force_n * kp / cfg.reference_kp
    count = contacts.mask.sum(1)
    fingers = finger_count(hand, contacts.link, contacts.mask)
    for i in range(b):
        active = torch.nonzero(contacts.mask[i]).flatten()
        if active.numel() < 2:
            residual[i] = total_normal  # nothing to balance against
            continue
        cols = (active[:, None] * e + torch.arange(e)).flatten()
        a, res = _balance(edges[i, cols].numpy(), total_normal, cfg.ridge)
        residual[i] = res
        alpha = torch.as_tensor(a, dtype=dt).reshape(-1, e)  # (A, E)
        f = (alpha[..., None] * force_dir[i, active]).sum(1)  # (A, 3) hand-on-object forces
        tau = torch.einsum("akj,ak->j", jac[i, active], f)
        delta = tau / kp
        if cfg.close_gap:  # hovering contacts: the damped joint motion that moves them onto the surface
            g = gap[i, active]
            rows = torch.einsum("ac,acj->aj", contacts.normal[i, active], jac[i, active])
            gram = rows @ rows.T + cfg.snap_damping * torch.eye(len(active), dtype=dt)
            delta = delta - rows.T @ torch.linalg.solve(gram, g)
        offsets[i] = delta
    offsets = _share_coupled(hand, offsets).clamp(-cfg.max_offset_rad, cfg.max_offset_rad)
    squeeze = torch.maximum(torch.minimum(q + offsets, hand.upper.to(dt)), hand.lower.to(dt))
    # open only what the squeeze closes: sideways (abduction) offsets are not mirrored, as spreading
    # the fingers the other way can drive them into each other
    closing = hand.closing_direction.to(dt)
    pre_q = q - cfg.pregrasp_open_scale * (squeeze - q).mul(closing).clamp_min(0.0) * closing
    pre_q = torch.maximum(torch.minimum(pre_q, hand.upper.to(dt)), hand.lower.to(dt))
    approach = rot @ hand.approach_direction.to(dt)
    if not cfg.pregrasp_candidates:
        return SqueezeResult(squeeze, pos - cfg.pregrasp_backoff_m * approach, pre_q, residual, count, fingers)
    pre_pos, pre_q = _clear_pregrasp(hand, pos, rot, q, pre_q, approach, surf, cfg)
    return SqueezeResult(squeeze, pre_pos, pre_q, residual, count, fingers)


def _clear_pregrasp(hand: HandModel, pos: Tensor, rot: Tensor, q: Tensor, mirror_q: Tensor, approach: Tensor,
                    surf: ObjectCloud, cfg: SqueezeConfig) -> tuple[Tensor, Tensor]:
    """Per grasp, the first of ``cfg.pregrasp_candidates`` whose straight path to the grasp (``q`` at ``pos``)
    keeps every cloud point ``cfg.pregrasp_clearance_m x (1 - t)`` away at each of ``cfg.pregrasp_path_samples``
    (else the candidate whose path comes least short of that): palm position and joints. Opening moves the
    closing joints of the mirrored pregrasp towards the open pose."""
    dt = mirror_q.dtype
    b = pos.shape[0]
    closing = hand.closing_direction.to(dt)
    towards_open = ((hand.open_pose.to(dt) - mirror_q) * closing).clamp_max(0.0) * closing  # opening part only
    cands_pos, cands_q = [], []
    for backoff, share in cfg.pregrasp_candidates:
        cands_pos.append(pos - backoff * approach)
        cands_q.append(hand.project_joints(mirror_q + share * towards_open))
    # candidate by candidate, each only for the grasps that no earlier candidate cleared (most clear on the first);
    # with four path samples the squeeze solve still takes about 2.7x its time with the pregrasp alone (docs/optimizer.md)
    first = torch.zeros(b, dtype=torch.int64, device=pos.device)
    best = torch.full((b,), -torch.inf, dtype=dt, device=pos.device)  # the least shortfall seen, while none clears
    pending = torch.arange(b, device=pos.device)
    for ci, (cp, cq) in enumerate(zip(cands_pos, cands_q)):
        if pending.numel() == 0:
            break
        short = _path_shortfall(hand, cp[pending], cq[pending], pos[pending], q[pending], rot[pending],
                                surf if surf.points.dim() == 2 else ObjectCloud(surf.points[pending], surf.normals[pending]), cfg)
        clear = short >= 0
        better = short > best[pending]  # strictly: the earlier candidate keeps a tie
        first[pending] = torch.where(clear | better, torch.full_like(pending, ci), first[pending])
        best[pending] = torch.where(better, short, best[pending])
        pending = pending[~clear]
    rows = torch.arange(b)
    return (torch.stack(cands_pos)[first, rows], torch.stack(cands_q)[first, rows])


def _path_shortfall(hand: HandModel, start_pos: Tensor, start_q: Tensor, end_pos: Tensor, end_q: Tensor, rot: Tensor,
                    surf: ObjectCloud, cfg: SqueezeConfig) -> Tensor:
    """(B,) the most the straight path from (start_pos, start_q) to (end_pos, end_q) falls short of keeping the
    hand ``cfg.pregrasp_clearance_m x (1 - t)`` from the cloud at the ``cfg.pregrasp_path_samples`` t (m; <= 0: clear)."""
    b, n_t = start_pos.shape[0], len(cfg.pregrasp_path_samples)
    t = torch.tensor(cfg.pregrasp_path_samples, dtype=start_pos.dtype, device=start_pos.device).repeat_interleave(b)  # (T*B,)
    sp, sq, ep, eq = (x.repeat(n_t, 1) for x in (start_pos, start_q, end_pos, end_q))
    frames = hand.forward_kinematics(sp + t[:, None] * (ep - sp), rot.repeat(n_t, 1, 1), sq + t[:, None] * (eq - sq))
    cloud = surf if surf.points.dim() == 2 else ObjectCloud(surf.points.repeat(n_t, 1, 1), surf.normals.repeat(n_t, 1, 1))
    # links farther than the clearance read as exactly that far (a lower bound): clear, as their true distance is
    contacts, _ = near_contacts_and_penetration(hand, frames, cloud, threshold=cfg.pregrasp_clearance_m)
    clearance = contacts.distance.min(dim=1).values  # (T*B,) nearest cloud point to the hand (m)
    return (clearance - cfg.pregrasp_clearance_m * (1.0 - t)).reshape(n_t, b).min(dim=0).values


def _share_coupled(hand: HandModel, offsets: Tensor) -> Tensor:
    """Coupled pairs: one actuator drives their sum, so the pair's total offset is what counts; it
    is split in the ratio of the coupling band so the squeeze stays inside the band."""
    out = offsets.clone()
    for c in hand.couplings:
        if len(c.joint_index) != 2:
            continue
        lead = next(i for i in c.joint_index if i != c.follower)
        k_lead = abs(c.coef[c.joint_index.index(lead)])
        k_fol = abs(c.coef[c.joint_index.index(c.follower)])
        ratio = k_lead / k_fol  # follower moves ratio x the leader inside the band
        # the shared actuator's force acts on both joints: its offset is the mean desired torque's
        total = 0.5 * (offsets[:, lead] + offsets[:, c.follower])
        out[:, lead] = total / (1.0 + ratio)
        out[:, c.follower] = total * ratio / (1.0 + ratio)
    return out


def finish(grasps: GraspBatch, cloud: ObjectCloud, cfg: SqueezeConfig | None = None) -> tuple[GraspBatch, SqueezeResult]:
    """The finishing step every grasp goes through: fingers snapped onto the surface (when
    ``cfg.snap``), then the squeeze and pregrasp solved for the snapped grasps."""
    cfg = cfg or SqueezeConfig()
    if cfg.snap:
        grasps = snap_contacts(grasps, cloud, cfg)
    return grasps, solve_squeeze(grasps, cloud, cfg)
