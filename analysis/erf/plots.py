"""Drawing ERFs (used by the report and the notebooks; no analysis here)."""

from __future__ import annotations

import torch

from .gradient import GradientERF
from .occlusion import top_region

MASS_COLOURS = {0.5: "white", 0.9: "orange"}


def draw_gradient_erf(ax, erf: GradientERF, title: str, normalise: str = "max", colorbar: bool = True,
                      unit: str = "px") -> None:
    """The map (scaled to its maximum unless told otherwise) with a colour bar, and the centred squares
    holding 50% and 90% of the mass."""
    import matplotlib.patches as patches

    shown = erf.display(normalise).numpy()
    image = ax.imshow(shown, cmap="magma", vmin=-4 if normalise == "log" else 0,
                      vmax=0 if normalise == "log" else None)
    cy, cx = erf.centre
    for frac, colour in MASS_COLOURS.items():
        r = erf.radius[frac]
        ax.add_patch(patches.Rectangle((cx - r - 0.5, cy - r - 0.5), 2 * r + 1, 2 * r + 1, fill=False,
                                       edgecolor=colour, lw=1.2, ls="--", label=f"{int(frac * 100)}% of the mass"))
    ax.set_title(f"{title}\nr50 = {erf.radius[0.5]} {unit}, r90 = {erf.radius[0.9]} {unit}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if colorbar:
        bar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
        bar.ax.tick_params(labelsize=7)
        bar.set_label({"max": "|gradient| / max", "log": "log10 |gradient| / max", "sum": "share of mass",
                       "raw": "|gradient|"}[normalise], fontsize=7)


def draw_occlusion(ax, image: torch.Tensor, discrepancy: torch.Tensor, title: str, threshold: float = 0.5) -> None:
    """The image, dimmed outside the top-activated region (discrepancy >= threshold x max), region outlined."""
    region = top_region(discrepancy, threshold)
    rgb = image.permute(1, 2, 0).clamp(0, 1)
    shown = torch.where(region.unsqueeze(-1), rgb, rgb * 0.25)
    ax.imshow(shown.numpy())
    if region.any():
        ax.contour(region.float().numpy(), levels=[0.5], colors="yellow", linewidths=1.0)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
