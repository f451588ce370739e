"""``python -m bench ablate SPEC --out DIR`` (measure) and ``python -m bench ablate SPEC --print`` (resolve only).

Tables and figures of the records come from the analysis side: ``python -m analysis ablation-report DIR``.
"""

from __future__ import annotations

import argparse


def add_ablation_commands(sub, commands: dict) -> None:
    from ..sweeps.runner import EXECUTORS

    p = sub.add_parser("ablate", help="an ablation spec (TOML): variants, grids, paths of decoder changes")
    p.add_argument("spec", help="a TOML ablation spec, e.g. bench/ablations/specs/paper-path.toml")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="show the resolved variants (name, base, changes, hash, params) and run nothing")
    p.add_argument("--out", default=None, help="folder for the records (a rerun skips what is there)")
    p.add_argument("--measure", default=None, help="comma-separated: complexity,time (default: the spec's)")
    p.add_argument("--executor", default="local", choices=EXECUTORS)
    p.add_argument("--workers", type=int, default=1, help="local: jobs at a time")
    p.add_argument("--timeout-min", type=float, default=60.0, help="per job")
    p.add_argument("--slurm-partition", default=None)
    p.add_argument("--retry-failed", action="store_true", help="run failed configurations again")
    commands["ablate"] = cmd_ablate


def cmd_ablate(args: argparse.Namespace) -> int:
    from .. import validation
    from ..errors import UsageError, checked
    from .runner import run_ablation, variant_rows
    from .spec import MEASURES, load_ablation

    spec = load_ablation(args.spec)
    measure = None
    if args.measure is not None:
        measure = tuple(checked(validation.choice, "--measure", m.strip(), MEASURES) for m in args.measure.split(","))
    if args.print_only:
        for note in spec.notes:  # run_ablation says them when it runs
            print(f"note: {note}")
        rows = variant_rows(spec)
        header = {"name": "variant", "group": "group", "base": "base", "changes": "changes", "hash": "hash",
                  "params_m": f"params (M, {spec.num_classes} classes)", "timed_against": "timed against"}
        cells = [{k: (f"{r[k]:.2f}" if k == "params_m" else str(r[k])) for k in header} for r in rows]
        widths = {k: max(len(header[k]), *(len(c[k]) for c in cells)) for k in header}
        for row in [header] + cells:
            print("  ".join(row[k].ljust(widths[k]) for k in header).rstrip())
        n = len(spec.configurations(measure))
        print(f"\n{len(rows)} variants; {n} configurations would run (measure: {', '.join(measure or spec.measure)}; "
              f"sizes {', '.join(f'{h}x{w}' for h, w in spec.sizes)}, batch {spec.batch}). Nothing was run.")
        return 0
    if not args.out:
        raise UsageError("ablate needs --out DIR to run (or --print to show the resolved variants only)")
    checked(validation.integer, "--workers", args.workers, minimum=1)
    checked(validation.number, "--timeout-min", args.timeout_min, minimum=0.1)
    status = run_ablation(spec, args.out, measure, args.executor, args.workers, timeout_min=args.timeout_min,
                          slurm_partition=args.slurm_partition, retry_failed=args.retry_failed)
    for line in status.crashed_jobs:
        print(line)
    return 0 if not status.failed and not status.left else 1
