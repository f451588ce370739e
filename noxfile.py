"""Sessions: ``nox -s bench`` regenerates reports/; ``nox -s tests`` runs the test suite.

All sessions share one virtual environment (``.nox/shared``) so torch is
installed once; it is reinstalled only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
ROOT = Path(__file__).parent
VENV = ROOT / ".nox" / "shared"


def _python(session: nox.Session) -> str:
    """The shared environment's interpreter, created and installed on first use."""
    python = VENV / "bin" / "python"
    if not python.exists():
        session.run(sys.executable, "-m", "venv", str(VENV), external=True)
    stamp = VENV / ".rfbench-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        session.run(str(python), "-m", "pip", "install", "-q", "--upgrade", "pip", external=True)
        session.run(str(python), "-m", "pip", "install", "-q", "--no-compile", "-e", f"{ROOT}[test]", external=True)
        # pip byte-compiles the ~11,500 installed modules one after another (35 of a 74 s install on a 2-core
        # machine); compileall does it on every core (16 s). Exit code 1 (-qq: not printed): a file that does not
        # compile, e.g. torch's Python-3.12-only test helper, which pip skips too. Without .pyc files every process
        # would import from source where PYTHONDONTWRITEBYTECODE is set (torch and pandas: 11 instead of 4.5 s).
        site = session.run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                           silent=True, external=True).strip()
        session.run(str(python), "-m", "compileall", "-qq", "-j", "0", site, external=True, success_codes=[0, 1])
        stamp.write_text(digest)
    return str(python)


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The plain test suite (no slow tests, no benchmarks): what CI runs."""
    # two pytest-xdist workers: the 2-core machines this runs on finish the suite in about 6 instead of 8.5 min
    session.run(_python(session), "-m", "pytest", "-m", "not slow", "-n", "2", *session.posargs, external=True)


@nox.session(python=False)
def tests_slow(session: nox.Session) -> None:
    """Only the slow tests (paper input sizes, every variant at full size)."""
    session.run(_python(session), "-m", "pytest", "-m", "slow", *session.posargs, external=True)


@nox.session(python=False)
def benchmarks(session: nox.Session) -> None:
    """pytest-benchmark forward-pass benchmarks; pass e.g. --benchmark-json=out.json."""
    session.run(_python(session), "-m", "pytest", "--benchmark-only", *session.posargs, external=True)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff over the project."""
    session.run(_python(session), "-m", "ruff", "check", "bench", "analysis", "tests", "noxfile.py", external=True)


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """Regenerate reports/ (tables and figures) on the embedded defaults."""
    session.run(_python(session), "-m", "analysis", "report", *session.posargs, external=True)


@nox.session(python=False)
def seeds(session: nox.Session) -> None:
    """The benefit side of the base recipe on 3 training runs per family: the trained set with its three controls and
    the accuracy claims, receptive fields (claims a, b), the probes (claim c) and the paper path's accuracy (own
    folders; the scorecard's benefit rows then rest on 3 seeds). Pass another count after --, e.g. nox -s seeds -- 5."""
    count = session.posargs[0] if session.posargs else "3"
    session.run(_python(session), "-m", "analysis", "report", "networks", "erf", "probes", "path-accuracy",
                "--seeds", count, external=True)


@nox.session(python=False)
def multiverse(session: nox.Session) -> None:
    """Every accuracy claim under every recipe of analysis/protocol.toml (the base and one change per axis: backbone
    pretraining, residual-branch init, schedule length, BatchNorm), 3 seeds each, one verdict per claim over the
    recipes and a specification curve per claim (its time: README). Reuses what nox -s seeds trained. Pass a seed
    count and recipe names after --, e.g. nox -s multiverse -- 3 zero-init frozen-bn (the base always runs)."""
    count = session.posargs[0] if session.posargs else "3"
    recipes = ["--recipes", *session.posargs[1:]] if len(session.posargs) > 1 else []
    session.run(_python(session), "-m", "analysis", "report", "multiverse", "--seeds", count, *recipes,
                external=True)


@nox.session(python=False)
def mutants(session: nox.Session) -> None:
    """The mutation check of the benefit side's promises (tests/mutation_check.py): each of a dozen one-line bugs in
    the trained-network, protocol and verdict code must make its named test fail. Pass mutant numbers to run some."""
    session.run(_python(session), "tests/mutation_check.py", *session.posargs, external=True)


@nox.session(python=False)
def notebooks(session: nox.Session) -> None:
    """Execute every notebook (small size) and check they are committed without outputs."""
    session.run(_python(session), "-m", "pytest", "tests/test_notebooks.py", *session.posargs, external=True)


REPORT_SECTIONS = {
    "complexity": "Only the complexity section of reports/ (Tables 1-3, per-block costs, scaling).",
    "zoo": "Only the zoo section of reports/ (every family on every backbone, run as a local sweep).",
    "timing": "Only this device's timing section of reports/ (Table 2 ratios, FPS, profile, roofline, sweeps).",
    "networks": "Only the trained-networks section of reports/ (train or load the trained set, own val mIoU).",
    "erf": "Only the receptive-field section of reports/ (decoder-grid ERF, Figures 3 and 8, claims a and b).",
    "probes": "Only the probes section of reports/ (Table 4, every level, claim c).",
    "ablation": "Only the ablation section of reports/ (RF-50 -> LW-50 one change at a time, Shapley, CRP pool).",
}


def _report_section(section: str, doc: str) -> None:
    def run(session: nox.Session) -> None:
        session.run(_python(session), "-m", "analysis", "report", section, external=True)

    run.__doc__ = doc
    nox.session(python=False, name=section)(run)


for _section, _doc in REPORT_SECTIONS.items():
    _report_section(_section, _doc)
