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

from bench.models import create_model
from bench.paper import paper_numbers

from .images import normalise
from .probes import PROBE_TAPS, TAP_LABELS, ProbeSettings, cache_features, train_probes
from .reporting import REPORTS, Artifact, Section, figure_style, save_figure, save_table
from .synthetic import CLASSES as SYNTHETIC_CLASSES
from .synthetic import SyntheticSpec, synthetic_voc
from .training import TrainSettings, evaluate, train_segmenter, zero_init_residual_branches
from .voc import VOC_CLASSES, VOCSegmentation

COMMAND = "python -m analysis report probes"
FAMILY_LABEL = {"rf": "RefineNet", "rf_lw_rcu": "LW with RCU", "rf_lw": "LW"}


@dataclass(frozen=True)
class ProbePlan:
    backbone: str = "resnet18"
    families: tuple[str, ...] = ("rf", "rf_lw_rcu", "rf_lw")
    dataset: SyntheticSpec = SyntheticSpec()
    size: int = 128  # images and labels (H = W) for features and evaluation
    pretrain: TrainSettings = TrainSettings(steps=400, batch_size=8, crop=64, lr=2e-3)
    finetune: TrainSettings = TrainSettings(steps=60, batch_size=8, crop=64, lr=2e-4)
    probe: ProbeSettings = ProbeSettings()
    voc_root: str | None = None  # real VOC (21 classes) instead of the generated set
    checkpoints: dict[str, str] = field(default_factory=dict)  # variant name -> checkpoint: no training

    @staticmethod
    def tiny() -> ProbePlan:
        """Seconds, for tests: a handful of images and steps."""
        return ProbePlan(dataset=SyntheticSpec(n_train=16, n_val=8, size=64), size=64,
                         pretrain=TrainSettings(steps=2, batch_size=4, crop=64),
                         finetune=TrainSettings(steps=1, batch_size=4, crop=64), probe=ProbeSettings(epochs=2))


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
    """Scores of predicting background everywhere and no class present: what 'learned nothing' looks like."""
    from .metrics import confusion_matrix, mean_iou, multilabel_metrics, presence

    cm = confusion_matrix(torch.zeros_like(val_masks), val_masks, num_classes)
    targets = presence(val_masks, num_classes)
    ml = multilabel_metrics(torch.zeros(targets.shape), targets)
    return {"mIoU %": 100 * mean_iou(cm), "label accuracy %": 100 * ml["label_accuracy"]}


def verdict(frame: pd.DataFrame, baselines: dict[str, float], margin: float = 2.0) -> str:
    """One sentence on whether the probes beat the trivial baselines by ``margin`` points."""
    miou_gain = frame["mIoU %"].max() - baselines["mIoU %"]
    acc_gain = frame["label accuracy %"].max() - baselines["label accuracy %"]
    if miou_gain < margin and acc_gain < margin:
        return (f"No probe beats the trivial baselines by {margin:g} points (best mIoU +{miou_gain:.1f}, best label "
                f"accuracy {acc_gain:+.1f}): the short CPU training did not give features a linear probe can use, "
                "so this run says nothing about RCU vs CRP; the paper's ordering is neither confirmed nor refuted.")
    return (f"Best probe over the trivial baselines: mIoU +{miou_gain:.1f} points, label accuracy {acc_gain:+.1f} "
            "points.")


def run_probes(plan: ProbePlan = ProbePlan(), progress=print) -> tuple[pd.DataFrame, str]:
    """Train (unless checkpoints are given) and probe every family; one row per (variant, tap)."""
    (xtr, ytr), (xva, yva), classes, setting = _data(plan)
    k = len(classes)
    base = trivial_baselines(yva, k)
    setting += (f"; trivial baselines on val: all-background mIoU {base['mIoU %']:.1f}%, "
                f"empty-prediction label accuracy {base['label accuracy %']:.1f}%")
    names = [f"{f}:{plan.backbone}" for f in plan.families]
    backbone_state = None
    if not plan.checkpoints:
        progress(f"  stage 1: backbone {plan.backbone} under the LW decoder, {plan.pretrain.steps} steps")
        torch.manual_seed(plan.pretrain.seed)
        pre = zero_init_residual_branches(create_model(f"rf_lw:{plan.backbone}", num_classes=k))
        train_segmenter(pre, xtr, ytr, normalise, plan.pretrain, progress)
        backbone_state = pre.backbone.state_dict()
    rows = []
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
        val_feats = cache_features(model, xva, PROBE_TAPS, normalise=normalise)
        aliases = model.tap_aliases()
        for r in train_probes(train_feats, ytr, val_feats, yva, k, plan.probe):
            rows.append({
                "variant": name, "family": name.split(":")[0], "tap": r.tap, "probe point": TAP_LABELS[r.tap],
                "same tensor as": TAP_LABELS.get(aliases.get(r.tap, ""), ""),
                "mIoU %": 100 * r.miou, "label accuracy %": 100 * r.label_accuracy,
                "subset accuracy %": 100 * r.subset_accuracy, "mAP %": 100 * r.mAP,
                "probe train mIoU %": 100 * r.train_miou, "network val mIoU %": 100 * network_miou,
                "train s": train_seconds, "total s": time.perf_counter() - start,
            })
    frame = pd.DataFrame(rows)
    frame.attrs["baselines"] = base
    return frame, setting


