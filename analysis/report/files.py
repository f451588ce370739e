"""Writing reports/: whole-or-nothing files, Markdown + CSV tables with display labels, figures.

Files are written to a temporary name in the same folder and renamed, so a crash never leaves half
a file; the result gets the permissions a plain ``open(path, "w")`` would give (0666 minus the
umask). Tables keep plain column names and full precision in the CSV; the Markdown applies display
labels and prints "-" for a missing value.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.files import write_atomic  # the one atomic writer (sweep records use it too); importable from here

REPORTS = Path(__file__).resolve().parents[2] / "reports"


@dataclass
class Artifact:
    """One table or figure, for the front page."""

    path: str  # relative to reports/
    title: str
    what: str  # one line on what it shows
    inline: bool = False  # show the table itself on the front page (paper vs measured tables)


@dataclass
class ScoreRow:
    """One row of the front page's scorecard: a paper artifact, the paper's figure, ours, the status."""

    artifact: str  # "Table 1", "Figure 3", ...
    paper: str
    ours: str
    measured_with: str  # device / data / weights
    status: str  # an outcome of analysis.verdicts: reproduced | not reproduced | inconclusive | not testable here
    reason: str  # a few words, computed from the numbers
    rule: str  # how the status is decided
    link: str = ""  # the table or figure that backs it
    rank: float = 0.0  # strength of its evidence: the front page shows each artifact's highest-ranked current row


@dataclass
class Section:
    title: str
    artifacts: list[Artifact] = field(default_factory=list)
    text: str = ""  # what the section shows, computed from its numbers
    settings: str = ""  # the one settings footnote of the section
    scores: list[ScoreRow] = field(default_factory=list)
    folder: str = ""  # where its files are, relative to reports/


def format_value(v, floatfmt: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and v == ""):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        text = format(v, floatfmt)
        # a value that rounds to zero prints without a sign ("-0.0" reads as a measured negative effect)
        return text.lstrip("+-") if text.lstrip("+-").strip("0.%") == "" and text[:1] in "+-" else text
    return str(v)


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".2f", labels: Mapping[str, str] | None = None,
                   formats: Mapping[str, str] | None = None) -> str:
    """A pipe table: display labels for the columns, "-" for missing values, per-column formats."""
    labels = labels or {}
    formats = formats or {}
    header = [labels.get(c, c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(frame[c]) and frame[c].dtype != bool else "---"
                            for c in frame.columns) + "|"]
    for row in frame.itertuples(index=False):
        cells = [format_value(v, formats.get(c, floatfmt)) for c, v in zip(frame.columns, row, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_table(
    frame: pd.DataFrame,
    path: Path,
    title: str,
    notes: Iterable[str] = (),
    floatfmt: str = ".2f",
    labels: Mapping[str, str] | None = None,
    formats: Mapping[str, str] | None = None,
    display: pd.DataFrame | None = None,
) -> tuple[Path, Path]:
    """``path.csv`` (plain columns, full precision) and ``path.md`` (title, table with labels, notes).

    ``display``: a more readable version of the same rows for the Markdown (e.g. intervals folded
    into one text column); the CSV always holds ``frame``.
    """
    csv = write_atomic(path.with_suffix(".csv"), frame.to_csv(index=False))
    shown = frame if display is None else display
    body = [f"# {title}", "", markdown_table(shown, floatfmt, labels, formats), ""]
    body += [f"- {n}" for n in notes]
    md = write_atomic(path.with_suffix(".md"), "\n".join(body) + "\n")
    return csv, md


def save_figure(fig, path: Path, dpi: int = 150) -> Path:
    """PNG, written atomically; closes the figure."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return write_atomic(path.with_suffix(".png"), buf.getvalue())
