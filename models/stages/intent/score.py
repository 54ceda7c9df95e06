"""Score grasps against an :class:`Intent`: per grasp a score in [0, 1], a satisfied flag, and why.

Every criterion is geometric and computed from the hand model and the object points alone:

Contacts. A link touches the object when some object point lies within ``CONTACT_TOL_M`` (5 mm)
of the link's collision primitives (the hand's signed distance, so a point slightly inside counts
too). Its contact point is the nearest object point. Digits and phalanges come from
:mod:`models.stages.intent.anatomy`.

Approach. ``a`` = the palm's approach direction (palm normal towards the object) in the request
frame. top: angle(a, -up) <= TOP_DEG (40); bottom: angle(a, up) <= TOP_DEG; side: the approach
is within SIDE_DEG (30) of horizontal; front: side, and the horizontal part of ``a`` is within
FRONT_DEG (45) of ``forward`` (origin -> object, so the palm comes from the side that faces the
camera / robot base at the request frame's origin).

Grasp type, from the set of touching digits (``n`` = non-thumb fingers touching):
pinch: thumb + exactly one finger, no palm. tripod: thumb + exactly two fingers, no palm.
power: palm + at least three digits. precision: thumb + at least one finger, no palm, and every
touching digit link is a distal phalanx. lateral: thumb touching, the index finger's proximal or
middle phalanx touching on its thumb-facing side (the contact point's offset from the phalanx axis
points more towards the thumb than palmar), no palm. hook: no thumb, at least two fingers, whose
PIP + DIP flexion (the rotation between the proximal and distal phalanx) averages >= HOOK_CURL_RAD.

Fingers. use: every named finger touches. avoid: no named finger touches.

Region: the region is held - either at least REGION_SHARE (half) of the touching links touch the
object inside the region, or two links touch it inside the region pushing from opposite sides
(their hand-surface normals at the contacts have a cosine below OPPOSING_COS: the part is clamped
between them, e.g. a mug handle pinched between thumb and fingers while the knuckles rest on the
body). Each contact point is tested with :func:`models.stages.intent.regions.region_test`
(top/bottom/left/right by normalised coordinates, rim by height and radius,
handle/neck/thinnest/body/largest by local cross-section width). Soft score: 1 when clamped, else
the share. avoid_region: the region is not held.

A grasp satisfies the intent when every criterion holds and at least MIN_TOUCHING (2) links touch
the object (a hand hovering above it does not satisfy "from above"); its score is the mean of the
criteria's soft scores (1 when the intent is empty). ``applicable`` says per criterion whether the object can
satisfy it at all (a sphere has no handle; front/left/right need the object away from the origin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ...hands.model import HandModel
from .anatomy import Anatomy, anatomy
from .regions import ObjectRegions, analyze_object, region_points, region_test
from .schema import FINGERS, Intent

CONTACT_TOL_M = 0.005
MIN_TOUCHING = 2  # links touching the object for a grasp to count as holding it at all
REGION_SHARE = 0.5  # a region is met when at least this share of the touching links touch it there ...
OPPOSING_COS = -0.3  # ... or when two links touch it pushing from opposite sides (push directions' cosine below this)
TOP_DEG = 40.0
SIDE_DEG = 30.0
FRONT_DEG = 45.0
HOOK_CURL_RAD = 0.6
MAX_CONTACT_POINTS = 4096  # object points used for contact detection (a random subset above this)


@dataclass(frozen=True)
class Contacts:
    """Per grasp and link: touching, distance (m), contact point and link pose (request frame, CPU float64)."""

    touching: Tensor  # (B, L) bool
    distance: Tensor  # (B, L)
    point: Tensor  # (B, L, 3) nearest object point
    link_rot: Tensor  # (B, L, 3, 3)
    link_pos: Tensor  # (B, L, 3)
    push: Tensor  # (B, L, 3) unit outward normal of the hand surface at the contact (the push direction)

    def digits(self, an: Anatomy) -> list[set[str]]:
        out = []
        for row in self.touching.tolist():
            out.append({an.digit[li] for li, t in enumerate(row) if t and an.digit[li]})
        return out


def hand_contacts(hand: HandModel, pos: Tensor, rot: Tensor, joints: Tensor, object_points: Tensor) -> Contacts:
    """Which links touch the object (within ``CONTACT_TOL_M``), where, and which way they push."""
    dt, dev = hand.ts.dtype, hand.ts.device
    pts = object_points.to(dev, dt)
    if pts.shape[0] > MAX_CONTACT_POINTS:
        gen = torch.Generator().manual_seed(0)
        pts = pts[torch.randperm(pts.shape[0], generator=gen)[:MAX_CONTACT_POINTS].to(dev)]
    b = pos.shape[0]
    nl = hand.num_links
    with torch.no_grad():
        frames = hand.forward_kinematics(pos.to(dev, dt), rot.to(dev, dt), joints.to(dev, dt))
        d = hand.signed_distance_per_geom(frames, pts.expand(b, -1, -1))  # (B, G, P)
        dmin, arg = d.min(dim=2)  # (B, G)
        dist = torch.full((b, nl), math.inf, dtype=dt, device=dev)
        point = torch.zeros(b, nl, 3, dtype=dt, device=dev)
        geom = torch.zeros(b, nl, dtype=torch.long, device=dev)
        for g, li in enumerate(hand.geom_link.tolist()):
            closer = dmin[:, g] < dist[:, li]
            dist[:, li] = torch.where(closer, dmin[:, g], dist[:, li])
            point[:, li] = torch.where(closer[:, None], pts[arg[:, g]], point[:, li])
            geom[:, li] = torch.where(closer, torch.full_like(geom[:, li], g), geom[:, li])
    # the hand's push direction at each contact: the gradient of its signed distance (outward normal)
    q = point.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        dd = hand.signed_distance_per_geom(frames, q)  # (B, G, L)
        own = dd.gather(1, geom[:, None, :]).squeeze(1)  # (B, L)
        (grad,) = torch.autograd.grad(own.sum(), q)
    push = torch.nn.functional.normalize(grad, dim=-1)
    f64 = torch.float64
    return Contacts(
        (dist < CONTACT_TOL_M).cpu(), dist.cpu().to(f64), point.cpu().to(f64),
        frames.rotation.cpu().to(f64), frames.translation.cpu().to(f64), push.detach().cpu().to(f64),
    )


def _angle_ok(cosine: Tensor, limit_deg: float, soft_deg: float = 30.0) -> tuple[Tensor, Tensor]:
    ang = torch.rad2deg(torch.arccos(cosine.clamp(-1.0, 1.0)))
    return ang <= limit_deg, (1.0 - (ang - limit_deg).clamp_min(0.0) / soft_deg).clamp(0.0, 1.0)


def approach_test(hand: HandModel, rot: Tensor, up: Tensor, forward: Tensor | None, approach: str) -> tuple[Tensor, Tensor]:
    """(satisfied (B,), soft score (B,)) of the palm approach against ``approach``."""
    a = rot @ hand.approach_direction.to(rot)
    u = up.to(rot) / up.to(rot).norm()
    if approach == "top":
        return _angle_ok(a @ -u, TOP_DEG)
    if approach == "bottom":
        return _angle_ok(a @ u, TOP_DEG)
    vertical = (a @ u).clamp(-1.0, 1.0)
    elev = torch.rad2deg(torch.arcsin(vertical)).abs()
    side_ok = elev <= SIDE_DEG
    side_soft = (1.0 - (elev - SIDE_DEG).clamp_min(0.0) / 30.0).clamp(0.0, 1.0)
    if approach == "side":
        return side_ok, side_soft
    if approach == "front":
        if forward is None:
            return torch.zeros_like(side_ok), torch.zeros_like(side_soft)
        h = a - vertical[:, None] * u
        cos_az = (h @ forward.to(rot)) / h.norm(dim=-1).clamp_min(1e-9)
        az_ok, az_soft = _angle_ok(cos_az, FRONT_DEG)
        return side_ok & az_ok, torch.minimum(side_soft, az_soft)
    raise NotImplementedError(f"approach {approach!r}")


def grasp_types(hand: HandModel, contacts: Contacts) -> list[set[str]]:
    """The grasp types each grasp qualifies as (see the module docstring); types can overlap."""
    an = anatomy(hand)
    touching = contacts.touching
    out = []
    palm_links = an.palm_links
    for b in range(touching.shape[0]):
        t = touching[b]
        digits = {an.digit[li] for li in range(len(an.digit)) if bool(t[li]) and an.digit[li] in FINGERS}
        palm = any(bool(t[li]) for li in palm_links)
        fingers = digits - {"thumb"}
        types: set[str] = set()
        thumb = "thumb" in digits
        if thumb and len(fingers) == 1 and not palm:
            types.add("pinch")
        if thumb and len(fingers) == 2 and not palm:
            types.add("tripod")
        if palm and len(digits) >= 3:
            types.add("power")
        touching_links = [li for li in range(len(an.digit)) if bool(t[li]) and an.digit[li] in FINGERS]
        if thumb and fingers and not palm and all(an.phalanx[li] == "distal" for li in touching_links):
            types.add("precision")
        if thumb and not palm and "index" in an.chain and _lateral_index(an, contacts, b):
            types.add("lateral")
        if not thumb and len(fingers) >= 2 and _curl(an, contacts.link_rot[b], fingers) >= HOOK_CURL_RAD:
            types.add("hook")
        out.append(types)
    return out


def _lateral_index(an: Anatomy, contacts: Contacts, b: int) -> bool:
    prox, mid, _ = an.chain["index"]
    for k, li in enumerate((prox, mid)):
        if not bool(contacts.touching[b, li]):
            continue
        r = contacts.link_rot[b, li]
        # offset of the contact point from the phalanx axis, in the link frame
        off = r.T @ (contacts.point[b, li] - contacts.link_pos[b, li])
        axis, toward, palmar = (v.double().cpu() for v in (an.index_axis[k], an.index_thumbward[k], an.index_palmar[k]))
        off = off - (off @ axis) * axis
        if float(off @ toward) > max(float(off @ palmar), 0.0):
            return True
    return False


def _curl(an: Anatomy, rot: Tensor, fingers: set[str]) -> float:
    vals = []
    for f in fingers:
        if f not in an.chain:
            continue
        p, _, d = an.chain[f]
        rel = rot[p].T @ rot[d]
        vals.append(math.acos(max(-1.0, min(1.0, (float(torch.trace(rel)) - 1.0) / 2.0))))
    return sum(vals) / len(vals) if vals else 0.0


@dataclass(frozen=True)
class IntentScore:
    """Per-grasp intent scores. Tensors are (B,); ``criteria`` maps a criterion to (B,) soft scores."""

    score: Tensor
    satisfied: Tensor
    criteria: dict[str, Tensor]
    criteria_satisfied: dict[str, Tensor]
    fingers_in_contact: list[tuple[str, ...]]
    palm_contact: list[bool]
    grasp_types: list[tuple[str, ...]]
    applicable: dict[str, bool]
    notes: tuple[str, ...] = field(default=())

    @property
    def any_satisfied(self) -> bool:
        return bool(self.satisfied.any())

    @property
    def feasible(self) -> bool:
        """False when the object cannot satisfy some criterion at all."""
        return all(self.applicable.values())

    def message(self) -> str | None:
        """A sentence for the response when no grasp satisfies the intent (None otherwise)."""
        if self.any_satisfied:
            return None
        parts = []
        for name, ok in self.criteria_satisfied.items():
            parts.append(f"{name} {int(ok.sum())}/{ok.numel()}")
        why = "; ".join(self.notes) if self.notes else "criteria met: " + ", ".join(parts)
        return f"no grasp satisfies the instruction ({why})"

    def order(self, base_key: Tensor | None = None) -> Tensor:
        """Ranking: satisfied grasps first, then higher intent score, then ``base_key`` ascending
        (e.g. the energy); returns indices."""
        b = self.score.shape[0]
        base = torch.zeros(b, dtype=torch.float64) if base_key is None else base_key.detach().double().cpu()
        rank_base = torch.argsort(torch.argsort(base)).double() / max(b, 1)  # in [0, 1)
        key = -self.satisfied.double().cpu() * 10.0 - self.score.double().cpu() + 1e-3 * rank_base
        return torch.argsort(key, stable=True)

    def per_grasp(self, i: int) -> dict[str, object]:
        """JSON-ready scores of grasp ``i`` (for the response's per-grasp ``scores`` / details)."""
        return {
            "intent_score": round(float(self.score[i]), 4),
            "intent_satisfied": bool(self.satisfied[i]),
            "criteria": {k: round(float(v[i]), 4) for k, v in self.criteria.items()},
            "criteria_satisfied": {k: bool(v[i]) for k, v in self.criteria_satisfied.items()},
            "fingers_in_contact": list(self.fingers_in_contact[i]),
            "palm_contact": self.palm_contact[i],
            "grasp_types": list(self.grasp_types[i]),
        }

    def summary(self) -> dict[str, object]:
        """JSON-ready summary for the response."""
        return {
            "satisfied": int(self.satisfied.sum()),
            "total": int(self.satisfied.numel()),
            "applicable": dict(self.applicable),
            "notes": list(self.notes),
            "message": self.message(),
        }


def applicability(intent: Intent, reg: ObjectRegions) -> tuple[dict[str, bool], list[str]]:
    """Per criterion of ``intent``: can this object satisfy it at all (and why not)."""
    app: dict[str, bool] = {}
    notes: list[str] = []
    if intent.approach is not None:
        ok = intent.approach != "front" or reg.forward is not None
        app["approach"] = ok
        if not ok:
            notes.append("'front' needs the object away from the request frame's origin (camera / robot base)")
    if intent.region is not None:
        r = intent.region
        if r in ("left", "right") and reg.left is None:
            app["region"] = False
            notes.append(f"'{r}' needs the object away from the request frame's origin (camera / robot base)")
        elif r in ("handle", "neck") and not reg.has_thin_part:
            app["region"] = False
            notes.append(f"the object shows no thin part (handle / neck) in the given points, so '{r}' cannot be met")
        else:
            ok = bool(region_points(reg, r).any())
            app["region"] = ok
            if not ok:
                notes.append(f"no part of the object qualifies as '{r}'")
    for name in ("grasp_type", "use_fingers", "avoid_fingers", "avoid_approach", "avoid_region"):
        if getattr(intent, name):
            app[name] = True
    return app, notes


def score_intent(
    intent: Intent,
    hand: HandModel,
    pos: Tensor,
    rot: Tensor,
    joints: Tensor,
    object_points: Tensor,
    up: Tensor | None = None,
    regions: ObjectRegions | None = None,
    viewer: Tensor | None = None,
) -> IntentScore:
    """Score B grasps (palm ``pos`` (B,3), ``rot`` (B,3,3), ``joints`` (B,J), request frame) against
    ``intent`` on ``object_points`` (N,3). ``up`` defaults to +z; ``viewer`` (camera / robot base
    position, defines front / left / right) to the frame's origin. Pass ``regions`` (from
    :func:`analyze_object`) to reuse the object analysis of :func:`intent_priors`."""
    b = pos.shape[0]
    up_t = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64) if up is None else up.detach().double().cpu()
    crit: dict[str, Tensor] = {}
    sat: dict[str, Tensor] = {}
    needs_region = intent.region is not None or bool(intent.avoid_region) or intent.approach == "front"
    needs_region |= "front" in intent.avoid_approach
    reg = regions
    if reg is None and needs_region:
        reg = analyze_object(object_points, up_t, viewer)
    forward = None if reg is None or reg.forward is None else torch.as_tensor(reg.forward)

    cont = hand_contacts(hand, pos, rot, joints, object_points)
    an = anatomy(hand)
    digits = cont.digits(an)
    fingers_in_contact: list[tuple[str, ...]] = [tuple(str(f) for f in FINGERS if f in d) for d in digits]
    palm_contact = ["palm" in d for d in digits]
    types = grasp_types(hand, cont)
    rot64 = rot.detach().double().cpu()

    if intent.approach is not None:
        ok, s = approach_test(hand, rot64, up_t, forward, intent.approach)
        sat["approach"], crit["approach"] = ok, s
    for a in intent.avoid_approach:
        ok, s = approach_test(hand, rot64, up_t, forward, a)
        sat[f"avoid_approach:{a}"], crit[f"avoid_approach:{a}"] = ~ok, 1.0 - s
    if intent.grasp_type is not None:
        ok = torch.tensor([intent.grasp_type in t for t in types])
        sat["grasp_type"], crit["grasp_type"] = ok, ok.double()
    if intent.use_fingers:
        frac = torch.tensor([sum(f in fc for f in intent.use_fingers) / len(intent.use_fingers) for fc in fingers_in_contact], dtype=torch.float64)
        sat["use_fingers"], crit["use_fingers"] = frac >= 1.0, frac
    if intent.avoid_fingers:
        bad = torch.tensor([sum(f in fc for f in intent.avoid_fingers) / len(intent.avoid_fingers) for fc in fingers_in_contact], dtype=torch.float64)
        sat["avoid_fingers"], crit["avoid_fingers"] = bad <= 0.0, 1.0 - bad
    if intent.region is not None or intent.avoid_region:
        assert reg is not None
        for name, r, negate in [("region", intent.region, False)] + [(f"avoid_region:{r}", r, True) for r in intent.avoid_region]:
            if r is None:
                continue
            share, held = _region_share(reg, r, cont)
            met = (share >= REGION_SHARE) | held
            soft = torch.where(held, torch.ones_like(share), share)
            if negate:
                sat[name], crit[name] = ~met, 1.0 - soft
            else:
                sat[name], crit[name] = met, soft

    if sat:  # an instruction is met only by a grasp that holds the object: at least MIN_TOUCHING links touch
        touching = cont.touching.sum(dim=1)
        sat["contact"], crit["contact"] = touching >= MIN_TOUCHING, (touching.double() / MIN_TOUCHING).clamp(max=1.0)
        satisfied = torch.stack(list(sat.values())).all(dim=0)
        score = torch.stack([v.double() for v in crit.values()]).mean(dim=0)
    else:
        satisfied = torch.ones(b, dtype=torch.bool)
        score = torch.ones(b, dtype=torch.float64)
    app, notes = applicability(intent, reg) if reg is not None else ({k: True for k in sat}, [])
    return IntentScore(
        score=score,
        satisfied=satisfied,
        criteria=crit,
        criteria_satisfied=sat,
        fingers_in_contact=fingers_in_contact,
        palm_contact=palm_contact,
        grasp_types=[tuple(sorted(t)) for t in types],
        applicable=app,
        notes=tuple(notes),
    )


def _region_share(reg: ObjectRegions, region: str, c: Contacts) -> tuple[Tensor, Tensor]:
    """Per grasp: the share of touching links whose contact point lies in ``region`` (0 without
    contact), and whether two of those push from opposite sides (the part is held between them)."""
    b = c.touching.shape[0]
    flat = c.point.reshape(-1, 3).numpy()
    ok, _ = region_test(reg, region, flat)
    inside = torch.as_tensor(ok).reshape(b, -1) & c.touching
    n = c.touching.sum(dim=1)
    share = inside.sum(dim=1).double() / n.clamp_min(1).double()
    cos = torch.einsum("bik,bjk->bij", c.push, c.push)  # (B, L, L)
    both = inside[:, :, None] & inside[:, None, :]
    held = ((cos < OPPOSING_COS) & both).flatten(1).any(dim=1)
    return share, held
