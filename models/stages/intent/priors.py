"""Bias grasp generation towards an :class:`Intent` (what makes "satisfied grasps in the top-k" likely).

:func:`intent_priors` turns an intent plus the object points into :class:`Priors`, which the
``optimize`` proposer accepts (``propose(..., priors=...)`` or ``Problem(priors=...)``):

- ``approach_dirs`` (M, 3): object -> palm unit directions the initial palm placements are drawn
  from. top: within APPROACH_CONE_DEG (30) of ``up``; bottom: of ``-up``; side: elevation in
  [-10, 20] degrees; front: side, and azimuth within FRONT_CONE_DEG (35) of the direction towards
  the request frame's origin. An avoided approach removes its acceptance cone (plus 5 degrees).
  A region target narrows the directions to those within REGION_CONE_DEG (70) of the outward
  direction centre -> region (when that leaves any). Directions are narrower than the scoring
  tolerances (40 / 30 / 45 degrees) so the optimiser has room to move.
- ``contact_mask`` (C,): the contact candidates the optimiser may pull onto the surface.
  pinch: thumb tip + one finger tip (the named one, else the index); tripod: thumb tip + two finger
  tips; precision: thumb tip + the named finger tips, else index and middle; lateral: thumb tip + the
  thumb-facing candidates of the index's middle phalanx;
  hook: middle and distal phalanges of the allowed fingers + palm (no thumb); power: palm +
  the fingers' middle phalanges + the thumb's middle and distal phalanges (so the palm gets a fair
  share of the pulls); only fingers named / avoided: those fingers' candidates + palm. Named fingers (``use_fingers``) are added; avoided fingers are removed.
- ``init_joints`` / ``init_joint_mask`` (J,): start pose for digits that must not touch: fingers are
  tucked (80 % of the way to their closing limit), an avoided thumb is opened.
- ``region_center`` (3,): a point of the requested region the initial palm placement aims at, and
  ``contact_target`` (K, 3): the region's points; the optimiser adds ``target_weight`` x the summed
  distance of the active contacts to them to its energy while annealing (not to the reported energy).
- A named small part (handle, neck, rim, thinnest) shorter than the palm is wide (index to little
  finger, :func:`palm_width`) with no grasp type given is generated with the tripod mask above.
- ``standoff_m``: fingertip grasps (pinch, tripod, precision, lateral) start with the palm
  FINGERTIP_STANDOFF_M outside the cloud, so the tips rather than the palm meet the object; power
  grasps start with the palm POWER_STANDOFF_M from it.

Everything is in the request frame. ``Priors`` with every field ``None`` changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...hands.model import HandModel
from ...physics.init_poses import fibonacci_directions
from .anatomy import anatomy
from .regions import ObjectRegions, analyze_object, region_points
from .schema import FINGERS, Intent
from .score import SIDE_DEG, TOP_DEG

APPROACH_CONE_DEG = 30.0
SIDE_ELEVATION_DEG = (-10.0, 20.0)
FRONT_CONE_DEG = 35.0
REGION_CONE_DEG = 70.0
DEFAULT_MIN_ELEVATION_DEG = -20.0
TUCK_SHARE = 0.8
NUM_DIRECTIONS = 4000  # candidate directions (Fibonacci sphere) before filtering
TARGET_WEIGHT = 300.0  # the region pull weighs like the contact-distance term (DexGraspNet's 100 / m)
MAX_TARGET_POINTS = 512
SMALL_PART_REGIONS = ("handle", "neck", "rim", "thinnest")
FINGERTIP_TYPES = ("pinch", "tripod", "precision", "lateral")
POWER_STANDOFF_M = 0.005  # a power grasp starts with the palm almost on the object
FINGERTIP_FLEX_SHARE = 0.3  # working fingers of a fingertip grasp start at this share of the pre-shape's flexion
FINGERTIP_STANDOFF_M = 0.05  # fingertip grasps (pinch, tripod, precision, lateral) start with the palm further out


@dataclass(frozen=True)
class Priors:
    """Generation priors for one object and intent (request frame; CPU float32 tensors)."""

    approach_dirs: Tensor | None = None  # (M, 3) object -> palm unit directions
    contact_mask: Tensor | None = None  # (C,) bool over the hand's contact candidates
    region_center: Tensor | None = None  # (3,) point the palm placement aims at
    init_joints: Tensor | None = None  # (J,) start joint angles where ``init_joint_mask``
    init_joint_mask: Tensor | None = None  # (J,) bool
    contact_target: Tensor | None = None  # (K, 3) region points the active contacts are pulled to
    target_weight: float = TARGET_WEIGHT  # weight of that pull (energy units per metre, as E_dis)
    standoff_m: float | None = None  # initial palm-centre distance outside the cloud (None: the proposer's)
    notes: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        fields = (self.approach_dirs, self.contact_mask, self.region_center, self.init_joints, self.contact_target, self.standoff_m)
        return all(v is None for v in fields)


def palm_width(hand: HandModel) -> float:
    """Distance (m) between the index and little fingers' proximal phalanges at the open pose, plus a finger's width."""
    an = anatomy(hand)
    if "index" not in an.chain or "little" not in an.chain:
        return 0.08
    dt, dev = hand.ts.dtype, hand.ts.device
    frames = hand.forward_kinematics(
        torch.zeros(1, 3, dtype=dt, device=dev), torch.eye(3, dtype=dt, device=dev)[None], hand.open_pose[None]
    )
    t = frames.translation[0]
    return float((t[an.chain["index"][0]] - t[an.chain["little"][0]]).norm()) + 0.02


def _elevation(d: Tensor, up: Tensor) -> Tensor:
    return torch.rad2deg(torch.arcsin((d @ up).clamp(-1.0, 1.0)))


def _cone(dirs: Tensor, up: Tensor, toward_origin: Tensor | None, approach: str, margin_deg: float = 0.0) -> Tensor:
    """Mask of object -> palm directions in the cone of ``approach`` (widened by ``margin_deg``)."""
    elev = _elevation(dirs, up)
    if approach == "top":
        return elev >= 90.0 - APPROACH_CONE_DEG - margin_deg
    if approach == "bottom":
        return elev <= -(90.0 - APPROACH_CONE_DEG - margin_deg)
    side = (elev >= SIDE_ELEVATION_DEG[0] - margin_deg) & (elev <= SIDE_ELEVATION_DEG[1] + margin_deg)
    if approach == "side":
        return side
    if approach == "front":
        if toward_origin is None:
            return torch.zeros_like(side)
        h = dirs - (dirs @ up)[:, None] * up
        cos_az = (h @ toward_origin) / h.norm(dim=-1).clamp_min(1e-9)
        front: Tensor = side & (cos_az >= math.cos(math.radians(FRONT_CONE_DEG + margin_deg)))
        return front
    raise NotImplementedError(f"approach {approach!r}")


def _acceptance(dirs: Tensor, up: Tensor, toward_origin: Tensor | None, approach: str) -> Tensor:
    """Directions whose grasps the scorer would count as ``approach`` (for avoidance), plus 5 degrees."""
    elev = _elevation(dirs, up)
    if approach == "top":
        return elev >= 90.0 - TOP_DEG - 5.0
    if approach == "bottom":
        return elev <= -(90.0 - TOP_DEG - 5.0)
    side = elev.abs() <= SIDE_DEG + 5.0
    if approach == "side" or toward_origin is None:
        return side
    h = dirs - (dirs @ up)[:, None] * up
    cos_az = (h @ toward_origin) / h.norm(dim=-1).clamp_min(1e-9)
    front: Tensor = side & (cos_az >= math.cos(math.radians(50.0)))
    return front


def _contact_mask(intent: Intent, hand: HandModel) -> tuple[Tensor | None, set[str]]:
    """Mask over contact candidates and the digits that take part (the others get tucked)."""
    an = anatomy(hand)
    allowed: list[str] = [f for f in FINGERS if f not in intent.avoid_fingers and f in an.chain]
    named: list[str] = [f for f in intent.use_fingers if f in allowed and f != "thumb"]
    others: list[str] = [f for f in allowed if f != "thumb"]

    def partners(k: int) -> list[str]:
        return (named + [f for f in others if f not in named])[:k]

    links: set[int] = set()
    side: set[int] = set()  # links whose candidates count only on their thumb-facing half
    t = intent.grasp_type
    thumb_tip = an.links_of("thumb", ("distal",)) if "thumb" in allowed else []
    if t == "pinch":
        links |= set(thumb_tip)
        for f in partners(1):
            links |= set(an.links_of(f, ("distal",)))
    elif t == "tripod":
        links |= set(thumb_tip)
        for f in partners(2):
            links |= set(an.links_of(f, ("distal",)))
    elif t == "precision":  # fingertips: the named fingers, else index and middle (the others tucked)
        links |= set(thumb_tip)
        for f in named or partners(2):
            links |= set(an.links_of(f, ("distal",)))
    elif t == "lateral":  # thumb pad against the thumb-facing side of the index's middle phalanx
        links |= set(thumb_tip)
        if "index" in allowed:
            side |= set(an.links_of("index", ("middle",)))
    elif t == "hook":
        for f in named or others:
            links |= set(an.links_of(f, ("middle", "distal")))
        links |= set(an.palm_links)
    elif t == "power":  # palm + the fingers' middle phalanges + thumb: the palm gets a fair share of the pulls
        for f in allowed:
            links |= set(an.links_of(f, ("middle", "distal") if f == "thumb" else ("middle",)))
        links |= set(an.palm_links)
    elif intent.avoid_fingers or intent.use_fingers:
        use = [f for f in allowed if not intent.use_fingers or f in intent.use_fingers]
        for f in use:
            links |= set(an.links_of(f))
        links |= set(an.palm_links)
    else:
        return None, set(allowed)
    for f in intent.use_fingers:  # named digits always take part
        if f in allowed:
            links |= set(an.links_of(f, ("middle", "distal")) if t not in ("pinch", "tripod", "precision") else an.links_of(f, ("distal",)))
    mask = torch.tensor([li in links for li in hand.contact_link.tolist()])
    if side:
        local = an.candidate_local.detach().cpu().float()  # candidates in their link frames
        toward = an.index_thumbward[1].detach().cpu().float()
        mask |= torch.tensor([li in side for li in hand.contact_link.tolist()]) & (local @ toward > 0)
        links |= side
    if not bool(mask.any()):
        return None, set(allowed)
    active = {an.digit[li] for li in links if an.digit[li] in FINGERS}
    return mask, active


def _standoff(intent: Intent) -> float | None:
    if intent.grasp_type in FINGERTIP_TYPES:
        return FINGERTIP_STANDOFF_M
    if intent.grasp_type == "power":
        return POWER_STANDOFF_M
    return None


def _init_joints(intent: Intent, hand: HandModel, active: set[str]) -> tuple[Tensor | None, Tensor | None]:
    """Start pose: idle fingers tucked, an idle thumb opened; for fingertip grasps the working
    fingers start straighter (FINGERTIP_FLEX_SHARE of the pre-shape's flexion) so their tips lead."""
    an = anatomy(hand)
    idle = [f for f in FINGERS if f in an.chain and f not in active]
    tips = intent.grasp_type in FINGERTIP_TYPES
    if not tips and (not idle or (intent.grasp_type in (None, "power") and not intent.avoid_fingers and not intent.use_fingers)):
        return None, None
    q = hand.init_pose.detach().float().cpu().clone()
    mask = torch.zeros(hand.num_joints, dtype=torch.bool)
    close = hand.closing_direction.float().cpu()
    lo, hi = hand.lower.float().cpu(), hand.upper.float().cpu()
    opened = hand.open_pose.float().cpu()
    for li, digit in enumerate(an.owner):
        qi = hand.joint_of_link[li]
        if not digit or qi < 0:
            continue
        if digit in idle and digit == "thumb":  # a tucked thumb would cross the palm: open it instead
            q[qi], mask[qi] = opened[qi], True
        elif digit in idle and close[qi] != 0:
            limit = hi[qi] if close[qi] > 0 else lo[qi]
            q[qi], mask[qi] = opened[qi] + TUCK_SHARE * (limit - opened[qi]), True
        elif tips and digit != "thumb" and digit not in idle and close[qi] != 0:
            q[qi], mask[qi] = opened[qi] + FINGERTIP_FLEX_SHARE * (q[qi] - opened[qi]), True
    return (q, mask) if bool(mask.any()) else (None, None)


def intent_priors(
    intent: Intent,
    hand: HandModel,
    points: Tensor,
    up: Tensor | None = None,
    regions: ObjectRegions | None = None,
    viewer: Tensor | None = None,
) -> Priors:
    """Generation priors for ``intent`` on the object ``points`` (N, 3); ``up`` defaults to +z,
    ``viewer`` (camera / robot base position, defines front / left / right) to the frame's origin."""
    notes: list[str] = []
    up_t = torch.tensor([0.0, 0.0, 1.0]) if up is None else up.detach().float().cpu()
    up_t = up_t / up_t.norm()
    need_reg = intent.region is not None or intent.approach == "front" or "front" in intent.avoid_approach
    reg = regions if regions is not None or not need_reg else analyze_object(points, up_t, viewer)
    toward_origin = None if reg is None or reg.forward is None else -torch.as_tensor(reg.forward, dtype=torch.float32)

    region_center: Tensor | None = None
    region_dir: Tensor | None = None
    target: Tensor | None = None
    if intent.region is not None and reg is not None:
        inside = region_points(reg, intent.region)
        if inside.any():
            pts = reg.points[inside]
            sub = pts if len(pts) <= MAX_TARGET_POINTS else pts[np.linspace(0, len(pts) - 1, MAX_TARGET_POINTS).astype(int)]
            target = torch.as_tensor(sub, dtype=torch.float32)
            centroid = pts.mean(0)
            aim = pts[int(np.argmin(((pts - centroid) ** 2).sum(1)))]  # a region point near its centroid
            region_center = torch.as_tensor(aim, dtype=torch.float32)
            out = aim - reg.points.mean(0)
            if np.linalg.norm(out) > 0.15 * reg.size:
                region_dir = torch.as_tensor(out / np.linalg.norm(out), dtype=torch.float32)
        else:
            notes.append(f"no part of the object qualifies as '{intent.region}'; no region target")

    dirs = fibonacci_directions(NUM_DIRECTIONS, torch.float32)
    constrained = False
    keep = _elevation(dirs, up_t) >= DEFAULT_MIN_ELEVATION_DEG
    if intent.approach is not None:
        keep = _cone(dirs, up_t, toward_origin, intent.approach)
        constrained = True
        if not bool(keep.any()):
            notes.append(f"approach '{intent.approach}' is undefined here (object at the request frame's origin)")
            keep = _elevation(dirs, up_t) >= DEFAULT_MIN_ELEVATION_DEG
    for a in intent.avoid_approach:
        rest = keep & ~_acceptance(dirs, up_t, toward_origin, a)
        if bool(rest.any()):
            keep, constrained = rest, True
    if region_dir is not None:
        facing = keep & ((dirs @ region_dir) >= math.cos(math.radians(REGION_CONE_DEG)))
        if int(facing.sum()) >= 8:
            keep, constrained = facing, True
        else:
            notes.append("the approach cone does not face the requested region; aiming at it from the cone")
    approach_dirs = dirs[keep] if constrained else None

    # a small part (shorter than the palm is wide) is held with the fingertips: when the intent
    # names such a part and no grasp type, generate tripod-like fingertip grasps on it
    gen_intent = intent
    if intent.grasp_type is None and target is not None and intent.region in SMALL_PART_REGIONS:
        part = target.numpy()
        extent = float(np.linalg.norm(part.max(0) - part.min(0)))
        if extent < palm_width(hand):
            gen_intent = intent.model_copy(update={"grasp_type": "tripod"})
    mask, active = _contact_mask(gen_intent, hand)
    q0, qmask = _init_joints(gen_intent, hand, active)
    return Priors(
        approach_dirs=approach_dirs,
        contact_mask=mask,
        region_center=region_center,
        init_joints=q0,
        init_joint_mask=qmask,
        contact_target=target,
        standoff_m=_standoff(gen_intent),
        notes=tuple(notes),
    )
