"""Drawing the probes (used by the report; no analysis here): scores per family and probe point with
their intervals, and the paired differences next to the paper's."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .probes import FAMILY_LABEL, METRICS, PROBE_TAPS, TAP_LABELS


def draw_probes(frame: pd.DataFrame, diffs: pd.DataFrame, baselines: dict[str, float],
                families: Sequence[str], title: str):
    """Bars with 95% CIs per metric, family and probe point; then the paired CRP/RCU differences."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    families = [f for f in families if f in set(frame.family)] or list(dict.fromkeys(frame.family))
    colours = sns.color_palette("colorblind", len(PROBE_TAPS))
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2), gridspec_kw={"width_ratios": [1, 1, 1, 1.1]})
    width = 0.8 / len(PROBE_TAPS)
    for ax, metric in zip(axes[:3], METRICS, strict=True):
        for j, tap in enumerate(PROBE_TAPS):
            sub = frame[frame.tap == tap].set_index("family").reindex(families)
            x = np.arange(len(families)) + (j - (len(PROBE_TAPS) - 1) / 2) * width
            err = None
            if f"{metric} CI low" in sub:
                err = np.vstack([sub[metric] - sub[f"{metric} CI low"], sub[f"{metric} CI high"] - sub[metric]])
            ax.bar(x, sub[metric], width, yerr=err, capsize=2, color=colours[j], label=TAP_LABELS[tap],
                   error_kw={"lw": 0.8})
        if metric in baselines:
            ax.axhline(baselines[metric], color="k", ls="--", lw=1, label="trivial baseline")
        lows, highs = frame.get(f"{metric} CI low", frame[metric]), frame.get(f"{metric} CI high", frame[metric])
        ax.set_ylim(max(0, min(lows.min(), baselines.get(metric, 100)) - 5), min(100, highs.max() + 5))
        ax.set_xticks(np.arange(len(families)), [FAMILY_LABEL.get(f, f) for f in families])
        ax.set_title(metric.replace(" %", " (%)"), fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()  # one legend for the three bar panels, below them
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, bbox_to_anchor=(0.4, -0.06))
    ax = axes[3]
    labels, paper_drawn = [], False
    for i, (_, d) in enumerate(diffs.iterrows()):
        y = len(diffs) - 1 - i
        low, high = d.get("mIoU % CI low", d["mIoU %"]), d.get("mIoU % CI high", d["mIoU %"])
        ax.errorbar(d["mIoU %"], y, xerr=[[d["mIoU %"] - low], [high - d["mIoU %"]]], fmt="o", color="C0",
                    capsize=3, label="measured (95% CI)" if i == 0 else None)
        paper = d.get("paper mIoU % (RefineNet-101, VOC)")
        if paper is not None and not pd.isna(paper):
            ax.plot(paper, y, marker="D", color="C3", ls="none",
                    label=None if paper_drawn else "paper (RefineNet-101, VOC)")
            paper_drawn = True
        labels.append(f"{FAMILY_LABEL.get(d.family, d.family)}: {d.block}")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(diffs)), labels[::-1])
    ax.set_xlabel("mIoU points (after - before the block)")
    ax.set_title("What the block adds at level 4 (paired)", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
