"""What the variants of an ablation spec buy in accuracy, over training runs.

From the trained networks of a spec's variants (one per variant and seed, :func:`spec_runs`): each variant's
reported mIoU (on the held-out test split where the data have one, else on val, which then also picked the weights:
``TrainedNetwork.reported_miou``) with its t interval over the seeds (:func:`variant_accuracy`), every path's
per-step change in mIoU, paired seed by seed (the same seed: the same data order, crops and shared backbone, so a
step's difference is not the difference between two draws of the training noise, :func:`path_accuracy`), and the
Shapley value of each step's change in mIoU where every subset of the path's changes is trained on the same seeds
(:func:`shapley_accuracy`). Seeds are the unit of evidence: every interval is a 95% t interval over per-seed values
(:func:`analysis.verdicts.seed_interval`); one seed gives none.

A step's effect is said in the verdict module's words by :data:`EFFECT_RULE`; where the paper says a change does not
hurt (Section 3.1: the 1x1 convolutions and the bottleneck RCU; Section 3.3: removing LW's RCUs), the step is a
non-inferiority claim by the registered protocol (``analysis/protocol.toml``, ``claims.path_steps``): its error ratio
after / before, paired seed by seed on the same images, with the interval over runs and images
(:func:`analysis.networks.claims.effect`). The whole path, start to end, is a claim with the same margin
(``claims.path_whole``): small steps cannot add up to a loss unseen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from bench.ablations.attribution import shapley_values
from bench.ablations.spec import AblationSpec, Path_

from ..protocol import PROTOCOL
from ..verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Interval,
    not_testable,
    seed_interval,
    within,
)
from .claims import claim_verdict, effect

RUN_COLUMNS = ["variant", "hash", "seed", "miou", "split", "val_miou", "steps", "best_step", "stop_reason", "per_image"]
"""``per_image``: the (N, K, K) confusion matrices on the reported split (in memory only: not written to a table)."""
ACCURACY_MARGIN = PROTOCOL.margin("accuracy")
REPORTED = "mIoU on the held-out test split (on val where the data have none)"

EFFECT_RULE = (f"accuracy effect of a step: its error ratio after / before on {REPORTED}, paired seed by seed, "
               f"{PROTOCOL.level:.0%} interval over runs and images; 'lower' / 'higher' where the error ratio is "
               f"wholly above / below x1, 'equivalent (within x{ACCURACY_MARGIN:.3f})' where its interval contains x1 "
               f"and lies within x{1 / ACCURACY_MARGIN:.3f} to x{ACCURACY_MARGIN:.3f}, 'inconclusive' otherwise, "
               "'one run' with a single seed")
PATH_CLAIM_RULE = (f"a step the paper says does not hurt (Sections 3.1 and 3.3): its error ratio after / before on "
                   f"{REPORTED}, paired seed by seed, {PROTOCOL.level:.0%} interval over runs and images; reproduced "
                   f"where wholly at or below x{ACCURACY_MARGIN:.3f} (the protocol's margin), not reproduced where "
                   "wholly above, inconclusive otherwise (not testable here where too few seeds could detect the "
                   f"margin); {PROTOCOL.stamp}")
WHOLE_PATH_RULE = (f"the whole path (start -> end): its error ratio end / start, as a step's: reproduced where wholly "
                   f"at or below x{ACCURACY_MARGIN:.3f}, not reproduced where wholly above; {PROTOCOL.stamp}")
PAPER_SAYS_HARMLESS = {"crp_kernel": "Section 3.1", "fusion_kernel": "Section 3.1"}
"""The decoder fields whose change the paper says costs no accuracy (3x3 -> 1x1 convolutions); the RCU's field is
decided by its value (:func:`step_claim`): the bottleneck RCU is Section 3.1's, removing the RCUs Section 3.3's."""


def spec_runs(spec: AblationSpec, names: Sequence[str] | None = None, setting="cpu", seeds=None,
              only_cached: bool = False, cache_dir: str | Path | None = None,
              say: Callable[[str], None] | None = print, **recipe) -> pd.DataFrame:
    """One row per (variant, seed) of ``names`` (default: every variant of ``spec``): trained where the store does
    not hold it (``only_cached``: nothing trained, only the held networks; possibly no rows). Names of one
    architecture share one network and so one mIoU. ``recipe``: further ``trained_set`` keywords (schedule, data,
    device, num_classes, backbone_weights)."""
    from .sets import trained_set

    hashes = {v.name: v.hash for v in spec.variants}
    wanted = list(names) if names is not None else list(hashes)
    nets = trained_set(setting, wanted, seeds, cache_dir=cache_dir, say=say, progress=say is not None,
                       only_cached=only_cached, **recipe)
    rows = [{"variant": n.record["variant"], "hash": hashes.get(n.record["variant"], ""), "seed": n.record["seed"],
             "miou": n.reported_miou, "split": n.reported_split, "val_miou": n.record["val_miou"],
             "steps": n.record["steps"], "best_step": n.record["best_step"], "stop_reason": n.record["stop_reason"],
             "per_image": n.reported_per_image}
            for n in nets]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def _per_seed(runs: pd.DataFrame, name: str) -> dict[int, float]:
    """Seed -> reported mIoU in points of one variant."""
    rows = runs[runs.variant == name]
    return {int(s): 100 * float(v) for s, v in zip(rows.seed, rows.miou, strict=True)}


def _scores(runs: pd.DataFrame, name: str) -> dict:
    """Seed -> per-image confusion matrices of one variant on the reported split."""
    rows = runs[runs.variant == name]
    return {int(s): v for s, v in zip(rows.seed, rows.per_image, strict=True)}


MIOU_RANGE = (0.0, 100.0)
"""mIoU in points cannot leave this range: intervals of a mean mIoU are cut to it (see ``seed_interval``)."""
DELTA_RANGE = (-100.0, 100.0)
"""Nor can a change in mIoU leave this one: intervals of a mean change are cut to it."""
CUT_NOTE = ("an interval is cut where it reaches past what its quantity can be (a mean mIoU: 0 to 100%; a change: "
            "-100 to +100 points), as two seeds' t interval can")


def cut_words(frame: pd.DataFrame) -> str:
    """A note's words where an interval in ``frame`` (of a mean mIoU, :data:`MIOU_RANGE`, or of a change,
    :data:`DELTA_RANGE`) was cut, naming the rows' variants; else ''."""
    cut = (frame.miou_low == MIOU_RANGE[0]) | (frame.miou_high == MIOU_RANGE[1])
    for column in ("delta", "from_start"):
        if f"{column}_low" in frame:
            cut |= (frame[f"{column}_low"] == DELTA_RANGE[0]) | (frame[f"{column}_high"] == DELTA_RANGE[1])
    return f"; {CUT_NOTE}: here {', '.join(frame.variant[cut])}" if cut.any() else ""


