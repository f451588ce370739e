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


def spread(values: list[float], min_gap: float, log: bool = False) -> list[float]:
    """Label positions near ``values`` but at least ``min_gap`` apart (in log10 units with ``log``),
    so end-of-line labels never print over each other; order is kept."""
    import math

    pos = [math.log10(v) if log else v for v in values]
    order = sorted(range(len(pos)), key=lambda i: pos[i])
    placed = list(pos)
    for prev, cur in zip(order, order[1:], strict=False):
        placed[cur] = max(placed[cur], placed[prev] + min_gap)
    shift = (sum(placed) - sum(pos)) / max(len(pos), 1)  # re-centre the group around the data
    placed = [p - shift for p in placed]
    for prev, cur in zip(order, order[1:], strict=False):  # re-centring must not undo the gaps
        placed[cur] = max(placed[cur], placed[prev] + min_gap)
    return [10**p for p in placed] if log else placed


def nice_log_axis(ax, axis: str, values) -> None:
    """A log axis labelled at 1-2-5 steps in plain numbers, no minor labels (they collide)."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    values = [v for v in values if v > 0]
    lo, hi = min(values) / 1.3, max(values) * 1.3
    ticks = [t * 10**e for e in range(-3, 7) for t in (1, 2, 5) if lo <= t * 10**e <= hi]
    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    (ax.set_xlim if axis == "x" else ax.set_ylim)(lo, hi)
    target.set_major_locator(FixedLocator(ticks))
    target.set_minor_locator(NullLocator())
    target.set_major_formatter(ScalarFormatter())
