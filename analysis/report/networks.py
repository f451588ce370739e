"""Trained-networks section: the trained set every "what it buys" analysis stands on (receptive fields,
Figure 8, probes), with each network's own val mIoU, how its training ended, and its learning curve.
``collect`` trains or loads the set (:func:`analysis.networks.trained_set`); ``write`` tabulates and draws."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from bench.environment import device_description

from ..networks import SETTINGS, NetworkSetting, TrainedNetwork, trained_set
from ..style import FAMILY_COLOURS, family_label, use_style
from ..verdicts import Interval, above, tally
from .files import Artifact, ScoreRow, Section, save_figure, save_table
from .probes import OWN_MIOU_GOAL, schedule_words

FOLDER = "networks"


def default_setting() -> NetworkSetting:
    return SETTINGS["gpu" if torch.cuda.is_available() else "cpu"]


def collect(setting: NetworkSetting | None = None, progress=print) -> tuple[NetworkSetting, list[TrainedNetwork]]:
    setting = setting or default_setting()
    return setting, trained_set(setting, say=progress)


def write(setting: NetworkSetting, nets: list[TrainedNetwork], out: Path, name: str = FOLDER) -> Section:
    use_style()
    folder = out / name
    rows = [{"variant": n.record["variant"], "family": n.record["family"], "seed": n.record["seed"],
             "val_miou": n.record["val_miou"], "steps": n.record["steps"], "best_step": n.record["best_step"],
             "stop_reason": n.record["stop_reason"], "train_s": n.record["seconds"], "cached": n.cached,
             **{f"iou {c}": v for c, v in n.record["val_iou_per_class"].items()}} for n in nets]
    table = pd.DataFrame(rows)
    per_family = table.groupby("family", sort=False)["val_miou"].min()
    short = [f for f, v in per_family.items() if v < OWN_MIOU_GOAL]
    words = "; ".join(f"{family_label(f)} {100 * v:.1f}%" for f, v in per_family.items())
    settings = schedule_words(setting) + f"; {nets[0].record['data']['kind']} data, {setting.schedule.size}px"
    shown = table.assign(family=table.family.map(family_label),
                         **{c: 100 * table[c] for c in table.columns if c == "val_miou" or c.startswith("iou ")})
    save_table(table, folder / "networks", "The trained set: each network's own val mIoU", [
        f"Setting: {settings}.",
        "own val mIoU: the kept (best evaluated) weights on the whole val split, one confusion matrix, 255 ignored; "
        "iou <class>: per class. train s: wall seconds of the training, evaluations included (0 work when loaded "
        "from the cache: the seconds are those of the original training).",
        f"Goal: every family >= {100 * OWN_MIOU_GOAL:.0f}% (features near the task's ceiling, so that differences "
        "between families are not differences in how far each got)."], floatfmt=".1f", display=shown,
        labels={"val_miou": "own val mIoU %", "stop_reason": "stopped by", "train_s": "train s",
                "cached": "from the cache", "best_step": "best step"})
    save_figure(curves_figure(nets, setting), folder / "learning_curves")
    artifacts = [Artifact(f"{name}/networks.md", "The trained set", "own val mIoU per family and seed", inline=True),
                 Artifact(f"{name}/learning_curves.png", "Learning curves", "val mIoU against training step")]
    goal = tally([above(Interval.exact(100 * v), 100 * OWN_MIOU_GOAL, family_label(f), ".1f", strict=False).outcome
                  for f, v in per_family.items()], "goal", "families", [family_label(f) for f in short])
    n_seeds = int(table.groupby("family")["seed"].nunique().min())
    scores = [ScoreRow("Trained set (own val mIoU, not a paper number)", f"goal >= {100 * OWN_MIOU_GOAL:.0f}% "
                       "(ours)", words, f"'{setting.name}' set, generated shapes, {setting.device}", goal.outcome,
                       goal.why, f"reproduced where every family's lowest seed reaches {100 * OWN_MIOU_GOAL:.0f}% own "
                       "val mIoU (a precondition of the benefit side, not a paper claim)", f"{name}/networks.md",
                       n_seeds)]
    text = (f"The networks every receptive-field and probe verdict stands on: own val mIoU (lowest seed per family) "
            f"{words}; trained from scratch on the generated shapes, cached and reused by the ERF and probe "
            "sections.")
    return Section(f"Trained networks, '{setting.name}' setting, on {device_description(setting.device)}", artifacts,
                   text, settings, scores, name)


def curves_figure(nets: list[TrainedNetwork], setting: NetworkSetting):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for n in nets:
        steps = [h["step"] for h in n.record["history"]]
        miou = [100 * h["val_miou"] for h in n.record["history"]]
        ax.plot(steps, miou, marker="o", ms=3, color=FAMILY_COLOURS[n.record["family"]],
                label=f"{family_label(n.record['family'])} (seed {n.record['seed']})")
    ax.axhline(100 * OWN_MIOU_GOAL, color="0.4", ls=":", lw=1)
    ax.set_xlabel("training step")
    ax.set_ylabel("own val mIoU %")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"Learning curves of the '{setting.name}' trained set ({setting.backbone}, {setting.schedule.size}px, "
                 f"{setting.device}); dotted: the {100 * OWN_MIOU_GOAL:.0f}% goal", fontsize=9)
    fig.tight_layout()
    return fig


def build(out: Path, setting: NetworkSetting | None = None, name: str = FOLDER) -> Section:
    setting, nets = collect(setting)
    return write(setting, nets, out, name)
