"""The verdict rules, fed effects on each side of every boundary: claim (a)'s equivalence test, claim (b), claim
(c)'s per-cell verdicts, and the scorecard's tallies. Each case is one a plausible wrong rule gets wrong (a rule
that only looks at one side of the margin, the 95% instead of the 90% interval, a verdict that cannot fail)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.erf.claims import claim_a, claim_b
from analysis.erf.decoder_grid import DecoderGrid
from analysis.report.scorecard import ratio_status, tally_status, within_rounding_status

LEVEL = "level2"


def grid(whole_r90: list[int], crp_r90: list[int] | None = None) -> DecoderGrid:
    """A hand-made decoder grid of one level: bootstrap samples of the whole level's and CRP's r90 (cells) and
    the 90% side (here 2 r90 + 1: maps whose 90% square is exactly whole); point estimates: the medians."""
    rows, boot, sides = [], {}, {}
    for block, samples in (("whole level", whole_r90), ("CRP", crp_r90 or whole_r90)):
        r90 = torch.tensor(samples, dtype=torch.float64)
        rows.append({"level": LEVEL, "block": block, "r90_cells": float(r90.median()),
                     "side90_cells": float(2 * r90.median() + 1), "theoretical_cells": 9})
        boot[(LEVEL, block)] = {0.5: r90.clone(), 0.9: r90}
        sides[(LEVEL, block)] = 2 * r90 + 1
    return DecoderGrid(pd.DataFrame(rows), {}, boot, sides)


RF = [4] * 1000  # RefineNet's whole-level r90: 4 cells in every resample, square side 9


def verdict_a(lw_r90: list[int]) -> pd.Series:
    (row,) = claim_a({"rf": grid(RF), "rf_lw": grid(lw_r90)}).to_dict("records")
    return pd.Series(row)


def side_ratio_interval(lw_r90: list[int], level: float = 0.90) -> tuple[float, float]:
    """Independent of the code: numpy's quantiles of (2 r_lw + 1) / (2 r_rf + 1)."""
    ratios = (2 * np.array(lw_r90) + 1) / (2 * np.array(RF) + 1)
    return tuple(np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2]))


@pytest.mark.parametrize("lw_r90, verdict, status", [
    ([4] * 500 + [5] * 500, "equivalent", "reproduced"),  # ratios 9/9 and 11/9 = 1.22: inside [0.8, 1.25]
    ([2] * 1000, "different", "not reproduced"),  # 5/9 = 0.56: wholly below the margin
    ([7] * 1000, "different", "not reproduced"),  # 15/9 = 1.67: wholly above (a one-sided rule misses it)
    ([3] * 500 + [4] * 500, "inconclusive", "inconclusive"),  # 7/9 = 0.78 to 1: crosses 0.8
    ([5] * 500 + [6] * 500, "inconclusive", "inconclusive"),  # 1.22 to 13/9 = 1.44: crosses 1.25
    ([2] * 500 + [7] * 500, "inconclusive", "inconclusive"),  # 0.56 to 1.67: wider than the margin
])
def test_claim_a_is_an_equivalence_test_with_the_margin_0_8_to_1_25(lw_r90, verdict, status):
    row = verdict_a(lw_r90)
    assert (row.verdict, row.status) == (verdict, status)
    assert (row.ci_low, row.ci_high) == pytest.approx(side_ratio_interval(lw_r90))


def test_claim_a_decides_on_the_90_percent_interval():
    # 4% of the resamples at 7/9: outside the 95% interval's margin, inside the 90% one's
    lw = [3] * 40 + [4] * 960
    low95, _ = side_ratio_interval(lw, 0.95)
    low90, high90 = side_ratio_interval(lw, 0.90)
    assert low95 < 0.8 <= low90 and high90 == 1.0
    row = verdict_a(lw)
    assert row.ci_low == pytest.approx(low90) and row.verdict == "equivalent"


def test_claim_a_side_ratio_is_the_ratio_of_square_sides():
    row = verdict_a([6] * 1000)  # r90 6 vs 4 cells: sides 13 and 9
    assert row.side_ratio == pytest.approx(13 / 9) and row.r90_cells == 6 and row.reference_r90_cells == 4


@pytest.mark.parametrize("crp_r90, status", [
    ([1] * 50 + [2] * 50, "reproduced"),  # CRP moves information by at least one cell in every resample
    ([0] * 10 + [1] * 90, "inconclusive"),  # some resamples stay on one cell: the interval straddles 1
    ([0] * 100, "not reproduced"),
])
def test_claim_b_is_decided_by_the_whole_interval_on_either_side_of_one_cell(crp_r90, status):
    (row,) = claim_b({"rf_lw": grid([3] * 100, crp_r90)}).to_dict("records")
    assert row["status"] == status
    assert row["ci_low"] == pytest.approx(np.quantile(crp_r90, 0.025))


# --- claim (c): CRP, not RCU ------------------------------------------------------------------------------------


