"""Claims (a) and (b) over training runs: one run gives the image-only interval it always gave; several runs give
the mean of the runs' effects with a hierarchical interval (runs, then images) that widens with the spread of the
runs, so a claim one run 'reproduces' can be inconclusive over three."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from analysis.erf.claims import claim_a, claim_b
from analysis.erf.decoder_grid import DecoderGrid
from analysis.verdicts import INCONCLUSIVE, REPRODUCED

N_BOOT = 400


def _grid(whole_side: float, crp_side: float, jitter: float = 0.0, seed: int = 0) -> DecoderGrid:
    """A fabricated one-level grid: whole-level and CRP 90% sides (cells) and their image-bootstrap samples."""
    g = torch.Generator().manual_seed(seed)
    frame = pd.DataFrame([
        {"level": "level2", "block": "whole level", "side90_cells": whole_side, "r90_cells": round(whole_side / 2),
         "theoretical_cells": 9},
        {"level": "level2", "block": "CRP", "side90_cells": crp_side, "r90_cells": round(crp_side / 2),
         "theoretical_cells": 17}])
    noise = lambda: jitter * torch.randn(N_BOOT, generator=g, dtype=torch.float64)  # noqa: E731
    sides = {("level2", "whole level"): whole_side + noise(), ("level2", "CRP"): crp_side + noise()}
    return DecoderGrid(frame, {}, {}, sides)


def test_one_run_as_a_list_is_the_one_run():
    run = {"rf": _grid(4.0, 3.0, 0.1, 1), "rf_lw": _grid(3.8, 2.5, 0.1, 2)}
    for claim in (claim_a, claim_b):
        alone, listed = claim(run), claim([run])
        pd.testing.assert_frame_equal(alone, listed)
        assert set(alone.n_seeds) == {1}


def test_runs_that_disagree_make_claim_a_inconclusive():
    """LW's field equals RF's in one run and is half of it in the other: each run alone is decided, both together
    are not (the ratio's interval over two runs is the t interval with one degree of freedom: far wider than the
    runs' 0.5 to 1.0, against the 0.8 margin)."""
    same = {"rf": _grid(4.0, 3.0), "rf_lw": _grid(4.0, 3.0)}
    half = {"rf": _grid(4.0, 3.0), "rf_lw": _grid(2.0, 3.0)}
    assert claim_a(same).status.iloc[0] == REPRODUCED
    both = claim_a([same, half]).iloc[0]
    assert both.side_ratio == pytest.approx(0.75) and both.n_seeds == 2
    from scipy import stats

    half = stats.t.ppf(0.95, 1) * stats.tstd([1.0, 0.5]) / 2**0.5  # 90% two-sided (claim (a)'s level), 1 df
    assert (both.ci_low, both.ci_high) == pytest.approx((0.75 - half, 0.75 + half), rel=1e-6)
    assert both.status == INCONCLUSIVE


def test_claim_b_over_runs_averages_the_runs_and_covers_their_spread():
    runs = [{"rf_lw": _grid(4.0, side, 0.05, seed)} for seed, side in enumerate((1.5, 2.5, 3.5))]
    row = claim_b(runs).iloc[0]
    assert row.crp_side90_cells == pytest.approx(2.5) and row.n_seeds == 3
    one = claim_b(runs[1]).iloc[0]
    assert row.ci_high - row.ci_low > 5 * (one.ci_high - one.ci_low)  # the runs' spread, not only the images'
    assert row.ci_low <= 2.5 <= row.ci_high
