"""What the paper claims the decoders buy in accuracy, decided over training runs (seeds), not images.

Every mIoU here is the reported one (``TrainedNetwork.reported_miou``): the kept weights, picked on val, scored on
the data's held-out test split (on val where the data have none).

- **LW keeps RF's accuracy** (Section 4, aim i; Tables 2-3): mIoU of the light-weight network minus the
  original's, seed by seed (the same seed: the same data order and crops, common random numbers), with a t
  interval over the per-seed differences. Non-inferiority with the margin ``ACCURACY_MARGIN`` (2 points, stated
  first): the paper's own LW-vs-RF differences are 0 to 0.9 points at single scale and at most 2.1 against
  RefineNet-152's multi-scale figures (NYUDv2 41.7/43.6/44.4 vs 42.5/43.6/46.5; Person-Part 64.9/66.7/67.6 vs
  65.7/67.6/68.8; VOC test 82.0 vs 82.4).
- **RCUs saturate in the light-weight network** (Section 3.3: "the weights in RCU blocks almost completely
  saturated"): each RCU's *branch share*, ||branch(x)|| / (||x|| + ||branch(x)||) per image (0: the RCU passes
  its input unchanged), averaged over a network's RCUs; the claim: smaller in LW-with-RCU than in the original,
  seed by seed. The same number reports how far each residual branch left its zero initialisation in training
  (the recipe zero-inits the last conv of every residual branch), the check issue #32 asks for on claim (c).

- **RCUs matter in the original, not in LW** (Section 3.3: dropping the RCUs of the original costs "more than 5%";
  dropping them from the light-weight network costs nothing): two cells, seed by seed with t intervals: the original
  minus the original without RCUs (``RF_WITHOUT_RCU``) wholly above +``ACCURACY_MARGIN`` points, and LW-with-RCU
  minus LW within +-``ACCURACY_MARGIN`` (equivalent, TOST-style). Both cells must hold.

With one seed there is no interval over training runs: both claims are then *inconclusive (one training run)*,
whatever the images say; a claim about an architecture rests on several runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from bench.models.blocks import BottleneckRCU, ResidualConvUnit

from ..verdicts import Interval, Verdict, above, below, seed_interval

ACCURACY_MARGIN = 2.0  # mIoU points: LW may be at most this much below RF
ACCURACY_RULE = (f"LW minus RF mIoU (held-out test split; val where none), seed by seed (same seed: same data order "
                 f"and crops), 95% t interval over the seeds: reproduced where it is wholly at or above "
                 f"-{ACCURACY_MARGIN:g} points (the paper's own LW-vs-RF gaps are 0-0.9 points at single scale, at "
                 "most 2.1 against multi-scale), not reproduced "
                 f"where wholly below -{ACCURACY_MARGIN:g}, inconclusive otherwise or with one training run")
SATURATION_RULE = ("mean RCU branch share ||branch(x)|| / (||x|| + ||branch(x)||) on val images, LW-with-RCU minus the "
                   "original, seed by seed, 95% t interval over the seeds: reproduced where wholly below 0 (LW's RCUs "
                   "change their input less), not reproduced where wholly at or above 0, inconclusive otherwise or "
                   "with one training run. Caveat: the recipe zero-inits the last conv of every residual branch, so a "
                   "share near 0 can be the init's doing rather than the architecture's: the init-check section (with "
                   "--seeds) decides the same claim under a standard init")


@torch.no_grad()
def rcu_branch_shares(model: nn.Module, images: torch.Tensor, batch_size: int = 16) -> pd.DataFrame:
    """One row per RCU of ``model``: its name, level and branch share (mean over ``images``, eval mode)."""
    rcus = {name: m for name, m in model.named_modules() if isinstance(m, (ResidualConvUnit, BottleneckRCU))}
    sums = dict.fromkeys(rcus, 0.0)
    hooks = []

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0].float().flatten(1)
            branch = (output.float().flatten(1) - x).norm(dim=1)
            share = branch / (x.norm(dim=1) + branch).clamp_min(1e-12)
            sums[name] += float(share.sum())
        return record

    model = model.eval()
    device = next(model.parameters()).device
    try:
        hooks = [m.register_forward_hook(hook(name)) for name, m in rcus.items()]
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size].to(device))
    finally:
        for h in hooks:
            h.remove()
    return pd.DataFrame([{"rcu": name, "level": next((p for p in name.split(".") if p.startswith("level")), ""),
                          "branch_share": sums[name] / max(1, len(images))} for name in rcus])


def accuracy_verdict(miou: Mapping[str, Mapping[int, float]], light: str = "rf_lw", original: str = "rf"
                     ) -> tuple[Interval, Verdict, int]:
    """``miou``: family -> seed -> reported mIoU (fraction). The per-seed difference light - original in points,
    its interval over the seeds, the verdict (``ACCURACY_RULE``) and how many seeds it rests on."""
    seeds = sorted(set(miou.get(light, {})) & set(miou.get(original, {})))
    diffs = [100 * (miou[light][s] - miou[original][s]) for s in seeds]
    x = seed_interval(diffs)
    v = above(x, -ACCURACY_MARGIN, f"{light} - {original} (points)", ".1f", strict=False)
    return x, _one_run(v, len(seeds)), len(seeds)


def shares_by_seed(shares: pd.DataFrame) -> dict[str, dict[int, float]]:
    """Family -> seed -> mean branch share over that network's RCUs (rows of :func:`rcu_branch_shares` with
    ``family`` and ``seed``): what :func:`saturation_verdict` compares."""
    mean = shares.groupby(["family", "seed"])["branch_share"].mean()
    return {f: {int(s): float(v) for (ff, s), v in mean.items() if ff == f} for f in mean.index.get_level_values(0)}


def saturation_verdict(shares: Mapping[str, Mapping[int, float]], light: str = "rf_lw_rcu", original: str = "rf"
                       ) -> tuple[Interval, Verdict, int]:
    """``shares``: family -> seed -> mean RCU branch share. As :func:`accuracy_verdict`, by ``SATURATION_RULE``."""
    seeds = sorted(set(shares.get(light, {})) & set(shares.get(original, {})))
    diffs = [shares[light][s] - shares[original][s] for s in seeds]
    x = seed_interval(diffs)
    v = below(x, 0.0, f"{light} - {original} branch share", ".3f", strict=True)
    return x, _one_run(v, len(seeds)), len(seeds)


RF_WITHOUT_RCU = {"rcu_in": 0, "rcu_out": 0}
"""The original RefineNet with every RCU removed (its 3x3 fusion and CRP convolutions kept): Section 3.3's
ablation."""
RCU_MATTERS_RULE = (f"two cells, each seed by seed (same seed: same data order and crops) with a 95% t interval over "
                    "the seeds: the original minus the original without RCUs must lie wholly above "
                    f"+{ACCURACY_MARGIN:g} points (the paper: 'more than 5%' lost), and LW-with-RCU minus LW wholly "
                    f"within +-{ACCURACY_MARGIN:g} points (the paper: no loss); reproduced where both cells are, not "
                    "reproduced where one is wholly outside its region, inconclusive otherwise or with one training "
                    "run")


def rcu_matters_verdict(miou: Mapping[str, Mapping[int, float]], without_rcu: Mapping[int, float]
                        ) -> tuple[list[tuple[str, Interval, Verdict, int]], Verdict]:
    """``miou``: family -> seed -> reported mIoU (fraction); ``without_rcu``: seed -> that of the original without
    RCUs. The two cells (name, interval in points, verdict, seeds) and the claim's verdict (``RCU_MATTERS_RULE``)."""
    from ..verdicts import tally, within

    original = miou.get("rf", {})
    seeds = sorted(set(original) & set(without_rcu))
    rf_x = seed_interval([100 * (original[s] - without_rcu[s]) for s in seeds])
    rf_v = _one_run(above(rf_x, ACCURACY_MARGIN, "RF - RF without RCU (points)", ".1f"), len(seeds))
    with_rcu, light = miou.get("rf_lw_rcu", {}), miou.get("rf_lw", {})
    lw_seeds = sorted(set(with_rcu) & set(light))
    lw_x = seed_interval([100 * (with_rcu[s] - light[s]) for s in lw_seeds])
    lw_v = _one_run(within(lw_x, -ACCURACY_MARGIN, ACCURACY_MARGIN, "LW with RCU - LW (points)", ".1f"),
                    len(lw_seeds))
    cells = [("in the original: RF - RF without RCU (points)", rf_x, rf_v, len(seeds)),
             ("in LW: LW with RCU - LW (points)", lw_x, lw_v, len(lw_seeds))]
    names = [c[0].split(":")[0] for c in cells]
    overall = tally([c[2].outcome for c in cells], "Section 3.3", "cells",
                    [n for n, c in zip(names, cells, strict=True) if c[2].outcome != "reproduced"])
    why = "; ".join(f"{c[0].split(':')[0]}: {c[2].outcome} ({c[2].why})" for c in cells)
    return cells, Verdict(overall.outcome, why)


