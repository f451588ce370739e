"""What the paper claims the decoders buy in accuracy, decided over training runs and the images they share, by the
registered protocol (``analysis/protocol.toml``; :data:`analysis.protocol.PROTOCOL`).

Every comparison pairs two arms seed by seed (the same seed: the same data order, crops and starting backbone) and
scores both on the same images (the held-out test split; val where the data have none). Its effect is the **error
ratio**, (100 - mIoU of the changed arm) / (100 - mIoU of the reference), read on its logarithm: a ceiling does not
compress it, and the paper's gaps convert to it from the paper's own accuracy levels (the protocol's margins). Its
interval covers the training runs and the images (:func:`analysis.verdicts.seeds_and_images`, the image resamples
common to every network); the change in points stands beside it. A verdict that its interval leaves undecided while
the design could not have detected an effect of the claim's size (its minimum detectable effect, from the measured
spread, above the bound) reads *not testable here* with the number of seeds it would need.

- **LW keeps RF's accuracy** (Tables 2-3): LW / RF, non-inferiority: wholly at or below the accuracy margin.
- **Section 3.3, the original loses accuracy without its RCUs**: RF without RCUs / RF wholly above the paper's drop.
- **Section 3.3, LW loses nothing without its RCUs**: LW / LW with RCU, equivalent within the margin.
- **Section 3.3, RCUs saturate in LW, not in RF**: the growth of each network's mean RCU branch share in training
  (after / at initialisation, live inputs only): at or below 1 in LW with RCU, above 1 in RF; both halves must hold.
- **Controls**, which decide whether the task and pipeline can tell architectures apart at the margin: A/A (LW on
  seeds n..2n-1 against LW on 0..n-1, paired, must be equivalent), a calibrated small harm (LW trained on partly
  mislabelled data, must be not equivalent) and a gross harm as a sanity floor (LW refining its coarsest level
  alone). A claim stands only where every control passes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from ..protocol import PROTOCOL
from ..verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_TESTABLE,
    REPRODUCED,
    Interval,
    Verdict,
    detectable_effect,
    runs_needed,
    seeds_and_images,
    tally,
)
from .branches import rcu_branch_shares

RESAMPLE_SEED = 0
"""The seed of the image resamples every network scored on one split shares (the comparisons stay paired)."""
TINY_ERROR = 1e-6
"""An error rate below this (mIoU of 100%) is taken as this: a ratio needs a non-zero reference."""


def image_resamples(n_images: int) -> torch.Tensor:
    """(B, n_images) image indices drawn with replacement, B = the protocol's ``image_resamples``; the same draw for
    every network scored on a split of this size."""
    from bench.stats import resample_indices

    return resample_indices(n_images, PROTOCOL.image_resamples, RESAMPLE_SEED)


def miou_draws(per_image: torch.Tensor, indices: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The mIoU (fraction) of (N, K, K) per-image confusion matrices on the whole split and on each resample."""
    from ..metrics import iou_per_class

    whole = float(torch.nanmean(iou_per_class(per_image.sum(0))))
    drawn = torch.nanmean(iou_per_class(per_image[indices].sum(1)), dim=1)
    return whole, drawn.double()


@dataclass(frozen=True)
class Effect:
    """One comparison over paired training runs: the log error ratio changed / reference and the change in mIoU
    points, each with its interval over runs and images, and the pairs of seeds it rests on."""

    log_ratio: Interval
    points: Interval
    pairs: tuple[tuple[int, int], ...]

    @property
    def n_seeds(self) -> int:
        return len(self.pairs)

    @property
    def ratio(self) -> float:
        return math.exp(self.log_ratio.estimate)

    def ratio_words(self) -> str:
        return ratio_words(self.log_ratio)

    def points_words(self) -> str:
        x = self.points
        if x.missing:
            return f"{x.estimate:+.1f} points (no interval)"
        return f"{x.estimate:+.1f} ({x.low:+.1f} to {x.high:+.1f}) points"

    def detectable(self) -> float:
        """The minimum detectable effect as an error ratio (the protocol's level and power; NaN with one run)."""
        spread = self.log_ratio.spread
        return math.exp(detectable_effect(spread, PROTOCOL.level, PROTOCOL.power)) if spread else math.nan


