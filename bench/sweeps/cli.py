"""``python -m bench sweep SPEC --out DIR`` and ``python -m bench sweep-report DIR``."""

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
    p = sub.add_parser("sweep-report", help="merge a sweep's records into one table and figures")
    p.add_argument("dir", help="the --out folder of a sweep")
    p.add_argument("--report", default=None, help="where to write (default: DIR/report)")
    commands["sweep"] = cmd_sweep
    commands["sweep-report"] = cmd_sweep_report


def cmd_sweep(args: argparse.Namespace) -> int:
    from .. import validation
    from ..cli import checked
    from ..errors import UsageError
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


def cmd_sweep_report(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from .merge import merged_frame

    if not Path(args.dir).is_dir():
        raise UsageError(f"sweep folder not found: {args.dir} (the --out folder of `python -m bench sweep`)")
    out = Path(args.report or Path(args.dir) / "report")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--report {out} is an existing file, not a folder")
    frame = merged_frame(args.dir)
    if not len(frame):
        raise UsageError(f"no sweep records under {args.dir}/records")
    frame = _drop_undrawable(frame)
    # Tables and figures come from the report code (analysis/ sits above bench/ in the flow; the CLI is the door)
    from analysis.report.sweep import write_sweep_report

    written = write_sweep_report(frame, out, title=f"Sweep {args.dir}")
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _drop_undrawable(frame):
    """Where every configuration of a kind failed there is nothing to draw for it: say so and list the errors;
    the table of every record (errors included) is still written."""
    for kind, value in (("time", "median_ms"), ("complexity", "paper_flops")):
        rows = frame[frame["kind"] == kind] if "kind" in frame else frame.iloc[:0]
        if len(rows) and not (rows["error"] == "").any():
            print(f"nothing to draw for '{kind}': all {len(rows)} of its configurations failed; the table lists them:")
            for error, n in rows["error"].value_counts().items():
                print(f"  {n} x {error}")
            if kind == "time":
                frame = frame.drop(columns=[value], errors="ignore")  # the time figure is drawn only from this column
            else:
                frame = frame.assign(kind=frame["kind"].replace({"complexity": "complexity (failed)"}))
    return frame
