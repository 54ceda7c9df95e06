"""The structured intent a free-text instruction is parsed into, and its JSON form.

Owns the vocabulary: approach directions, grasp types, finger names and object regions. Every
value is defined geometrically in ``models/stages/intent/score.py`` (what a grasp must do to satisfy it);
this module only holds the record. ``Intent`` is immutable and serialises with ``model_dump()``
for the API response.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Approach = Literal["top", "side", "front", "bottom"]
GraspType = Literal["power", "precision", "pinch", "tripod", "lateral", "hook"]
Finger = Literal["thumb", "index", "middle", "ring", "little"]
Region = Literal["handle", "rim", "neck", "body", "top", "bottom", "left", "right", "largest", "thinnest"]

APPROACHES: tuple[Approach, ...] = ("top", "side", "front", "bottom")
GRASP_TYPES: tuple[GraspType, ...] = ("power", "precision", "pinch", "tripod", "lateral", "hook")
FINGERS: tuple[Finger, ...] = ("thumb", "index", "middle", "ring", "little")
REGIONS: tuple[Region, ...] = ("handle", "rim", "neck", "body", "top", "bottom", "left", "right", "largest", "thinnest")

# the fields that carry an intent (``confidence`` is keyed by these)
FIELDS = ("approach", "avoid_approach", "grasp_type", "use_fingers", "avoid_fingers", "region", "avoid_region")


def sort_fingers(fingers: set[str] | list[str] | tuple[str, ...]) -> tuple[Finger, ...]:
    """Fingers in anatomical order (thumb first), without duplicates."""
    return tuple(f for f in FINGERS if f in set(fingers))


class Intent(BaseModel):
    """What an instruction asks of a grasp. Empty fields mean "no preference".

    ``approach``: where the palm comes from (``top`` = from above, palm facing down; ``bottom`` =
    from below; ``side`` = horizontally; ``front`` = horizontally from the side of the object that
    faces the request frame's origin, i.e. the camera or robot base). ``grasp_type``: which digits
    and palm carry the object. ``use_fingers`` / ``avoid_fingers``: digits that must / must not
    touch the object. ``region``: the part of the object the contacts should be on. ``avoid_*``:
    negated mentions ("not from above", "not by the handle"). ``confidence``: per set field, in
    [0, 1] (rules give 0.95; the embedding match gives its cosine similarity). ``unmatched`` is true
    when the text was recognised as no intent at all.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field("", description="the instruction as given")
    approach: Approach | None = None
    avoid_approach: tuple[Approach, ...] = ()
    grasp_type: GraspType | None = None
    use_fingers: tuple[Finger, ...] = ()
    avoid_fingers: tuple[Finger, ...] = ()
    region: Region | None = None
    avoid_region: tuple[Region, ...] = ()
    confidence: dict[str, float] = Field(default_factory=dict, description="per set field, in [0, 1]")
    source: dict[str, str] = Field(default_factory=dict, description="per set field: 'rule' or 'embedding'")
    unmatched: bool = Field(False, description="nothing in the text was recognised as an intent")

    @property
    def is_empty(self) -> bool:
        return not any(
            (self.approach, self.avoid_approach, self.grasp_type, self.use_fingers, self.avoid_fingers, self.region, self.avoid_region)
        )

    def to_json(self) -> dict[str, object]:
        """The JSON form for the API response."""
        return self.model_dump(mode="json")

    def fields(self) -> dict[str, object]:
        """The intent fields alone (no text, confidence or source): what the parse set compares."""
        return {
            "approach": self.approach,
            "avoid_approach": list(self.avoid_approach),
            "grasp_type": self.grasp_type,
            "use_fingers": list(self.use_fingers),
            "avoid_fingers": list(self.avoid_fingers),
            "region": self.region,
            "avoid_region": list(self.avoid_region),
            "unmatched": self.unmatched,
        }
