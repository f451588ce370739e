"""``python -m bench sweep SPEC --out DIR`` (its tables and figures: ``python -m analysis sweep-report DIR``, on the
analysis side of the flow)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_sweep_commands(sub, commands: dict) -> None:
    from .runner import EXECUTORS

    p = sub.add_parser("sweep", help="run a sweep spec (TOML): one record per configuration, resumable")
    p.add_argument("spec", help="a TOML spec, e.g. bench/sweeps/specs/zoo.toml")
    p.add_argument("--out", required=True, help="folder for the records (a rerun skips what is there)")
    p.add_argument("--executor", default="local", choices=EXECUTORS)
    p.add_argument("--workers", type=int, default=1, help="local: jobs at a time")
    p.add_argument("--timeout-min", type=float, default=60.0, help="per job")
    p.add_argument("--slurm-partition", default=None)
    p.add_argument("--slurm-gpus-per-job", type=int, default=None, help="GPUs per timing job (default 1)")
    p.add_argument("--retry-failed", action="store_true", help="run failed configurations again")
    commands["sweep"] = cmd_sweep


def cmd_sweep(args: argparse.Namespace) -> int:
    from .. import validation
    from ..errors import UsageError, checked
    from .runner import MAX_TIMEOUT_MIN, run_sweep
    from .spec import load_spec

    if not Path(args.spec).is_file():
        raise UsageError(f"sweep spec not found: {args.spec}")
    spec = checked(load_spec, args.spec)
    checked(validation.integer, "--workers", args.workers, minimum=1, maximum=validation.MAX_THREADS)
    checked(validation.number, "--timeout-min", args.timeout_min, minimum=0.1, maximum=MAX_TIMEOUT_MIN)
    if args.slurm_gpus_per_job is not None:
        checked(validation.integer, "--slurm-gpus-per-job", args.slurm_gpus_per_job, minimum=0, maximum=64)
    if args.executor != "slurm":  # taken and ignored otherwise
        for flag, value in (("--slurm-partition", args.slurm_partition),
                            ("--slurm-gpus-per-job", args.slurm_gpus_per_job)):
            if value is not None:
                raise UsageError(f"{flag} is for --executor slurm and does nothing with --executor {args.executor}")
    status = run_sweep(spec, args.out, args.executor, args.workers, args.timeout_min, args.slurm_partition,
                       args.slurm_gpus_per_job, args.retry_failed)
    for line in status.crashed_jobs:
        print(line)
    return 0 if not status.failed and not status.left else 1
