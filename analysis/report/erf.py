"""Receptive-field section: decoder-grid ERFs of the three families, Figure 3 and Figure 8 replicas,
image-space ERF sizes, and the verdicts on claims (a), (b) and Figure 8, decided on trained networks.

The networks are the trained set (:mod:`analysis.networks`, shared with the probes): each family
trained on the generated shapes data to a plateau of its own val mIoU. Beside each trained result, the
same architecture at random initialisation (BatchNorm statistics re-estimated on the same images) says
what the wiring alone gives. ERFs are measured on generated canvases larger than the training images
(``canvas_factor`` x the training side, objects at the training scale, more of them), so the coarse
levels have room: at the training side level 4 is only a few cells. ``collect`` only calls library
functions; ``write`` draws and tabulates.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch

from bench.environment import device_description
from bench.models import create_model

from ..datasets.images import normalise
from ..datasets.synthetic import SyntheticSpec, synthetic_voc
from ..datasets.voc import VOCSegmentation
from ..erf import (
    BLOCKS,
    DecoderGrid,
    GradientERF,
    decoder_grid_erf,
    erf_pairs,
    recalibrate_batchnorm,
    tap_features,
)
from ..erf.claims import (
    CLAIM_A_LEVEL,
    CLAIM_A_RULE,
    CLAIM_B_RULE,
    DEAD,
    DEAD_RULE,
    claim_a,
    claim_b,
    level_activity,
)
from ..erf.plots import draw_gradient_erf, draw_occlusion
from ..erf.study import TopRegions, most_active_channels, top_regions
from ..erf.units import RULE as UNIT_RULE
from ..erf.units import class_maps, unit_agreement, unit_verdicts
from ..networks import SETTINGS, NetworkSetting, load_data, trained_set
from ..networks.store import decoder_layers
from ..style import FAMILY_COLOURS, family_label, use_style
from ..verdicts import NOT_TESTABLE, tally
from .files import Artifact, ScoreRow, Section, save_figure, save_table

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
    networks: NetworkSetting = SETTINGS["cpu"]  # the trained set (cached; the probes use the same networks)
    canvas_factor: int = 2  # ERF canvases: this many times the training side, objects at the training scale
    n_canvas: int = 16  # canvases (bootstrap unit for the ERF intervals)
    window: int = 32  # occlusion (Figures 3 and 8), on val images at the training side
    stride: int = 16
    top_k: int = 2  # top-activated images per unit in Figure 3
    n_boot: int = 300
    cache_dir: str | None = None  # the trained-network cache (None: the project's .cache/networks)
    seeds: int = 1  # training runs per family that claims (a) and (b) rest on (Figures 3 and 8: the first run's)

    @staticmethod
    def default() -> ERFPlan:
        return ERFPlan(networks=SETTINGS["gpu" if torch.cuda.is_available() else "cpu"])

    @staticmethod
    def small() -> ERFPlan:
        """For tests and notebooks on CPU: the tiny trained set, a few canvases."""
        from ..probes.run import TINY_NETWORKS

        return ERFPlan(networks=TINY_NETWORKS, n_canvas=4, window=16, stride=16, top_k=1, n_boot=50)

    @property
    def canvas_size(self) -> int:
        """The ERF canvases' side: larger than the training images for the generated scenes (objects drawn at their
        training scale); a folder's own val images at the training side (enlarging them would enlarge the objects)."""
        if isinstance(self.networks.data, (str, Path)):
            return self.networks.schedule.size
        return self.networks.schedule.size * self.canvas_factor


