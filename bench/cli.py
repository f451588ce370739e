"""Command line: ``python -m bench COMMAND``. A thin layer over importable functions.

Every argument is checked before any model is built; a bad one is reported in one line
(``error: ...``) with exit status 2. Exit codes: 0 success, 1 a measurement failed or an internal
error (a bug: its traceback is printed), 2 bad input (see :mod:`bench.errors`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import asdict

import torch

from . import validation
from .errors import UsageError, checked, run_cli
from .models import FAMILIES, list_models, meta_model, variant_info
from .records import to_json


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (the usage is in --help)."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def check_variants(names: list[str]) -> list[str]:
    for name in names:
        checked(variant_info, name)
    return names


def sizes(args: argparse.Namespace) -> list[tuple[int, int]]:
    return [checked(validation.parse_size, s) for s in (args.size or ["512x512"])]


def cmd_models(args: argparse.Namespace) -> int:
    names = checked(list_models, args.pattern, include_backbones=args.all, family=args.family, backbone=args.backbone)
    if not names:
        hint = "" if args.all else " (family:backbone names need --all)"
        raise UsageError(f"no variant matches {args.pattern!r}{hint}; see `python -m bench models --all`")
    rows = []
    for name in names:
        info = variant_info(name)
        params = sum(p.numel() for p in meta_model(name).parameters())  # shapes only: nothing initialised
        rows.append((name, info.paper_name or "", info.family, info.backbone, f"{params / 1e6:.2f}"))
    if args.json:
        keys = ("variant", "paper_name", "family", "backbone", "params_m")
        print(to_json([dict(zip(keys, r, strict=True)) for r in rows], indent=2))
        return 0
    header = ("variant", "paper name", "family", "backbone", "params (M, 21 classes)")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)))
    return 0


def cmd_complexity(args: argparse.Namespace) -> int:
    from .complexity import complexity, complexity_frame

    variants = check_variants(args.variants)
    grid = sizes(args)
    checked(validation.integer, "--batch", args.batch, minimum=1, maximum=validation.MAX_BATCH)
    checked(validation.integer, "--num-classes", args.num_classes, minimum=1, maximum=validation.MAX_MODEL_CLASSES)
    records = complexity(variants, grid, batch=args.batch, num_classes=args.num_classes)
    if args.json:
        print(to_json([asdict(r) for r in records], indent=2))
        return 0
    frame = complexity_frame(records)
    for col in ("macs", "fvcore_flops", "paper_flops", "all_ops"):
        frame[col] = frame[col] / 1e9
    frame["params"] = frame["params"] / 1e6
    frame = frame.rename(columns={
        "params": "params (M)", "macs": "MACs (G, conv+linear)", "fvcore_flops": "fvcore flops (G)",
        "paper_flops": "paper-convention (G)", "all_ops": "all ops (G)",
    })
    print(frame.drop(columns=["uncounted_ops", "elements"]).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("\n1 multiply-accumulate = 1; input HxW, batch as listed; see `bench.complexity` for the conventions.")
    return 0


def timing_settings(args: argparse.Namespace):
    """One TimingSettings per --size, every field checked (the CLI's flag names in the messages)."""
    from dataclasses import replace

    from .timing import TimingSettings

    checked(validation.integer, "--runs", args.runs, minimum=1, maximum=validation.MAX_RUNS)
    if args.warmup is not None:
        checked(validation.integer, "--warmup", args.warmup, minimum=0, maximum=validation.MAX_RUNS)
    if args.device.startswith("cuda"):  # CUDA times exactly --runs passes: these would be taken and ignored
        for flag, value in (("--min-runs", args.min_runs), ("--budget", args.budget)):
            if value is not None:
                raise UsageError(f"{flag} is a CPU setting (CUDA times exactly --runs passes) and does nothing on "
                                 f"device {args.device!r}; drop it")
    if args.budget is None:
        args.budget = 10.0
    checked(validation.number, "--budget", args.budget, minimum=0)
    if args.min_runs is None:
        args.min_runs = min(3, args.runs)  # the default follows a small --runs; one given above it is refused
    checked(validation.integer, "--min-runs", args.min_runs, minimum=1)
    checked(validation.integer, "--batch", args.batch, minimum=1, maximum=validation.MAX_BATCH)
    if args.threads is not None:
        checked(validation.integer, "--threads", args.threads, minimum=1, maximum=validation.MAX_THREADS)
    base = TimingSettings(
        device=args.device, batch=args.batch, dtype=args.dtype, channels_last=args.channels_last,
        compile=args.compile, fold_bn=args.fold_bn, cudnn_benchmark=args.cudnn_benchmark,
        cuda_graph=args.cuda_graph, tf32=args.tf32, threads=args.threads, runs=args.runs,
        min_runs=args.min_runs, budget_s=args.budget, warmup=args.warmup,
    )
    grid = [replace(base, height=h, width=w) for h, w in sizes(args)]
    for s in grid:
        checked(s.validate)
    return grid


def _progress(args: argparse.Namespace):
    return (lambda msg: print(msg, file=sys.stderr)) if args.json else print


def cmd_time(args: argparse.Namespace) -> int:
    from .timing import time_variants

    variants = check_variants(args.variants)
    records = time_variants(variants, timing_settings(args), progress=_progress(args))
    if args.json:
        print(to_json([r.flat() for r in records], indent=2))
        return 0 if not any(r.error for r in records) else 1
    env = next((r.environment for r in records if r.environment), {})
    print(f"device: {env.get('device_name', '?')}; torch {env.get('torch', '?')}; threads {env.get('threads', '?')}")
    print("variant        size       batch dtype  mode   runs  median ms  p10     p90     images/s  GFLOP/s")
    for r in records:
        s = r.settings
        if r.error:
            print(f"{r.variant:14s} {s['height']}x{s['width']:<6} {s['batch']:5d} {s['dtype']:5s}  error: {r.error}")
            continue
        print(f"{r.variant:14s} {s['height']}x{s['width']:<6} {s['batch']:5d} {s['dtype']:5s}  {r.mode:5s} "
              f"{r.runs:5d}  {r.median_ms:9.2f} {r.p10_ms:7.2f} {r.p90_ms:7.2f} {r.fps:9.2f} {r.achieved_gflops:8.1f}")
    print("\nimages/s = batch / median time (FPS); GFLOP/s = 2 x MACs / median time.")
    return 0 if not any(r.error for r in records) else 1


def cmd_speedup(args: argparse.Namespace) -> int:
    from .speedup import paired_speedups

    check_variants([args.base, args.other])
    records = paired_speedups([(args.base, args.other)], timing_settings(args), progress=_progress(args))
    if args.json:
        print(to_json([r.flat() for r in records], indent=2))
    else:
        for r in records:
            status = r.error or (f"{r.ratio:.3f}x ({r.interval_words()}) over {r.pairs} "
                                 f"interleaved pairs; medians {r.base_median_ms:.2f} / {r.other_median_ms:.2f} ms "
                                 f"({r.mode})")
            print(f"{r.other} vs {r.base} at {r.height}x{r.width}, batch {r.batch}, {r.device} {r.dtype}: {status}")
        print("\nratio: how many times faster OTHER runs than BASE (geometric mean of paired time ratios).")
    return 0 if not any(r.error for r in records) else 1


def cmd_profile(args: argparse.Namespace) -> int:
    from .profile import CATEGORIES, profile_variants

    variants = check_variants(args.variants)
    checked(validation.integer, "--profile-runs", args.profile_runs, minimum=1, maximum=validation.MAX_RUNS)
    records = [r for s in timing_settings(args)
               for r in profile_variants(variants, s, runs=args.profile_runs, progress=_progress(args))]
    if args.json:
        print(to_json([asdict(r) for r in records], indent=2))
        return 0 if not any(r.error for r in records) else 1
    for r in records:
        if r.error:
            print(f"{r.variant}: error: {r.error}")
            continue
        s = r.settings
        print(f"{r.variant} {s['height']}x{s['width']} batch {s['batch']} {s['device']} {s['dtype']}: "
              f"{r.wall_ms:.2f} ms per pass; categories explain {100 * r.explained:.0f}%")
        for c in CATEGORIES:
            print(f"  {c:14s} {r.category_ms[c]:9.2f} ms")
    return 0 if not any(r.error for r in records) else 1


def add_timing_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", action="append", metavar="HxW", help="input size, repeatable (default 512x512)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="fp32", help="fp32, or fp16/bf16 under autocast")
    p.add_argument("--runs", type=int, default=100, help="timed passes (CUDA); the cap on CPU")
    p.add_argument("--min-runs", type=int, default=None, help="CPU: at least this many passes (default 3, at most "
                   "--runs)")
    p.add_argument("--budget", type=float, default=None, help="CPU: seconds of timed passes per configuration "
                   "(default 10)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up passes (default: 10 on CUDA, 1 on CPU)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into convs")
    p.add_argument("--compile", action="store_true", help="torch.compile (compiled during warm-up)")
    p.add_argument("--cudnn-benchmark", action="store_true")
    p.add_argument("--cuda-graph", action="store_true", help="CUDA: time replays of a captured graph")
    tf32 = p.add_mutually_exclusive_group()
    tf32.add_argument("--tf32", dest="tf32", action="store_true", default=None, help="CUDA fp32: TF32 on")
    tf32.add_argument("--no-tf32", dest="tf32", action="store_false", help="CUDA fp32: strict fp32")
    p.add_argument("--json", action="store_true", help="print a JSON list of records (progress goes to stderr)")


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "models": cmd_models,
    "complexity": cmd_complexity,
    "time": cmd_time,
    "speedup": cmd_speedup,
    "profile": cmd_profile,
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    p = sub.add_parser("models", help="list variants with their parameter counts")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'rf_lw*'")
    p.add_argument("--all", action="store_true", help="include every family:backbone combination")
    p.add_argument("--family", choices=list(FAMILIES), help="only this decoder family")
    p.add_argument("--backbone", help="only this backbone (e.g. resnet101)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("complexity", help="parameters and MACs/FLOPs (four named conventions), no forward pass")
    p.add_argument("variants", nargs="+", help="registered names or FAMILY:BACKBONE")
    p.add_argument("--size", action="append", metavar="HxW", help="input size, repeatable (default 512x512)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--num-classes", type=int, default=21)
    p.add_argument("--json", action="store_true", help="print a JSON list of records")
    p = sub.add_parser("time", help="forward-pass timing (random inputs, random init)")
    p.add_argument("variants", nargs="+")
    add_timing_options(p)
    p = sub.add_parser("speedup", help="how many times faster OTHER runs than BASE: interleaved, paired, with a CI")
    p.add_argument("base")
    p.add_argument("other")
    add_timing_options(p)
    p = sub.add_parser("profile", help="time per operator category (torch.profiler)")
    p.add_argument("variants", nargs="+")
    add_timing_options(p)
    p.add_argument("--profile-runs", type=int, default=3, help="profiled passes per variant")
    from .sweeps.cli import add_sweep_commands

    add_sweep_commands(sub, COMMANDS)
    from .ablations.cli import add_ablation_commands

    add_ablation_commands(sub, COMMANDS)
    return parser


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)

    return run_cli(body, "python -m bench")
