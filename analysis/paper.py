"""The paper's published numbers (Nekrasov et al., BMVC 2018), as data.

``data/paper_numbers.csv`` is a copy of every number of Tables 1-5 and the
abstract, one per row: source, model, backbone, decoder, metric, value, unit,
setting. The paper's model names are tied to registry names by the registry itself
(``VariantInfo.paper_names``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from bench.models import variants_by_paper_name


@dataclass(frozen=True)
class PaperNumber:
    source: str
    model: str
    variant: str | None
    metric: str
    value: float
    unit: str
    setting: str

    @property
    def decimals(self) -> int:
        """Digits after the decimal point as printed in the paper."""
        text = f"{self._raw}"
        return len(text.split(".")[1]) if "." in text else 0

    @property
    def rounding(self) -> float:
        """Half a unit in the last printed digit: the paper's own rounding error."""
        return 0.5 * 10 ** (-self.decimals)

    _raw: str = ""


@lru_cache(maxsize=1)
def paper_numbers() -> tuple[PaperNumber, ...]:
    text = resources.files("analysis").joinpath("data/paper_numbers.csv").read_text()
    rows = csv.DictReader(text.splitlines())
    variants = variants_by_paper_name()
    return tuple(
        PaperNumber(
            r["source"], r["model"], variants.get(r["model"]), r["metric"], float(r["value"]), r["unit"],
            r["setting"], _raw=r["value"],
        )
        for r in rows
    )


def paper_values(metric: str, source: str | None = None) -> dict[str, PaperNumber]:
    """{registry variant: number} for one metric (first occurrence per variant)."""
    out: dict[str, PaperNumber] = {}
    for n in paper_numbers():
        if n.metric == metric and n.variant and (source is None or n.source == source):
            out.setdefault(n.variant, n)
    return out
