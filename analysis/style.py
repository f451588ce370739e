"""One figure style for every figure the suite draws: a seaborn theme and one colour per decoder family.

Colours come from seaborn's colour-blind palette and mean the same thing in every figure: a family
(RefineNet, LW with RCU, LW). Depth or backbone is shown by marker or line style, never by colour.
"""

from __future__ import annotations

from bench.models import FAMILY_LABELS, variant_info

FAMILY_COLOURS = {"rf": "#0173b2", "rf_lw_rcu": "#de8f05", "rf_lw": "#029e73"}  # seaborn "colorblind" 0, 1, 2
BACKBONE_MARKERS = {50: "o", 101: "s", 152: "^"}
OTHER_MARKERS = {"mobilenet_v2_lwrf": "P", "nasnet_a_mobile": "X"}
PAPER_COLOUR = "#d55e00"  # the paper's values, wherever they are marked
BASELINE_COLOUR = "0.35"


def use_style() -> None:
    """Agg backend (files, no screen) and the seaborn theme used by every report figure."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind", font_scale=0.95)


def family_colour(variant: str) -> str:
    return FAMILY_COLOURS[variant_info(variant).family]


def family_label(family: str) -> str:
    return FAMILY_LABELS.get(family, family)


def variant_marker(variant: str) -> str:
    info = variant_info(variant)
    return BACKBONE_MARKERS.get(info.depth, OTHER_MARKERS.get(info.backbone, "D"))