def variant_accuracy(runs: pd.DataFrame) -> pd.DataFrame:
    """Per variant: the number of seeds, the mean reported mIoU (points) and its 95% t interval over the seeds
    (cut to 0..100, :data:`MIOU_RANGE`)."""
    rows = []
    for name in dict.fromkeys(runs.variant):
        values = list(_per_seed(runs, name).values())
        x = seed_interval(values, bounds=MIOU_RANGE)
        rows.append({"variant": name, "n_seeds": len(values), "miou": x.estimate, "miou_low": x.low,
                     "miou_high": x.high, "seeds_miou": " / ".join(f"{v:.1f}" for v in values)})
    return pd.DataFrame(rows, columns=["variant", "n_seeds", "miou", "miou_low", "miou_high", "seeds_miou"])


def accuracy_effect(x: Interval, n_seeds: int) -> str:
    """``EFFECT_RULE`` for one step's interval of the log error ratio after / before."""
    if n_seeds < 2 or math.isnan(x.low):
        return "one run" if n_seeds == 1 else "not trained"
    if x.low > 0:
        return "lower"
    if x.high < 0:
        return "higher"
    edge = math.log(ACCURACY_MARGIN)
    if within(x, -edge, edge).outcome == REPRODUCED:
        return f"equivalent (within x{ACCURACY_MARGIN:.3f})"
    return "inconclusive"


