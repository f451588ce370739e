"""Probes section of reports/: Table 4 replica (before RCU / after RCU / after CRP), per family.

Embedded default (no VOC and no trained weights can be downloaded here): the generated shapes
dataset (analysis.synthetic), a ResNet-18 backbone under each decoder family (RefineNet-101 cannot
learn on a 2-core CPU in minutes), trained in two short stages: the backbone once under the
light-weight decoder (standing in for ImageNet pre-training), then each family end to end from that
backbone. Then the probes on the frozen level-4 (stride 32) features. With ``voc_root`` and
``checkpoints`` the same code runs the paper's setting (e.g. rf101 with the refinenet-pytorch VOC
weights on VOC train/val).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from bench.models import create_model, variant_info
from bench.paper import paper_numbers

from .bootstrap import percentile_interval
from .images import normalise
from .probes import FAMILY_LABEL, METRICS, PROBE_TAPS, TAP_LABELS, ProbeSettings, cache_features, train_probes
from .probes_plots import draw_probes
from .reporting import REPORTS, Artifact, Section, figure_style, save_figure, save_table
from .synthetic import CLASSES as SYNTHETIC_CLASSES
from .synthetic import SyntheticSpec, synthetic_voc
from .training import TrainSettings, evaluate, train_segmenter, zero_init_residual_branches
from .voc import VOC_CLASSES, VOCSegmentation

COMMAND = "python -m analysis report probes"


@dataclass(frozen=True)
class ProbePlan:
    """What to probe and how the embedded default trains first.

    Learning rates: Adam moves every weight by about ``lr`` per step whatever its gradient, and the
    decoders have no normalisation before the ReLU after each summation. With larger rates the
    early push towards "background everywhere" drives those sums negative and the ReLUs die; the
    coarse levels then get no gradient and their features stay untrained (measured without warm-up:
    at lr 2e-3 the LW level-4 sum is 0.1% active after 20 steps; the RefineNet decoder, 3x3 convs with
    fan-in 4608, is dead after 10 steps at 5e-4 but stays alive at 1e-4. With warm-up and 2e-3 the
    pre-trained LW network's level-3 CRP output was exactly zero on every image). The report shows
    the active fraction.
    """

    backbone: str = "resnet18"
    families: tuple[str, ...] = ("rf", "rf_lw_rcu", "rf_lw")
    dataset: SyntheticSpec = SyntheticSpec()
    size: int = 128  # images and labels (H = W) for features and evaluation
    pretrain: TrainSettings = TrainSettings(steps=300, batch_size=8, crop=None, lr=5e-4)
    finetune: TrainSettings = TrainSettings(steps=60, batch_size=8, crop=None, lr=1e-4)
    probe: ProbeSettings = ProbeSettings()
    voc_root: str | None = None  # real VOC (21 classes) instead of the generated set
    checkpoints: dict[str, str] = field(default_factory=dict)  # variant name -> checkpoint: no training

    @staticmethod
    def tiny() -> ProbePlan:
        """Seconds, for tests: a handful of images and steps."""
        return ProbePlan(dataset=SyntheticSpec(n_train=16, n_val=8, size=64), size=64,
                         pretrain=TrainSettings(steps=2, batch_size=4, crop=None),
                         finetune=TrainSettings(steps=1, batch_size=4, crop=None),
                         probe=ProbeSettings(epochs=2, n_boot=50))


@dataclass
class ProbeRun:
    """One run: a row per (variant, tap), the setting in words, trivial baselines, bootstrap samples."""

    frame: pd.DataFrame
    setting: str
    baselines: dict[str, float]
    boot: dict[tuple[str, str], dict[str, torch.Tensor]]  # (variant, tap) -> {metric column: (n_boot,) samples}


def _data(plan: ProbePlan):
    if plan.voc_root:
        root, classes, setting = Path(plan.voc_root), VOC_CLASSES, f"PASCAL VOC at {plan.voc_root}"
    else:
        root, classes = synthetic_voc(plan.dataset), SYNTHETIC_CLASSES
        setting = (f"generated shapes ({plan.dataset.n_train} train / {plan.dataset.n_val} val images, "
                   f"{len(classes) - 1} classes + background, {plan.dataset.size}px)")
    train = VOCSegmentation(root, "train", (plan.size, plan.size)).load_all()
    val = VOCSegmentation(root, "val", (plan.size, plan.size)).load_all()
    return train, val, classes, setting


def trivial_baselines(val_masks: torch.Tensor, num_classes: int) -> dict[str, float]:
    """What 'learned nothing' scores: background everywhere (mIoU), no class present (label accuracy), and
    uninformative scores (mAP: the expected AP of random scores is the class's frequency among images)."""
    from .metrics import confusion_matrix, mean_iou, multilabel_metrics, presence

    cm = confusion_matrix(torch.zeros_like(val_masks), val_masks, num_classes)
    targets = presence(val_masks, num_classes)
    ml = multilabel_metrics(torch.zeros(targets.shape), targets)
    prevalence = targets.double().mean(0)
    return {"mIoU %": 100 * mean_iou(cm), "label accuracy %": 100 * ml["label_accuracy"],
            "mAP %": 100 * float(prevalence[prevalence > 0].mean())}


# The paper's two questions at the coarsest block: what the RCUs add, and what CRP adds after them.
COMPARISONS = (("RCU", "level4.after_rcu", "level4.before_rcu"), ("CRP", "level4.after_crp", "level4.after_rcu"))
ACTIVITY_TAPS = ("level4.after_sum", "level3.after_sum")  # ReLU outputs: dead decoders show here
PAPER_TAP = {label: tap for tap, label in TAP_LABELS.items()}  # Table 4's row names -> taps


def paper_table4() -> dict[tuple[str, str], float]:
    """The paper's Table 4 as {(probe point, metric): value}, e.g. ("after CRP", "probe_miou")."""
    return {(n.model.split(" probe ")[1], n.metric): n.value for n in paper_numbers() if n.source == "Table 4"}


def run_probes(plan: ProbePlan = ProbePlan(), progress=print) -> ProbeRun:
    """Train (unless checkpoints are given) and probe every family; one row per (variant, tap)."""
    names = [f"{f}:{plan.backbone}" for f in plan.families]
    for name in list(plan.checkpoints) or names:
        variant_info(name)  # an unknown name fails here, before minutes of data loading and training
    (xtr, ytr), (xva, yva), classes, setting = _data(plan)
    k = len(classes)
    base = trivial_baselines(yva, k)
    setting += (f"; trivial baselines on val: all-background mIoU {base['mIoU %']:.1f}%, "
                f"empty-prediction label accuracy {base['label accuracy %']:.1f}%, random-score mAP "
                f"{base['mAP %']:.1f}%")
    backbone_state = None
    if not plan.checkpoints:
        progress(f"  stage 1: backbone {plan.backbone} under the LW decoder, {plan.pretrain.steps} steps")
        torch.manual_seed(plan.pretrain.seed)
        pre = zero_init_residual_branches(create_model(f"rf_lw:{plan.backbone}", num_classes=k))
        train_segmenter(pre, xtr, ytr, normalise, plan.pretrain, progress)
        backbone_state = pre.backbone.state_dict()
    rows, boot = [], {}
    for name in list(plan.checkpoints) or names:
        start = time.perf_counter()
        torch.manual_seed(plan.finetune.seed)
        model = create_model(name, num_classes=k, checkpoint=plan.checkpoints.get(name))
        train_seconds = 0.0
        if backbone_state is not None:
            zero_init_residual_branches(model)
            model.backbone.load_state_dict(backbone_state)
            progress(f"  stage 2: {name}, {plan.finetune.steps} steps")
            train_seconds = train_segmenter(model, xtr, ytr, normalise, plan.finetune, progress).seconds
        network_miou = evaluate(model, xva, yva, k, normalise)
        progress(f"  {name}: network val mIoU {100 * network_miou:.1f}%; caching level-4 features")
        train_feats = cache_features(model, xtr, PROBE_TAPS, normalise=normalise)
        val_feats = cache_features(model, xva, PROBE_TAPS + ACTIVITY_TAPS, normalise=normalise)
        active = {t: 100 * float((val_feats.pop(t) > 0).float().mean()) for t in ACTIVITY_TAPS}
        aliases = model.tap_aliases()
        for r in train_probes(train_feats, ytr, val_feats, yva, k, plan.probe):
            row = {"variant": name, "family": name.split(":")[0], "tap": r.tap, "probe point": TAP_LABELS[r.tap],
                   "same tensor as": TAP_LABELS.get(aliases.get(r.tap, ""), "")}
            boot[(name, r.tap)] = {col: 100 * r.boot[field_] for col, field_ in METRICS.items() if r.boot}
            for col, field_ in METRICS.items():
                row[col] = 100 * getattr(r, field_)
                if r.boot:
                    row[f"{col} CI low"], row[f"{col} CI high"] = percentile_interval(boot[(name, r.tap)][col])
            row.update({
                "subset accuracy %": 100 * r.subset_accuracy, "probe train mIoU %": 100 * r.train_miou,
                "network val mIoU %": 100 * network_miou,
                **{f"active {t.split('.')[0]} sum %": v for t, v in active.items()},
                "train s": train_seconds, "total s": time.perf_counter() - start,
            })
            rows.append(row)
    return ProbeRun(pd.DataFrame(rows), setting, base, boot)



def tap_differences(run: ProbeRun) -> pd.DataFrame:
    """Per variant, what the RCUs and what CRP add at level 4: paired bootstrap differences with CIs.

    Where two taps are the same tensor (no RCU), the difference is exactly zero and is left out.
    The paper's differences (RefineNet-101 on VOC, Table 4) are given next to the ``rf`` family.
    """
    paper = paper_table4()
    rows = []
    frame = run.frame.set_index(["variant", "tap"])
    for variant in dict.fromkeys(run.frame.variant):
        family = variant.split(":")[0]
        for block, after, before in COMPARISONS:
            if frame.loc[(variant, after), "same tensor as"] == TAP_LABELS[before]:
                continue
            if block == "CRP" and frame.loc[(variant, before), "same tensor as"]:
                before = "level4.before_rcu"  # no RCU: CRP is compared with the block's input
            row = {"variant": variant, "family": family, "block": block,
                   "difference": f"{TAP_LABELS[after]} - {TAP_LABELS[before]}"}
            for col in METRICS:
                row[col] = frame.loc[(variant, after), col] - frame.loc[(variant, before), col]
                a, b = run.boot.get((variant, after), {}), run.boot.get((variant, before), {})
                if col in a and col in b:
                    low, high = percentile_interval(a[col] - b[col])
                    row[f"{col} CI low"], row[f"{col} CI high"] = low, high
            paper_metric = {"mIoU %": "probe_miou", "label accuracy %": "probe_multilabel_acc"}
            for col, metric in paper_metric.items():
                pa, pb = paper.get((TAP_LABELS[after], metric)), paper.get((TAP_LABELS[before], metric))
                row[f"paper {col} (RefineNet-101, VOC)"] = pa - pb if family == "rf" and pa and pb else float("nan")
            rows.append(row)
    return pd.DataFrame(rows)


def _interval_words(diff: pd.Series, col: str) -> str:
    low, high = diff.get(f"{col} CI low"), diff.get(f"{col} CI high")
    if low is None or pd.isna(low):
        return f"{diff[col]:+.1f}"
    sign = "above zero" if low > 0 else "below zero" if high < 0 else "includes zero"
    return f"{diff[col]:+.1f} (95% CI {low:+.1f} to {high:+.1f}, {sign})"


def verdict(run: ProbeRun, diffs: pd.DataFrame, margin: float = 2.0) -> str:
    """What this run shows, in words computed from the numbers: baselines first, then what CRP adds."""
    frame, baselines = run.frame, run.baselines
    miou_gain = frame["mIoU %"].max() - baselines["mIoU %"]
    acc_gain = frame["label accuracy %"].max() - baselines["label accuracy %"]
    if miou_gain < margin and acc_gain < margin:
        return (f"No probe beats the trivial baselines by {margin:g} points (best mIoU {miou_gain:+.1f}, best label "
                f"accuracy {acc_gain:+.1f}): the training did not give features a linear probe can use, "
                "so this run says nothing about RCU vs CRP; the paper's ordering is neither confirmed nor refuted.")
    parts = [f"The probes beat the trivial baselines (best mIoU {miou_gain:+.1f} points, best label accuracy "
             f"{acc_gain:+.1f}), so the level-4 features are learned."]
    for _, d in diffs[diffs.block == "CRP"].iterrows():
        parts.append(f"{FAMILY_LABEL.get(d.family, d.family)}: CRP changes the probe mIoU by "
                     f"{_interval_words(d, 'mIoU %')}, label accuracy by {_interval_words(d, 'label accuracy %')} "
                     f"and mAP by {_interval_words(d, 'mAP %')}.")
    paper_crp = diffs.loc[diffs.block == "CRP", "paper mIoU % (RefineNet-101, VOC)"].dropna()
    if len(paper_crp):
        paper_acc = diffs.loc[diffs.block == "CRP", "paper label accuracy % (RefineNet-101, VOC)"].dropna()
        parts.append(f"In the paper CRP adds {paper_crp.iloc[0]:+.2f} mIoU and {paper_acc.iloc[0]:+.2f} accuracy "
                     "(RefineNet-101 on VOC, no interval given).")
    return " ".join(parts)


def _table4(run: ProbeRun) -> pd.DataFrame:
    """Paper vs measured for the original RefineNet at the three probe points."""
    rf_rows = run.frame[run.frame.family == "rf"].set_index("tap")
    paper = paper_table4()
    rows = []
    for label, tap in PAPER_TAP.items():
        row = rf_rows.loc[tap] if tap in rf_rows.index else pd.Series(dtype=float)
        m = row.get("mIoU %", float("nan"))
        a = row.get("label accuracy %", float("nan"))
        rows.append({
            "probe point": label,
            "paper mIoU % (RefineNet-101, VOC val)": paper[(label, "probe_miou")],
            "measured mIoU %": m,
            "measured mIoU 95% CI": _ci_text(row, "mIoU %"),
            "mIoU diff": m - paper[(label, "probe_miou")],
            "paper acc % (VOC, no background)": paper[(label, "probe_multilabel_acc")],
            "measured label acc %": a,
            "measured label acc 95% CI": _ci_text(row, "label accuracy %"),
            "acc diff": a - paper[(label, "probe_multilabel_acc")],
            "measured mAP %": row.get("mAP %", float("nan")),
        })
    return pd.DataFrame(rows)


def with_intervals(frame: pd.DataFrame, digits: int = 1, signed: bool = False) -> pd.DataFrame:
    """For reading: each metric with its CI as one text column, "v (low to high)"; CI columns dropped."""
    shown = frame.copy()
    fmt = f"{'+' if signed else ''}.{digits}f"
    for col in METRICS:
        low, high = f"{col} CI low", f"{col} CI high"
        if col in shown and low in shown:
            shown[f"{col} (95% CI)"] = [f"{v:{fmt}} ({lo:{fmt}} to {hi:{fmt}})"
                                        for v, lo, hi in zip(shown[col], shown[low], shown[high], strict=True)]
            at = shown.columns.get_loc(col)
            shown = shown.drop(columns=[col, low, high])
            cols = list(shown.columns)
            cols.insert(at, cols.pop(cols.index(f"{col} (95% CI)")))
            shown = shown[cols]
    return shown


def _ci_text(row: pd.Series, col: str) -> str:
    low, high = row.get(f"{col} CI low"), row.get(f"{col} CI high")
    return "" if low is None or pd.isna(low) else f"{low:.1f} to {high:.1f}"


def build(out: Path = REPORTS, plan: ProbePlan | None = None) -> Section:
    figure_style()
    plan = plan or ProbePlan()
    run = run_probes(plan)
    diffs = tap_differences(run)
    conclusion = verdict(run, diffs)
    weights = "given checkpoints" if plan.checkpoints else (
        f"trained here from scratch on the CPU: {plan.pretrain.steps} steps backbone pre-training under the LW "
        f"decoder (AdamW lr {plan.pretrain.lr:g}), then {plan.finetune.steps} steps per family end to end (lr "
        f"{plan.finetune.lr:g}; batch {plan.finetune.batch_size}, whole {plan.size}px images, flips)")
    settings_text = (f"{run.setting}; backbone {plan.backbone}; {plan.size}px; {weights}; probe heads "
                     f"{plan.probe.epochs} epochs on fp16 cached features, seed {plan.probe.seed}; 95% CIs from "
                     f"{plan.probe.n_boot} bootstrap resamples of the val images")
    definitions = (
        "mIoU: one confusion matrix over the whole val split, 255 ignored, classes absent from both prediction and "
        "label excluded. Label accuracy: correct (image, class) decisions at 0.5 over images x foreground classes "
        "(the paper's 'acc, without background'). Subset accuracy: images with every class right. mAP: mean over "
        "classes of the average precision of the scores.")
    ci_note = ("CI: 95% percentile interval over image-level bootstrap resamples of val (same resamples for every "
               "tap and family, so differences are paired); it covers the choice of val images, not training seeds.")
    save_table(run.frame, "probes_all", "Probes at the lowest-resolution block, every family", [
        f"Setting: {settings_text}.", definitions, ci_note,
        "'same tensor as': without RCUs, before-RCU and after-RCU are one tensor, so their rows are identical.",
        "'active levelN sum %': share of positive outputs of the ReLU after the level's summation, on val; a "
        "decoder whose ReLUs died in training shows ~0 here and its coarse features are untrained.",
    ], out, floatfmt=".1f", display=with_intervals(run.frame.drop(columns=["tap"])))
    save_table(diffs, "probes_differences", "What RCU and CRP add at the lowest-resolution block (paired differences)",
               [f"Setting: {settings_text}.", ci_note,
                "RCU: after RCU - before RCU (families with RCUs). CRP: after CRP - after RCU (or - before RCU "
                "where there is no RCU). Paper columns: the same differences in Table 4 (RefineNet-101 on VOC).",
                conclusion], out, floatfmt=".2f",
               display=with_intervals(diffs.drop(columns=["variant"]), digits=2, signed=True))
    save_table(_table4(run), "table4_probes",
               "Table 4: probes before RCU, after RCU, after CRP (original RefineNet)", [
        f"Measured setting (not the paper's): {settings_text}.",
        "Paper: RefineNet-101 trained on PASCAL VOC, heads fine-tuned on the 1464 VOC train images, evaluated on VOC "
        "val. The measured numbers come from a different dataset, backbone and training budget: compare the order "
        "and the differences of the three probe points (probes_differences.md), not the values.",
        conclusion,
        "All three families: probes_all.md.",
    ], out, floatfmt=".1f")
    trained = "given checkpoints" if plan.checkpoints else (
        f"trained here on the CPU ({plan.pretrain.steps} + {plan.finetune.steps} steps, "
        f"batch {plan.finetune.batch_size})")
    title = (f"Probes on frozen level-4 (stride 32) features: {plan.backbone} backbone, {run.setting.split(' (')[0]}, "
             f"{plan.size}px, {trained}; not the paper's setting.\nError bars: 95% bootstrap CI over val images "
             f"({plan.probe.n_boot} resamples). Dashed: all-background / empty prediction / random scores")
    save_figure(draw_probes(run.frame, diffs, run.baselines, plan.families, title), "probes", out)
    artifacts = [
        Artifact("table4_probes.md", "Table 4 replica", "paper vs measured probe scores, original RefineNet",
                 settings_text, COMMAND, inline=True),
        Artifact("probes_differences.md", "What RCU and CRP add (probes)",
                 "paired differences between probe points with 95% CIs, every family, paper's next to them",
                 settings_text, COMMAND, inline=True),
        Artifact("probes_all.md", "Probes, every family",
                 "mIoU, label/subset accuracy, mAP with CIs per tap and family; active-ReLU diagnostics",
                 settings_text, COMMAND),
        Artifact("probes.png", "Probes (figure)", "the three probe points' scores per family, and the differences",
                 settings_text, COMMAND),
    ]
    text = ("The paper's probes used RefineNet-101 trained on VOC; neither VOC nor trained weights can be downloaded "
            "here, so the embedded default trains small models on generated data first (settings in each table). "
            f"{conclusion} "
            "Point `ProbePlan(voc_root=..., checkpoints={'rf101': ...})` at real data and weights for the paper's "
            "setting.")
    return Section("Probes (Table 4)", artifacts, text)
