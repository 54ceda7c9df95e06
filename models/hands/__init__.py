"""Hands as data: specs (JSON), palm-rooted MJCF, batched kinematics and geometry."""

from .mjcf import hand_mjcf_xml, hand_model
from .model import Coupling, HandModel, LinkFrames, get_hand
from .spec import HandSpec, available_hands, known_hands, load_spec

__all__ = [
    "Coupling",
    "HandModel",
    "HandSpec",
    "LinkFrames",
    "available_hands",
    "get_hand",
    "hand_mjcf_xml",
    "hand_model",
    "known_hands",
    "load_spec",
]
