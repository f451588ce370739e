"""The front page's scorecard: one row per paper artifact, its status computed from the numbers.

Each rule is a small pure function of measured numbers, so a test can feed numbers and watch the
status flip where the rule says; the rule's text is printed next to the status.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from .files import ScoreRow

SUPERSEDED = "superseded"
"""The status of a row whose section ran on an earlier training method (see ``front_page.superseded``)."""
STATUSES = ("reproduced", "partly", "not reproduced", "not testable here", SUPERSEDED)


def within_rounding_status(within: Iterable[bool], diff_pct: Iterable[float], partly_pct: float = 3.0
                           ) -> tuple[str, str]:
    """Counts against printed values: every one within the paper's rounding -> reproduced; all within
    ``partly_pct`` -> partly; else not reproduced."""
    within, diff_pct = list(within), [abs(d) for d in diff_pct]
    n_ok = sum(bool(w) for w in within)
    if n_ok == len(within):
        return "reproduced", f"all {len(within)} within the paper's rounding"
    if max(diff_pct) <= partly_pct:
        return "partly", f"{n_ok}/{len(within)} within rounding, all within {partly_pct:g}% (max {max(diff_pct):.1f}%)"
    return "not reproduced", f"{n_ok}/{len(within)} within rounding, max difference {max(diff_pct):.1f}%"


def ratio_status(measured: Sequence[tuple[float, float, float]], paper: Sequence[float], tolerance: float = 0.25
                 ) -> tuple[str, str]:
    """Speed-up ratios (ratio, CI low, CI high) against the paper's: every interval above 1 and within
    ``tolerance`` (relative) of the paper's ratio -> reproduced; every interval above 1 -> partly (LW is
    faster, by a different factor); any interval touching or below 1 -> not reproduced."""
    if not measured or any(math.isnan(r) for r, _, _ in measured):
        return "not testable here", "no measurement"
    faster = all(lo > 1 for _, lo, _ in measured)
    close = all(lo <= p * (1 + tolerance) and hi >= p * (1 - tolerance)
                for (_, lo, hi), p in zip(measured, paper, strict=True))
    ours = "/".join(f"{r:.2f}" for r, _, _ in measured)
    theirs = "/".join(f"{p:.2f}" for p in paper)
    if faster and close:
        return "reproduced", f"{ours} vs {theirs}: every interval within {tolerance:.0%} of the paper's"
    if faster:
        return "partly", f"LW faster at every depth ({ours}), but not by the paper's factors ({theirs})"
    return "not reproduced", f"{ours} vs {theirs}: LW not faster at every depth"


def tally_status(statuses: Sequence[str], claim: str) -> tuple[str, str]:
    """A claim checked at several (family, level) cells: all testable cells reproduced -> reproduced;
    some -> partly; none -> not reproduced; no testable cell -> not testable here."""
    testable = [s for s in statuses if s != "not testable"]
    if not testable:
        return "not testable here", f"{claim}: no testable cell"
    n = sum(s == "reproduced" for s in testable)
    detail = f"{claim}: reproduced in {n} of {len(testable)} cells"
    if n == len(testable):
        return "reproduced", detail
    return ("partly", detail) if n else ("not reproduced", detail)


def render(rows: Sequence[ScoreRow]) -> str:
    """The scorecard as a Markdown table."""
    lines = ["| paper artifact | paper | ours | measured with | status | why |", "|---|---|---|---|---|---|"]
    for r in rows:
        artifact = f"[{r.artifact}]({r.link})" if r.link else r.artifact
        lines.append(f"| {artifact} | {r.paper} | {r.ours} | {r.measured_with} | **{r.status}** | {r.reason} |")
    rules = sorted({(r.artifact, r.rule) for r in rows})
    lines += ["", "Status rules:", ""] + [f"- {a}: {rule}" for a, rule in rules]
    return "\n".join(lines)
