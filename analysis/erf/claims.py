"""Claims (a) and (b) of the paper, decided from decoder-grid ERFs.

(a) "Dropping 3x3 convolutions does not shrink the empirical receptive field" (Sections 3.2, 5.1, 8):
    per level, the side (in cells, interpolated between whole squares: :func:`analysis.erf.gradient.mass_side`)
    of the square holding 90% of a whole level's decoder-grid ERF, light-weight family over RefineNet, with a
    paired bootstrap interval over the images. The claim is one-sided, as its title says: *no smaller*. With the
    non-inferiority margin 0.8 stated first, it is *reproduced* where the whole 90% interval (a one-sided test at
    5%) lies at or above 0.8, *not reproduced* where it lies wholly below, *inconclusive* otherwise; a larger LW
    field reproduces it. *Not testable here* where both fields sit within one cell of the level's grid (the grid
    cannot resolve them: a larger input gives the level more cells) or where a level is dead (``DEAD_RULE``).
(b) "CRP enlarges the ERF" (Section 5.1, Figure 3): per family and level, CRP's own decoder-grid ERF, as the
    interpolated side of its 90%-mass square in fractions of a cell. *Reproduced* where its whole 95% interval is
    above one cell (over 10% of CRP's gradient mass leaves the unit's own cell: CRP moves information between
    cells), *not reproduced* where the whole interval is at or below one cell, *inconclusive* otherwise.

The report decides both on trained networks (:mod:`analysis.networks`), with the random-initialisation
result beside it as what the architecture alone gives: at random init (b) holds by construction (any
chain of 5x5 max-pools spreads a unit's gradient over 4k+1 cells).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch

from bench.stats import percentile_interval

from ..protocol import PROTOCOL
from ..verdicts import NOT_TESTABLE, Interval, above, seeds_and_images
from .decoder_grid import DecoderGrid

NON_INFERIORITY_MARGIN = float(PROTOCOL.claim("erf_a")["bound"])  # LW/RF side ratio (analysis/protocol.toml)
CLAIM_A_LEVEL = float(PROTOCOL.claim("erf_a")["level"])  # a one-sided test at 5%: the 90% interval's lower end
CLAIM_A_RULE = (
    f"per level: reproduced where the whole {CLAIM_A_LEVEL:.0%} CI of the LW/RF 90%-mass side ratio is at or above "
    f"{NON_INFERIORITY_MARGIN} (no smaller: a larger LW field reproduces it), not reproduced where it is wholly below "
    f"{NON_INFERIORITY_MARGIN}, inconclusive otherwise; not testable where both fields are within one cell of the "
    "level's grid (the grid cannot resolve them)")
CLAIM_B_RULE = ("per family and level: reproduced where the whole 95% CI of the side of CRP's own 90%-mass square "
                "(interpolated, in cells) is above 1 cell, not reproduced where it is wholly at or below 1 cell (CRP "
                "keeps 90% of its information on the unit's own cell), inconclusive otherwise")
SUB_CELL = float(PROTOCOL.claim("erf_b")["bound"])
"""A field whose 90%-mass side is at most this many cells sits on the unit's own cell: below the grid's resolution."""
DEAD = 0.01
"""A decoder level whose summation ReLU is positive on under this share of outputs is dead: it passes nothing on
(the ERF claims here and the probe claim (c) both call it not testable)."""
DEAD_RULE = ("not testable where the level is dead in a trained network (its summation ReLU positive on under 1% of "
             "the ERF images' outputs: nothing passes through it)")


def level_activity(model, images: torch.Tensor, batch_size: int = 8) -> dict[str, float]:
    """Per decoder level of a zoo model: the share of positive outputs of the ReLU after the level's summation
    (tap ``levelN.after_sum``) on ``images``; a level under ``DEAD`` passes nothing on."""
    from .taps import tap_features

    levels = list(model.decoder.level_names)
    features = tap_features(model, [f"{lvl}.after_sum" for lvl in levels])
    positive = dict.fromkeys(levels, 0)
    total = dict.fromkeys(levels, 0)
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            out = features(images[start : start + batch_size])
            for lvl in levels:
                x = out[f"{lvl}.after_sum"]
                positive[lvl] += int((x > 0).sum())
                total[lvl] += x.numel()
    return {lvl: positive[lvl] / max(1, total[lvl]) for lvl in levels}


def _dead(activity: dict[str, dict[str, float]] | None, family: str, level: str) -> bool:
    return activity is not None and activity.get(family, {}).get(level, 1.0) < DEAD


Grids = Mapping[str, DecoderGrid]
"""family -> decoder-grid ERFs of one trained network per family (one training run, one seed)."""


def _as_runs(value) -> list:
    """One run's value, or a list of them (one per seed), as a list."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _row(grid: DecoderGrid, level: str, block: str) -> pd.Series:
    return grid.frame.set_index(["level", "block"]).loc[(level, block)]


