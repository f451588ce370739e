"""Probes section: Table 4 replica, probes at every level for every family, what RCU and CRP add, and the
verdict on claim (c). ``collect`` runs :func:`analysis.probes.run_probes`; ``write`` tabulates and draws."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench.environment import device_description

from ..probes import METRICS, ProbePlan, ProbeRun, crp_verdicts, learned, paper_table4, run_probes, tap_differences
from ..probes.differences import CLAIM_C_RULE, POWER_FACTOR, POWER_RULE, level_power
from ..style import BASELINE_COLOUR, FAMILY_COLOURS, PAPER_COLOUR, family_label, use_style
from ..verdicts import NOT_REPRODUCED, NOT_TESTABLE, Interval, Tally, above, tally, within
from .files import Artifact, ScoreRow, Section, save_figure, save_table

FOLDER = "probes"
COMMAND = "python -m analysis report probes"
METRIC_LABELS = {"miou": "mIoU %", "label_accuracy": "label accuracy %", "map": "mAP %"}
POINT_LABELS = {"before_rcu": "before RCU", "after_rcu": "after RCU", "after_sum": "after sum (CRP input)",
                "after_crp": "after CRP"}
BLOCK_MARKERS = {"RCU": "o", "sum": "s", "CRP": "o"}
PAPER_POINTS = ("before_rcu", "after_rcu", "after_crp")  # the paper's Table 4 probes no point between RCU and CRP


def collect(plan: ProbePlan | None = None, progress=print) -> ProbeRun:
    return run_probes(plan or ProbePlan.default(), progress)


def _pct(v: float) -> float:
    return 100 * v if v is not None and not (isinstance(v, float) and math.isnan(v)) else math.nan


def percent(v: float | None) -> str:
    """A fraction as a percentage for a sentence ("-" where it is not a number: never "nan%")."""
    p = _pct(v)
    return "-" if math.isnan(p) else f"{p:.1f}%"


def folded(frame: pd.DataFrame, signed: bool = False) -> pd.DataFrame:
    """For reading: each metric in % with its CI as one text column "v (low to high)"."""
    shown = frame.copy()
    fmt = "+.1f" if signed else ".1f"
    for metric in METRICS:
        if metric not in shown:
            continue
        lo, hi = f"{metric}_ci_low", f"{metric}_ci_high"
        if lo in shown:
            shown[metric] = ["-" if math.isnan(_pct(v)) else
                             f"{_pct(v):{fmt}} ({_pct(a):{fmt}} to {_pct(b):{fmt}})" if not math.isnan(a) else
                             f"{_pct(v):{fmt}}" for v, a, b in zip(shown[metric], shown[lo], shown[hi], strict=True)]
            shown = shown.drop(columns=[lo, hi])
        else:
            shown[metric] = [_pct(v) for v in shown[metric]]
        sd = f"{metric}_seed_sd"
        if sd in shown:
            shown[sd] = [_pct(v) for v in shown[sd]]
    return shown


def interval_words(n_val: int | None) -> str:
    """What the bootstrap intervals can say with this many val images."""
    if n_val is None:
        return "intervals: image bootstrap"
    if n_val < 2:
        return "no intervals: one val image (a bootstrap over one image is undefined)"
    if n_val < 20:
        return (f"intervals from only {n_val} val images: a percentile bootstrap over so few images is too narrow "
                "and can be degenerate; read them as lower bounds on the uncertainty")
    return f"intervals: bootstrap over {n_val} val images"


def _setting(run: ProbeRun) -> str:
    plan = run.plan
    net = plan.setting()
    size = net.schedule.size
    if plan.checkpoints:
        weights = "given checkpoints: " + ", ".join(f"{v}={p}" for v, p in plan.checkpoints.items())
    else:
        weights = f"networks: {schedule_words(net)}"
    return (f"{run.setting}; backbone {net.backbone}; {size}px (level 4: {size // 32}x{size // 32} cells); {weights}; "
            f"heads: BatchNorm + 1x1 conv (segmentation), BatchNorm + linear (multi-label), {plan.probe.epochs} epochs "
            f"on fp16 cached features; 95% CIs from {plan.probe.n_boot} bootstrap resamples of the val images (the "
            "same for every tap, family and seed: differences are paired)")


def network_table(run: ProbeRun) -> tuple[pd.DataFrame, str]:
    """One row per probed network (variant, seed): its own val mIoU and how it was trained; and a sentence."""
    cols = ["network_val_miou", "train_steps", "stop_reason", "train_s", "cached"]
    nets = run.frame.groupby(["variant", "family", "seed"], sort=False)[cols].first().reset_index()
    if run.plan.checkpoints:
        return nets, "Given checkpoints: their own val mIoU on this data is in the table."
    per_family = nets.groupby("family", sort=False)["network_val_miou"].min()
    words = "; ".join(f"{family_label(f)} {100 * v:.1f}%" for f, v in per_family.items())
    return nets, (f"The probed networks' own val mIoU (lowest seed per family): {words} (the trained-networks "
                  "section says whether the task leaves headroom).")


def optimizer_words(schedule) -> str:
    """The optimizer of a schedule as a reader expects it named ("SGD, Nesterov momentum 0.9", "AdamW")."""
    if schedule.optimizer == "sgd":
        return f"SGD, Nesterov momentum {schedule.momentum:g}," if schedule.momentum else "plain SGD,"
    return "AdamW"


def schedule_words(net) -> str:
    """How the trained set was trained, in one clause (the same words in every section that uses it)."""
    sch = net.schedule
    width = ("decoders narrowed to " + ", ".join(f"{k} {v}" for k, v in net.decoder.items())
             if net.decoder else "the families' own decoder widths")
    budget = f", {sch.budget_min:g} min" if sch.budget_min else ""
    start = (f"every family from the backbone weights {Path(net.backbone_weights).name}" if net.backbone_weights
             else net.pretrain.describe(net.backbone) if getattr(net, "pretrain", None) is not None
             else "each family trained from scratch")
    imagenet = "" if net.backbone_weights else " (no ImageNet weights)"
    return (f"the '{net.name}' trained set on {net.device}: {start}{imagenet}, "
            f"{optimizer_words(sch)} lr {sch.lr:g}"
            f"{' with cosine decay to 0 at the step limit' if sch.decay == 'cosine' else ''}, "
            f"batch {sch.batch_size}"
            f"{f' of random {sch.crop}px crops' if sch.crop else ''}, {sch.warmup_steps} warm-up steps, "
            f"{'zero-init' if sch.zero_init_residual else 'standard-init'} residual branches, "
            f"{'frozen' if sch.freeze_bn else 'trained'} BatchNorm statistics, "
            + (f"{sch.max_steps} steps (a fixed schedule{budget}), the best of evaluations every {sch.eval_every} "
               "steps kept; " if sch.plateau_from >= 1 else
               f"until its val mIoU stops improving by {100 * sch.min_delta:g} points over {sch.patience} evaluations "
               f"{sch.eval_every} steps apart (not before {sch.plateau_from:.0%} of at most {sch.max_steps} "
               f"steps{budget}), best weights kept; ") +
            f"{width}; {net.seeds} seed(s); cached and shared with the receptive-field section")

def write(run: ProbeRun, out: Path, name: str = FOLDER) -> Section:
    """Tables and the figure under ``out/name`` (the report passes ``probes/<device>``: one folder per setting)."""
    use_style()
    folder = out / name
    plan = run.plan
    diffs = tap_differences(run)
    verdicts = crp_verdicts(run, diffs)
    settings = _setting(run)
    k = len(run.classes)
    base = run.baselines
    majority = int(base.get("majority_class", 0))
    baseline_words = (f"trivial baselines on val over the K = {k} classes: majority class ('{run.classes[majority]}') "
                      f"everywhere mIoU {percent(base['miou'])}, majority-answer label accuracy "
                      f"{percent(base['label_accuracy'])}, random-score mAP {percent(base['map'])}")
    if not base.get("multilabel_informative", 1.0):
        baseline_words += ("; multi-label scores (label accuracy, mAP) are NOT INFORMATIVE here: every val image "
                           "holds the same foreground classes")
    baseline_words += "; " + interval_words(run.n_val)
    definitions = (
        "mIoU: one confusion matrix over the whole val split, 255 ignored, classes absent from both prediction and "
        "label excluded. Label accuracy: correct (image, class) decisions at 0.5 over images x foreground classes "
        "(the paper's 'acc, without background'). mAP: mean over classes of the average precision of the scores.")
    artifacts = []

    # Table 4: the original RefineNet at level 4, paper vs measured
    paper = paper_table4()
    rf = run.frame[(run.frame.family == "rf") & (run.frame.level == "level4")]
    rows = []
    for point in PAPER_POINTS:
        label = POINT_LABELS[point]
        r = rf[rf.point == point]
        m = r["miou"].mean() if len(r) else math.nan
        a = r["label_accuracy"].mean() if len(r) else math.nan
        lo = r["miou_ci_low"].mean() if "miou_ci_low" in r and len(r) else math.nan
        hi = r["miou_ci_high"].mean() if "miou_ci_high" in r and len(r) else math.nan
        rows.append({"probe point": label, "paper mIoU %": 100 * paper[(point, "miou")], "measured mIoU %": _pct(m),
                     "95% CI": f"{_pct(lo):.1f} to {_pct(hi):.1f}" if not math.isnan(lo) else "-",
                     "mIoU diff": _pct(m) - 100 * paper[(point, "miou")],
                     "paper acc %": 100 * paper[(point, "label_accuracy")], "measured acc %": _pct(a),
                     "acc diff": _pct(a) - 100 * paper[(point, "label_accuracy")]})
    table4 = pd.DataFrame(rows)
    crp_rows = verdicts[verdicts.family == "rf"]
    level4 = crp_rows[crp_rows.level == "level4"]
    sentence = (f"In this setting, level 4 of the original RefineNet: {level4.iloc[0].status} ({level4.iloc[0].why})."
                if len(level4) else "")
    save_table(table4, folder / "table4", "Table 4: probes before RCU, after RCU, after CRP (original RefineNet, "
               "level 4)", [
        f"Measured setting (not the paper's): {settings}.", baseline_words + ".",
        "Paper: RefineNet-101 trained on PASCAL VOC, heads fine-tuned on the 1464 VOC train images, evaluated on VOC "
        "val. The values are not comparable across these settings; the order of the probe points is (claims.md).",
        sentence], floatfmt=".1f")
    artifacts.append(Artifact(f"{name}/table4.md", "Table 4 replica", "paper vs measured, RefineNet level 4",
                              inline=True))

    shown = folded(run.frame.drop(columns=["tap", "train_s", "probe_s", "cached", "train_steps", "stop_reason"]))
    shown["family"] = shown["family"].map(family_label)
    shown["point"] = shown["point"].map(POINT_LABELS)
    shown["same_as"] = shown["same_as"].map(lambda v: POINT_LABELS.get(v, ""))
    for col in ("subset_accuracy", "probe_train_miou", "network_val_miou", "active_sum"):
        shown[col] = [_pct(v) for v in shown[col]]
    save_table(run.frame, folder / "all", "Probes at every level, every family", [
        f"Setting: {settings}.", baseline_words + ".", definitions,
        "same as: without RCUs, before-RCU and after-RCU are one tensor. active %: share of positive outputs of the "
        "ReLU after the level's summation on val (a decoder whose ReLUs died shows ~0).",
        "probe train mIoU: on the stride-4 training labels the loss saw."], floatfmt=".1f",
        display=shown, labels={**METRIC_LABELS, "same_as": "same as", "subset_accuracy": "subset acc %",
                               "probe_train_miou": "probe train mIoU %", "network_val_miou": "network val mIoU %",
                               "active_sum": "active %"})
    artifacts.append(Artifact(f"{name}/all.md", "Probes, every level and family", "scores with 95% CIs"))
    nets, nets_words = network_table(run)
    save_table(nets, folder / "networks", "The probed networks: their own val mIoU", [
        f"Setting: {settings}.", nets_words], floatfmt=".1f",
        display=nets.assign(family=nets.family.map(family_label), network_val_miou=100 * nets.network_val_miou),
        labels={"network_val_miou": "own val mIoU %", "train_steps": "steps", "stop_reason": "stopped by",
                "train_s": "train s", "cached": "from the cache"})
    artifacts.append(Artifact(f"{name}/networks.md", "The probed networks", "own val mIoU per family and seed",
                              inline=True))

    # CRP gain - RCU gain (claim (c)'s paired difference) is shown in claims.md; the CSV keeps it
    dshown = folded(diffs.drop(columns=["variant", *[c for c in diffs.columns if c.startswith("miou_vs_rcu")]]),
                    signed=True)
    dshown["family"] = dshown["family"].map(family_label)
    for metric in METRICS:
        dshown[f"paper_{metric}"] = [_pct(v) for v in dshown[f"paper_{metric}"]]
    save_table(diffs, folder / "differences", "What RCU, the summation and CRP add to the probes (paired "
               "differences, points)", [
        f"Setting: {settings}.",
        "RCU: after RCU - before RCU (families with RCUs). sum: after the summation with the coarser level and its "
        "ReLU - after RCU (- before RCU without RCUs; at level 4 the ReLU alone): what the top-down path brings. "
        "CRP: after CRP - after the summation, CRP's own input. Mean over seeds; CI: the t interval over training runs "
        "and the val images they share (analysis.verdicts.seeds_and_images; one seed: the images' bootstrap only); "
        "seed_sd: spread across seeds (one seed: -).",
        "paper_*: the paper's Table 4 differences (RefineNet-101 on VOC, level 4 only; its CRP difference is after "
        "CRP - after RCU, so it includes the ReLU that is our level-4 'sum' row)."],
        floatfmt=".1f", display=dshown,
        labels={**{m: f"{lbl} (95% CI)" for m, lbl in METRIC_LABELS.items()},
                **{f"paper_{m}": f"paper {lbl}" for m, lbl in METRIC_LABELS.items()},
                **{f"{m}_seed_sd": f"{lbl} seed sd" for m, lbl in METRIC_LABELS.items()}})
    vshown = verdicts.copy()
    vshown["family"] = vshown["family"].map(family_label)
    for col in ("crp_miou", "crp_ci_low", "crp_ci_high", "rcu_miou", "crp_minus_rcu", "crp_minus_rcu_ci_low",
                "crp_minus_rcu_ci_high", "paper_crp_miou"):
        vshown[col] = [_pct(v) for v in vshown[col]]
    save_table(verdicts, folder / "claims", "Claim (c): CRP, not RCU, drives the features' discriminative power", [
        f"Rule: {CLAIM_C_RULE}.", "seeds: training runs per family the verdict rests on.",
        f"Setting: {settings}.", interval_words(run.n_val).capitalize() + "."], floatfmt=".1f",
        display=vshown.drop(columns=["variant"]),
        labels={"crp_miou": "CRP adds (mIoU)", "crp_ci_low": "CI low", "crp_ci_high": "CI high",
                "rcu_miou": "RCU adds (mIoU)", "crp_minus_rcu": "CRP - RCU", "crp_minus_rcu_ci_low": "CI low",
                "crp_minus_rcu_ci_high": "CI high", "paper_crp_miou": "paper CRP adds"})
    artifacts += [Artifact(f"{name}/claims.md", "Claim (c) verdicts", "per family and level", inline=True),
                  Artifact(f"{name}/differences.md", "What RCU, the summation and CRP add",
                           "paired differences, every level")]
    save_figure(probes_figure(run, diffs), folder / "probes")
    artifacts.append(Artifact(f"{name}/probes.png", "Probes (figure)",
                              "mIoU per level, family and probe point; what each block adds, with the paper's"))

    ok = learned(run).groupby(["variant", "level"], sort=False)["learned"].all().reset_index()
    failures = [f"{family_label(v.family)} {v.level}" for v in verdicts.itertuples() if v.status == NOT_REPRODUCED]
    claim_c = tally(verdicts.status, "(c)", "family-level cells", failures)
    status, reason = claim_c.outcome, claim_c.why
    on_voc = bool(plan.voc_root and plan.checkpoints)
    net = plan.setting()
    setting_short = ("VOC + given checkpoints" if on_voc else
                     f"{run.setting.split(' (')[0]}, {net.backbone} trained here ('{net.name}' set, {net.device})")
    values = table4_verdict(table4, on_voc)
    n_seeds = int(run.frame.groupby("variant")["seed"].nunique().min())  # training runs per family
    scores = [
        ScoreRow("Table 4 (probe values)", "54.63 / 55.16 / 57.83 mIoU; 95.39 / 95.42 / 97.71 acc",
                 " / ".join(f"{v:.1f}" for v in table4["measured mIoU %"]) + " mIoU", setting_short,
                 values.outcome, values.why, TABLE4_RULE, f"{name}/table4.md", n_seeds),
        ScoreRow("Table 4 / claim (c): CRP, not RCU", "CRP +2.67 mIoU, RCU +0.53 (level 4)",
                 "; ".join(f"{family_label(v.family)} {v.level}: {_pct(v.crp_miou):+.1f}" for v in
                           verdicts[verdicts.level == "level4"].itertuples()) + " (CRP, level 4)",
                 setting_short, status, reason, CLAIM_C_RULE, f"{name}/claims.md", n_seeds),
        power_row(run, setting_short, name, n_seeds),
    ]
    n = (verdicts.status == "reproduced").sum()
    text = (f"{nets_words} {baseline_words[0].upper()}{baseline_words[1:]}; probes beat them at "
            f"{int(ok.learned.sum())} of {len(ok)} (family, level) cells. Claim (c) holds in {n} of {len(verdicts)} "
            "cells "
            f"({', '.join(f'{s}: {c}' for s, c in verdicts.status.value_counts().items())}). Setting: "
            f"{setting_short}, not the paper's.")
    runs = f", {n_seeds} seeds" if n_seeds > 1 else ""
    return Section(f"Probes (Table 4), '{net.name}' setting{runs}, on {device_description(net.device)}", artifacts,
                   text, settings, scores, name)


def power_row(run: ProbeRun, setting_short: str, name: str, n_seeds: int) -> ScoreRow:
    """Can the level-4 probes read anything on this task (``POWER_RULE``)? One row, per family's lowest seed."""
    power = level_power(run, "level4")
    labels = [family_label(str(run.frame.loc[run.frame.variant == v, "family"].iloc[0])) for v in power.variant]
    tests = [above(Interval.exact(100 * r.lowest), 100 * POWER_FACTOR * r.baseline, label, ".1f", strict=False)
             for label, r in zip(labels, power.itertuples(), strict=True)]
    short = [label for label, t in zip(labels, tests, strict=True) if t.outcome == NOT_REPRODUCED]
    power_tally = tally([t.outcome for t in tests], "level-4 probe power", "families", short)
    ours = "; ".join(f"{label} {100 * r.lowest:.1f}% ({r.ratio:.1f}x)"
                     for label, r in zip(labels, power.itertuples(), strict=True))
    return ScoreRow("Level-4 probe power (ours, not a paper number)",
                    f">= {POWER_FACTOR:g}x the majority class ({100 * run.baselines['miou']:.1f}% mIoU)",
                    f"lowest seed's best level-4 probe: {ours}", setting_short, power_tally.outcome, power_tally.why,
                    POWER_RULE, f"{name}/all.md", n_seeds)


