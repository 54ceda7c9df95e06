"""What a grasp proposer is, as the pipeline sees it.

This module owns the contract between the pipeline and every proposer: the :class:`Problem` a
proposer is given (one object in the canonical frame), the :class:`Proposal` it returns, the
:class:`Capabilities` that tell the pipeline how to treat its output (refined by default, fed the
completed cloud, chosen by ``method=auto``), the :class:`Proposer` protocol itself, and
:func:`finish_grasps`, the step every proposer ends with (contacts, squeeze and pregrasp).
Proposers register by name in :mod:`models.proposers`; the pipeline names none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from torch import Tensor

from ..core.geometry import ObjectCloud, Plane
from ..grasp import Grasp, make_grasp
from ..hands.model import HandModel
from ..physics.grasp_batch import GraspBatch
from ..stages.squeeze import SqueezeConfig, finish

if TYPE_CHECKING:  # only the types: the intent package and the stages import nothing from here
    from ..stages.intent.priors import Priors
    from ..stages.refine import RefineConfig
    from ..stages.scoring import RankConfig

Progress = Callable[[int, int, float], None]  # (step, steps, mean energy)


@dataclass(frozen=True)
class Capabilities:
    """How the pipeline treats a proposer's output; a class attribute of every proposer."""

    # the pipeline's refine stage runs on its grasps unless the query says refine=false
    refined_by_default: bool = False
    # under completion=auto it grasps the mirrored single view; False: only what the sensor saw
    grasps_completed_cloud: bool = True
    # it takes an instruction's priors while generating; method=auto sends queries with text only to these
    follows_instructions: bool = True
    # method=auto picks, among the proposers that serve by default, the one with the highest
    # priority above 0; 0: served only when asked for by name
    auto_priority: int = 0
    # it ranks its candidates by a simulated check on the cloud when given one (``check=``, models.stages.check)
    ranks_by_check: bool = False


@dataclass
class Problem:
    """One object to grasp: points and outward normals (N, 3) in its own frame, an optional table."""

    points: Tensor
    normals: Tensor
    num_grasps: int = 16
    plane: Plane | None = None
    seed: int = 0
    priors: Priors | None = None  # an instruction's priors (models.stages.intent.intent_priors): approach cone, contact mask
    observed: tuple[Tensor, Tensor] | None = None  # what the sensor saw, when ``points`` adds a completed back (learned encoders read this)
    single_view: bool | None = None  # a one-camera cloud (E_inside on); None: decided from the normals' lean
    # finish the grasps (snap, squeeze, pregrasp) before returning them; False: the caller finishes the ones it
    # keeps (the pipeline does when it refines them, as refining moves them). A proposer whose own ranking needs
    # finished grasps may finish regardless.
    finish: bool = True


@dataclass
class Proposal:
    """A proposer's answer to one :class:`Problem`."""

    grasps: list[Grasp]
    energy: dict[str, Tensor]  # per returned grasp, every term the proposer computed
    valid: Tensor  # (B,) bool: passed the proposer's own filter
    steps_run: int
    elapsed_s: float
    # per round of candidates the proposer ran for this problem, how many held its simulated check (empty: no check)
    rounds_held: tuple[int, ...] = ()


class Proposer(Protocol):
    """A grasp proposer: problems in, grasps out, batched over concurrent queries."""

    name: ClassVar[str]
    version: str
    capabilities: ClassVar[Capabilities]
    # stage settings the proposer was tuned with (None: the pipeline's own)
    refine_config: RefineConfig | None
    rank_config: RankConfig | None

    @classmethod
    def serves_by_default(cls, hand: str) -> bool:
        """Whether ``method=auto`` may pick it for ``hand`` (e.g. its weights ship)."""
        ...

    def propose_batch(
        self, problems: list[Problem], time_budget_s: float | None = None, progress: Progress | None = None
    ) -> list[Proposal]:
        """One :class:`Proposal` per problem, in order; ``time_budget_s`` may stop it early."""
        ...

    def propose(
        self, points: Tensor, normals: Tensor, num_grasps: int = 16, plane: Plane | None = None, seed: int = 0,
        time_budget_s: float | None = None, progress: Progress | None = None,
    ) -> Proposal:
        """One problem: :meth:`propose_batch` of ``[Problem(points, normals, num_grasps, plane, seed)]``."""
        ...


def closing_direction(hand: HandModel) -> Tensor:
    """Per joint, the sign (+1 / -1 / 0) that closes the hand: the spec's ``closing_direction`` (for a hand that
    gives none, from its open pose towards its pre-shape)."""
    return hand.closing_direction.clone()


def unfinished_grasps(hand_name: str, pos: Tensor, rot: Tensor, q: Tensor, scores: list[dict[str, float]]) -> list[Grasp]:
    """Grasps in the shared schema without a squeeze, their pregrasp a placeholder (the grasp itself), for a
    caller that finishes them later (:attr:`Problem.finish` False)."""
    return [make_grasp(hand_name, rot[i], pos[i], q[i], rot[i], pos[i], q[i], scores[i]) for i in range(pos.shape[0])]


def finish_grasps(
    h: HandModel, hand_name: str, pos: Tensor, rot: Tensor, q: Tensor, cloud: ObjectCloud,
    scores: list[dict[str, float]], squeeze: SqueezeConfig | None = None,
) -> list[Grasp]:
    """Grasps in the shared schema from palm poses and joints (any proposer), through
    :func:`models.stages.squeeze.finish`: fingers snapped onto the surface, the wrench-balanced squeeze
    and the mirrored pregrasp. ``cloud``: the object cloud, (N, 3) or one per grasp (B, N, 3).
    Each grasp's scores gain ``squeeze_residual_n`` (the net force the contacts cannot balance)
    and ``squeeze_contacts``."""
    batch, sol = finish(GraspBatch(h, pos, rot, q), cloud, squeeze)
    out = []
    for i in range(pos.shape[0]):
        sc = {**scores[i], "squeeze_residual_n": float(sol.residual_n[i]), "squeeze_contacts": float(sol.contact_count[i]),
              "squeeze_fingers": float(sol.finger_count[i])}
        out.append(make_grasp(hand_name, batch.root_rot[i], batch.root_pos[i], batch.joints[i], batch.root_rot[i],
                              sol.pre_position[i], sol.pre_joints[i], sc, sol.squeeze[i]))
    return out


__all__ = ["Capabilities", "Problem", "Progress", "Proposal", "Proposer", "closing_direction", "finish_grasps",
           "unfinished_grasps"]