def build(out: Path = REPORTS, plan: ProbePlan | None = None) -> Section:
    figure_style()
    import matplotlib.pyplot as plt

    plan = plan or ProbePlan()
    frame, setting = run_probes(plan)
    baselines = frame.attrs["baselines"]
    conclusion = verdict(frame, baselines)
    weights = "given checkpoints" if plan.checkpoints else (
        f"trained here from scratch: {plan.pretrain.steps} steps backbone pre-training under the LW decoder, then "
        f"{plan.finetune.steps} steps per family (batch {plan.finetune.batch_size}, {plan.finetune.crop}px crops)")
    settings_text = f"{setting}; backbone {plan.backbone}; {plan.size}px; {weights}; probe heads " \
                    f"{plan.probe.epochs} epochs, seed {plan.probe.seed}"
    save_table(frame, "probes_all", "Probes at the lowest-resolution block, every family", [
        f"Setting: {settings_text}.",
        "mIoU: one confusion matrix over the whole val split, 255 ignored, classes absent from both prediction and "
        "label excluded. Label accuracy: correct (image, class) decisions over images x foreground classes "
        "(the paper's 'acc, without background'). Subset accuracy: images with every class right. mAP: mean over "
        "classes of the average precision of the scores.",
        "'same tensor as': without RCUs, before-RCU and after-RCU are one tensor, so their rows are identical.",
    ], out)

    rf_rows = frame[frame.family == "rf"].set_index("tap")
    table4 = []
    for n in paper_numbers():
        if n.source == "Table 4" and n.metric == "probe_miou":
            tap = {"before RCU": "level4.before_rcu", "after RCU": "level4.after_rcu",
                   "after CRP": "level4.after_crp"}[n.model.split(" probe ")[1]]
            acc = next(a for a in paper_numbers() if a.source == "Table 4" and a.metric == "probe_multilabel_acc"
                       and a.model == n.model)
            row = rf_rows.loc[tap] if tap in rf_rows.index else None
            miou = row["mIoU %"] if row is not None else float("nan")
            label_acc = row["label accuracy %"] if row is not None else float("nan")
            table4.append({
                "probe point": TAP_LABELS[tap],
                "paper mIoU % (RefineNet-101, VOC val)": n.value,
                "measured mIoU %": miou,
                "mIoU diff": miou - n.value,
                "paper acc % (VOC, no background)": acc.value,
                "measured label acc %": label_acc,
                "acc diff": label_acc - acc.value,
                "measured mAP %": row["mAP %"] if row is not None else float("nan"),
            })
    t4 = pd.DataFrame(table4)
    save_table(t4, "table4_probes", "Table 4: probes before RCU, after RCU, after CRP (original RefineNet)", [
        f"Measured setting (not the paper's): {settings_text}.",
        "Paper: RefineNet-101 trained on PASCAL VOC, heads fine-tuned on the 1464 VOC train images, evaluated on VOC "
        "val. The measured numbers come from a different dataset, backbone and training budget; only the order "
        "of the three probe points could be compared, not the values.",
        conclusion,
        "All three families: probes_all.md.",
    ], out)

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=False)
    for ax, metric in zip(axes, ("mIoU %", "label accuracy %", "mAP %"), strict=True):
        pivot = frame.pivot(index="family", columns="probe point", values=metric)
        pivot = pivot.reindex([f for f in plan.families if f in pivot.index])
        pivot = pivot[[TAP_LABELS[t] for t in PROBE_TAPS]]
        pivot.index = [FAMILY_LABEL.get(f, f) for f in pivot.index]
        pivot.plot.bar(ax=ax, rot=0, width=0.8, legend=(metric == "mIoU %"))
        ax.set_title(metric.replace(" %", " (%)"), fontsize=10)
        ax.set_xlabel("")
        if metric in baselines:
            ax.axhline(baselines[metric], color="k", ls="--", lw=1,
                       label="trivial baseline" if metric == "mIoU %" else None)
        values = list(frame[metric]) + [baselines.get(metric, frame[metric].min())]
        ax.set_ylim(max(0, min(values) - 10), min(100, max(values) + 5))
        if metric == "mIoU %":
            ax.legend(fontsize=8)
    fig.suptitle(f"Probes on frozen level-4 features ({plan.backbone} backbone, {setting.split(' (')[0]}, "
                 f"{plan.size}px; not the paper's setting). Dashed: all-background / empty prediction", fontsize=10)
    save_figure(fig, "probes", out)
    artifacts = [
        Artifact("table4_probes.md", "Table 4 replica", "paper vs measured probe scores, original RefineNet",
                 settings_text, COMMAND, inline=True),
        Artifact("probes_all.md", "Probes, every family", "mIoU, label/subset accuracy, mAP per tap and family",
                 settings_text, COMMAND),
        Artifact("probes.png", "Probes (figure)", "the three probe points' scores per family", settings_text, COMMAND),
    ]
    text = ("The paper's probes used RefineNet-101 trained on VOC; neither VOC nor trained weights can be downloaded "
            "here, so the embedded default trains small models on generated data first (settings in each table). "
            f"{conclusion} "
            "Point `ProbePlan(voc_root=..., checkpoints={'rf101': ...})` at real data and weights for the paper's "
            "setting.")
    return Section("Probes (Table 4)", artifacts, text)
