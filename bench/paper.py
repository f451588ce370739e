"""The paper's published numbers (Nekrasov et al., BMVC 2018), as data.

``data/paper_numbers.csv`` is a copy of every number of Tables 1-5 and the
abstract, one per row: source, model, backbone, decoder, metric, value, unit,
setting. ``PAPER_VARIANT`` ties the paper's model names to registry names.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

PAPER_VARIANT = {
    "RefineNet-50": "rf50",
    "RefineNet-101": "rf101",
    "RefineNet-152": "rf152",
    "RefineNet-101-LW-WITH-RCU": "rf_lw_rcu101",
    "RefineNet-LW-50": "rf_lw50",
    "RefineNet-LW-101": "rf_lw101",
    "RefineNet-101-LW": "rf_lw101",
    "RefineNet-LW-152": "rf_lw152",
    "RefineNet-LW-MobileNet-v2": "rf_lw_mbv2",
    "RefineNet-LW-NASNet-Mobile": "rf_lw_nasnet",
}


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
    text = resources.files("bench").joinpath("data/paper_numbers.csv").read_text()
    rows = csv.DictReader(text.splitlines())
    return tuple(
        PaperNumber(
            r["source"], r["model"], PAPER_VARIANT.get(r["model"]), r["metric"], float(r["value"]), r["unit"],
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
