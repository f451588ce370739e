"""``python -m analysis``: regenerate reports/, or run the probes on your own data and weights.

    python -m analysis report [SECTION ...]
    python -m analysis probes --voc-root /data/VOCdevkit --checkpoint rf101=refinenet101_voc.pth --size 512
    python -m analysis probes --backbone resnet34 --families rf rf_lw --out my-probes   # embedded default data

Bad input (unknown section or variant, missing dataset files, a checkpoint with the wrong keys)
exits with status 2 and one line naming the problem.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from .report import SECTIONS, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("report", help="regenerate reports/ (all sections by default)")
    p.add_argument("sections", nargs="*", metavar="SECTION", help=f"any of: {', '.join(SECTIONS)} (default: all)")
    p = sub.add_parser("probes", help="Table 4 probes on the embedded default, or on VOC with given checkpoints")
    p.add_argument("--voc-root", help="a VOCdevkit folder (default: the generated shapes dataset)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="VARIANT=PATH",
                   help="probe this trained model instead of training one here; repeatable")
    p.add_argument("--backbone", default="resnet18", help="backbone under each family when training here")
    p.add_argument("--families", nargs="+", default=None,
                   help="decoder families to train (default: rf rf_lw_rcu rf_lw)")
    p.add_argument("--size", type=int, default=None, help="square image size for features and labels")
    p.add_argument("--out", default="probes-report", help="folder for the tables and the figure")
    p.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (a few images and steps)")
    return parser


def _probe_plan(args: argparse.Namespace):
    from .probes_report import ProbePlan

    plan = ProbePlan.tiny() if args.tiny else ProbePlan()
    checkpoints = {}
    for item in args.checkpoint:
        variant, sep, path = item.partition("=")
        if not sep or not variant or not path:
            raise ValueError(f"malformed --checkpoint {item!r}: expected VARIANT=PATH, e.g. rf101=refinenet101_voc.pth")
        if not Path(path).is_file():
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        checkpoints[variant] = path
    changes = {"backbone": args.backbone, "voc_root": args.voc_root, "checkpoints": checkpoints}
    if args.families:
        changes["families"] = tuple(args.families)
    if args.size:
        changes["size"] = args.size
    return replace(plan, **changes)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "report":
        unknown = [s for s in args.sections if s not in SECTIONS]
        if unknown:
            print(f"error: unknown report section(s) {unknown}; valid: {', '.join(SECTIONS)}", file=sys.stderr)
            return 2
        status = run(args.sections or None)
        return 0 if all(v == "ok" for v in status.values()) else 1
    from .probes_report import build

    try:
        section = build(Path(args.out), _probe_plan(args))
    except (ValueError, FileNotFoundError, KeyError) as err:  # named problems (incl. checkpoint keys), not bugs
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(a.path for a in section.artifacts)} to {args.out}")
    return 0
