"""Which link of a hand belongs to which digit and phalanx, derived from link names.

Owns the mapping from a hand's links to the intent vocabulary (thumb, index, middle, ring, little,
palm; proximal / middle / distal phalanx) and the few directions the grasp-type rules need, all
measured on the hand model at its open pose, so nothing here holds numbers of a particular hand.
Link names follow the ShadowHand convention (``ff`` index, ``mf`` middle, ``rf`` ring, ``lf``
little, ``th`` thumb, then ``proximal`` / ``middle`` / ``distal``); the little finger's metacarpal
sits inside the palm and counts as palm. A hand with other names needs a prefix table here (or
in its spec) before text intent can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from ...hands.model import HandModel
from .schema import FINGERS

DIGIT_PREFIX = {"th": "thumb", "ff": "index", "mf": "middle", "rf": "ring", "lf": "little"}
PHALANGES = ("proximal", "middle", "distal")


@dataclass(frozen=True)
class Anatomy:
    """Per-link digit / phalanx labels and reference directions of one hand."""

    digit: tuple[str, ...]  # per link: a finger name, "palm", or "" (links that cannot touch: no geometry)
    phalanx: tuple[str, ...]  # per link: "proximal" | "middle" | "distal" | ""
    owner: tuple[str, ...]  # per link: the digit it moves with, knuckles and thumb base included ("" for the palm)
    chain: dict[str, tuple[int, int, int]]  # finger -> (proximal, middle, distal) link indices
    index_thumbward: tuple[Tensor, Tensor]  # for ffproximal, ffmiddle: unit vector towards the thumb, link frame
    index_palmar: tuple[Tensor, Tensor]  # for ffproximal, ffmiddle: palmar direction, link frame
    index_axis: tuple[Tensor, Tensor]  # for ffproximal, ffmiddle: along the finger, link frame
    candidate_local: Tensor  # (C, 3) each contact candidate in its link's frame

    def links_of(self, finger: str, phalanges: tuple[str, ...] = PHALANGES) -> list[int]:
        return [i for i, (d, p) in enumerate(zip(self.digit, self.phalanx)) if d == finger and p in phalanges]

    @property
    def palm_links(self) -> list[int]:
        return [i for i, d in enumerate(self.digit) if d == "palm"]


def _label(name: str) -> tuple[str, str]:
    if name == "palm" or name.endswith("metacarpal"):
        return "palm", ""
    digit = DIGIT_PREFIX.get(name[:2], "")
    phal = next((p for p in PHALANGES if name.endswith(p)), "")
    return (digit, phal) if phal else ("", "")


@lru_cache(maxsize=8)
def _anatomy(hand_id: int, hand: HandModel) -> Anatomy:
    digit, phal = zip(*[_label(n) for n in hand.link_names])
    owner = tuple("" if d == "palm" else DIGIT_PREFIX.get(n[:2], "") for n, d in zip(hand.link_names, digit))
    chain: dict[str, tuple[int, int, int]] = {}
    for f in FINGERS:
        idx = [next((i for i, (d, p) in enumerate(zip(digit, phal)) if d == f and p == ph), -1) for ph in PHALANGES]
        if min(idx) >= 0:
            chain[f] = (idx[0], idx[1], idx[2])
    dt = hand.ts.dtype
    dev = hand.ts.device
    frames = hand.forward_kinematics(
        torch.zeros(1, 3, dtype=dt, device=dev), torch.eye(3, dtype=dt, device=dev)[None], hand.open_pose[None]
    )
    rot, pos = frames.rotation[0], frames.translation[0]
    cand = hand.contact_candidates(frames)[0]  # (C, 3) at the open pose, palm at the origin
    cl = hand.contact_link
    cand_local = torch.einsum("cji,cj->ci", rot[cl], cand - pos[cl])
    thumb_base = pos[chain["thumb"][0]] if "thumb" in chain else pos[0]
    palmar_palm = hand.approach_direction.to(dt)
    tw, pa, ax = [], [], []
    if "index" in chain:
        prox, mid, dist = chain["index"]
        for li, child in ((prox, mid), (mid, dist)):
            axis = rot[li].T @ (pos[child] - pos[li])
            axis = axis / axis.norm()
            palmar = rot[li].T @ palmar_palm
            palmar = palmar - (palmar @ axis) * axis
            palmar = palmar / palmar.norm()
            toward = rot[li].T @ (thumb_base - pos[li])
            toward = toward - (toward @ axis) * axis - (toward @ palmar) * palmar
            toward = toward / toward.norm().clamp_min(1e-9)
            tw.append(toward)
            pa.append(palmar)
            ax.append(axis)
    else:  # pragma: no cover - hands without an index chain have no lateral grasp
        z = torch.zeros(3, dtype=dt, device=dev)
        tw, pa, ax = [z, z], [z, z], [z, z]
    return Anatomy(tuple(digit), tuple(phal), owner, chain, (tw[0], tw[1]), (pa[0], pa[1]), (ax[0], ax[1]), cand_local)


def anatomy(hand: HandModel) -> Anatomy:
    """The (cached) anatomy of ``hand``."""
    return _anatomy(id(hand), hand)
