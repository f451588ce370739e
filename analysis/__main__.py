"""python -m analysis report [SECTION ...]"""

import argparse
import sys

from .report import SECTIONS, run

parser = argparse.ArgumentParser(prog="python -m analysis")
sub = parser.add_subparsers(dest="command", required=True)
p = sub.add_parser("report", help="regenerate reports/ (all sections by default)")
p.add_argument("sections", nargs="*", metavar="SECTION", help=f"any of: {', '.join(SECTIONS)} (default: all)")
args = parser.parse_args()
unknown = [s for s in args.sections if s not in SECTIONS]
if unknown:
    print(f"error: unknown report section(s) {unknown}; valid: {', '.join(SECTIONS)}", file=sys.stderr)
    sys.exit(2)
status = run(args.sections or None)
sys.exit(0 if all(v == "ok" for v in status.values()) else 1)