def claim_a(grids: Grids | Sequence[Grids], reference: str = "rf",
            activity: dict[str, dict[str, float]] | Sequence[dict] | None = None) -> pd.DataFrame:
    """Whole-level interpolated 90%-mass square side of each other family over ``reference``'s, per level, with
    a paired 90% CI (the same image resamples for every family) and the verdict (``CLAIM_A_RULE``). The whole-cell
    r90 of both stays beside it. ``activity`` (family -> :func:`level_activity`): a level dead in either network is
    not testable (``DEAD_RULE``). ``grids`` (and ``activity``) may be a list, one per training run (seed): the ratio
    is then the mean of the runs' ratios and its interval a hierarchical bootstrap, runs then images
    (:func:`runs_interval`); a level dead in any run is not testable."""
    runs = _as_runs(grids)
    acts = _as_runs(activity) if activity is not None else [None] * len(runs)
    rows = []
    for family, grid in runs[0].items():
        if family == reference:
            continue
        for level, block in grid.side_boot:
            if block != "whole level":
                continue
            ours = [_row(r[family], level, block) for r in runs]
            theirs = [_row(r[reference], level, block) for r in runs]
            ratio = _mean([o.side90_cells / t.side90_cells for o, t in zip(ours, theirs, strict=True)])
            low, high = runs_interval([o.side90_cells / t.side90_cells for o, t in zip(ours, theirs, strict=True)],
                                      torch.stack([r[family].side_boot[(level, block)].double() /
                                                   r[reference].side_boot[(level, block)].double() for r in runs]),
                                      CLAIM_A_LEVEL)
            side, ref_side = _mean([o.side90_cells for o in ours]), _mean([t.side90_cells for t in theirs])
            dead = sorted({f for f in (family, reference) for act in acts if _dead(act, f, level)})
            if dead:
                outcome, why = NOT_TESTABLE, f"dead level ({', '.join(dead)}): nothing passes through it"
            elif side <= SUB_CELL and ref_side <= SUB_CELL:
                outcome, why = NOT_TESTABLE, (f"both fields within one cell (sides {side:.2f} and "
                                              f"{ref_side:.2f}): the grid cannot resolve them; a larger "
                                              "input gives the level more cells")
            else:
                v = above(Interval(ratio, low, high, CLAIM_A_LEVEL), NON_INFERIORITY_MARGIN, "side ratio",
                          strict=False)
                outcome, why = v.outcome, v.why
            rows.append({"family": family, "reference": reference, "level": level,
                         "side90_cells": side, "reference_side90_cells": ref_side,
                         "r90_cells": _mean([o.r90_cells for o in ours]),
                         "reference_r90_cells": _mean([t.r90_cells for t in theirs]),
                         "side_ratio": ratio, "ci_low": low, "ci_high": high, "n_seeds": len(runs),
                         "status": outcome, "why": why})
    return pd.DataFrame(rows)


def claim_b(grids: Grids | Sequence[Grids],
            activity: dict[str, dict[str, float]] | Sequence[dict] | None = None) -> pd.DataFrame:
    """CRP's own decoder-grid 90%-mass side (interpolated, cells) per family and level, with its 95% interval and the
    verdict (``CLAIM_B_RULE``); the whole-cell r90 beside it; a dead level (``activity``) is not testable. Over
    several runs (a list, one per seed): the mean side and the interval over runs and images (:func:`runs_interval`)."""
    runs = _as_runs(grids)
    acts = _as_runs(activity) if activity is not None else [None] * len(runs)
    rows = []
    for family, grid in runs[0].items():
        for level, block in grid.side_boot:
            if block != "CRP":
                continue
            per_run = [_row(r[family], level, block) for r in runs]
            side = _mean([row.side90_cells for row in per_run])
            low, high = runs_interval([row.side90_cells for row in per_run],
                                      torch.stack([r[family].side_boot[(level, block)].double() for r in runs]))
            if any(_dead(act, family, level) for act in acts):
                outcome, why = NOT_TESTABLE, "dead level: nothing passes through it"
            else:
                v = above(Interval(side, low, high), SUB_CELL, "CRP's 90% side (cells)")
                outcome, why = v.outcome, v.why
            rows.append({"family": family, "level": level, "crp_side90_cells": side, "ci_low": low,
                         "ci_high": high, "crp_r90_cells": _mean([row.r90_cells for row in per_run]),
                         "theoretical_cells": per_run[0].theoretical_cells, "n_seeds": len(runs), "status": outcome,
                         "why": why})
    return pd.DataFrame(rows)


def runs_interval(estimates: Sequence[float], samples: torch.Tensor, level: float = 0.95) -> tuple[float, float]:
    """The interval of the mean over training runs (:func:`analysis.verdicts.seeds_and_images`, the image resamples
    shared by every run); for one network, the percentile interval of its image resamples: what that one network
    shows, not a claim about its architecture (the report says so)."""
    if len(estimates) == 1:
        return percentile_interval(samples[0], level)
    x = seeds_and_images(estimates, samples, level, n_images=None)
    return x.low, x.high


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values))
