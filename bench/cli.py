"""Command line: ``python -m bench COMMAND``. A thin layer over importable functions.

Exit codes: 0 success, 2 bad arguments (unknown variant, malformed size, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict

import torch

from .models import create_model, list_models, variant_info


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit code 2."""


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` (e.g. ``512x512``, ``468x625``) -> (height, width)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UsageError(f"malformed size {text!r}: expected HEIGHTxWIDTH with positive integers, e.g. 512x512")
    return int(parts[0]), int(parts[1])


def check_variants(names: list[str]) -> list[str]:
    for name in names:
        try:
            variant_info(name)
        except ValueError as err:
            raise UsageError(str(err)) from None
    return names


def cmd_models(args: argparse.Namespace) -> None:
    rows = []
    for name in list_models(args.pattern, include_backbones=args.all):
        with torch.device("meta"):  # shapes only: no weights are initialised
            model = create_model(name)
        params = sum(p.numel() for p in model.parameters())
        info = variant_info(name)
        rows.append((name, info.paper_name or "", model.spec.family, model.backbone.name, f"{params / 1e6:.2f}"))
    header = ("variant", "paper name", "family", "backbone", "params (M, 21 classes)")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)))


def cmd_complexity(args: argparse.Namespace) -> None:
    from .complexity import complexity, complexity_frame

    sizes = [parse_size(s) for s in (args.size or ["512x512"])]
    variants = check_variants(args.variants)
    records = complexity(variants, sizes, batch=args.batch, num_classes=args.num_classes)
    if args.json:
        print(json.dumps([asdict(r) for r in records], indent=2))
        return
    frame = complexity_frame(records)
    for col in ("macs", "fvcore_flops", "paper_flops", "all_ops"):
        frame[col] = frame[col] / 1e9
    frame["params"] = frame["params"] / 1e6
    frame = frame.rename(
        columns={
            "params": "params (M)",
            "macs": "MACs (G, conv+linear)",
            "fvcore_flops": "fvcore flops (G)",
            "paper_flops": "paper-convention (G)",
            "all_ops": "all ops (G)",
        }
    )
    print(frame.drop(columns=["uncounted_ops"]).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("\n1 multiply-accumulate = 1; input HxW, batch as listed; see `bench.complexity` for the conventions.")


def cmd_time(args: argparse.Namespace) -> None:
    from .timing import TimingSettings, time_variants

    variants = check_variants(args.variants)
    grid = []
    for size in args.size or ["512x512"]:
        h, w = parse_size(size)
        settings = TimingSettings(
            device=args.device, batch=args.batch, height=h, width=w, dtype=args.dtype,
            channels_last=args.channels_last, compile=args.compile, fold_bn=args.fold_bn,
            cudnn_benchmark=args.cudnn_benchmark, threads=args.threads, runs=args.runs,
            min_runs=min(args.min_runs, args.runs), budget_s=args.budget, warmup=args.warmup,
        )
        try:
            settings.validate()
        except ValueError as err:
            raise UsageError(str(err)) from None
        grid.append(settings)
    progress = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    records = time_variants(variants, grid, progress=progress, measure_peak=not args.no_peak)
    if args.json:
        print(json.dumps([r.flat() for r in records], indent=2))
        return
    print(f"device: {records[0].device_name}; torch {records[0].torch}; threads {records[0].threads}")
    print("variant        size       batch dtype  runs  mean±std ms      median  p10     p90     FPS    GFLOP/s")
    for r in records:
        s = r.settings
        if r.error:
            print(f"{r.variant:14s} {s['height']}x{s['width']:<6} {s['batch']:5d} {s['dtype']:5s}  error: {r.error}")
            continue
        print(
            f"{r.variant:14s} {s['height']}x{s['width']:<6} {s['batch']:5d} {s['dtype']:5s} {r.runs:5d}  "
            f"{r.mean_ms:8.1f}±{r.std_ms:<7.1f} {r.median_ms:7.1f} {r.p10_ms:7.1f} {r.p90_ms:7.1f} "
            f"{r.fps:6.2f} {r.achieved_gflops:8.1f}"
        )


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "models": cmd_models,
    "complexity": cmd_complexity,
    "time": cmd_time,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("models", help="list variants with their parameter counts")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'rf_lw*'")
    p.add_argument("--all", action="store_true", help="include every family:backbone combination")
    p = sub.add_parser("complexity", help="parameters and MACs/FLOPs (four named conventions), no forward pass")
    p.add_argument("variants", nargs="+", help="registered names or FAMILY:BACKBONE")
    p.add_argument("--size", action="append", metavar="HxW", help="input size, repeatable (default 512x512)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--num-classes", type=int, default=21)
    p.add_argument("--json", action="store_true", help="print a JSON list of records")
    p = sub.add_parser("time", help="forward-pass timing (random inputs, random init)")
    p.add_argument("variants", nargs="+")
    p.add_argument("--size", action="append", metavar="HxW", help="input size, repeatable (default 512x512)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="fp32", help="fp32, or fp16/bf16 under autocast")
    p.add_argument("--runs", type=int, default=100, help="timed passes (CUDA); the cap on CPU")
    p.add_argument("--min-runs", type=int, default=3, help="CPU: at least this many passes")
    p.add_argument("--budget", type=float, default=10.0, help="CPU: seconds of timed passes per configuration")
    p.add_argument("--warmup", type=int, default=10, help="CUDA warm-up passes")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into convs")
    p.add_argument("--compile", action="store_true", help="torch.compile (compiled during warm-up)")
    p.add_argument("--cudnn-benchmark", action="store_true")
    p.add_argument("--no-peak", action="store_true", help="skip the matmul peak measurement (roofline)")
    p.add_argument("--json", action="store_true", help="print a JSON list of records (progress goes to stderr)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