def ratio_words(x: Interval) -> str:
    if x.missing:
        return f"x{math.exp(x.estimate):.3f} (no interval)" if x.estimate == x.estimate else "no runs"
    return f"x{math.exp(x.estimate):.3f} (x{math.exp(x.low):.3f} to x{math.exp(x.high):.3f})"


def effect(reference: Mapping[int, torch.Tensor], changed: Mapping[int, torch.Tensor],
           pairs: Sequence[tuple[int, int]] | None = None) -> Effect:
    """``reference`` and ``changed``: seed -> (N, K, K) per-image confusion matrices on one split. ``pairs``: which
    reference seed goes with which changed seed (default: the common seeds, each with itself)."""
    if pairs is None:
        pairs = [(s, s) for s in sorted(set(reference) & set(changed))]
    pairs = tuple((a, b) for a, b in pairs if a in reference and b in changed)
    if not pairs:
        nan = Interval(math.nan, math.nan, math.nan, PROTOCOL.level)
        return Effect(nan, nan, ())
    n_images = len(reference[pairs[0][0]])
    indices = image_resamples(n_images)
    logs, log_draws, points, point_draws = [], [], [], []
    for a, b in pairs:
        r, r_drawn = miou_draws(reference[a], indices)
        c, c_drawn = miou_draws(changed[b], indices)
        logs.append(math.log(max(1 - c, TINY_ERROR) / max(1 - r, TINY_ERROR)))
        log_draws.append(torch.log((1 - c_drawn).clamp_min(TINY_ERROR) / (1 - r_drawn).clamp_min(TINY_ERROR)))
        points.append(100 * (c - r))
        point_draws.append(100 * (c_drawn - r_drawn))
    level = PROTOCOL.level
    return Effect(seeds_and_images(logs, torch.stack(log_draws), level, n_images=n_images),
                  seeds_and_images(points, torch.stack(point_draws), level, n_images=n_images), pairs)


def decide(x: Interval, rule: str, bound: float, noun: str, fmt=ratio_words) -> Verdict:
    """A rule of the protocol on an interval of a log ratio against ``bound`` (a ratio above 1):

    - ``non-inferiority``: reproduced where wholly at or below the bound, not reproduced where wholly above it;
    - ``above``: reproduced where wholly above, not reproduced where wholly at or below;
    - ``equivalence``: reproduced where wholly within [1 / bound, bound], not reproduced where wholly outside;
    - ``not equivalent`` (a harm control): reproduced (the harm is seen) where wholly above the bound, not reproduced
      where wholly within [1 / bound, bound] (the harm looks harmless), inconclusive otherwise.

    With one run there is no interval: inconclusive. Where the interval leaves the rule undecided and the minimum
    detectable effect (the protocol's power) exceeds the bound: not testable here, with the seeds it would need."""
    edge = math.log(bound)
    words = f"{noun} {fmt(x)}"
    if x.missing:
        return Verdict(INCONCLUSIVE, f"{words}: one training run, no interval over runs (needs >= 2 seeds; "
                                     f"{PROTOCOL.seeds} or more to decide)")
    inside_band = -edge <= x.low and x.high <= edge
    outside_band = x.high < -edge or x.low > edge
    if rule == "non-inferiority":
        outcome = REPRODUCED if x.high <= edge else NOT_REPRODUCED if x.low > edge else INCONCLUSIVE
        region = f"at or below x{bound:.3f}"
    elif rule == "above":
        outcome = REPRODUCED if x.low > edge else NOT_REPRODUCED if x.high <= edge else INCONCLUSIVE
        region = f"above x{bound:.3f}"
    elif rule == "equivalence":
        outcome = REPRODUCED if inside_band else NOT_REPRODUCED if outside_band else INCONCLUSIVE
        region = f"within x{1 / bound:.3f} to x{bound:.3f}"
    elif rule == "not equivalent":
        outcome = REPRODUCED if x.low > edge else NOT_REPRODUCED if inside_band else INCONCLUSIVE
        region = f"above x{bound:.3f} (not equivalent)"
    else:
        raise ValueError(f"unknown rule {rule!r}")
    if outcome == REPRODUCED:
        return Verdict(REPRODUCED, f"{words}: wholly {region}")
    if outcome == NOT_REPRODUCED:
        return Verdict(NOT_REPRODUCED, f"{words}: wholly outside {region}")
    spread = x.spread
    if spread is not None and detectable_effect(spread, PROTOCOL.level, PROTOCOL.power) > edge:
        needed = runs_needed(spread, edge, PROTOCOL.level, PROTOCOL.power)
        need = (f"needs {needed} seeds" if needed else "more seeds cannot reach it: needs more test images")
        mde = math.exp(detectable_effect(spread, PROTOCOL.level, PROTOCOL.power))
        return Verdict(NOT_TESTABLE, f"{words}: undecided, and {spread.runs} seeds detect only effects beyond "
                                     f"x{mde:.3f} (the bound: x{bound:.3f}): {need}")
    return Verdict(INCONCLUSIVE, f"{words}: the interval crosses the edge of {region}")


