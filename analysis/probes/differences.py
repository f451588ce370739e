"""What each block adds to the probes: paired differences between probe points, and claim (c)'s verdict.

For every variant and level: RCU = after RCU - before RCU (families with RCUs); sum = after the summation
with the coarser level and its ReLU - after RCU (- before RCU where there is no RCU; at level 4 the ReLU alone);
CRP = after CRP - after the summation, CRP's own input (until 2026-12-04 CRP was measured from after RCU, so at
levels 3-1 it carried what the top-down summation brings: the bench's LW networks gained 61-66 points at
level 1 that way, 47-53 of them from the summation).
Differences are averaged over training seeds; their
95% interval is the one over training runs and the images they share (:func:`analysis.verdicts.seeds_and_images`;
the same val resamples for every tap, family and seed, so the difference is paired image by image and run by run),
and the seeds' standard deviation is given beside it (NaN with one seed). With one seed the interval covers the
images only (:func:`analysis.erf.claims.runs_interval`), and the verdict tables say so in ``seeds``.
The paper's differences (RefineNet-101 on VOC, level 4 only: RCU =
after RCU - before RCU, CRP = after CRP - after RCU, its ReLU included) sit next to the ``rf`` family's level-4
RCU and CRP rows.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from ..erf.claims import DEAD, runs_interval
from ..paper import paper_numbers
from ..protocol import PROTOCOL
from ..verdicts import NOT_TESTABLE, Interval, above, tally
from .heads import METRICS
from .run import ProbeRun

COMPARISONS = (("RCU", "after_rcu", "before_rcu"), ("sum", "after_sum", "after_rcu"), ("CRP", "after_crp", "after_sum"))
PAPER_COMPARISONS = {"RCU": ("after_rcu", "before_rcu"), "CRP": ("after_crp", "after_rcu")}
"""The paper's Table 4 has no probe between RCU and CRP: its CRP difference starts after RCU (the ReLU included)."""
PAPER_POINTS = {"before RCU": "before_rcu", "after RCU": "after_rcu", "after CRP": "after_crp"}
PAPER_METRICS = {"probe_miou": "miou", "probe_multilabel_acc": "label_accuracy"}


def paper_table4() -> dict[tuple[str, str], float]:
    """The paper's Table 4 as {(point, metric): fraction}, e.g. ("after_crp", "miou") -> 0.5783."""
    out = {}
    for n in paper_numbers():
        if n.source == "Table 4" and n.metric in PAPER_METRICS:
            point = PAPER_POINTS[n.model.split(" probe ")[1]]
            out[(point, PAPER_METRICS[n.metric])] = n.value / 100
    return out




def tap_differences(run: ProbeRun) -> pd.DataFrame:
    """One row per (variant, level, block): metric differences, intervals, seed spread, the paper's."""
    paper = paper_table4()
    frame = run.frame.set_index(["variant", "seed", "tap"])
    rows = []
    for (variant, level), group in run.frame.groupby(["variant", "level"], sort=False):
        drawn: dict[str, tuple[list[float], torch.Tensor]] = {}  # block -> its mIoU difference per seed, and resampled
        seeds = sorted(group.seed.unique())
        family = group.family.iloc[0]
        same = group.set_index("point")["same_as"].groupby(level=0).first()
        for block, after, before in COMPARISONS:
            before = same.get(before) or before  # a tap that is another's tensor (no RCU): the block's real input
            if (same.get(after) or after) == before:
                continue  # no such block here: the two taps are one tensor
            row = {"variant": variant, "family": family, "level": level, "block": block, "after": after,
                   "before": before, "seeds": len(seeds)}
            for metric in METRICS:
                per_seed = [frame.loc[(variant, s, f"{level}.{after}"), metric]
                            - frame.loc[(variant, s, f"{level}.{before}"), metric] for s in seeds]
                row[metric] = sum(per_seed) / len(per_seed)
                row[f"{metric}_seed_sd"] = float(torch.tensor(per_seed).std()) if len(seeds) > 1 else math.nan
                samples = [run.boot.get((variant, s, f"{level}.{after}"), {}).get(metric) for s in seeds]
                bases = [run.boot.get((variant, s, f"{level}.{before}"), {}).get(metric) for s in seeds]
                if all(x is not None for x in samples + bases):
                    diff = torch.stack([a - b for a, b in zip(samples, bases, strict=True)])
                    row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = runs_interval(per_seed, diff)
                    if metric == "miou":
                        drawn[block] = (per_seed, diff)
                paper_after, paper_before = PAPER_COMPARISONS.get(block, (None, None))
                pa, pb = paper.get((paper_after, metric)), paper.get((paper_before, metric))
                is_paper_row = family == "rf" and level == "level4" and pa is not None and pb is not None
                row[f"paper_{metric}"] = pa - pb if is_paper_row else math.nan
            if block == "CRP" and "RCU" in drawn and "CRP" in drawn:
                # claim (c) compares the two gains: their paired difference, from the same resamples and seeds
                rcu = next(r for r in rows if r["variant"] == variant and r["level"] == level and r["block"] == "RCU")
                row["miou_vs_rcu"] = row["miou"] - rcu["miou"]
                (crp, crp_drawn), (rcu_seeds, rcu_drawn) = drawn["CRP"], drawn["RCU"]
                row["miou_vs_rcu_ci_low"], row["miou_vs_rcu_ci_high"] = runs_interval(
                    [a - b for a, b in zip(crp, rcu_seeds, strict=True)], crp_drawn - rcu_drawn)
            rows.append(row)
    return pd.DataFrame(rows)


