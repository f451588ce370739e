"""Receptive-field section: decoder-grid ERFs of the three families, Figure 3 and Figure 8 replicas,
image-space ERF sizes, and the verdicts on claims (a) and (b).

Without a checkpoint the networks are randomly initialised with BatchNorm statistics re-estimated on
the images at hand (:func:`analysis.erf.recalibrate_batchnorm`): the figures show what the wiring
does, and say so. ``collect`` only calls :mod:`analysis.erf`; ``write`` draws and tabulates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from bench.models import create_model, find_variant

from ..datasets.images import normalise, voc_crops, voc_sample
from ..datasets.voc import VOC_CLASSES
from ..erf import (
    BLOCKS,
    DecoderGrid,
    GradientERF,
    decoder_grid_erf,
    erf_pairs,
    recalibrate_batchnorm,
    tap_features,
)
from ..erf.claims import CLAIM_A_RULE, EQUIVALENCE_MARGIN, claim_a, claim_b
from ..erf.plots import draw_gradient_erf, draw_occlusion
from ..erf.study import TopRegions, most_active_channels, top_regions
from ..style import FAMILY_COLOURS, family_label, use_style
from .files import Artifact, ScoreRow, Section, save_figure, save_table
from .scorecard import tally_status

FOLDER = "erf"
COMMAND = "python -m analysis report erf"
FAMILIES = ("rf", "rf_lw_rcu", "rf_lw")
FIG3_TAPS = {
    "level4.after_sum": "before CRP (level 4)",
    "level4.after_crp": "after CRP (level 4)",
    "level3.after_sum": "after the sum of levels 4 and 3",
}
IMAGE_TAPS = (*FIG3_TAPS, "logits")


@dataclass(frozen=True)
class ERFPlan:
    size: int = 512  # image-space gradient ERF input side (level 4: 16x16 cells)
    grid_size: int = 320  # input side for the decoder-grid ERF (level 4: 10x10 cells ... level 1: 80x80)
    grid_backbone: str = "resnet50"  # the decoder is the same at every depth; the backbone only feeds it
    occlusion_size: int = 160  # occlusion input side (each image costs one forward per occluder position)
    window: int = 40
    stride: int = 30
    top_k: int = 2  # top-activated images per unit
    backbone: str = "resnet101"  # Figures 3 and 8 (the paper's RefineNet-101 and RefineNet-LW-101)
    checkpoints: dict[str, str] = field(default_factory=dict)  # variant -> checkpoint; random init otherwise
    n_boot: int = 300

    @staticmethod
    def small() -> ERFPlan:
        """For tests and notebooks on CPU: tiny sizes, ResNet-50."""
        return ERFPlan(size=96, grid_size=96, occlusion_size=64, window=16, stride=16, top_k=1,
                       backbone="resnet50", n_boot=50)


@dataclass
class ERFResults:
    plan: ERFPlan
    grids: dict[str, DecoderGrid]  # family -> decoder-grid ERFs
    image_space: dict[str, GradientERF]  # Figure 3's taps and the logits of the LW model
    fig3: list[TopRegions]
    fig8: dict[str, list[TopRegions]]  # variant -> the classifier units' top regions
    crops: torch.Tensor  # the candidate images of the occlusion figures
    crop_names: list[str]
    weights: dict[str, str]  # variant -> what its weights are, in words


def _model(name: str, plan: ERFPlan, images: torch.Tensor | None) -> tuple[torch.nn.Module, str]:
    """A variant with its checkpoint, or random init with BatchNorm re-estimated on ``images``."""
    torch.manual_seed(0)
    checkpoint = plan.checkpoints.get(name)
    model = create_model(name, checkpoint=checkpoint).eval()
    if checkpoint:
        return model, f"checkpoint {checkpoint}"
    recalibrate_batchnorm(model, images, batch_size=len(images))
    return model, f"random init (seed 0), BatchNorm statistics re-estimated on the {len(images)} images used"


def collect(plan: ERFPlan | None = None, progress=print) -> ERFResults:
    plan = plan or ERFPlan()
    weights: dict[str, str] = {}
    grid_images = normalise(voc_sample((plan.grid_size, plan.grid_size))[0])
    grids = {}
    for family in FAMILIES:
        name = find_variant(family, plan.grid_backbone)
        progress(f"  decoder-grid ERF: {name} at {plan.grid_size}px")
        model, weights[name] = _model(name, plan, grid_images)
        grids[family] = decoder_grid_erf(model, grid_images, n_boot=plan.n_boot)
    lw, rf = find_variant("rf_lw", plan.backbone), find_variant("rf", plan.backbone)
    progress(f"  image-space ERF: {lw} at {plan.size}px")
    images = normalise(voc_sample((plan.size, plan.size))[0])
    model, weights[lw] = _model(lw, plan, images)
    measured = erf_pairs(model, images, [(t, "input") for t in IMAGE_TAPS], batch_size=len(images))
    image_space = {t: measured[(t, "input")] for t in IMAGE_TAPS}
    crops, crop_names = voc_crops((plan.occlusion_size, plan.occlusion_size))
    crops_n = normalise(crops)
    progress(f"  Figure 3: top-activated regions of {lw} over {len(crops)} crops at {plan.occlusion_size}px")
    if not plan.checkpoints.get(lw):
        recalibrate_batchnorm(model, crops_n, batch_size=len(crops_n))  # statistics of the images it now sees
    features = tap_features(model, list(FIG3_TAPS))
    channels = most_active_channels(features, crops_n, list(FIG3_TAPS))
    fig3 = top_regions(features, crops_n, [(t, c[0]) for t, c in channels.items()], plan.top_k, plan.window,
                       plan.stride)
    fig8 = {}
    for name in (rf, lw):
        progress(f"  Figure 8: classifier units of {name}")
        m = model if name == lw else _model(name, plan, crops_n)[0]
        weights.setdefault(name, _model_words(name, plan))
        f = tap_features(m, ["logits"])
        units = _classifier_units(name, plan, f, crops_n)
        fig8[name] = top_regions(f, crops_n, [("logits", c) for c in units], 1, plan.window, plan.stride)
    return ERFResults(plan, grids, image_space, fig3, fig8, crops, crop_names, weights)


def _model_words(name: str, plan: ERFPlan) -> str:
    checkpoint = plan.checkpoints.get(name)
    return f"checkpoint {checkpoint}" if checkpoint else "random init (seed 0), BatchNorm re-estimated on the images"


def _classifier_units(name: str, plan: ERFPlan, features, images) -> list[int]:
    """Trained: the paper's dog, horse, person units. Untrained: the three most active channels."""
    if plan.checkpoints.get(name):
        return [VOC_CLASSES.index(c) for c in ("dog", "horse", "person")]
    return most_active_channels(features, images, ["logits"], k=3)["logits"]


