"""Free text -> :class:`Intent`: deterministic rules for explicit words, sentence embeddings for paraphrases.

Pipeline (one call of :func:`parse_intent`):

1. Normalise (lower case, hyphens and apostrophes folded) and split into clauses at punctuation
   and at ``but`` / ``then`` / ``instead``.
2. Rules: regular expressions for explicit geometry, grasp and finger words ("from above",
   "pinch", "thumb and index", "by the handle", "without the pinky" ...). A mention is *negated*
   when a negation cue ("not", "don't", "without", "avoid", "except", "leave out", "keep ... off",
   "instead of" ...) precedes it in the same clause and no phrase boundary ("from", "by", "with",
   "at" ...) lies between the cue's first object and the mention. Negated fingers go to
   ``avoid_fingers``, negated approaches / regions to ``avoid_approach`` / ``avoid_region``;
   negated grasp types are dropped. Named fingers infer the grasp type when none is given:
   thumb + one finger = pinch, thumb + two = tripod.
3. Embeddings: for ``approach``, ``grasp_type`` and ``region`` left unset by the rules, every
   non-negated clause (and the whole text) is embedded with all-MiniLM-L6-v2 and compared with a
   bank of prototype phrases per value plus "no intent" phrases. A value is taken when its best
   cosine similarity reaches the field's threshold and beats the best "no intent" phrase by a
   margin. Fingers are never taken from embeddings (they cannot tell "with" from "without").

Rules win over the embedding; thresholds were set on the ``dev`` half of
``tests/data/intent/instructions.jsonl`` and checked on its ``heldout`` half.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from .schema import APPROACHES, GRASP_TYPES, REGIONS, Intent, sort_fingers

RULE_CONFIDENCE = 0.95

# ---------------------------------------------------------------------------------------- rules
_FINGER_PATTERNS: dict[str, str] = {
    "thumb": r"\bthumbs?\b",
    "index": r"\b(?:index|fore ?fingers?|pointer(?: fingers?)?|pointing fingers?|first fingers?)\b",
    "middle": r"\bmiddle fingers?\b|(?<=\bindex and )middle\b|(?<=\bindex, )middle\b|\bmiddle(?= and (?:the )?(?:ring|index))",
    "ring": r"\bring(?: fingers?)?\b(?! of)",
    "little": r"\b(?:pinky|pinkie|little fingers?|small fingers?|baby fingers?)\b",
}

_APPROACH_PATTERNS: dict[str, list[str]] = {
    "top": [
        r"\bfrom (?:straight |directly |right )?(?:above|overhead|up top)\b",
        r"\bfrom the top\b",
        r"\btop down\b",
        r"\boverhead\b",
        r"\btop (?:grasp|grip|approach)\b",
        r"\bpalm (?:facing |pointing )?down(?:wards?)?\b",
        r"\bvertically\b",
    ],
    "bottom": [
        r"\bfrom (?:straight |directly )?(?:below|underneath|beneath|under|the bottom)\b",
        r"\bbottom up\b",
        r"\b(?:reach|go|come|slide|scoop)\w* (?:in )?under(?:neath)?\b",
        r"\bpalm (?:facing |pointing )?up(?:wards?)?\b",
    ],
    "front": [
        r"\bfrom (?:the )?front\b",
        r"\bfront (?:side|grasp|grip|approach)\b",
        r"\bfacing (?:the )?(?:camera|me|us|robot|sensor|viewer)\b",
        r"\bfrom (?:my|our|the robots|the cameras|the viewers) side\b",
    ],
    "side": [
        r"\bfrom (?:the |a |one |either )?sides?\b",
        r"\bsideways\b",
        r"\bside (?:grasp|grip|approach|on)\b",
        r"\bhorizontal(?:ly)?\b",
        r"\bfrom (?:the )?(?:left|right)\b",
    ],
}

_TYPE_PATTERNS: dict[str, list[str]] = {
    "lateral": [r"\blateral\b", r"\bkey (?:grip|grasp|pinch)\b", r"\bside of (?:the |your )?(?:index|fore ?finger|pointer|first finger)"],
    "hook": [r"\bhook\w*\b"],
    "tripod": [r"\btripod\b", r"\bthree fingers?\b", r"\b3 fingers?\b"],
    "pinch": [r"\bpinch\w*\b", r"\btwo fingers?\b", r"\b2 fingers?\b"],
    "power": [
        r"\bpower\b",
        r"\b(?:whole|full|entire) hand\b",
        r"\bwrap\w*\b",
        r"\bfist\b",
        r"\ball (?:five|5|the) fingers\b",
        r"\bevery finger\b",
        r"\bfingers and (?:the )?palm\b",
    ],
    "precision": [r"\bprecision\b", r"\bfinger ?tips?\b", r"\btips of (?:the |your )?fingers\b"],
}
_TYPE_PRECEDENCE = ("lateral", "hook", "tripod", "pinch", "power", "precision")

_REGION_PATTERNS: dict[str, list[str]] = {
    "handle": [r"\bhandles?\b"],
    "neck": [r"\bnecks?\b"],
    "rim": [r"\b(?:rim|lip|brim|edge)s?\b"],
    "body": [r"\bbody\b", r"\bmain part\b", r"\b(?:in|at|by|around) (?:the|its) middle\b"],
    "largest": [r"\b(?:widest|largest|biggest|fattest|thickest|broadest|bulkiest|wide|large|thick|fat) (?:part|section|portion|bit|area|region|end)\b",
                r"\b(?:widest|largest|biggest|fattest|thickest|broadest|bulkiest)\b"],
    "thinnest": [r"\b(?:thinnest|narrowest|slimmest|skinniest|slenderest)\b",
                 r"\b(?:thin|narrow|slim|skinny|slender) (?:part|section|portion|bit|area|region|end)\b"],
    "top": [r"(?<!from )\bthe top\b(?! down)", r"\bupper (?:part|end|half|section|portion|side)\b", r"\bon top\b"],
    "bottom": [r"(?<!from )\bthe bottom\b", r"\blower (?:part|end|half|section|portion|side)\b", r"\bbase\b"],
    "left": [r"\bleft\b(?! out)"],
    "right": [r"\bright(?: hand)? (?:side|end|half|part|edge)\b", r"\bon the right\b", r"\bthe right\b", r"\bfrom (?:the )?right\b"],
}

_NEGATION = re.compile(
    r"\b(?:not|dont|do not|never|no|without|avoid\w*|except|excluding|leave out|leaving out|rather than|instead of|other than|"
    r"keep (?:the |your )?\w+(?: \w+)? (?:off|away))\b"
)
_CLAUSE_SPLIT = re.compile(r"[,.;:!?()]+|\bbut\b|\bthen\b|\binstead\b")


def normalise(text: str) -> str:
    t = text.lower().replace("\u2019", "'")
    t = re.sub(r"(\w)'(\w)", r"\1\2", t)  # don't -> dont, robot's -> robots
    t = re.sub(r"[-_/]", " ", t)
    t = re.sub(r"[^\w,.;:!?() ]+", " ", t)
    return re.sub(r"\s+", " ", t).strip()


# words that say nothing about *how* to grasp: dropped before embedding so that the sentence vector
# is about the intent words ("grab it from above" and "take the box from above" -> "from above")
_FILLER = frozenset(
    """a an the it its this that these those me please now just then up down onto on to of
    grab grabs grasp grasps pick picks lift lifts take takes get gets hold holds seize hand pass bring
    you your i we let lets go would""".split()
)
# object names are filler after a determiner ("the hammer"), not in an analogy ("like a hammer")
_OBJECTS = frozenset("object thing item mug cup bottle box can bowl hammer sphere ball cylinder kettle flask pot jar tool".split())
_DETERMINERS = frozenset("the this that your its my".split())
_KEEP_AFTER = {"down": ("top",), "up": ("scoop",)}  # kept where they carry direction: "top down", "scoop up"
# function words: a clause made of these (after filler removal) carries nothing to embed
_FUNCTION = frozenset(
    """and or nor by with at in from for into onto under over like way use using used only part parts section portion
    bit side sides approach come finger fingers hand palm but so as is be are all make sure
    grip grips grasp grasping""".split()
)


def content_words(text: str) -> str:
    """The clause without filler words (what the embedding compares)."""
    words = re.findall(r"\w+", normalise(text))
    out = []
    for i, w in enumerate(words):
        prev = words[i - 1] if i else ""
        if w in _FILLER and prev not in _KEEP_AFTER.get(w, ()):
            continue
        if w in _OBJECTS and prev in _DETERMINERS:
            continue
        out.append(w)
    return " ".join(out)


def clauses(text: str) -> list[str]:
    return [c.strip() for c in _CLAUSE_SPLIT.split(normalise(text)) if c and c.strip()]


@dataclass(frozen=True)
class Mention:
    field: str  # "approach" | "grasp_type" | "finger" | "region"
    value: str
    start: int
    end: int
    negated: bool


_LIST_JOIN = re.compile(r"^(?:\s|,|and|or|nor|the|your|my|its)*$")


def _mark_negations(clause: str, ms: list[Mention]) -> list[Mention]:
    """Negate, for each cue, the first mention after it and the mentions listed with it."""
    ms = sorted(ms, key=lambda m: m.start)
    negated = [False] * len(ms)
    for cue in _NEGATION.finditer(clause):
        # "keep the ring finger off": the object sits inside the cue
        start = cue.start() + 5 if cue.group(0).startswith("keep ") else cue.end()
        first = next((i for i, m in enumerate(ms) if m.start >= start), None)
        if first is None:
            continue
        negated[first] = True
        last = ms[first]
        for j in range(first + 1, len(ms)):
            m = ms[j]
            if m.start < last.end:  # overlapping alternative reading of the same words
                negated[j] = True
                continue
            if m.field == last.field and _LIST_JOIN.match(clause[last.end : m.start]):
                negated[j] = True
                last = m
            else:
                break
    return [Mention(m.field, m.value, m.start, m.end, n) for m, n in zip(ms, negated)]


def _find(clause: str, field: str, patterns: dict[str, list[str]] | dict[str, str]) -> list[Mention]:
    out = []
    for value, pats in patterns.items():
        for pat in [pats] if isinstance(pats, str) else pats:
            for m in re.finditer(pat, clause):
                out.append(Mention(field, value, m.start(), m.end(), False))
    return out


def rule_mentions(text: str) -> list[list[Mention]]:
    """Mentions per clause (rules only), with negation marked."""
    per_clause = []
    for c in clauses(text):
        ms = _find(c, "approach", _APPROACH_PATTERNS)
        ms += _find(c, "grasp_type", _TYPE_PATTERNS)
        ms += _find(c, "finger", _FINGER_PATTERNS)
        ms += _find(c, "region", _REGION_PATTERNS)
        per_clause.append(_mark_negations(c, ms))
    return per_clause


def _pick_approach(ms: list[Mention]) -> str | None:
    vals = {m.value for m in ms}
    # "from the side facing the camera" is a front approach; "from the left" a side one
    for v in ("front", "top", "bottom", "side"):
        if v in vals:
            return v
    return None


def _pick_type(ms: list[Mention]) -> str | None:
    vals = {m.value for m in ms}
    return next((v for v in _TYPE_PRECEDENCE if v in vals), None)


@dataclass
class _Draft:
    approach: str | None = None
    avoid_approach: tuple[str, ...] = ()
    grasp_type: str | None = None
    use_fingers: tuple[str, ...] = ()
    avoid_fingers: tuple[str, ...] = ()
    region: str | None = None
    avoid_region: tuple[str, ...] = ()


def _apply_rules(text: str, confidence: dict[str, float], source: dict[str, str]) -> _Draft:
    d = _Draft()
    mentions = [m for c in rule_mentions(text) for m in c]
    pos = [m for m in mentions if not m.negated]
    neg = [m for m in mentions if m.negated]

    d.approach = _pick_approach([m for m in pos if m.field == "approach"])
    d.avoid_approach = tuple(a for a in APPROACHES if a != d.approach and any(m.field == "approach" and m.value == a for m in neg))
    d.grasp_type = _pick_type([m for m in pos if m.field == "grasp_type"])
    d.use_fingers = sort_fingers([m.value for m in pos if m.field == "finger"])
    d.avoid_fingers = sort_fingers([m.value for m in neg if m.field == "finger" and m.value not in d.use_fingers])
    # named digits are more specific than "precision" / "fingertips": thumb + 1 = pinch, thumb + 2 = tripod
    if d.grasp_type in (None, "precision") and "thumb" in d.use_fingers and len(d.use_fingers) in (2, 3):
        d.grasp_type = "pinch" if len(d.use_fingers) == 2 else "tripod"
    regions = [m for m in pos if m.field == "region"]
    # "from the left" names a side too: keep the left/right region; specific parts beat sides
    specific = [m for m in regions if m.value not in ("left", "right", "top", "bottom")]
    chosen = (specific or regions)
    if chosen:
        d.region = min(chosen, key=lambda m: REGIONS.index(m.value)).value
    from_side = [m for m in pos if m.field == "approach" and m.value == "side" and re.search(r"left|right", text.lower())]
    if d.region is None and from_side:
        d.region = "left" if "left" in text.lower() else "right"
    d.avoid_region = tuple(r for r in REGIONS if r != d.region and any(m.field == "region" and m.value == r for m in neg))
    for name in ("approach", "avoid_approach", "grasp_type", "use_fingers", "avoid_fingers", "region", "avoid_region"):
        if getattr(d, name):
            confidence[name], source[name] = RULE_CONFIDENCE, "rule"
    return d


# ------------------------------------------------------------------------------ embedding bank
# Prototype phrases per value. They are written as instructions, not copied from the test set.
PROTOTYPES: dict[str, dict[str, list[str]]] = {
    "approach": {
        "top": [
            "grasp it from above",
            "a top-down grasp",
            "bring the hand down onto the object from overhead",
            "lower the palm onto the top of the object",
            "reach down on it from the top with the palm facing down",
        ],
        "side": [
            "grasp it from the side",
            "a side grasp",
            "reach in sideways with the palm vertical",
            "approach the object horizontally from one side",
        ],
        "front": [
            "grasp it from the front",
            "approach from the side that faces the robot",
            "reach straight in from the front, facing the camera",
        ],
        "bottom": [
            "grasp it from below",
            "scoop it up from underneath",
            "support it from beneath with the palm facing up",
        ],
    },
    "grasp_type": {
        "power": [
            "a power grasp",
            "wrap the whole hand around it",
            "hold it firmly in the fist",
            "grip it like the handle of a hammer",
            "a strong full-hand grip with the palm",
            "hold it like a tennis racket",
        ],
        "precision": [
            "a precision grasp",
            "pick it up carefully with the fingertips",
            "hold it gently with the tips of the fingers",
            "a delicate fingertip grip",
        ],
        "pinch": [
            "pinch it",
            "a pinch grip between the thumb and the index finger",
            "hold it between two fingers",
            "pick it up like a coin",
            "grab it like tweezers",
        ],
        "tripod": [
            "a tripod grasp",
            "hold it with three fingers",
            "hold it the way you hold a pen to write",
            "grip it like a pencil",
            "hold it like a piece of chalk",
        ],
        "lateral": [
            "a lateral grasp",
            "a key grip",
            "hold it like a key",
            "squeeze it between the thumb and the side of the index finger",
            "hold it like a card between thumb and bent index finger",
        ],
        "hook": [
            "a hook grasp",
            "carry it like a suitcase",
            "hang it on the curled fingers without the thumb",
            "carry it like a bucket",
            "hook the fingers around it",
        ],
    },
    "region": {
        "handle": ["grab it by the handle", "hold the handle", "take the mug by the loop on its side"],
        "neck": ["grab the bottle by the neck", "hold the narrow neck of the bottle"],
        "rim": ["hold it by the rim", "grab the edge of the bowl", "pinch the lip of the cup"],
        "body": ["grab the body of the object", "hold the main part of it"],
        "largest": ["grasp the widest part", "hold the biggest part of the object"],
        "thinnest": ["grasp the thinnest part", "hold the narrowest part of the object"],
        "top": ["grab the top of it", "hold the upper part"],
        "bottom": ["grab the bottom of it", "hold the lower part near the base"],
        "left": ["grab its left side", "hold the left end"],
        "right": ["grab its right side", "hold the right end"],
    },
}
NONE_PROTOTYPES = [
    "do whatever works",
    "move it over there",
    "hello",
    "be quick",
    "put it on the shelf",
    "any grasp is fine",
    "thank you",
]
# per field: minimum cosine similarity and the margin over the best "no intent" phrase
THRESHOLDS: dict[str, tuple[float, float]] = {
    "approach": (0.65, 0.15),
    "grasp_type": (0.45, 0.15),
    "region": (0.65, 0.15),
}


class _Bank:
    def __init__(self) -> None:
        from .encoder import get_encoder

        enc = get_encoder()
        self.encoder = enc
        self.keys: list[tuple[str, str]] = []
        phrases: list[str] = []
        for field, values in PROTOTYPES.items():
            for value, ps in values.items():
                for p in ps:
                    self.keys.append((field, value))
                    phrases.append(content_words(p))
        self.emb = enc.encode(phrases)
        self.none_emb = enc.encode([content_words(p) for p in NONE_PROTOTYPES])


_BANK_LOCK = threading.Lock()
_BANK: list[_Bank] = []


def _bank() -> _Bank:
    with _BANK_LOCK:
        if not _BANK:
            _BANK.append(_Bank())
        return _BANK[0]


@dataclass(frozen=True)
class EmbeddingMatch:
    """The prototype nearest to one text over the whole bank (and the "no intent" phrases)."""

    field: str | None  # None: a "no intent" phrase is nearest
    value: str | None
    similarity: float  # cosine to the nearest prototype
    margin: float  # over the nearest "no intent" phrase (0 when that one is nearest)


def embedding_matches(texts: list[str]) -> list[EmbeddingMatch]:
    """For each text, its single nearest prototype: a clause is taken to express one intent value."""
    if not texts:
        return []
    b = _bank()
    e = b.encoder.encode([content_words(t) for t in texts])
    sim = e @ b.emb.T  # (T, P)
    none = (e @ b.none_emb.T).max(dim=1).values
    best, j = sim.max(dim=1)
    out = []
    for t in range(len(texts)):
        s, n = float(best[t]), float(none[t])
        if n >= s:
            out.append(EmbeddingMatch(None, None, n, 0.0))
        else:
            field, value = b.keys[int(j[t])]
            out.append(EmbeddingMatch(field, value, s, s - n))
    return out


def _apply_embedding(text: str, d: _Draft, confidence: dict[str, float], source: dict[str, str]) -> None:
    wanted = [f for f in ("approach", "grasp_type", "region") if getattr(d, f) is None]
    if not wanted:
        return
    # words a rule has already explained are blanked, so one phrase cannot set two fields
    units = []
    for c, ms in zip(clauses(text), rule_mentions(text)):
        if _NEGATION.search(c):
            continue
        keep = [True] * len(c)
        for m in ms:
            keep[m.start : m.end] = [False] * (m.end - m.start)
        c = "".join(ch if k else " " for ch, k in zip(c, keep))
        if any(w not in _FUNCTION for w in content_words(c).split()):
            units.append(c)
    if len(units) > 1:
        units.append(" ".join(units))
    if not units:
        return
    for em in embedding_matches(units):
        if em.field not in wanted or em.value is None:
            continue
        thr, margin = THRESHOLDS[em.field]
        if em.similarity >= thr and em.margin >= margin and em.similarity > confidence.get(em.field, 0.0):
            setattr(d, em.field, em.value)
            confidence[em.field], source[em.field] = round(em.similarity, 3), "embedding"
    if d.approach in d.avoid_approach:
        d.approach = None
    if d.region in d.avoid_region:
        d.region = None


def parse_intent(text: str, use_embedding: bool = True) -> Intent:
    """Parse an instruction. ``use_embedding=False`` runs the rules alone (no model load)."""
    confidence: dict[str, float] = {}
    source: dict[str, str] = {}
    d = _apply_rules(text, confidence, source)
    if use_embedding and normalise(text):
        _apply_embedding(text, d, confidence, source)
    intent = Intent.model_validate({
        "text": text,
        "approach": d.approach,
        "avoid_approach": d.avoid_approach,
        "grasp_type": d.grasp_type,
        "use_fingers": d.use_fingers,
        "avoid_fingers": d.avoid_fingers,
        "region": d.region,
        "avoid_region": d.avoid_region,
        "confidence": confidence,
        "source": source,
    })
    return intent.model_copy(update={"unmatched": intent.is_empty})


def warm_up() -> None:
    """Load the encoder and embed the prototype bank now (the service calls this at start-up)."""
    _bank()


assert set(PROTOTYPES["approach"]) == set(APPROACHES) and set(PROTOTYPES["grasp_type"]) == set(GRASP_TYPES)
assert set(PROTOTYPES["region"]) == set(REGIONS)