@dataclass
class ERFResults:
    plan: ERFPlan
    grids: dict[str, DecoderGrid]  # family -> decoder-grid ERFs of the trained network (seed 0)
    random_grids: dict[str, DecoderGrid]  # family -> the same architecture at random init
    image_space: dict[str, GradientERF]  # Figure 3's taps and the logits of the trained LW network
    fig3: list[TopRegions]
    fig8: dict[str, list[TopRegions]]  # variant -> the class units' top regions
    units: pd.DataFrame  # Figure 8 as numbers (analysis.erf.units)
    images: torch.Tensor  # the val images of the occlusion figures (uint8)
    image_names: list[str]
    classes: tuple[str, ...]
    own_miou: dict[str, float]  # variant -> the trained network's own val mIoU
    data_words: str
    activity: dict[str, dict[str, float]] | None = None  # family -> level -> share of live summation ReLUs
    seed_grids: list[dict[str, DecoderGrid]] = field(default_factory=list)  # per seed (0 first): claims (a), (b)
    seed_activity: list[dict[str, dict[str, float]]] = field(default_factory=list)  # per seed, as ``activity``


def canvas_spec(net: NetworkSetting, factor: int, n: int) -> SyntheticSpec:
    """Generated canvases ``factor`` x the training side, objects and textures at the size they have in training
    (:meth:`SyntheticSpec.scaled`: the training images are the generated ones at the schedule's side), ``factor``^2 x
    as many objects and distractors."""
    data, side = net.data, net.schedule.size
    training = data.scaled(side)
    return replace(training.scaled(side * factor), radius=training.radius, period=training.period, n_train=1, n_val=n,
                   n_test=0, max_objects=data.max_objects * factor**2, distractors=data.distractors * factor**2,
                   seed=data.seed + 1)


def collect(plan: ERFPlan | None = None, progress=print) -> ERFResults:
    plan = plan or ERFPlan.default()
    net = plan.networks
    say = progress or (lambda msg: None)
    data = load_data(net.data, net.schedule.size, progress=progress)
    # the one way to the trained set (the setting's shared pretrained backbone, one network per architecture)
    nets = trained_set(net, variants=[f"{family}:{net.backbone}" for family in FAMILIES],
                       seeds=list(range(plan.seeds)), cache_dir=plan.cache_dir, progress=progress is not None,
                       say=progress)
    trained = {n.record["family"]: n for n in nets if n.record["seed"] == 0}
    later = [{n.record["family"]: n for n in nets if n.record["seed"] == seed} for seed in range(1, plan.seeds)]
    side = plan.canvas_size
    if isinstance(net.data, (str, Path)):  # a folder of one's own: its val images are the canvases
        canvases = VOCSegmentation(net.data, "val", (side, side)).load_all()[0][: plan.n_canvas]
    else:
        root = synthetic_voc(canvas_spec(net, plan.canvas_factor, plan.n_canvas), progress=progress)
        canvases = VOCSegmentation(root, "val", (side, side)).load_all()[0]
    canvases = normalise(canvases).to(net.device)
    grids, random_grids, activity = {}, {}, {}
    for family, t in trained.items():
        say(f"  decoder-grid ERF: {t.record['variant']}, trained and at random init, {len(canvases)} canvases "
            f"at {side}px")
        grids[family] = decoder_grid_erf(t.model, canvases, n_boot=plan.n_boot)
        activity[family] = level_activity(t.model, canvases)
        torch.manual_seed(0)
        # the trained network's own build: the setting's decoder changes under the variant's own (as train_network)
        layers = decoder_layers(t.record["variant"], net.decoder)[0]
        fresh = create_model(t.record["variant"], num_classes=data.num_classes, decoder=layers).to(net.device)
        recalibrate_batchnorm(fresh, canvases, batch_size=len(canvases))
        random_grids[family] = decoder_grid_erf(fresh.eval(), canvases, n_boot=plan.n_boot)
    seed_grids, seed_activity = [grids], [activity]
    for seed, by_family in enumerate(later, 1):  # claims (a) and (b) over training runs: the trained grids only
        say(f"  decoder-grid ERF: seed {seed} of the trained set, {len(canvases)} canvases at {side}px")
        seed_grids.append({f: decoder_grid_erf(t.model, canvases, n_boot=plan.n_boot) for f, t in by_family.items()})
        seed_activity.append({f: level_activity(t.model, canvases) for f, t in by_family.items()})
    lw, rf = trained["rf_lw"].model, trained["rf"].model
    measured = erf_pairs(lw, canvases, [(t, "input") for t in IMAGE_TAPS], batch_size=8)
    image_space = {t: measured[(t, "input")] for t in IMAGE_TAPS}
    val = data.val_inputs.to(net.device)
    say(f"  Figure 3: top-activated regions of the trained LW network over {len(val)} val images")
    features = tap_features(lw, list(FIG3_TAPS))
    channels = most_active_channels(features, val, list(FIG3_TAPS))
    fig3 = top_regions(features, val, [(t, c[0]) for t, c in channels.items()], plan.top_k, plan.window, plan.stride)
    units = list(range(1, data.num_classes))
    fig8 = {}
    for family in ("rf", "rf_lw"):
        say(f"  Figure 8: class units of the trained {family_label(family)} network")
        f = tap_features(trained[family].model, ["logits"])
        fig8[trained[family].record["variant"]] = top_regions(f, val, [("logits", c) for c in units], 1, plan.window,
                                                               plan.stride)
    size = tuple(data.val_masks.shape[-2:])
    maps = {family_label(f): class_maps(m, val, size) for f, m in (("rf", rf), ("rf_lw", lw))}
    agreement = unit_agreement(maps, data.val_masks, data.classes, units, n_boot=plan.n_boot)
    names = [f"val {i}" for i in range(len(val))]
    own = {t.record["variant"]: t.record["val_miou"] for t in trained.values()}
    return ERFResults(plan, grids, random_grids, image_space, fig3, fig8, agreement, data.val_images, names,
                      data.classes, own, data.describe(), activity, seed_grids, seed_activity)