def _one_run(v: Verdict, n_seeds: int) -> Verdict:
    if n_seeds < 2:
        return Verdict("inconclusive", f"{v.why.split(':')[0]}: one training run, no interval over runs "
                                       "(needs >= 2 seeds; 3 or more to decide)")
    return v


def mean_or_nan(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


# --- controls: can this task tell architectures apart? ----------------------------------------------------------
HARMFUL_CHANGE = {"refine_levels": 1}
"""LW refining its coarsest level alone: logits at stride 32 upsampled, the refinement path (levels 3-1 and their
skip inputs) removed, as FCN-32s. Harmful by construction on any task whose objects or boundaries are finer than
32 px, whatever the recipe: RefineNet exists to recover what this decoder loses. (Until 2026-12-05 the control was
LW without CRP, 1x1 convolutions only; on the generated shapes that change costs about one point, which says what
CRP buys there, not whether the task can show a harmful change: README, "How the named settings were chosen".)"""
HARMFUL_LABEL = "LW - LW on the coarsest level alone (points)"
AA_RULE = (f"A/A control: LW trained on two disjoint seed sets (0..n-1 and n..2n-1); passes where the Welch 95% "
           f"interval of the difference of their mean mIoU (held-out test split) lies within +-{ACCURACY_MARGIN:g} "
           "points (equivalent), fails where wholly outside, inconclusive otherwise")
HARMFUL_RULE = (
    "harmful-change control: LW minus LW refining its coarsest level alone (logits at stride 32, no refinement "
    f"path, as FCN-32s), seed by seed, 95% t interval; passes "
    f"where wholly above +{ACCURACY_MARGIN:g} points (the task shows a real loss), fails where wholly at or below "
    f"+{ACCURACY_MARGIN:g}, inconclusive otherwise")


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """mean(a) - mean(b) with Welch's t interval (unequal variances): two independent sets of training runs."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return Interval(mean_or_nan(a) - mean_or_nan(b), math.nan, math.nan, level)
    ma, mb = mean_or_nan(a), mean_or_nan(b)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1) / len(a)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(ma - mb, ma - mb, ma - mb, level)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return Interval(ma - mb, ma - mb - half, ma - mb + half, level)


def aa_control(first: Sequence[float], second: Sequence[float]) -> tuple[Interval, Verdict]:
    """``first``, ``second``: reported mIoU (fractions) of one variant on two disjoint seed sets (``AA_RULE``)."""
    from ..verdicts import within

    x = welch_interval([100 * v for v in first], [100 * v for v in second])
    return x, within(x, -ACCURACY_MARGIN, ACCURACY_MARGIN, "A/A difference (points)", ".1f")


def harmful_control(full: Mapping[int, float], harmful: Mapping[int, float]) -> tuple[Interval, Verdict, int]:
    """Seed -> reported mIoU of LW and of LW with :data:`HARMFUL_CHANGE` (``HARMFUL_RULE``)."""
    seeds = sorted(set(full) & set(harmful))
    x = seed_interval([100 * (full[s] - harmful[s]) for s in seeds])
    return x, above(x, ACCURACY_MARGIN, HARMFUL_LABEL, ".1f"), len(seeds)


def gated(verdict: Verdict, controls: Mapping[str, Verdict]) -> Verdict:
    """An accuracy verdict stands only where every control passed; else the task cannot tell architectures apart,
    and the verdict is *not testable here*, with the failing control named."""
    from ..verdicts import NOT_TESTABLE, REPRODUCED

    failed = {name: v for name, v in controls.items() if v.outcome != REPRODUCED}
    if not failed:
        return verdict
    words = "; ".join(f"{name} control {v.outcome}: {v.why}" for name, v in failed.items())
    return Verdict(NOT_TESTABLE, f"the task cannot tell architectures apart here ({words}); measured: {verdict.why}")
