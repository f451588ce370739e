"""ERF section of reports/: Figure 3 and Figure 8 replicas and the ERF-size table.

Random initialisation by default (no weights can be downloaded here; every figure says so); pass a
checkpoint to :func:`build` to use trained weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from bench.models import create_model

from .erf import gradient_erf, occlusion_maps, tap_features, top_activating
from .erf_plots import draw_gradient_erf, draw_occlusion
from .images import noise_images, normalise, voc_sample
from .reporting import REPORTS, Artifact, Section, figure_style, save_figure, save_table

COMMAND = "python -m analysis report erf"
FIG3_TAPS = {
    "level4.after_sum": "before CRP (level 4)",
    "level4.after_crp": "after CRP (level 4)",
    "level3.after_sum": "after sum of levels 4+3",
}
VOC_CLASSES = {12: "dog", 13: "horse", 15: "person"}
FAMILIES = ("rf", "rf_lw_rcu", "rf_lw")
TABLE_TAPS = ("before_rcu", "after_sum", "after_crp")


@dataclass(frozen=True)
class ERFPlan:
    size: int = 224  # gradient ERF input side
    occlusion_size: int = 160  # occlusion input side (each image costs one forward per occluder position)
    window: int = 32
    stride: int = 16
    n_noise: int = 4
    depth: int = 101  # the paper's comparisons use ResNet-101
    checkpoint: dict[str, str] | None = None  # variant -> checkpoint path; random init otherwise

    @staticmethod
    def small() -> ERFPlan:
        """For tests and notebooks on CPU: tiny sizes, ResNet-50."""
        return ERFPlan(size=96, occlusion_size=64, window=16, stride=16, n_noise=2, depth=50)


def _model(name: str, plan: ERFPlan) -> torch.nn.Module:
    torch.manual_seed(0)
    checkpoint = (plan.checkpoint or {}).get(name)
    return create_model(name, checkpoint=checkpoint).eval()


def _weights(name: str, plan: ERFPlan) -> str:
    return f"checkpoint {plan.checkpoint[name]}" if plan.checkpoint and name in plan.checkpoint else \
        "random init (seed 0)"


def build(out: Path = REPORTS, plan: ERFPlan | None = None) -> Section:
    figure_style()
    import matplotlib.pyplot as plt

    plan = plan or ERFPlan()
    size = (plan.size, plan.size)
    voc, names = voc_sample(size)
    noise, _ = noise_images(plan.n_noise, size)
    image_sets = {"VOC sample (4 real images)": normalise(voc), f"noise ({plan.n_noise} images)": normalise(noise)}
    lw, rf = f"rf_lw{plan.depth}", f"rf{plan.depth}"
    artifacts = []

    # --- Figure 3: rf_lw before CRP, after CRP, after the first summation -------------------------
    print(f"  Figure 3 ({lw}) ...", flush=True)
    model = _model(lw, plan)
    grad = gradient_erf(model, image_sets["VOC sample (4 real images)"], list(FIG3_TAPS), batch_size=4)
    occ_size = (plan.occlusion_size, plan.occlusion_size)
    occ_images, _ = voc_sample(occ_size)
    features = tap_features(model, list(FIG3_TAPS))
    # the unit per tap: the channel with the highest activation anywhere in the image set
    with torch.no_grad():
        feats = features(normalise(occ_images))
    channels = {t: int(feats[t].amax(dim=(0, 2, 3)).argmax()) for t in FIG3_TAPS}
    tops = top_activating(features, normalise(occ_images), [(t, channels[t]) for t in FIG3_TAPS], k=3)
    needed = sorted({i for top in tops for i in top.indices})
    maps = {}
    for i in needed:
        units = [(top.tap, top.channel, top.positions[top.indices.index(i)]) for top in tops if i in top.indices]
        maps[i] = occlusion_maps(features, normalise(occ_images)[i], units, plan.window, plan.stride)
    fig, axes = plt.subplots(len(FIG3_TAPS), 4, figsize=(11, 8.4))
    for row, top in enumerate(tops):
        erf = grad[top.tap]
        draw_gradient_erf(axes[row, 0], erf, f"{FIG3_TAPS[top.tap]}\ngradient ERF, r50={erf.radius[0.5]}px")
        for col, (i, act) in enumerate(zip(top.indices, top.activations, strict=True), 1):
            draw_occlusion(axes[row, col], occ_images[i], maps[i][(top.tap, top.channel)],
                           f"#{col} {names[i]}\nunit {top.channel}, activation {act:.3g}")
        for col in range(len(top.indices) + 1, 4):
            axes[row, col].axis("off")
    fig.suptitle(f"Figure 3 replica: {lw}, {_weights(lw, plan)}\n"
                 f"left: gradient ERF, mean over the 4 VOC images at {plan.size}x{plan.size} (/max; squares hold "
                 f"50% and 90% of the mass)\nright: top-activated images of the most active unit, region where "
                 f"occlusion drops it most (>= 0.5 x max; {plan.window}px occluder, stride {plan.stride}, "
                 f"{plan.occlusion_size}x{plan.occlusion_size})", fontsize=9)
    save_figure(fig, "erf_fig3", out)
    fig3_settings = f"{lw}, {_weights(lw, plan)}, {plan.size}px gradient ERF on 4 VOC images, occlusion at " \
                    f"{plan.occlusion_size}px"
    artifacts.append(Artifact("erf_fig3.png", "Figure 3 replica", "ERF before CRP, after CRP, after the first sum",
                              fig3_settings, COMMAND))

    # --- Figure 8: classifier layer, original vs light-weight -----------------------------------
    print(f"  Figure 8 ({rf} vs {lw}) ...", flush=True)
    fig, axes = plt.subplots(2, 2 * len(VOC_CLASSES), figsize=(13, 5.2))
    for row, name in enumerate((rf, lw)):
        m = model if name == lw else _model(name, plan)
        f = tap_features(m, ["logits"])
        tops = top_activating(f, normalise(occ_images), [("logits", c) for c in VOC_CLASSES], k=1)
        occ: dict[tuple[str, int], torch.Tensor] = {}
        for i in sorted({t.indices[0] for t in tops}):  # one occlusion pass per image serves every class
            units = [("logits", t.channel, t.positions[0]) for t in tops if t.indices[0] == i]
            occ.update({(i, *k): v for k, v in occlusion_maps(f, normalise(occ_images)[i], units, plan.window,
                                                               plan.stride).items()})
        for k, (top, (channel, label)) in enumerate(zip(tops, VOC_CLASSES.items(), strict=True)):
            erf = gradient_erf(m, image_sets["VOC sample (4 real images)"], "logits", channel=channel,
                               batch_size=4)["logits"]
            draw_gradient_erf(axes[row, 2 * k], erf, f"{name} '{label}'\ngradient ERF, r50={erf.radius[0.5]}px")
            i = top.indices[0]
            draw_occlusion(axes[row, 2 * k + 1], occ_images[i], occ[(i, "logits", channel)],
                           f"top image\n{names[i]}")
    fig.suptitle(f"Figure 8 replica: classification layer of {rf} vs {lw}, {_weights(lw, plan)} (class channels "
                 f"are untrained)\ngradient ERF of the class unit at the centre, 4 VOC images at {plan.size}px; "
                 f"occlusion region on the top image ({plan.occlusion_size}px)", fontsize=9)
    save_figure(fig, "erf_fig8", out)
    artifacts.append(Artifact("erf_fig8.png", "Figure 8 replica", "classifier-layer ERF, original vs light-weight",
                              f"{rf} and {lw}, random init, {plan.size}px, 4 VOC images", COMMAND))

    # --- ERF sizes: three families at every level -----------------------------------------------
    print("  ERF-size table ...", flush=True)
    rows = []
    for family in FAMILIES:
        name = f"{family}{plan.depth}"
        m = model if name == lw else _model(name, plan)
        taps = [f"level{n}.{t}" for n in (4, 3, 2, 1) for t in TABLE_TAPS] + ["logits"]
        for set_name, images in image_sets.items():
            res = gradient_erf(m, images, taps, batch_size=4, theoretical=(set_name.startswith("VOC")))
            for tap, erf in res.items():
                rows.append({
                    "variant": name, "images": set_name, "tap": tap,
                    **{f"r{int(f * 100)} (px)": erf.radius[f] for f in (0.2, 0.5, 0.9, 0.99)},
                    "theoretical RF (px)": "x".join(map(str, erf.theoretical)) if erf.theoretical else "",
                })
    table = pd.DataFrame(rows)
    # the theoretical field does not depend on the images
    theo = table[table.images.str.startswith("VOC")].set_index(["variant", "tap"])["theoretical RF (px)"]
    table["theoretical RF (px)"] = [theo.get((v, t), "") for v, t in zip(table.variant, table.tap, strict=True)]
    save_table(table, "erf_sizes", f"Gradient-ERF sizes at every decoder level ({plan.size}x{plan.size})",
               [f"Weights: {_weights(lw, plan)} for every model: random-init ERFs show the architecture's "
                "wiring, not learned features.",
                "rN: radius of the smallest centred square holding N% of the gradient mass (unnormalised mean map "
                "over the images; the square side is 2r+1); the unit is the centre of the tap's feature map, all "
                "channels summed; |gradient| summed over colour channels.",
                "Theoretical RF: extent of the input region that can influence the unit (clipped by the image).",
                f"Inputs {plan.size}x{plan.size}, ImageNet-normalised; batch of 4 per backward."], out)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    colours = dict(zip(FAMILIES, plt.cm.tab10.colors, strict=False))
    for ax, (set_name, group) in zip(axes, table.groupby("images", sort=False), strict=True):
        for name, g in group.groupby("variant", sort=False):
            g = g[g.tap != "logits"]
            colour = colours[name.rstrip("0123456789")]
            ax.plot(range(len(g)), g["r50 (px)"], "-o", ms=3, color=colour, label=f"{name}: 50% of mass")
            ax.plot(range(len(g)), g["r90 (px)"], "--x", ms=3, color=colour, label=f"{name}: 90% of mass")
        ax.set_xticks(range(len(g)), list(g.tap), rotation=60, ha="right", fontsize=7)
        ax.set_title(set_name, fontsize=10)
    axes[0].set_ylabel("radius of the centred square (px)")
    axes[1].legend(fontsize=7, ncol=1, loc="center right")
    fig.suptitle(f"ERF size along the decoder (unit at the centre), three families, ResNet-{plan.depth}, "
                 f"{_weights(lw, plan)}, {plan.size}x{plan.size}", fontsize=10)
    save_figure(fig, "erf_sizes", out)
    artifacts += [
        Artifact("erf_sizes.md", "ERF sizes (table)", "r20/r50/r90/r99 and theoretical RF per family and tap",
                 f"ResNet-{plan.depth}, random init, {plan.size}px, VOC sample and noise", COMMAND),
        Artifact("erf_sizes.png", "ERF sizes (figure)", "radius along the decoder per family",
                 f"ResNet-{plan.depth}, random init, {plan.size}px", COMMAND),
    ]
    text = (
        "Gradient ERF (Luo et al.) and occlusion ERF (Zhou et al., as the paper's figures). No trained weights can "
        "be downloaded here, so these use random initialisation: they show what the wiring (CRP, skip sums) does "
        "to the receptive field, not what a trained network attends to. `analysis.erf_report.build(plan=ERFPlan("
        "checkpoint={...}))` runs the same with trained checkpoints."
    )
    return Section("Receptive fields (Figures 3 and 8)", artifacts, text)
