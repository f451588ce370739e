"""Writing reports/: whole-or-nothing files, Markdown + CSV tables, one figure style, provenance.

Every table and figure records the settings that made it (:func:`environment`); files are
written to a temporary name in the same folder and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from bench.timing import device_description

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def write_atomic(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def environment(device: str = "cpu") -> dict[str, str]:
    env = {
        "device": device_description(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": str(torch.get_num_threads()),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["cuda"] = str(torch.version.cuda)
        env["cudnn"] = str(torch.backends.cudnn.version())
    return env


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".2f") -> str:
    return frame.to_markdown(index=False, floatfmt=floatfmt)


@dataclass
class Artifact:
    """One table or figure, for the front page."""

    path: str  # relative to reports/
    title: str
    what: str  # one line on what it shows
    settings: str  # device, sizes, ...
    command: str
    inline: bool = False  # show the table itself on the front page (paper vs measured tables)


@dataclass
class Section:
    title: str
    artifacts: list[Artifact] = field(default_factory=list)
    text: str = ""


def save_table(
    frame: pd.DataFrame,
    name: str,
    title: str,
    notes: Iterable[str] = (),
    out: Path = REPORTS,
    floatfmt: str = ".2f",
    display: pd.DataFrame | None = None,
) -> tuple[Path, Path]:
    """``name.csv`` (full precision) and ``name.md`` (title, table, notes).

    ``display``: a more readable version of the same rows for the Markdown (e.g. intervals folded
    into one text column); the CSV always holds ``frame``.
    """
    csv = write_atomic(out / f"{name}.csv", frame.to_csv(index=False))
    body = [f"# {title}", "", markdown_table(frame if display is None else display, floatfmt), ""]
    body += [f"- {n}" for n in notes]
    md = write_atomic(out / f"{name}.md", "\n".join(body) + "\n")
    return csv, md


def figure_style() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")


def save_figure(fig, name: str, out: Path = REPORTS) -> Path:
    """PNG at 150 dpi, written atomically; closes the figure."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    return write_atomic(out / f"{name}.png", buf.getvalue())
