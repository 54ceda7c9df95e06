"""Text intent: parse a free-text grasp instruction, bias generation towards it, score grasps against it.

Public surface (everything else in this package may move):

- :func:`parse_intent` text -> :class:`Intent` (rules for explicit words + all-MiniLM-L6-v2
  sentence embeddings for paraphrases; ``Intent.model_dump()`` is the JSON form).
- :func:`intent_priors` (intent, hand, points, up) -> :class:`Priors` for the ``optimize`` proposer
  (``propose(..., priors=priors)``).
- :func:`score_intent` (intent, hand, pos, rot, joints, points, up) -> :class:`IntentScore`
  (per-grasp score in [0, 1], ``satisfied``, per-criterion breakdown, ``order()`` for ranking,
  ``message()`` when no grasp satisfies the instruction).
- :func:`analyze_object` -> :class:`ObjectRegions`, shared by priors and scoring for one request.
- :func:`warm_up` loads the embedding model (the service calls it at start-up).

Pipeline: ``intent = parse_intent(text)``; ``reg = analyze_object(points, up)``;
``priors = intent_priors(intent, hand, points, up, reg)``; ``res = proposer.propose(..., priors=priors)``;
``sc = score_intent(intent, hand, pos, rot, q, points, up, reg)``; rank by ``sc.order(energy)``.
"""

from .parse import parse_intent, warm_up
from .priors import Priors, intent_priors
from .regions import ObjectRegions, analyze_object
from .schema import Intent
from .score import IntentScore, score_intent

__all__ = [
    "Intent",
    "IntentScore",
    "ObjectRegions",
    "Priors",
    "analyze_object",
    "intent_priors",
    "parse_intent",
    "score_intent",
    "warm_up",
]