TABLE4_MARGIN = 3.0
TABLE4_RULE = (f"on VOC with VOC-trained RefineNet-101 weights only (elsewhere not testable here): per probe point, "
               f"reproduced where the whole 95% CI of the probe mIoU lies within {TABLE4_MARGIN:g} points of the "
               "paper's value, not reproduced where it lies wholly outside, inconclusive otherwise")


def table4_verdict(table4: pd.DataFrame, on_voc: bool) -> Tally:
    """Table 4's values: comparable only on VOC with the paper's weights (``TABLE4_RULE``)."""
    if not on_voc:
        return Tally(NOT_TESTABLE, "needs VOC and VOC-trained RefineNet-101 weights (the values depend on the data "
                     "and the weights; claim (c) compares the points instead)", {})
    tests = []
    for r in table4.to_dict("records"):
        ci = str(r["95% CI"])
        low, high = (float(v) for v in ci.split(" to ")) if " to " in ci else (math.nan, math.nan)
        paper = r["paper mIoU %"]
        tests.append(within(Interval(r["measured mIoU %"], low, high), paper - TABLE4_MARGIN, paper + TABLE4_MARGIN,
                            r["probe point"], ".1f"))
    return tally([t.outcome for t in tests], "Table 4 values", "probe points",
                 [t.why for t in tests if t.outcome == NOT_REPRODUCED])


