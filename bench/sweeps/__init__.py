"""Sweeps past one machine: a TOML spec, one record per configuration, jobs on submitit, resumable."""

from .merge import merged_frame, read_records
from .runner import EXECUTORS, SweepStatus, run_sweep
from .spec import SPECS, SweepSpec, config_id, load_spec, parse_spec

__all__ = [
    "EXECUTORS",
    "SPECS",
    "SweepSpec",
    "SweepStatus",
    "config_id",
    "load_spec",
    "merged_frame",
    "parse_spec",
    "read_records",
    "run_sweep",
]
