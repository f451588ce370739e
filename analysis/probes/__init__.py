"""Frozen-feature probes (Table 4): heads, metrics, bootstrap intervals, the training that comes first,
the study over families and levels, and what each block adds."""

from .differences import crp_verdicts, learned, paper_table4, tap_differences
from .heads import METRICS, ProbeSettings, cache_features, train_probes
from .run import LEVELS, POINTS, ProbePlan, ProbeRun, run_probes, trivial_baselines

__all__ = [
    "LEVELS",
    "METRICS",
    "POINTS",
    "ProbePlan",
    "ProbeRun",
    "ProbeSettings",
    "cache_features",
    "crp_verdicts",
    "learned",
    "paper_table4",
    "run_probes",
    "tap_differences",
    "train_probes",
    "trivial_baselines",
]