def probe_run(before: float, after_rcu: float, after_crp: float, crp_noise: float = 0.0, baseline: float = 0.10):
    """One rf variant at level 4, one seed: mIoU per tap with bootstrap samples. The same resamples move every tap
    together (paired), plus ``crp_noise`` that only the after-CRP tap has. CRP's input (after the level-4 ReLU)
    probes as after RCU does."""
    from analysis.probes.run import ProbePlan, ProbeRun

    shared = 0.01 * torch.linspace(-1, 1, 201)
    own = {"before_rcu": 0.0, "after_rcu": 0.0, "after_sum": 0.0, "after_crp": crp_noise}
    rows, boot = [], {}
    for point, value in (("before_rcu", before), ("after_rcu", after_rcu), ("after_sum", after_rcu),
                         ("after_crp", after_crp)):
        rows.append({"variant": "rf:x", "family": "rf", "seed": 0, "level": "level4", "tap": f"level4.{point}",
                     "point": point, "same_as": "", "miou": value, "label_accuracy": value, "map": value})
        samples = value + shared + own[point] * torch.linspace(1, -1, 201)
        boot[("rf:x", 0, f"level4.{point}")] = {"miou": samples, "label_accuracy": samples, "map": samples}
    return ProbeRun(pd.DataFrame(rows), "hand-made", {"miou": baseline, "label_accuracy": 0.5, "map": 0.3}, boot,
                    ("background", "a"), "given", ProbePlan.tiny())


@pytest.mark.parametrize("taps, noise, status", [
    ((0.30, 0.31, 0.36), 0.0, "reproduced"),  # CRP +5 points > RCU +1, CRP's interval above 0
    ((0.30, 0.31, 0.28), 0.0, "not reproduced"),  # CRP lowers the mIoU: interval below 0
    ((0.30, 0.40, 0.42), 0.0, "not reproduced"),  # RCU +10 wholly above CRP +2
    ((0.30, 0.30, 0.31), 0.05, "inconclusive"),  # CRP +1 with +-5 of its own noise: interval includes 0
    ((0.30, 0.34, 0.375), 0.02, "inconclusive"),  # CRP +3.5 > 0 but below RCU +4, intervals overlap
    ((0.101, 0.102, 0.105), 0.0, "not testable"),  # nothing beats the trivial 0.10 by 2 points
])
def test_crp_verdict_on_each_side_of_its_rule(taps, noise, status):
    from analysis.probes.differences import crp_verdicts, tap_differences

    run = probe_run(*taps, crp_noise=noise)
    (row,) = crp_verdicts(run, tap_differences(run)).to_dict("records")
    assert row["status"] == status, row["why"]
    assert row["crp_miou"] == pytest.approx(taps[2] - taps[1])


# --- the scorecard's rules --------------------------------------------------------------------------------------


@pytest.mark.parametrize("statuses, expected", [
    (["reproduced"] * 3, "reproduced"),
    (["reproduced", "reproduced", "not testable"], "reproduced"),  # untestable cells do not count
    (["reproduced", "inconclusive"], "partly"),
    (["reproduced", "not reproduced"], "partly"),
    (["inconclusive", "inconclusive"], "not reproduced"),  # inconclusive everywhere is no support
    (["not reproduced", "not testable"], "not reproduced"),
    (["not testable", "not testable"], "not testable here"),
])
def test_tally_on_each_side(statuses, expected):
    status, reason = tally_status(statuses, "(x)")
    assert status == expected
    testable = [s for s in statuses if s != "not testable"]
    if testable:
        assert f"{testable.count('reproduced')} of {len(testable)}" in reason


def test_ratio_rule_on_each_side_of_1_and_of_the_tolerance():
    paper = [2.0]
    assert ratio_status([(2.0, 1.9, 2.1)], paper)[0] == "reproduced"
    assert ratio_status([(2.6, 2.55, 2.65)], paper)[0] == "partly"  # low 2.55 > 2.0 * 1.25: too fast
    assert ratio_status([(2.6, 2.45, 2.65)], paper)[0] == "reproduced"  # low 2.45 <= 2.5: within 25%
    assert ratio_status([(1.4, 1.3, 1.45)], paper)[0] == "partly"  # high 1.45 < 1.5
    assert ratio_status([(1.05, 1.0, 1.1)], paper)[0] == "not reproduced"  # the interval touches 1
    assert ratio_status([(0.9, 0.85, 0.95)], paper)[0] == "not reproduced"


def test_within_rounding_rule_on_each_side_of_3_percent():
    assert within_rounding_status([True, True], [0.0, 0.4])[0] == "reproduced"
    assert within_rounding_status([True, False], [0.0, 3.0])[0] == "partly"
    assert within_rounding_status([False, False], [-3.01, 0.5])[0] == "not reproduced"  # the sign does not help


def test_erf_claims_of_the_report_follow_the_stated_rules():
    """The rule text printed in the report names the margin, the level and all three outcomes."""
    from analysis.erf.claims import CLAIM_A_RULE

    for words in ("90% CI", "[0.8, 1.25]", "equivalent (reproduced)", "different (not reproduced)", "inconclusive"):
        assert words in CLAIM_A_RULE
