"""Ablations as data: variants, grids and paths as diffs of a base DecoderSpec, run on the sweep runner."""

from .attribution import LogRatio, path_deltas, reverse_deltas, shapley_values, timed_attribution
from .runner import run_ablation, variant_rows
from .spec import SPECS, AblationSpec, Variant, architecture_hash, load_ablation, parse_ablation

__all__ = [
    "SPECS",
    "AblationSpec",
    "Variant",
    "architecture_hash",
    "load_ablation",
    "parse_ablation",
    "path_deltas",
    "reverse_deltas",
    "run_ablation",
    "shapley_values",
    "timed_attribution",
    "LogRatio",
    "variant_rows",
]