def learned(run: ProbeRun, margin: float = float(PROTOCOL.claim("claim_c")["learned_margin"])) -> pd.DataFrame:
    """Per variant, seed and level: do the probes beat the trivial baselines (by ``margin``, fractions)?"""
    best = run.frame.groupby(["variant", "seed", "level"], sort=False)[["miou", "label_accuracy"]].max()
    best["miou_gain"] = best["miou"] - run.baselines["miou"]
    best["label_accuracy_gain"] = best["label_accuracy"] - run.baselines["label_accuracy"]
    informative = bool(run.baselines.get("multilabel_informative", 1.0))  # else label accuracy says nothing
    best["learned"] = (best["miou_gain"] >= margin) | (informative & (best["label_accuracy_gain"] >= margin))
    return best.reset_index()


POWER_FACTOR = float(PROTOCOL.task["probe_power"])
POWER_RULE = (
    f"per family: reproduced where the best probe at the coarsest level (level 4, where Table 4 is measured) reaches "
    f"{POWER_FACTOR:g}x the majority-class mIoU in every training seed (the lowest seed decides), not reproduced "
    "otherwise: a precondition of claim (c) at that level on this task, not a paper claim")


def level_power(run: ProbeRun, level: str = "level4") -> pd.DataFrame:
    """Per variant at ``level``: the lowest seed's best probe mIoU, the majority-class baseline and their ratio
    (:data:`POWER_RULE`: can a probe at this level read anything beyond the trivial answer?)."""
    best = learned(run)
    best = best[best["level"] == level]
    base = float(run.baselines["miou"])
    low = best.groupby("variant", sort=False).agg(lowest=("miou", "min")).reset_index()
    low["baseline"] = base
    low["ratio"] = low["lowest"] / base if base > 0 else math.inf
    return low


CLAIM_C_RULE = (
    "per family and level (probe mIoU, 95% intervals; CRP's gain from its own input, after the summation): reproduced "
    "where CRP's gain is wholly above zero and, with RCUs, the paired difference CRP gain - RCU gain (same resamples, "
    "same seeds) is wholly above zero; not reproduced where either lies wholly at or below zero; inconclusive "
    "otherwise; not testable where, in any training seed, the level is dead (its summation ReLU positive on under 1% "
    "of val outputs) or no probe at the level beats the trivial baselines by 2 points (one rule for every seed)")


def crp_verdicts(run: ProbeRun, diffs: pd.DataFrame,
                 margin: float = float(PROTOCOL.claim("claim_c")["learned_margin"])) -> pd.DataFrame:
    """Claim (c), "CRP, not RCU, drives the features' discriminative power", per variant and level, by
    :data:`CLAIM_C_RULE` (each part one ``above`` test of :mod:`analysis.verdicts`)."""
    ok = learned(run, margin).groupby(["variant", "level"], sort=False)["learned"].all()
    activity = run.frame.groupby(["variant", "level"])["active_sum"].min() if "active_sum" in run.frame else None
    rows = []
    for (variant, level), group in diffs.groupby(["variant", "level"], sort=False):
        g = group.set_index("block")
        crp = g.loc["CRP"]
        rcu = g.loc["RCU"] if "RCU" in g.index else None
        low, high = crp.get("miou_ci_low", math.nan), crp.get("miou_ci_high", math.nan)
        active = float(activity.loc[(variant, level)]) if activity is not None else math.nan
        vs = (crp.get("miou_vs_rcu", math.nan), crp.get("miou_vs_rcu_ci_low", math.nan),
              crp.get("miou_vs_rcu_ci_high", math.nan))
        if active < DEAD:
            status = NOT_TESTABLE
            why = (f"the level is dead in a trained network: {100 * active:.1f}% of its summation ReLU outputs are "
                   "positive on val, so nothing passes through it")
        elif not ok.loc[(variant, level)]:
            status = NOT_TESTABLE
            why = "no probe beats the trivial baselines in every seed: the features were not learned"
        else:
            tests = [above(Interval(100 * crp["miou"], 100 * low, 100 * high), 0.0, "CRP's gain (points)", ".1f")]
            if rcu is not None:
                tests.append(above(Interval(*(100 * v for v in vs)), 0.0, "CRP gain - RCU gain (points)", ".1f"))
            status = tally([t.outcome for t in tests], "").outcome
            why = "; ".join(t.why for t in tests)
        rows.append({"variant": variant, "family": crp["family"], "level": level, "crp_miou": crp["miou"],
                     "crp_ci_low": low, "crp_ci_high": high, "rcu_miou": rcu["miou"] if rcu is not None else math.nan,
                     "crp_minus_rcu": vs[0], "crp_minus_rcu_ci_low": vs[1], "crp_minus_rcu_ci_high": vs[2],
                     "seeds": int(crp["seeds"]), "paper_crp_miou": crp.get("paper_miou", math.nan), "status": status,
                     "why": why})
    return pd.DataFrame(rows)
