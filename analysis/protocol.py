"""The registered protocol (``analysis/protocol.toml``), read once and checked: what every benefit verdict reads.

    from analysis.protocol import PROTOCOL
    PROTOCOL.margin("accuracy")          # 1.157: the error-ratio margin of non-inferiority and equivalence
    PROTOCOL.seeds, PROTOCOL.level       # 3 training runs, 95% intervals
    PROTOCOL.stamp                       # "protocol 1 (sha256 1a2b3c4d5e6f)": on the scorecard and every section

The file is the record; this module only reads it. Its hash (SHA-256 of the text with line endings made LF) is
recorded with every report section on trained networks, and the front page archives a section decided under another
hash. :func:`paper_margins` derives the margins again from ``paper-numbers.csv`` so that a test can hold the file to
its stated justification.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

PATH = Path(__file__).with_name("protocol.toml")
RULES = ("non-inferiority", "above", "equivalence", "two halves", "not equivalent", "at or above")
RECIPE_KEYS = ("axis", "words", "pretrain", "schedule", "steps_factor")


@dataclass(frozen=True)
class Recipe:
    """One recipe of the multiverse: a change of one training choice against the base (the named setting)."""

    name: str
    axis: str
    words: str
    pretrain: dict | str | None = None  # a [pretrain] table, "none" (from scratch), or None (the setting's)
    schedule: dict = field(default_factory=dict)  # Schedule field changes
    steps_factor: float = 1.0  # max_steps (and with it the cosine) stretched by this factor


@dataclass(frozen=True)
class Protocol:
    version: int
    registered: str
    raw: dict
    sha256: str

    @property
    def stamp(self) -> str:
        return f"protocol {self.version} (sha256 {self.sha256[:12]})"

    @property
    def seeds(self) -> int:
        return int(self.raw["evidence"]["seeds"])

    @property
    def level(self) -> float:
        return float(self.raw["evidence"]["level"])

    @property
    def power(self) -> float:
        return float(self.raw["evidence"]["power"])

    @property
    def image_resamples(self) -> int:
        return int(self.raw["evidence"]["image_resamples"])

    def margin(self, name: str) -> float:
        """A margin of [margins] by name (``accuracy``, ``drop``, ``on_par``): an error ratio above 1."""
        return float(self.raw["margins"][name])

    def claim(self, key: str) -> dict:
        return self.raw["claims"][key]

    def control(self, key: str) -> dict:
        return self.raw["controls"][key]

    def bound(self, table: dict) -> float:
        """The error ratio a claim or control is judged against (its ``bound`` names a margin)."""
        return self.margin(table["bound"])

    @property
    def task(self) -> dict:
        return self.raw["task"]

    @property
    def flat_points(self) -> float:
        return float(self.raw["stopping"]["flat_points"])

    @property
    def base_recipe(self) -> str:
        return str(self.raw["recipes"]["base"])

    def recipes(self) -> list[Recipe]:
        """The recipes other than the base, in the file's order."""
        return [Recipe(name, **{k: v for k, v in table.items() if k in RECIPE_KEYS})
                for name, table in self.raw["recipes"].items() if isinstance(table, dict)]

    @property
    def deviations(self) -> list[dict]:
        return list(self.raw.get("deviations", []))


def text_hash(text: str) -> str:
    """SHA-256 of a text with its line endings made LF (a checkout's CRLF does not change the protocol)."""
    return hashlib.sha256(text.replace("\r\n", "\n").encode()).hexdigest()


def load(path: str | Path = PATH) -> Protocol:
    """Read and check a protocol file; a problem names the key."""
    text = Path(path).read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    problems = _problems(raw)
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return Protocol(int(raw["version"]), str(raw["registered"]), raw, text_hash(text))


def _problems(raw: dict) -> list[str]:
    problems = []
    for key in ("version", "registered", "evidence", "task", "margins", "claims", "controls", "stopping", "recipes"):
        if key not in raw:
            problems.append(f"no {key}")
    if problems:
        return problems
    margins = raw["margins"]
    for name, table in [*raw["claims"].items(), *raw["controls"].items()]:
        if table.get("rule") not in RULES:
            problems.append(f"{name}.rule must be one of {', '.join(RULES)}, not {table.get('rule')!r}")
        if isinstance(table.get("bound"), str) and table["bound"] not in margins:
            problems.append(f"{name}.bound names no margin ({', '.join(margins)})")
    for name, value in margins.items():
        if not (isinstance(value, (int, float)) and value > 1):
            problems.append(f"margins.{name} must be an error ratio above 1, got {value!r}")
    for name, table in raw["recipes"].items():
        if isinstance(table, dict):
            unknown = set(table) - set(RECIPE_KEYS)
            if unknown:
                problems.append(f"recipes.{name}: unknown key(s) {sorted(unknown)}; valid: {', '.join(RECIPE_KEYS)}")
    return problems


def paper_margins(csv: str | Path | None = None) -> dict[str, float]:
    """The margins derived from the paper's numbers, as [margins] states them: ``on_par`` (the largest LW/RF error
    ratio of a same-backbone, same-dataset pair), ``drop`` (Section 3.3's 5 points at RefineNet-101's VOC test
    accuracy) and ``accuracy`` (their geometric mean)."""
    import io
    from importlib import resources

    import pandas as pd

    text = Path(csv).read_text() if csv else resources.files("analysis").joinpath("data/paper_numbers.csv").read_text()
    paper = pd.read_csv(io.StringIO(text))
    miou = paper[paper.unit.eq("%") & paper.metric.str.endswith("_miou") & ~paper.metric.str.startswith("probe")]
    ratios = []
    for _, rows in miou.groupby(["metric", "backbone"]):
        by = dict(zip(rows.decoder, rows.value, strict=True))
        if "original" in by and "lw" in by:
            ratios.append((100 - by["lw"]) / (100 - by["original"]))
    on_par = max(ratios)
    rf101 = float(miou[(miou.metric == "voc_test_miou") & (miou.backbone == "resnet101") &
                       (miou.decoder == "original")].value.iloc[0])
    drop = (100 - (rf101 - 5)) / (100 - rf101)
    return {"on_par": on_par, "drop": drop, "accuracy": math.sqrt(on_par * drop)}


PROTOCOL = load()
"""The protocol this code decides by."""