def claim_verdict(key: str, e: Effect, noun: str) -> Verdict:
    """One effect decided by the protocol's claim (or control) ``key``."""
    table = PROTOCOL.raw["claims"].get(key) or PROTOCOL.control(key)
    return decide(e.log_ratio, table["rule"], PROTOCOL.bound(table), noun)


def rule_words(key: str) -> str:
    """A claim's or control's rule in words, from the protocol."""
    table = PROTOCOL.raw["claims"].get(key) or PROTOCOL.control(key)
    bound = PROTOCOL.bound(table) if "bound" in table else math.nan
    regions = {"non-inferiority": f"wholly at or below x{bound:.3f}", "above": f"wholly above x{bound:.3f}",
               "equivalence": f"wholly within x{1 / bound:.3f} to x{bound:.3f}",
               "not equivalent": f"wholly above x{bound:.3f} (and not reproduced where wholly within "
                                 f"x{1 / bound:.3f} to x{bound:.3f})"}
    return (f"{table['effect'] if 'effect' in table else 'error ratio'}, paired seed by seed on the reported split's "
            f"images, {PROTOCOL.level:.0%} interval over runs and images: reproduced where {regions[table['rule']]}, "
            "not reproduced where wholly on the other side, inconclusive otherwise (not testable here where the "
            f"minimum detectable effect at {PROTOCOL.power:.0%} power exceeds the bound); {PROTOCOL.stamp}")


# --- the claims --------------------------------------------------------------------------------------------------
Scores = Mapping[str, Mapping[int, torch.Tensor]]
"""arm -> seed -> (N, K, K) per-image confusion matrices on the reported split."""


def lw_keeps_rf(scores: Scores) -> tuple[Effect, Verdict]:
    e = effect(scores.get("rf", {}), scores.get("rf_lw", {}))
    return e, claim_verdict("lw_keeps_rf", e, "LW / RF error ratio")


def rcu_matters(scores: Scores, without_rcu: Mapping[int, torch.Tensor]
                ) -> tuple[list[tuple[str, Effect, Verdict]], Verdict]:
    """Section 3.3's two cells: (name, effect, verdict) each, and the claim's verdict (both must hold)."""
    rf = effect(scores.get("rf", {}), without_rcu)
    lw = effect(scores.get("rf_lw_rcu", {}), scores.get("rf_lw", {}))
    cells = [("in the original: RF without RCUs / RF", rf,
              claim_verdict("rcu_matter_in_rf", rf, "RF without RCUs / RF error ratio")),
             ("in LW: LW / LW with RCU", lw, claim_verdict("rcu_idle_in_lw", lw, "LW / LW with RCU error ratio"))]
    overall = tally([c[2].outcome for c in cells], "Section 3.3", "cells",
                    [c[0].split(":")[0] for c in cells if c[2].outcome == NOT_REPRODUCED])
    why = "; ".join(f"{c[0].split(':')[0]}: {c[2].outcome} ({c[2].why})" for c in cells)
    return cells, Verdict(overall.outcome, why)


