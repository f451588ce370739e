"""Claims (a) and (b) of the paper, decided from decoder-grid ERFs.

(a) "Dropping 3x3 convolutions does not shrink the empirical receptive field" (Sections 3.2, 5.1, 8):
    per level, the side (in cells, interpolated between whole squares: :func:`analysis.erf.gradient.mass_side`)
    of the square holding 90% of a whole level's decoder-grid ERF, light-weight family over RefineNet, with a
    paired bootstrap interval over the images (whole-cell sides 2r+1 gave one-value intervals). "No
    difference" is an equivalence claim, decided by two one-sided tests (Schuirmann 1987): with the
    margin [0.8, 1.25] stated first, the ratio is *equivalent* (reproduced) where its whole 90% interval
    lies inside the margin, *different* (not reproduced) where it lies wholly outside, and the verdict is
    *inconclusive* otherwise (see ``CLAIM_A_RULE``).
(b) "CRP enlarges the ERF" (Section 5.1, Figure 3): per family and level, CRP's own decoder-grid ERF.
    *Reproduced* where the 90%-mass square of CRP's ERF is wider than one cell with its whole interval
    (r90 >= 1: CRP moves information between cells), *not reproduced* where the whole interval stays on
    one cell (r90 < 1), *inconclusive* otherwise (see ``CLAIM_B_RULE``).

The report decides both on trained networks (:mod:`analysis.networks`), with the random-initialisation
result beside it as what the architecture alone gives: at random init (b) holds by construction (any
chain of 5x5 max-pools spreads a unit's gradient over 4k+1 cells).
"""

from __future__ import annotations

import pandas as pd
import torch

from bench.stats import percentile_interval

from .decoder_grid import DecoderGrid

EQUIVALENCE_MARGIN = (0.8, 1.25)  # LW/RF side ratio: stated before looking at the data, as in bioequivalence
EQUIVALENCE_LEVEL = 0.90  # two one-sided tests at 5% each: the 90% interval
CLAIM_A_RULE = (f"equivalent (reproduced) where the whole {EQUIVALENCE_LEVEL:.0%} CI of the LW/RF side ratio lies in "
                f"[{EQUIVALENCE_MARGIN[0]}, {EQUIVALENCE_MARGIN[1]}]; different (not reproduced) where it lies wholly "
                "outside; inconclusive otherwise")
CLAIM_B_RULE = ("reproduced where the whole 95% CI of CRP's own decoder-grid r90 is >= 1 cell; not reproduced where "
                "it is wholly below 1 cell (CRP keeps information on its cell); inconclusive otherwise")
VERDICT_STATUS = {"equivalent": "reproduced", "different": "not reproduced", "inconclusive": "inconclusive"}
DEAD = 0.01
"""A decoder level whose summation ReLU is positive on under this share of outputs is dead: it passes nothing on
(the ERF claims here and the probe claim (c) both call it not testable)."""
DEAD_RULE = ("not testable where the level is dead in a trained network (its summation ReLU positive on under 1% of "
             "the ERF images' outputs: nothing passes through it)")


def level_activity(model, images: torch.Tensor, batch_size: int = 8) -> dict[str, float]:
    """Per decoder level of a zoo model: the share of positive outputs of the ReLU after the level's summation
    (tap ``levelN.after_sum``) on ``images``; a level under ``DEAD`` passes nothing on."""
    from .gradient import tap_features

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


def equivalence_verdict(low: float, high: float, margin: tuple[float, float] = EQUIVALENCE_MARGIN) -> str:
    """Two one-sided tests on an interval: "equivalent", "different" or "inconclusive" (``CLAIM_A_RULE``)."""
    if margin[0] <= low and high <= margin[1]:
        return "equivalent"
    if high < margin[0] or low > margin[1]:
        return "different"
    return "inconclusive"


def claim_a(grids: dict[str, DecoderGrid], reference: str = "rf",
            activity: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
    """Whole-level interpolated 90%-mass square side of each other family over ``reference``'s, per level, with
    a paired 90% CI (the same image resamples for every family) and the equivalence verdict (``CLAIM_A_RULE``).
    The whole-cell r90 of both stays beside it. ``activity`` (family -> :func:`level_activity`): a level dead in
    either network is not testable (``DEAD_RULE``)."""
    base = grids[reference]
    ref_frame = base.frame.set_index(["level", "block"])
    rows = []
    for family, grid in grids.items():
        if family == reference:
            continue
        frame = grid.frame.set_index(["level", "block"])
        for (level, block), sides in grid.side_boot.items():
            if block != "whole level":
                continue
            ratio_samples = sides.double() / base.side_boot[(level, block)].double()
            ours, theirs = frame.loc[(level, block)], ref_frame.loc[(level, block)]
            low, high = percentile_interval(ratio_samples, EQUIVALENCE_LEVEL)
            verdict = equivalence_verdict(low, high)
            dead = [f for f in (family, reference) if _dead(activity, f, level)]
            status = "not testable" if dead else VERDICT_STATUS[verdict]
            rows.append({"family": family, "reference": reference, "level": level,
                         "side90_cells": ours.side90_cells, "reference_side90_cells": theirs.side90_cells,
                         "r90_cells": ours.r90_cells, "reference_r90_cells": theirs.r90_cells,
                         "side_ratio": ours.side90_cells / theirs.side90_cells, "ci_low": low, "ci_high": high,
                         "verdict": f"dead level ({', '.join(dead)})" if dead else verdict, "status": status})
    return pd.DataFrame(rows)


def claim_b(grids: dict[str, DecoderGrid], activity: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
    """CRP's own decoder-grid r90 per family and level, with its interval; a dead level (``activity``, as in
    :func:`claim_a`) is not testable."""
    rows = []
    for family, grid in grids.items():
        frame = grid.frame.set_index(["level", "block"])
        for (level, block), samples in grid.boot.items():
            if block != "CRP":
                continue
            low, high = percentile_interval(samples[0.9])
            r90 = frame.loc[(level, block), "r90_cells"]
            status = "reproduced" if low >= 1 else ("not reproduced" if high < 1 else "inconclusive")
            if _dead(activity, family, level):
                status = "not testable"
            rows.append({"family": family, "level": level, "crp_r90_cells": r90, "ci_low": low, "ci_high": high,
                         "theoretical_cells": frame.loc[(level, block), "theoretical_cells"], "status": status})
    return pd.DataFrame(rows)
