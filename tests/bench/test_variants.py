"""The benches' config overrides: what ``--set`` and ``--variant`` strings turn into."""

from __future__ import annotations

import pytest

from bench.optimize_quality import parse_overrides
from bench.optimize_variants import parse_variant
from models.proposers.optimize import OptimizeConfig


def test_overrides_scalars_tuples_nested_and_none() -> None:
    o = parse_overrides(["num_contacts=6", "contact_links=ffdistal,thdistal", "free_link_margin_m=none",
                         "squeeze.snap_target_m=0.003", "squeeze.pregrasp_path_samples=0,0.5", "squeeze.snap=false",
                         "weights.qp=0", "densify_above_m=none"])
    assert o["num_contacts"] == 6 and isinstance(o["num_contacts"], int)
    assert o["contact_links"] == ("ffdistal", "thdistal")
    assert o["free_link_margin_m"] is None and o["densify_above_m"] is None
    sq = o["squeeze"]
    assert (sq.snap_target_m, sq.pregrasp_path_samples, sq.snap) == (0.003, (0.0, 0.5), False)
    # the rest of a nested config stays the optimiser's default
    assert sq.total_normal_force_n == OptimizeConfig().squeeze.total_normal_force_n
    assert o["weights"].qp == 0.0 and o["weights"].pen == OptimizeConfig().weights.pen
    OptimizeConfig(**o)  # and they make a config


def test_pairs() -> None:
    sq = parse_overrides(["squeeze.pregrasp_candidates=0.01:0,0.02:0.3"])["squeeze"]
    assert sq.pregrasp_candidates == ((0.01, 0.0), (0.02, 0.3))


def test_optional_given_a_number() -> None:
    assert parse_overrides(["free_link_margin_m=0.005"])["free_link_margin_m"] == 0.005


def test_variants() -> None:
    assert parse_variant("shipped=") == ("shipped", [])
    assert parse_variant("both=squeeze.snap_target_m=0.002;squeeze.pregrasp_clearance_m=0.006") == (
        "both", ["squeeze.snap_target_m=0.002", "squeeze.pregrasp_clearance_m=0.006"])
    with pytest.raises(ValueError, match="name"):
        parse_variant("=squeeze.snap_target_m=0.002")