def paired_delta(before: dict[int, float], after: dict[int, float]) -> tuple[Interval, int]:
    """after - before over their common seeds (points), 95% t interval, and the number of seeds."""
    seeds = sorted(set(before) & set(after))
    return seed_interval([after[s] - before[s] for s in seeds], bounds=DELTA_RANGE), len(seeds)


def step_claim(step: dict) -> str:
    """The paper section that says this step costs no accuracy, or '': 3x3 -> 1x1 convolutions and the bottleneck RCU
    (Section 3.1), removing the RCUs (Section 3.3); decided by the values a step sets, not by which fields it names."""
    keys = set(step) - {"label"}
    rcu_keys = keys & {"rcu", "rcu_in", "rcu_out"}
    if not keys or keys - set(PAPER_SAYS_HARMLESS) - rcu_keys:
        return ""
    sections = [PAPER_SAYS_HARMLESS[k] for k in sorted(keys & set(PAPER_SAYS_HARMLESS))]
    if rcu_keys:
        if step.get("rcu") == "bottleneck" and rcu_keys == {"rcu"}:
            sections.append("Section 3.1")
        elif step.get("rcu", "none") == "none" and not any(step.get(k) for k in ("rcu_in", "rcu_out")):
            sections.append("Section 3.3")
        else:
            return ""
    return " / ".join(dict.fromkeys(sections))


