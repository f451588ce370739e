"""``python -m analysis``: regenerate reports/, or run the probes on your own data and weights.

    python -m analysis report [SECTION ...]
    python -m analysis ablation-report SPEC DIR     # tables and waterfall of `python -m bench ablate SPEC --out DIR`
    python -m analysis probes --voc-root /data/VOCdevkit --checkpoint rf101=refinenet101_voc.pth --size 512
    python -m analysis probes --voc-root my-7-class-set --num-classes 7 --families rf rf_lw --seeds 3
    python -m analysis probes --backbone resnet34 --families rf rf_lw --out my-probes   # generated data

Every argument is checked before any data is read or any network trained; a bad one (unknown
section, variant, family or level, a size, class count or seed count out of range, missing dataset
files, a checkpoint that cannot be read or has the wrong keys) exits with status 2 and one line.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from bench.cli import OneLineParser, checked
from bench.errors import UsageError, run_cli
from bench.models import FAMILIES
from bench.models.checkpoints import read_state_dict

from .report import SECTIONS, run


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m analysis", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    p = sub.add_parser("report", help="regenerate reports/ (all sections by default)")
    p.add_argument("sections", nargs="*", metavar="SECTION", help=f"any of: {', '.join(SECTIONS)} (default: all)")
    p = sub.add_parser("ablation-report", help="tables and waterfall of `python -m bench ablate SPEC --out DIR`")
    p.add_argument("spec", help="the study's TOML spec")
    p.add_argument("dir", help="the --out folder of the study")
    p.add_argument("--report", default=None, help="where to write (default: DIR/report)")
    p = sub.add_parser("probes", help="probes before RCU / after RCU / after CRP at every level")
    p.add_argument("--voc-root", help="a VOC-layout folder (default: the generated shapes dataset)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="K, background included (default: from VOC2012/classes.txt, else the largest label + 1)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="VARIANT=PATH",
                   help="probe this trained model instead of training one here; repeatable")
    p.add_argument("--backbone", default="resnet18", help="backbone under each family when training here")
    p.add_argument("--families", nargs="+", default=None, help=f"families to train (default: {' '.join(FAMILIES)})")
    p.add_argument("--levels", nargs="+", default=None, help="decoder levels to probe (default: all four)")
    p.add_argument("--size", type=int, default=None, help="square image side for features and labels (>= 32)")
    p.add_argument("--seeds", type=int, default=None, help="networks trained per family (default: 1 on CPU, 3 on GPU)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--out", default="probes-report", help="folder for the tables and the figure")
    p.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (a few images and steps)")
    return parser


def probe_plan(args: argparse.Namespace):
    """The ProbePlan the arguments ask for, every field checked (no data read, nothing trained)."""
    from .probes import ProbePlan

    plan = ProbePlan.tiny() if args.tiny else ProbePlan.default()
    checkpoints = {}
    for item in args.checkpoint:
        variant, sep, path = item.partition("=")
        if not sep or not variant or not path:
            raise UsageError(f"malformed --checkpoint {item!r}: expected VARIANT=PATH, e.g. rf101=refinenet101_voc.pth")
        if not Path(path).is_file():
            raise UsageError(f"checkpoint file not found: {path}")
        read_state_dict(path)  # unreadable files fail here (a DataError), before any data is loaded
        checkpoints[variant] = path
    changes = {"backbone": args.backbone, "voc_root": args.voc_root, "checkpoints": checkpoints,
               "num_classes": args.num_classes}
    for key in ("families", "levels"):
        if getattr(args, key):
            changes[key] = tuple(getattr(args, key))
    for key in ("size", "seeds", "device"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    plan = replace(plan, **changes)
    checked(plan.validate)
    return plan


def main(argv: list[str] | None = None) -> int:
    """Bad input (an :class:`~bench.errors.InputError`, from the arguments or the data) is one line and
    exit 2; anything else is a bug and keeps its traceback (exit 1)."""

    def body() -> int:
        args = build_parser().parse_args(argv)
        if args.command == "report":
            unknown = [s for s in args.sections if s not in SECTIONS]
            if unknown:
                raise UsageError(f"unknown report section(s) {unknown}; valid: {', '.join(SECTIONS)}")
            status = run(args.sections or None)
            return 0 if all(v == "ok" for v in status.values()) else 1
        if args.command == "ablation-report":
            from .report.ablation import report

            written = report(args.spec, args.dir, args.report or Path(args.dir) / "report")
            print(f"wrote {', '.join(str(p) for p in written)}")
            return 0
        plan = probe_plan(args)
        from .report.probes import build

        section = build(Path(args.out), plan)
        print(f"wrote {', '.join(a.path for a in section.artifacts)} under {args.out}")
        return 0

    return run_cli(body, "python -m analysis")
