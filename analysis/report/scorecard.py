"""The front page's scorecard: one row per paper artifact, its verdict computed from the numbers.

Every verdict comes from :mod:`analysis.verdicts` (four outcomes, one rule each); the functions here turn a
section's measurements into per-cell verdicts and the row's tally, so a test can feed fabricated numbers on each
side of every boundary and watch the outcome flip where the rule says. The rule's text is printed once under the
scorecard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    TALLY_RULE,
    VOCABULARY,
    Interval,
    Tally,
    Verdict,
    relative_band,
    tally,
    within,
)
from .files import ScoreRow

RATIO_TOLERANCE = 0.25
COUNT_RULE = "per value: reproduced where the count prints as the paper's value (within half a unit of its last digit)"
RATIO_RULE = (f"per depth: reproduced where the whole 95% CI of the paired RF/LW time ratio lies within "
              f"{RATIO_TOLERANCE:.0%} of the paper's ratio, not reproduced where it lies wholly outside that band, "
              "inconclusive otherwise or where the run was disturbed (see the timing section)")


def count_verdicts(cells: Sequence[tuple[str, float, bool, float]]) -> tuple[list[Verdict], Tally]:
    """Exact counts against printed values: (name, measured, within the paper's rounding, difference %)."""
    verdicts = [Verdict(REPRODUCED if ok else NOT_REPRODUCED,
                        f"{name}: {value:.4g} {'prints as' if ok else 'differs from'} the paper's value"
                        f"{'' if ok else f' by {diff:+.1f}%'}") for name, value, ok, diff in cells]
    failures = [f"{name} {diff:+.1f}%" for (name, _, ok, diff) in cells if not ok]
    return verdicts, tally([v.outcome for v in verdicts], "values", "values", failures)


def ratio_verdicts(measured: Sequence[tuple[str, Interval, str]], paper: Sequence[float],
                   tolerance: float = RATIO_TOLERANCE, cells: str = "depths") -> tuple[list[Verdict], Tally]:
    """Paired time ratios against the paper's: (cell name, ratio interval, disturbance ("" for none)) per cell.

    A disturbed run is inconclusive whatever its interval says: its interval describes a machine that was doing
    something else."""
    if len(measured) != len(paper):
        raise ValueError(f"{len(measured)} measured ratios for {len(paper)} paper ratios")
    verdicts = []
    for (name, ratio, disturbed), p in zip(measured, paper, strict=True):
        if disturbed:
            verdicts.append(Verdict(INCONCLUSIVE, f"{name}: {ratio.words()}: disturbed run ({disturbed})"))
            continue
        low, high = relative_band(p, tolerance)
        v = within(ratio, low, high, f"{name}")
        verdicts.append(Verdict(v.outcome, f"{v.why} (paper {p:.2f})"))
    failures = [v.why.split(":")[0] for v in verdicts if v.outcome == NOT_REPRODUCED]
    return verdicts, tally([v.outcome for v in verdicts], "ratios", cells, failures)


@dataclass(frozen=True)
class Current:
    """A scorecard row with where it came from: the manifest entry's key and finish time."""

    row: ScoreRow
    key: str
    finished: str


def strongest(rows: Sequence[Current]) -> list[Current]:
    """Per artifact, the row with the strongest evidence (its ``rank``: a GPU over a CPU for timing, more training
    runs for the benefit side), the latest among equals; in the order the artifacts first appear."""
    best: dict[str, Current] = {}
    for c in rows:
        held = best.get(c.row.artifact)
        if held is None or (c.row.rank, c.finished) > (held.row.rank, held.finished):
            best[c.row.artifact] = c
    return list(best.values())


def render(rows: Sequence[ScoreRow]) -> str:
    """The scorecard as a Markdown table, then the vocabulary and each artifact's rule, once."""
    lines = ["| paper artifact | paper | ours | measured with | verdict | why |", "|---|---|---|---|---|---|"]
    for r in rows:
        artifact = f"[{r.artifact}]({r.link})" if r.link else r.artifact
        lines.append(f"| {artifact} | {r.paper} | {r.ours} | {r.measured_with} | **{r.status}** | {r.reason} |")
    lines += ["", "How verdicts are decided (`analysis/verdicts.py`): " + VOCABULARY, ""]
    lines += [f"- {r.artifact}: {r.rule}" for r in rows]
    lines += [f"- Claims over cells: {TALLY_RULE}."]
    return "\n".join(lines)