def error_bar(value: float, low: float, high: float) -> list[list[float]]:
    """matplotlib's [[below], [above]] in points (x100) for an estimate and its percentile interval.

    A percentile interval need not contain its point estimate (a degenerate bootstrap over a few val
    images can sit a rounding step beside it), so each side is clipped at zero; no interval: no bar.
    """
    if math.isnan(low) or math.isnan(high):
        return [[0.0], [0.0]]
    return [[100 * max(0.0, value - low)], [100 * max(0.0, high - value)]]


def probes_figure(run: ProbeRun, diffs: pd.DataFrame):
    """Top: probe mIoU per level (one panel each), families side by side, the probe points as shades, CIs,
    the majority-class baseline; bars from zero. Bottom: what RCU, the summation and CRP add (mIoU and label accuracy),
    per family and level, with the paper's level-4 differences."""
    import matplotlib.pyplot as plt

    levels = list(dict.fromkeys(run.frame.level))
    families = [f for f in FAMILY_COLOURS if f in set(run.frame.family)]
    points = list(POINT_LABELS)
    fig = plt.figure(figsize=(max(10, 4 * len(levels)), 8.6))
    outer = fig.add_gridspec(2, 1, height_ratios=[1, 1.1], hspace=0.35)
    top, bottom = outer[0].subgridspec(1, len(levels)), outer[1].subgridspec(1, 2, wspace=0.45)
    frame = run.frame.copy()
    for col in ("miou_ci_low", "miou_ci_high"):  # no intervals (one val image, or n_boot = 0): bars alone
        if col not in frame:
            frame[col] = math.nan
    mean = frame.groupby(["family", "level", "point"])[["miou", "miou_ci_low", "miou_ci_high"]].mean()
    shades = tuple(0.3 + 0.7 * j / (len(points) - 1) for j in range(len(points)))
    width = 0.8 / len(points)
    for col, level in enumerate(levels):
        ax = fig.add_subplot(top[0, col])
        for i, family in enumerate(families):
            for j, point in enumerate(points):
                if (family, level, point) not in mean.index:
                    continue
                r = mean.loc[(family, level, point)]
                x = i + (j - (len(points) - 1) / 2) * width
                ax.bar(x, 100 * r.miou, 0.92 * width, color=FAMILY_COLOURS[family], alpha=shades[j])
                if not math.isnan(r.miou_ci_low):
                    ax.errorbar(x, 100 * r.miou, yerr=error_bar(r.miou, r.miou_ci_low, r.miou_ci_high), color="k",
                                lw=0.8, capsize=2)
        ax.axhline(100 * run.baselines["miou"], color=BASELINE_COLOUR, ls="--", lw=1)
        ax.set_xticks(range(len(families)), [family_label(f) for f in families], fontsize=9)
        highest = max(v for v in (frame["miou"].max(), frame["miou_ci_high"].max(), run.baselines["miou"])
                      if not math.isnan(v))
        ax.set_ylim(0, min(100, 100 * highest * 1.2) or 1)
        ax.set_title(f"{level}", fontsize=10)
        if col == 0:
            ax.set_ylabel("probe mIoU % (95% CI)")
    from matplotlib.patches import Patch

    handles = [Patch(color="0.3", alpha=a, label=POINT_LABELS[p]) for a, p in zip(shades, points, strict=True)]
    handles.append(plt.Line2D([], [], color=BASELINE_COLOUR, ls="--", label="majority-class baseline"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 0.965), fontsize=9)
    # as the tables: where every val image holds the same classes, label accuracy says nothing about the features,
    # so its panel shows the paper's points only, no measured differences or intervals
    informative = bool(run.baselines.get("multilabel_informative", 1.0))
    for idx, metric in enumerate(("miou", "label_accuracy")):
        ax = fig.add_subplot(bottom[0, idx])
        labels = []
        rows = diffs.reset_index(drop=True)
        drawn = metric != "label_accuracy" or informative
        if not drawn:
            ax.text(0.5, 0.5, "NOT INFORMATIVE here: every val image holds the same classes\n(label accuracy "
                    "says nothing about the features; see the tables)", transform=ax.transAxes, ha="center",
                    va="center", fontsize=8, color="0.3")
        for y, d in rows.iterrows():
            colour = FAMILY_COLOURS[d.family]
            if not drawn:
                if not math.isnan(d[f"paper_{metric}"]):
                    ax.plot(100 * d[f"paper_{metric}"], y, marker="D", color=PAPER_COLOUR, ls="none", ms=5)
                labels.append(f"{family_label(d.family)} {d.level}: {d.block}")
                continue
            lo, hi = d.get(f"{metric}_ci_low", math.nan), d.get(f"{metric}_ci_high", math.nan)
            ax.errorbar(100 * d[metric], y, xerr=error_bar(d[metric], lo, hi), fmt=BLOCK_MARKERS[d.block],
                        color=colour, capsize=2, ms=4, mfc="white" if d.block == "RCU" else colour)
            if not math.isnan(d[f"paper_{metric}"]):
                ax.plot(100 * d[f"paper_{metric}"], y, marker="D", color=PAPER_COLOUR, ls="none", ms=5)
            labels.append(f"{family_label(d.family)} {d.level}: {d.block}")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"{METRIC_LABELS[metric].replace(' %', '')} points: after - before the block (95% CI)")
        ax.set_title(f"What each block adds: {METRIC_LABELS[metric].replace(' %', '')}", fontsize=10)
    fig.legend(handles=[plt.Line2D([], [], marker="D", color=PAPER_COLOUR, ls="none",
                                   label="paper (RF-101, VOC, level 4)"),
                        plt.Line2D([], [], marker="o", color="0.3", mfc="white", ls="none", label="RCU"),
                        plt.Line2D([], [], marker=BLOCK_MARKERS["sum"], color="0.3", ls="none",
                                   label="summation with the coarser level + ReLU"),
                        plt.Line2D([], [], marker="o", color="0.3", ls="none", label="CRP (from its input)")],
               loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.03), fontsize=9)
    plan = run.plan
    net = plan.setting()
    fig.suptitle(f"Probes on frozen decoder features: {net.backbone}, {run.setting.split(';')[0]}, "
                 f"{'given checkpoints' if plan.checkpoints else f'trained here on {net.device}'}; "
                 "not the paper's setting", fontsize=10, y=1.0)
    fig.subplots_adjust(left=0.14, right=0.98, top=0.9, bottom=0.1)  # subgridspecs: tight_layout cannot
    return fig


def build(out: Path, plan: ProbePlan | None = None, name: str = FOLDER) -> Section:
    return write(collect(plan), out, name)
