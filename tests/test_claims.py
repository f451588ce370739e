"""The claims' rules, fed effects on each side of every boundary: claim (a)'s one-sided non-inferiority test,
claim (b) on CRP's interpolated side, claim (c)'s paired difference of gains. Each case is one a plausible wrong
rule gets wrong (a two-sided rule that fails a larger LW field, the 95% instead of the 90% interval, point
estimates instead of the paired interval, a verdict that cannot fail)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.erf.claims import claim_a, claim_b
from analysis.erf.decoder_grid import DecoderGrid

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


@pytest.mark.parametrize("lw_r90, status", [
    ([4] * 500 + [5] * 500, "reproduced"),  # ratios 9/9 and 11/9: wholly at or above 0.8
    ([2] * 1000, "not reproduced"),  # 5/9 = 0.56: wholly below the margin
    ([7] * 1000, "reproduced"),  # 15/9 = 1.67: LW's field is larger, not smaller (a two-sided rule fails it)
    ([3] * 500 + [4] * 500, "inconclusive"),  # 7/9 = 0.78 to 1: crosses 0.8
    ([2] * 500 + [7] * 500, "inconclusive"),  # 0.56 to 1.67
])
def test_claim_a_is_one_sided_no_smaller_with_the_margin_0_8(lw_r90, status):
    row = verdict_a(lw_r90)
    assert row.status == status, row.why
    assert (row.ci_low, row.ci_high) == pytest.approx(side_ratio_interval(lw_r90))


def test_claim_a_decides_on_the_90_percent_interval():
    # 4% of the resamples at 7/9: outside the 95% interval's margin, inside the 90% one's
    lw = [3] * 40 + [4] * 960
    low95, _ = side_ratio_interval(lw, 0.95)
    low90, high90 = side_ratio_interval(lw, 0.90)
    assert low95 < 0.8 <= low90 and high90 == 1.0
    row = verdict_a(lw)
    assert row.ci_low == pytest.approx(low90) and row.status == "reproduced"


def test_claim_a_side_ratio_is_the_ratio_of_square_sides():
    row = verdict_a([6] * 1000)  # r90 6 vs 4 cells: sides 13 and 9
    assert row.side_ratio == pytest.approx(13 / 9) and row.r90_cells == 6 and row.reference_r90_cells == 4


def sub_cell_grid(side: float) -> DecoderGrid:
    """A level whose whole-level and CRP fields have the given interpolated 90% side in every resample."""
    rows, boot, sides = [], {}, {}
    for block in ("whole level", "CRP"):
        rows.append({"level": LEVEL, "block": block, "r90_cells": 0.0, "side90_cells": side, "theoretical_cells": 9})
        boot[(LEVEL, block)] = {0.5: torch.zeros(100), 0.9: torch.zeros(100)}
        sides[(LEVEL, block)] = torch.full((100,), side, dtype=torch.float64)
    return DecoderGrid(pd.DataFrame(rows), {}, boot, sides)


def test_claim_a_is_not_testable_where_both_fields_sit_within_one_cell():
    """Two fields that keep 90% of their mass on the unit's own cell: a ratio of them says nothing about size."""
    (row,) = claim_a({"rf": sub_cell_grid(0.93), "rf_lw": sub_cell_grid(0.92)}).itertuples()
    assert row.status == "not testable here" and "within one cell" in row.why
    (row,) = claim_a({"rf": sub_cell_grid(1.6), "rf_lw": sub_cell_grid(0.92)}).itertuples()  # one resolved field
    assert row.status == "not reproduced"  # 0.92 / 1.6 = 0.58, wholly below 0.8


@pytest.mark.parametrize("crp_sides, status", [
    ([1.2] * 50 + [1.5] * 50, "reproduced"),  # over 10% of the mass leaves the cell in every resample
    ([0.95] * 10 + [1.3] * 90, "inconclusive"),  # some resamples keep 90% on the cell: the interval straddles 1
    ([0.9] * 100, "not reproduced"),  # CRP keeps its information on the unit's own cell
    ([1.0] * 100, "not reproduced"),  # exactly one cell is not wider than one cell
])
def test_claim_b_is_decided_by_the_interpolated_side_on_either_side_of_one_cell(crp_sides, status):
    g = grid([3] * 100)
    g.side_boot[(LEVEL, "CRP")] = torch.tensor(crp_sides, dtype=torch.float64)
    g.frame.loc[g.frame.block == "CRP", "side90_cells"] = float(np.median(crp_sides))
    (row,) = claim_b({"rf_lw": g}).to_dict("records")
    assert row["status"] == status, row["why"]
    assert row["ci_low"] == pytest.approx(np.quantile(crp_sides, 0.025))
    assert row["crp_side90_cells"] == pytest.approx(np.median(crp_sides))  # fractions of a cell, not whole cells


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
    ((0.30, 0.31, 0.36), 0.0, "reproduced"),  # CRP +5 points, CRP - RCU +4: both wholly above 0
    ((0.30, 0.31, 0.28), 0.0, "not reproduced"),  # CRP lowers the mIoU: interval below 0
    ((0.30, 0.40, 0.42), 0.0, "not reproduced"),  # RCU +10 vs CRP +2: the paired difference wholly below 0
    ((0.30, 0.30, 0.31), 0.05, "inconclusive"),  # CRP +1 with +-5 of its own noise: interval includes 0
    ((0.30, 0.34, 0.375), 0.02, "inconclusive"),  # CRP +3.5 > 0, CRP - RCU -0.5 with +-2 of noise: straddles 0
    ((0.30, 0.32, 0.37), 0.02, "reproduced"),  # CRP +5 +-2, CRP - RCU = +3 +-2: both wholly above 0
    ((0.30, 0.33, 0.37), 0.02, "inconclusive"),  # CRP - RCU = +1 +-2: the paired difference straddles 0
    ((0.101, 0.102, 0.105), 0.0, "not testable here"),  # nothing beats the trivial 0.10 by 2 points
])
def test_crp_verdict_on_each_side_of_its_rule(taps, noise, status):
    from analysis.probes.differences import crp_verdicts, tap_differences

    run = probe_run(*taps, crp_noise=noise)
    (row,) = crp_verdicts(run, tap_differences(run)).to_dict("records")
    assert row["status"] == status, row["why"]
    assert row["crp_miou"] == pytest.approx(taps[2] - taps[1])
    assert row["crp_minus_rcu"] == pytest.approx((taps[2] - taps[1]) - (taps[1] - taps[0]))


def test_crp_difference_interval_is_the_paired_one():
    """The interval of CRP gain - RCU gain comes from the same resamples: with noise shared by every tap it is one
    value, however wide the taps' own intervals are."""
    from analysis.probes.differences import crp_verdicts, tap_differences

    run = probe_run(0.30, 0.33, 0.37)
    (row,) = crp_verdicts(run, tap_differences(run)).to_dict("records")
    assert row["crp_minus_rcu_ci_low"] == pytest.approx(0.01) and row["crp_minus_rcu_ci_high"] == pytest.approx(0.01)