def _claims(grids: dict[str, DecoderGrid] | list[dict[str, DecoderGrid]], weights: str,
            activity=None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Claims (a) and (b) on one run's grids, or on a list of runs' (one per seed: the interval over runs and
    canvases)."""
    a, b = claim_a(grids, activity=activity), claim_b(grids, activity=activity)
    claims = pd.concat([
        a.assign(claim="(a) 3x3 convs dropped: ERF not shrunk", effect=a.side_ratio, rule=CLAIM_A_RULE,
                 paper="no significant difference (RF-101 vs LW-101, trained)"),
        b.assign(claim="(b) CRP enlarges the ERF", effect=b.crp_side90_cells, rule=CLAIM_B_RULE,
                 paper="ERF larger after CRP (Fig. 3)"),
    ], ignore_index=True)[["claim", "family", "level", "effect", "ci_low", "ci_high", "paper", "status", "why"]]
    # n_seeds: the training runs the interval covers (0: random init, no training run)
    runs = len(grids) if isinstance(grids, list) else 1
    return a, b, claims.assign(weights=weights, n_seeds=runs if weights == "trained" else 0)


def write(results: ERFResults, out: Path, name: str = FOLDER) -> Section:
    """Tables and figures under ``out/name`` (the report passes ``erf/<device>``: one folder per setting)."""
    use_style()
    plan = results.plan
    net = plan.networks
    folder = out / name
    own = ", ".join(f"{family_label(n.split(':')[0])} {100 * v:.1f}%" for n, v in results.own_miou.items())
    start = "one shared pretrained backbone" if net.pretrain is not None else "from scratch"
    settings = (f"trained set '{net.name}' on {net.device} ({results.data_words}; {net.backbone}, {start}; own val "
                f"mIoU {own}); decoder-grid and image-space ERF on "
                + (f"{plan.n_canvas} of the folder's val images at {plan.canvas_size}px"
                   if isinstance(net.data, (str, Path)) else
                   f"{plan.n_canvas} generated canvases of {plan.canvas_size}px (objects at the training scale)")
                + f"; random init: the same architecture, seed 0, "
                f"BatchNorm re-estimated on the canvases; occlusion: val images at {net.schedule.size}px, "
                f"{plan.window}px occluder, stride {plan.stride}; CIs from {plan.n_boot} bootstrap resamples of the "
                f"images")
    artifacts = []

    grid = pd.concat([g.frame.assign(weights="trained") for g in results.grids.values()]
                     + [g.frame.assign(weights="random init") for g in results.random_grids.values()],
                     ignore_index=True)
    save_table(grid.drop(columns=["tap", "wrt"]), folder / "decoder_grid",
               "Decoder-grid ERF: how far each block spreads information on its level's grid (cells)", [
        "Gradient of the centre unit of a decoder tap with respect to an earlier tap of the same level, |.| summed "
        "over channels, mean over images; rN: radius of the smallest centred square (side 2r+1 cells) holding N% "
        "of it; side90: the side of the 90% square interpolated between whole squares (claim (a) uses it). "
        "Blocks: RCU before CRP = after RCU w.r.t. before; fusion + sum = after the sum w.r.t. after RCU; "
        "CRP = after CRP w.r.t. after the sum; RCU after CRP; whole level = after the last RCU w.r.t. before "
        "the first.",
        "theoretical: extent (cells) of the region that can influence the unit, from a two-channel replica of the "
        "level; clipped: it reaches the grid's edge (the grid, not the block, bounds it).",
        "weights: the trained network, or the same architecture at random initialisation.",
        f"One cell is the level's stride: 32 px at level 4 ... 4 px at level 1; canvases of {plan.canvas_size}px."],
        labels={"r50_cells": "r50", "r90_cells": "r90", "r50_cells_ci_low": "r50 CI low",
                "r50_cells_ci_high": "r50 CI high", "r90_cells_ci_low": "r90 CI low",
                "r90_cells_ci_high": "r90 CI high", "side90_cells": "side90", "side90_cells_ci_low": "side90 CI low",
                "side90_cells_ci_high": "side90 CI high", "theoretical_cells": "theoretical"},
        formats={c: ".2f" if c.startswith("side90") else ".0f" for c in grid.columns if "cells" in c})
    save_figure(decoder_grid_figure(grid[grid.weights == "trained"], plan), folder / "decoder_grid")
    save_figure(decoder_maps_figure(results.grids, plan), folder / "decoder_grid_maps")
    artifacts += [
        Artifact(f"{name}/decoder_grid.png", "Decoder-grid ERF (figure)",
                 "r50/r90 and theoretical field per block, level and family, in cells (trained networks)"),
        Artifact(f"{name}/decoder_grid_maps.png", "Decoder-grid ERF maps", "CRP and whole-level maps, level 2"),
        Artifact(f"{name}/decoder_grid.md", "Decoder-grid ERF (table)", "every block, level and family, trained "
                 "and random init"),
    ]

    n_runs = max(1, len(results.seed_grids))
    a, b, claims = (_claims(results.seed_grids, "trained", results.seed_activity) if n_runs > 1
                    else _claims(results.grids, "trained", results.activity))
    a0, b0, claims0 = _claims(results.random_grids, "random init")
    claims = pd.concat([claims, claims0], ignore_index=True)
    claims["family"] = claims["family"].map(family_label)
    image_rows = []
    for tap, erf in results.image_space.items():
        image_rows.append({"tap": tap, **{f"r{int(f * 100)}_px": erf.radius[f] for f in (0.2, 0.5, 0.9, 0.99)},
                           "image_half_side_px": plan.canvas_size // 2, "peak_gradient": float(erf.map.max())})
    image_space = pd.DataFrame(image_rows)
    lw_name = next(n for n in results.own_miou if n.startswith("rf_lw:"))
    before, after = (results.image_space[t].radius[0.5] for t in ("level4.after_sum", "level4.after_crp"))
    save_table(image_space, folder / "image_space",
               f"Image-space gradient ERF of the trained {lw_name} on {plan.canvas_size}px canvases (centre unit)", [
        f"Radii in pixels; a radius of {plan.canvas_size // 2} px (half the canvas side) means the square reaches the "
        "border."])
    save_table(claims, folder / "claims", "Claims (a) and (b) per family and level (decoder grid)", [
        (f"Trained rows rest on {n_runs} training runs per family (seeds 0..{n_runs - 1}): the effect is the mean "
         "over the runs and its interval the t interval over the runs and the canvases they share (the same canvas "
         "resamples for every run and family; analysis.verdicts.seeds_and_images); decoder_grid.md, Figures 3 and 8 "
         "show seed 0."
         if n_runs > 1 else "Trained rows rest on one training run per family (seed 0): the intervals cover "
         "canvases, not training runs (`nox -s seeds` decides them over 3)."),
        f"(a) Sections 3.2/5.1/8: 'dropping 3x3 convolutions does not shrink the ERF' - effect: side of the light-"
        f"weight family's 90%-mass square over RefineNet's for a whole level, paired {CLAIM_A_LEVEL:.0%} image-"
        f"bootstrap CI. The side is interpolated between whole squares (analysis.erf.gradient.mass_side: the "
        f"mass of each ring of cells spread over the two sides it adds), so it moves when mass moves within a ring; "
        f"with whole-cell sides (2r+1) most intervals were one value. Rule: {CLAIM_A_RULE}.",
        f"(b) Section 5.1/Figure 3: 'CRP enlarges the ERF' - effect: side (cells, interpolated as for (a)) of the "
        f"90%-mass square of CRP's own decoder-grid ERF, 95% CI (whole-cell r90 in decoder_grid.md). Rule: "
        f"{CLAIM_B_RULE}.",
        f"Both (trained): {DEAD_RULE}. Live share per level on these canvases: " + "; ".join(
            f"{family_label(f)} " + ", ".join(f"{lvl} {100 * v:.1f}%" for lvl, v in act.items())
            for f, act in (results.activity or {}).items()) + ".",
        "Decided on the trained networks (weights = trained); the random-init rows are the architecture alone: "
        "there (b) holds by construction (the theoretical field of CRP's 5x5 max-pools is 4k+1 cells), and CRP's "
        "residual branches start at zero in training, so a trained (b) says what training made of CRP.",
        f"Image space (trained LW, {plan.canvas_size}px canvases): r50 {before} px before CRP, {after} px after "
        "CRP at level 4."],
        formats={"effect": ".2f", "ci_low": ".2f", "ci_high": ".2f"})
    artifacts.append(Artifact(f"{name}/claims.md", "Claims (a) and (b)", "verdict per family and level, trained "
                              "and random init", inline=True))
    artifacts.append(Artifact(f"{name}/image_space.md", "Image-space ERF sizes", "trained LW, Figure 3's taps"))

    verdicts = unit_verdicts(results.units)
    shown_units = results.units.merge(verdicts[["unit", "status"]], on="unit").assign(n_seeds=1)
    save_table(shown_units, folder / "figure8_units", "Figure 8 as numbers: where each class unit fires", [
        "Top region of a class unit: the pixels of its upsampled logit map above the threshold that gives it as "
        "many pixels as the class has in the val labels. precision: share of it on the unit's own class; overlap: "
        "IoU of RefineNet's and LW's top regions. 95% CIs: image bootstrap over one training run per network "
        "(n_seeds 1: the intervals do not cover training runs).", f"Rule: {UNIT_RULE}."],
        formats={c: ".2f" for c in shown_units.columns if c.startswith(("precision", "overlap"))})
    artifacts.append(Artifact(f"{name}/figure8_units.md", "Figure 8 as numbers", "class units vs labels and "
                              "across networks", inline=True))

    save_figure(figure3(results), folder / "fig3")
    save_figure(figure8(results), folder / "fig8")
    artifacts += [Artifact(f"{name}/fig3.png", "Figure 3 replica", "ERF and top-activated regions before CRP, "
                           "after CRP, after the first sum (trained LW)"),
                  Artifact(f"{name}/fig8.png", "Figure 8 replica", "class units' top-activated regions, "
                           "RefineNet vs LW (trained)")]

    cell = lambda frame, family_col="family": [f"{family_label(r[family_col])} {r['level']}" for _, r in  # noqa: E731
                                               frame.iterrows() if r["status"] == "not reproduced"]
    tally_a = tally(a.status, "(a)", "levels", cell(a))
    tally_b = tally(b.status, "(b)", "family-level cells", cell(b))
    tally_8 = tally(verdicts.status, "Figure 8", "class units",
                    [str(c) for c in verdicts[verdicts.status == "not reproduced"]["class"]])
    from .networks import data_name

    where = f"trained '{net.name}' set, {data_name(net)}, {net.device}"
    seeds = n_runs  # claims (a), (b): training runs per family (the rank: how many runs the verdict rests on)
    arch_b, arch_a = tally(b0.status, "(b)").outcome, tally(a0.status, "(a)").outcome
    scores = [
        ScoreRow("Figure 3 / claim (b): CRP enlarges the ERF", "larger ERF after CRP (trained LW-101, VOC)",
                 f"CRP's 90% side {b.crp_side90_cells.min():.2f}-{b.crp_side90_cells.max():.2f} cells; image space "
                 f"r50 {before} -> {after} px", where, tally_b.outcome,
                 f"{tally_b.why}; random init (architecture, holds by construction): {arch_b}", CLAIM_B_RULE,
                 f"{name}/claims.md", seeds),
        ScoreRow("Section 8 / claim (a): no smaller ERF without 3x3", "no significant difference (RF-101 vs LW-101)",
                 "LW/RF side ratio " + ", ".join(f"{r:.2f}" for r in a.side_ratio), where, tally_a.outcome,
                 f"{tally_a.why}; random init (architecture): {arch_a}", CLAIM_A_RULE, f"{name}/claims.md", seeds),
        ScoreRow("Figure 8 (classifier-layer regions)", "semantically similar regions, RF-101 vs LW-101",
                 f"precision {results.units.precision.min():.2f}-{results.units.precision.max():.2f}, RF/LW overlap "
                 f"{verdicts.overlap.min():.2f}-{verdicts.overlap.max():.2f} over {len(verdicts)} class units", where,
                 tally_8.outcome, tally_8.why, UNIT_RULE, f"{name}/figure8_units.md", 1),
    ]
    n_a = int((a.status == "reproduced").sum())
    n_b = int((b.status == "reproduced").sum())
    n_8 = int((verdicts.status == "reproduced").sum())
    testable_a, testable_b = int((a.status != NOT_TESTABLE).sum()), int((b.status != NOT_TESTABLE).sum())
    dead = sorted({f"{family_label(f)} {lvl}" for f, act in (results.activity or {}).items()
                   for lvl, v in act.items() if v < DEAD})
    dead_words = (f"; dead levels (summation ReLU positive on under {DEAD:.0%} of outputs, not testable): "
                  f"{', '.join(dead)}" if dead else "")
    text = (f"On trained networks ({where}; own val mIoU {own}): CRP's 90%-mass square is "
            f"{b.crp_side90_cells.min():.2f}-{b.crp_side90_cells.max():.2f} cells wide (claim (b) holds in "
            f"{n_b}/{testable_b} "
            f"testable family-level cells{dead_words}; at random init, where it holds by construction: "
            f"{int((b0.status == 'reproduced').sum())}/{len(b0)}); the light-weight whole-level ERF is "
            f"{a.side_ratio.min():.2f}-{a.side_ratio.max():.2f}x RefineNet's square side (claim (a), one-sided: "
            f"no smaller, holds in {n_a}/{testable_a} testable levels); the class units of RefineNet and LW fire on "
            f"their own classes and on the same pixels in {n_8}/{len(verdicts)} units (Figure 8). In image space CRP "
            f"moves the trained LW network's r50 from {before} to {after} px at level 4.")
    runs = f", claims (a) and (b) on {n_runs} seeds" if n_runs > 1 else ""
    return Section(f"Receptive fields (Figures 3 and 8), '{net.name}' setting{runs}, on "
                   f"{device_description(net.device)}",
                   artifacts, text, settings, scores, name)


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
        ax.set_title(f"{level}: {g0.grid_h}x{g0.grid_w} cells of {plan.canvas_size // g0.grid_h} px", fontsize=10)
        ax.set_ylim(0, top)
    axes[0].set_ylabel("square side (cells, 2r+1)")
    handles = [Patch(color=FAMILY_COLOURS[f], label=family_label(f)) for f in families]
    handles += [Patch(color="0.5", alpha=0.45, label="90% of the mass"), Patch(color="0.3", label="50% of the mass"),
                Line2D([], [], ls="none", marker="_", ms=10, mew=2, color="0.3", label="theoretical field")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.08), fontsize=8)
    fig.suptitle(f"Decoder-grid ERF per block of the trained networks: how far each block spreads information on "
                 f"its own grid ({plan.canvas_size}px canvases, {plan.networks.backbone} features)", fontsize=10)
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
    fig.suptitle(f"Decoder-grid ERF maps at {level}, trained networks ({plan.canvas_size}px canvases; log scale: the "
                 "residual paths put most of the mass on the unit's own cell; squares: 50% (white) and 90% (orange) "
                 "of the mass)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def _rgb(image: torch.Tensor) -> torch.Tensor:
    return image.float() / 255 if image.dtype == torch.uint8 else image


def figure3(results: ERFResults):
    import matplotlib.pyplot as plt

    plan = results.plan
    k = plan.top_k
    fig, axes = plt.subplots(len(FIG3_TAPS), k + 1, figsize=(3.4 * (k + 1) + 0.8, 3.3 * len(FIG3_TAPS)),
                             squeeze=False)
    for row, region in enumerate(results.fig3):
        tap = region.top.tap
        draw_gradient_erf(axes[row, 0], results.image_space[tap], f"{FIG3_TAPS[tap]}\ngradient ERF")
        for col, (i, act, m) in enumerate(zip(region.top.indices, region.top.activations, region.maps, strict=True), 1):
            draw_occlusion(axes[row, col], _rgb(results.images[i]), m,
                           f"#{col}: {results.image_names[i]}\nunit {region.top.channel}, activation {act:.3g}")
    lw = next(n for n in results.own_miou if n.startswith("rf_lw:"))
    fig.suptitle(f"Figure 3 replica: trained {lw} (own val mIoU {100 * results.own_miou[lw]:.1f}%)\nleft: gradient "
                 f"ERF of the centre unit, mean over {plan.n_canvas} canvases of {plan.canvas_size}px; right: the "
                 f"top-{k} val images for the most active unit, dimmed outside the region where a {plan.window}px "
                 "occluder lowers it most", fontsize=9)
    fig.tight_layout()
    return fig


def figure8(results: ERFResults):
    import matplotlib.pyplot as plt

    plan = results.plan
    names = list(results.fig8)
    units = max(len(v) for v in results.fig8.values())
    # constrained layout keeps each row's two-line titles clear of the row above (tight_layout overlapped them)
    fig, axes = plt.subplots(len(names), units, figsize=(3.2 * units, 3.6 * len(names)), squeeze=False,
                             layout="constrained")
    for row, name in enumerate(names):
        for col, region in enumerate(results.fig8[name]):
            c = region.top.channel
            i = region.top.indices[0]
            draw_occlusion(axes[row, col], _rgb(results.images[i]), region.maps[0],
                           f"{family_label(name.split(':')[0])}: {results.classes[c]}\n{results.image_names[i]}")
    fig.suptitle(f"Figure 8 replica: class units of the trained {' vs '.join(names)}; top-activated val image of each "
                 f"unit, dimmed outside the region where a {plan.window}px occluder lowers it most", fontsize=9)
    return fig


def build(out: Path, plan: ERFPlan | None = None, name: str = FOLDER) -> Section:
    return write(collect(plan), out, name)