def path_accuracy(path: Path_, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per variant of ``path`` (step 0 = its start): its mean mIoU over the seeds; the step's change against
    the previous variant and the cumulative change from the start, each in points (paired t intervals over the seeds)
    and as an error ratio (paired, over runs and images); the step's effect (:data:`EFFECT_RULE`) and, where the paper
    says the step does not hurt, that claim's verdict (:data:`PATH_CLAIM_RULE`). ``frame.attrs["whole"]``: the whole
    path's claim (:data:`WHOLE_PATH_RULE`). Shapley values where :func:`shapley_accuracy` can compute them."""
    start, start_scores = _per_seed(runs, path.variants[0].name), _scores(runs, path.variants[0].name)
    shapley = shapley_accuracy(path, runs)
    rows, previous, previous_scores = [], start, start_scores
    whole = None
    for i, v in enumerate(path.variants):
        now, now_scores = _per_seed(runs, v.name), _scores(runs, v.name)
        mean = seed_interval(list(now.values()), bounds=MIOU_RANGE)
        row = {"step": i, "variant": v.name, "change": "start" if i == 0 else path.labels[i - 1],
               "n_seeds": len(now), "miou": mean.estimate, "miou_low": mean.low, "miou_high": mean.high}
        if i > 0:
            d, n = paired_delta(previous, now)
            c, n_from_start = paired_delta(start, now)
            step, total = effect(previous_scores, now_scores), effect(start_scores, now_scores)
            claim = step_claim(path.steps[i - 1])
            unpaired = unpaired_words(path.variants[i - 1].name, previous, v.name, now) if n == 0 else ""
            verdict = ((not_testable(unpaired) if unpaired else
                        claim_verdict("path_steps", step, "after / before error ratio")) if claim else None)
            row.update(delta=d.estimate, delta_low=d.low, delta_high=d.high, delta_seeds=n,
                       ratio=math.exp(step.log_ratio.estimate), ratio_low=math.exp(step.log_ratio.low),
                       ratio_high=math.exp(step.log_ratio.high),
                       effect=unpaired or accuracy_effect(step.log_ratio, step.n_seeds),
                       from_start_seeds=n_from_start, from_start=c.estimate, from_start_low=c.low,
                       from_start_high=c.high, from_start_ratio=math.exp(total.log_ratio.estimate),
                       from_start_ratio_low=math.exp(total.log_ratio.low),
                       from_start_ratio_high=math.exp(total.log_ratio.high), paper=claim,
                       status=verdict.outcome if verdict else "", why=verdict.why if verdict else "")
            if shapley is not None:
                s = shapley[i - 1]
                row.update(shapley=s.estimate, shapley_low=s.low, shapley_high=s.high)
            whole = total
        rows.append(row)
        previous, previous_scores = now, now_scores
    frame = pd.DataFrame(rows)
    frame.attrs["end"] = path.end or path.variants[-1].name  # the declared end's own name (the last is PATH.N)
    frame.attrs["shapley_seeds"] = shapley_seeds(path, runs) if shapley is not None else 0
    if whole is not None:
        v = (claim_verdict("path_whole", whole, "end / start error ratio") if whole.n_seeds else
             not_testable("the path's start and end share no trained seed"))
        frame.attrs["whole"] = {"ratio_words": whole.ratio_words(), "points_words": whole.points_words(),
                                "n_seeds": whole.n_seeds, "status": v.outcome, "why": v.why}
    return frame


def unpaired_words(before_name: str, before: dict[int, float], after_name: str, after: dict[int, float]) -> str:
    """Why a step has no paired seed: which of its two variants the store holds no network of, or that their seeds
    do not meet."""
    if not after:
        return "not trained"
    if not before:
        return f"previous variant ({before_name}) not trained"
    return (f"no common seed ({before_name}: {', '.join(map(str, sorted(before)))}; {after_name}: "
            f"{', '.join(map(str, sorted(after)))})")


def shapley_seeds(path: Path_, runs: pd.DataFrame) -> list[int]:
    """The seeds on which every subset of the path's changes is trained (the Shapley values' runs)."""
    seeds: set[int] | None = None
    for _, name in path.subsets:
        have = set(_per_seed(runs, name))
        seeds = have if seeds is None else seeds & have
    return sorted(seeds or ())


def shapley_accuracy(path: Path_, runs: pd.DataFrame) -> list[Interval] | None:
    """Each step's Shapley value of own val mIoU (points): computed per seed over all 2^n subsets of the path's
    changes (``path.subsets``, each a trained variant), then a t interval over those per-seed values (the Shapley
    value is linear in the game, so its mean over seeds is the Shapley value of the mean mIoU). None where some
    subset is not trained on a common seed."""
    seeds = shapley_seeds(path, runs)
    if not seeds:
        return None
    n = len(path.steps)
    per_seed = []
    by_subset = {subset: _per_seed(runs, name) for subset, name in path.subsets}
    for seed in seeds:
        game = {subset: values[seed] for subset, values in by_subset.items()}
        per_seed.append(shapley_values(n, game))
    return [seed_interval([values[i] for values in per_seed], bounds=DELTA_RANGE) for i in range(n)]


def claim_tally(frame: pd.DataFrame) -> tuple[str, str, int]:
    """The path's claim over its steps the paper calls harmless: (outcome, why, steps), by the verdict module's
    tally (one not-reproduced step fails it; an inconclusive step never does)."""
    from ..verdicts import tally

    claims = frame[frame["paper"].fillna("") != ""] if "paper" in frame else frame.iloc[0:0]
    if not len(claims):
        return INCONCLUSIVE, "no step of the path is one the paper calls harmless", 0
    failed = [str(c) for c, s in zip(claims.change, claims.status, strict=True) if s == NOT_REPRODUCED]
    t = tally(claims.status, "each harmless step keeps accuracy", "steps", failed)
    return t.outcome, t.why, len(claims)