def aa_control(scores: Scores, second: Mapping[int, torch.Tensor]) -> tuple[Effect, Verdict]:
    """LW on seeds n..2n-1 (``second``) against LW on seeds 0..n-1, paired in order (seed s with s + n)."""
    first = scores.get("rf_lw", {})
    pairs = list(zip(sorted(first), sorted(second), strict=False))
    e = effect(first, second, pairs)
    return e, claim_verdict("aa", e, "A/A error ratio")


def harm_control(key: str, scores: Scores, harmed: Mapping[int, torch.Tensor]) -> tuple[Effect, Verdict]:
    """``key``: ``small_harm`` or ``gross_harm``; the harmed LW against LW, seed by seed."""
    e = effect(scores.get("rf_lw", {}), harmed)
    return e, claim_verdict(key, e, "harmed / LW error ratio")


CONTROLS = ("aa", "small_harm", "gross_harm")
HARMFUL_CHANGE = {"refine_levels": 1}
"""The gross harm: LW refining its coarsest level alone (logits at stride 32, no refinement path, as FCN-32s):
harmful by construction wherever objects or boundaries are finer than 32 px; a sanity floor, not a calibration."""
RF_WITHOUT_RCU = {"rcu_in": 0, "rcu_out": 0}
"""The original RefineNet with every RCU removed (its 3x3 fusion and CRP convolutions kept): Section 3.3's ablation."""


def small_harm_schedule_changes() -> dict:
    """The small harm as a change of the recipe: the protocol's share of training labels mislabelled."""
    return {"label_noise": float(PROTOCOL.control("small_harm")["label_noise"])}


def gated(verdict: Verdict, controls: Mapping[str, Verdict]) -> Verdict:
    """A claim stands only where every control passed (reproduced); else the task cannot tell architectures apart at
    the margin, and the claim is *not testable here*, naming the controls that did not pass."""
    failed = {name: v for name, v in controls.items() if v.outcome != REPRODUCED}
    if not failed:
        return verdict
    words = "; ".join(f"{name} control {v.outcome}: {v.why}" for name, v in failed.items())
    return Verdict(NOT_TESTABLE, f"the task cannot tell architectures apart at the margin here ({words}); measured: "
                                 f"{verdict.why}")


# --- RCU saturation ----------------------------------------------------------------------------------------------
def live_mean_shares(shares: pd.DataFrame, threshold: float | None = None) -> pd.Series:
    """Per image: the mean branch share over the RCUs whose input is live on it (``input_positive`` at or above the
    protocol's ``live_input``); NaN where none is."""
    threshold = PROTOCOL.claim("rcu_saturation")["live_input"] if threshold is None else threshold
    live = shares[shares.input_positive >= threshold]
    return live.groupby("image")["branch_share"].mean().reindex(sorted(shares.image.unique()))


ZERO_SHARE = 1e-6
"""A mean branch share at initialisation below this is a branch that starts at zero: no growth can be measured."""


def share_growth(trained: pd.DataFrame, at_init: pd.DataFrame) -> tuple[float, torch.Tensor, float, float]:
    """log(mean live branch share after training / at initialisation) on the same images, and on each image
    resample (the protocol's draw): what training did to the RCUs' contribution; then the two means themselves. An
    RCU counts on an image where its input is live after training."""
    threshold = PROTOCOL.claim("rcu_saturation")["live_input"]
    keys = ["rcu", "image"]
    merged = trained.merge(at_init[keys + ["branch_share"]], on=keys, suffixes=("", "_init"))
    live = merged[merged.input_positive >= threshold]
    if not len(live):
        return math.nan, torch.full((PROTOCOL.image_resamples,), math.nan, dtype=torch.float64), math.nan, math.nan
    per_image = live.groupby("image")[["branch_share", "branch_share_init"]].mean()
    after = torch.tensor(per_image.branch_share.to_numpy(), dtype=torch.float64)
    before = torch.tensor(per_image.branch_share_init.to_numpy(), dtype=torch.float64)
    if float(before.mean()) < ZERO_SHARE:  # branches that start at zero (the zero-init): growth is undefined
        return math.nan, torch.full((PROTOCOL.image_resamples,), math.nan, dtype=torch.float64), \
            float(after.mean()), float(before.mean())
    indices = image_resamples(len(after))
    whole = math.log(float(after.mean()) / max(float(before.mean()), 1e-12))
    drawn = torch.log(after[indices].mean(1) / before[indices].mean(1).clamp_min(1e-12))
    return whole, drawn, float(after.mean()), float(before.mean())