def write(results: ERFResults, out: Path, name: str = FOLDER) -> Section:
    """Tables and figures under ``out/name`` (the report passes ``erf/<device>``: one folder per setting)."""
    use_style()
    plan = results.plan
    folder = out / name
    trained = bool(plan.checkpoints)
    weights_words = "; ".join(f"{v}: {w}" for v, w in results.weights.items())
    settings = (f"decoder-grid ERF: {plan.grid_size}px inputs, the 4 shipped VOC images, backbone "
                f"{plan.grid_backbone} under each decoder; image-space ERF: {plan.size}px; occlusion: "
                f"{plan.occlusion_size}px crops, {plan.window}px occluder, stride {plan.stride}; weights: "
                f"{weights_words}; 95% CIs from {plan.n_boot} bootstrap resamples of the images")
    artifacts = []

    grid = pd.concat([g.frame for g in results.grids.values()], ignore_index=True)
    save_table(grid.drop(columns=["tap", "wrt"]), folder / "decoder_grid",
               "Decoder-grid ERF: how far each block spreads information on its level's grid (cells)", [
        "Gradient of the centre unit of a decoder tap with respect to an earlier tap of the same level, |.| summed "
        "over channels, mean over images; rN: radius of the smallest centred square (side 2r+1 cells) holding N% "
        "of it. Blocks: RCU before CRP = after RCU w.r.t. before; fusion + sum = after the sum w.r.t. after RCU; "
        "CRP = after CRP w.r.t. after the sum; RCU after CRP; whole level = after the last RCU w.r.t. before "
        "the first.",
        "theoretical: extent (cells) of the region that can influence the unit, from a two-channel replica of the "
        "level; clipped: it reaches the grid's edge (the grid, not the block, bounds it).",
        "One cell is the level's stride: 32 px at level 4, 16 at level 3, 8 at level 2, 4 at level 1."],
        labels={"r50_cells": "r50", "r90_cells": "r90", "r50_cells_ci_low": "r50 CI low",
                "r50_cells_ci_high": "r50 CI high", "r90_cells_ci_low": "r90 CI low",
                "r90_cells_ci_high": "r90 CI high", "theoretical_cells": "theoretical"},
        formats={c: ".0f" for c in grid.columns if "cells" in c})
    save_figure(decoder_grid_figure(grid, plan), folder / "decoder_grid")
    save_figure(decoder_maps_figure(results.grids, plan), folder / "decoder_grid_maps")
    artifacts += [
        Artifact(f"{name}/decoder_grid.png", "Decoder-grid ERF (figure)",
                 "r50/r90 and theoretical field per block, level and family, in cells"),
        Artifact(f"{name}/decoder_grid_maps.png", "Decoder-grid ERF maps", "CRP and whole-level maps, level 2"),
        Artifact(f"{name}/decoder_grid.md", "Decoder-grid ERF (table)", "every block, level and family"),
    ]

    a, b = claim_a(results.grids), claim_b(results.grids)
    image_rows = []
    for tap, erf in results.image_space.items():
        image_rows.append({"tap": tap, **{f"r{int(f * 100)}_px": erf.radius[f] for f in (0.2, 0.5, 0.9, 0.99)},
                           "image_half_side_px": plan.size // 2, "peak_gradient": float(erf.map.max())})
    image_space = pd.DataFrame(image_rows)
    lw = find_variant("rf_lw", plan.backbone)
    before, after = (results.image_space[t].radius[0.5] for t in ("level4.after_sum", "level4.after_crp"))
    save_table(image_space, folder / "image_space",
               f"Image-space gradient ERF of {lw} at {plan.size}x{plan.size} (centre unit, all channels)", [
        f"Weights: {results.weights[lw]}.",
        f"Radii in pixels; a radius of {plan.size // 2} px (half the image side) means the square reaches the "
        "image border, so r99 there is clipped by the image."])
    claims = pd.concat([
        a.assign(claim="(a) 3x3 convs dropped: ERF not shrunk", effect=a.side_ratio,
                 paper="no significant difference (RF-101 vs LW-101, trained)",
                 rule=f"LW/RF whole-level r90 side, 90% CI inside [{EQUIVALENCE_MARGIN[0]}, {EQUIVALENCE_MARGIN[1]}]"),
        b.assign(claim="(b) CRP enlarges the ERF", effect=b.crp_r90_cells, paper="ERF larger after CRP (Fig. 3)",
                 rule="CRP's r90 >= 1 cell, whole CI"),
    ], ignore_index=True)[["claim", "family", "level", "effect", "ci_low", "ci_high", "paper", "status", "rule"]]
    claims["family"] = claims["family"].map(family_label)
    save_table(claims, folder / "claims", "Claims (a) and (b) per family and level (decoder grid, architecture)", [
        "(a) Sections 3.2/5.1/8: 'dropping 3x3 convolutions does not shrink the ERF' - effect: side of LW's "
        "90%-mass square over RefineNet's for a whole level, paired bootstrap 90% CI over images; "
        f"{CLAIM_A_RULE}.",
        "(b) Section 5.1/Figure 3: 'CRP enlarges the ERF' - effect: r90 (cells) of CRP's own decoder-grid ERF.",
        f"Image space ({lw}, {plan.size}px): r50 {before} px before CRP, {after} px after CRP at level 4.",
        ("Decided with the given checkpoints." if trained else
         "Decided at random initialisation (conditioned BatchNorm): properties of the architecture. With trained "
         "weights: not testable here (no VOC-trained weights can be downloaded).")],
        formats={"effect": ".2f", "ci_low": ".2f", "ci_high": ".2f"})
    artifacts.append(Artifact(f"{name}/claims.md", "Claims (a) and (b)", "verdict per family and level",
                              inline=True))
    artifacts.append(Artifact(f"{name}/image_space.md", "Image-space ERF sizes", f"{lw}, Figure 3's taps"))

    save_figure(figure3(results), folder / "fig3")
    save_figure(figure8(results), folder / "fig8")
    artifacts += [Artifact(f"{name}/fig3.png", "Figure 3 replica", "ERF and top-activated regions before CRP, "
                           "after CRP, after the first sum"),
                  Artifact(f"{name}/fig8.png", "Figure 8 replica", "classifier units' top-activated regions, "
                           "RefineNet vs LW")]

    status_a, reason_a = tally_status(list(a.status), "(a)")
    status_b, reason_b = tally_status(list(b.status), "(b)")
    state = "trained" if trained else "random init"
    scores = [
        ScoreRow("Figure 3 / claim (b): CRP enlarges the ERF", "larger ERF after CRP (trained LW-101, VOC)",
                 f"decoder grid: CRP r90 {b.crp_r90_cells.min():.0f}-{b.crp_r90_cells.max():.0f} cells; image space "
                 f"r50 {before} -> {after} px", f"{state}, 4 VOC images, CPU", status_b,
                 reason_b + ("" if trained else "; the trained-network figure needs VOC-trained weights"),
                 "reproduced: CRP's r90 >= 1 cell (whole CI) at every level of every family; partly: at some",
                 f"{name}/claims.md"),
        ScoreRow("Section 8 / claim (a): no smaller ERF without 3x3", "no significant difference (RF-101 vs LW-101)",
                 "LW/RF side ratio " + ", ".join(f"{r:.2f}" for r in a.side_ratio), f"{state}, 4 VOC images, CPU",
                 status_a, reason_a, f"per level: {CLAIM_A_RULE}; reproduced: equivalent at every level",
                 f"{name}/claims.md"),
        ScoreRow("Figure 8 (classifier-layer regions)", "semantically similar regions, RF-101 vs LW-101",
                 "regions drawn for the 3 most active channels" if not trained else "dog/horse/person units",
                 f"{state}, 20 VOC crops", "not testable here" if not trained else "reproduced",
                 "random init: class units mean nothing without VOC-trained weights" if not trained else
                 "drawn from the given checkpoints (judge by eye)", "needs trained weights",
                 f"{name}/fig8.png"),
    ]
    n_a = int((a.status == "reproduced").sum())
    n_b = int((b.status == "reproduced").sum())
    text = (f"Decoder-grid ERFs (architecture, {state}): CRP spreads information over r90 = "
            f"{b.crp_r90_cells.min():.0f}-{b.crp_r90_cells.max():.0f} cells in every family (claim (b) holds in "
            f"{n_b}/{len(b)} family-level cells); the light-weight whole-level ERF is "
            f"{a.side_ratio.min():.2f}-{a.side_ratio.max():.2f}x RefineNet's square side (claim (a) holds in "
            f"{n_a}/{len(a)}). In image space ({lw}, {plan.size}px) CRP moves r50 from {before} to {after} px at "
            "level 4.")
    return Section("Receptive fields (Figures 3 and 8)", artifacts, text, settings, scores, name)


def decoder_grid_figure(grid: pd.DataFrame, plan: ERFPlan):
    """Small multiples per level: r90 (bar) and r50 (inner bar) per block, one colour per family, the
    theoretical field as a tick above; categorical axis, so no lines between blocks."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    levels = list(dict.fromkeys(grid.level))
    blocks = [b for b, _, _ in BLOCKS]
    families = [f for f in FAMILY_COLOURS if f in set(grid.family)]
    fig, axes = plt.subplots(1, len(levels), figsize=(4.2 * len(levels), 4.6), sharey=False)
    axes = np.atleast_1d(axes)
    width = 0.8 / len(families)
    for ax, level in zip(axes, levels, strict=True):
        sub = grid[grid.level == level]
        for j, family in enumerate(families):
            g = sub[sub.family == family].set_index("block").reindex(blocks)
            x = np.arange(len(blocks)) + (j - (len(families) - 1) / 2) * width
            colour = FAMILY_COLOURS[family]
            ax.bar(x, 2 * g["r90_cells"] + 1, width, color=colour, alpha=0.45)
            ax.bar(x, 2 * g["r50_cells"] + 1, width * 0.55, color=colour)
            ax.plot(x, g["theoretical_cells"], ls="none", marker="_", ms=10, mew=2, color=colour)
        g0 = sub.iloc[0]
        top = max(sub.theoretical_cells.max(), (2 * sub.r90_cells + 1).max()) * 1.15
        if g0.grid_h <= top:  # the grid bounds the field here: show where
            ax.axhline(g0.grid_h, color="0.4", ls=":", lw=1)
            ax.text(len(blocks) - 0.5, g0.grid_h, f"grid: {g0.grid_h} cells", ha="right", va="bottom", fontsize=7)
        ax.set_xticks(range(len(blocks)), blocks, rotation=35, ha="right", fontsize=8)
        ax.set_title(f"{level}: {g0.grid_h}x{g0.grid_w} cells of {plan.grid_size // g0.grid_h} px", fontsize=10)
        ax.set_ylim(0, top)
    axes[0].set_ylabel("square side (cells, 2r+1)")
    handles = [Patch(color=FAMILY_COLOURS[f], label=family_label(f)) for f in families]
    handles += [Patch(color="0.5", alpha=0.45, label="90% of the mass"), Patch(color="0.3", label="50% of the mass"),
                Line2D([], [], ls="none", marker="_", ms=10, mew=2, color="0.3", label="theoretical field")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.08), fontsize=8)
    fig.suptitle(f"Decoder-grid ERF per block: how far each block spreads information on its own grid "
                 f"({plan.grid_size}px inputs, {plan.grid_backbone} features, random init with re-estimated "
                 "BatchNorm)", fontsize=10)
    fig.tight_layout()
    return fig


def decoder_maps_figure(grids: dict[str, DecoderGrid], plan: ERFPlan, level: str = "level2"):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(grids), figsize=(4.2 * len(grids), 7.6))
    for col, (family, grid) in enumerate(grids.items()):
        for row, (block, tap, wrt) in enumerate([b for b in BLOCKS if b[0] in ("CRP", "whole level")]):
            erf = grid.maps[(f"{level}.{tap}", f"{level}.{wrt}")]
            draw_gradient_erf(axes[row, col], erf, f"{family_label(family)}: {block}, {level}", normalise="log",
                              unit="cells")
    fig.suptitle(f"Decoder-grid ERF maps at {level} ({plan.grid_size}px inputs; log scale: the residual paths put "
                 "most of the mass on the unit's own cell; squares: 50% (white) and 90% (orange) of the mass)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def figure3(results: ERFResults):
    import matplotlib.pyplot as plt

    plan = results.plan
    lw = find_variant("rf_lw", plan.backbone)
    k = plan.top_k
    fig, axes = plt.subplots(len(FIG3_TAPS), k + 1, figsize=(3.4 * (k + 1) + 0.8, 3.3 * len(FIG3_TAPS)))
    for row, region in enumerate(results.fig3):
        tap = region.top.tap
        draw_gradient_erf(axes[row, 0], results.image_space[tap], f"{FIG3_TAPS[tap]}\ngradient ERF")
        for col, (i, act, m) in enumerate(zip(region.top.indices, region.top.activations, region.maps, strict=True), 1):
            draw_occlusion(axes[row, col], results.crops[i], m,
                           f"#{col}: {results.crop_names[i]}\nunit {region.top.channel}, activation {act:.3g}")
    fig.suptitle(f"Figure 3 replica: {lw}, {results.weights[lw]}\nleft: gradient ERF of the centre unit, mean over "
                 f"the 4 VOC images at {plan.size}px; right: the top-{k} of 20 VOC crops for the most active unit, "
                 f"dimmed outside the region where a {plan.window}px occluder lowers it most", fontsize=9)
    fig.tight_layout()
    return fig


def figure8(results: ERFResults):
    import matplotlib.pyplot as plt

    plan = results.plan
    names = list(results.fig8)
    units = max(len(v) for v in results.fig8.values())
    fig, axes = plt.subplots(len(names), units, figsize=(3.2 * units, 3.4 * len(names)), squeeze=False)
    trained = bool(plan.checkpoints)
    for row, name in enumerate(names):
        for col, region in enumerate(results.fig8[name]):
            c = region.top.channel
            label = VOC_CLASSES[c] if trained and c < len(VOC_CLASSES) else f"channel {c}"
            i = region.top.indices[0]
            draw_occlusion(axes[row, col], results.crops[i], region.maps[0],
                           f"{name}: {label}\n{results.crop_names[i]}")
    state = "trained" if trained else "untrained: random init, channel indices, not classes"
    fig.suptitle(f"Figure 8 replica: classification-layer units of {' vs '.join(names)} ({state})\ntop-activated "
                 f"region of each unit over 20 VOC crops at {plan.occlusion_size}px", fontsize=9)
    fig.tight_layout()
    return fig


def build(out: Path, plan: ERFPlan | None = None, name: str = FOLDER) -> Section:
    return write(collect(plan), out, name)