def saturation(growth: Mapping[str, Mapping[int, tuple[float, torch.Tensor]]]
               ) -> tuple[dict[str, Interval], list[tuple[str, Verdict]], Verdict]:
    """``growth``: family -> seed -> :func:`share_growth`. The two halves: LW with RCU's growth wholly at or below 1
    (saturated: training did not make its RCUs contribute more), RF's wholly above 1; both must hold."""
    intervals, cells = {}, []
    for family, rule, noun in (("rf_lw_rcu", "non-inferiority", "in LW with RCU"), ("rf", "above", "in RF")):
        runs = growth.get(family, {})
        usable = {s: g for s, g in runs.items() if g[0] == g[0]}
        if not usable:
            x = Interval(math.nan, math.nan, math.nan, PROTOCOL.level)
            v = Verdict(NOT_TESTABLE, f"{noun}: no RCU with a live input, or no branch share at initialisation "
                                      "(the branches start at zero under this init: growth is undefined)")
        else:
            x = seeds_and_images([g[0] for g in usable.values()], torch.stack([g[1] for g in usable.values()]),
                                 PROTOCOL.level, n_images=len(usable[next(iter(usable))][1]))
            v = _growth_verdict(x, rule, f"{noun}: branch share growth")
        intervals[family] = x
        cells.append((noun, v))
    t = tally([v.outcome for _, v in cells], "saturated in LW, not in RF", "halves",
              [n for n, v in cells if v.outcome == NOT_REPRODUCED])
    return intervals, cells, Verdict(t.outcome, "; ".join(v.why for _, v in cells))


def _growth_verdict(x: Interval, rule: str, noun: str) -> Verdict:
    if x.missing:
        return Verdict(INCONCLUSIVE, f"{noun} {ratio_words(x)}: one training run, no interval over runs")
    if rule == "non-inferiority":  # saturated: no growth
        if x.high <= 0:
            return Verdict(REPRODUCED, f"{noun} {ratio_words(x)}: wholly at or below x1 (no growth)")
        if x.low > 0:
            return Verdict(NOT_REPRODUCED, f"{noun} {ratio_words(x)}: wholly above x1 (the branches grew)")
    else:
        if x.low > 0:
            return Verdict(REPRODUCED, f"{noun} {ratio_words(x)}: wholly above x1 (the branches grew)")
        if x.high <= 0:
            return Verdict(NOT_REPRODUCED, f"{noun} {ratio_words(x)}: wholly at or below x1 (no growth)")
    return Verdict(INCONCLUSIVE, f"{noun} {ratio_words(x)}: the interval contains x1")


def network_growth(net, images: torch.Tensor) -> tuple[float, torch.Tensor, float, float]:
    """:func:`share_growth` of a trained network (``analysis.networks.TrainedNetwork``) on the normalised val
    ``images`` its record's shares at initialisation were measured on."""
    at_init = pd.DataFrame(net.record.get("rcu_shares_at_init") or [], columns=["rcu", "image", "branch_share",
                                                                                 "input_positive"])
    if not len(at_init):
        return math.nan, torch.full((PROTOCOL.image_resamples,), math.nan, dtype=torch.float64), math.nan, math.nan
    return share_growth(rcu_branch_shares(net.model, images), at_init)
