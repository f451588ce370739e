"""The README's and the docs' examples run: their Python blocks (at a small input size) and their model/complexity
commands; every page they link to exists."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = {p.name: p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}
PAGES = [README, *DOCS.values()]
PYTHON_BLOCKS = [b for page in PAGES for b in re.findall(r"```python\n(.*?)```", page, flags=re.S)]
SMALL = {"(1, 3, 512, 512)": "(1, 3, 64, 64)", "(512, 512)": "(64, 64)"}  # same code, seconds instead of minutes


def test_the_readme_has_python_examples():
    assert len(PYTHON_BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_block_runs(index):
    code = PYTHON_BLOCKS[index]
    for big, small in SMALL.items():
        code = code.replace(big, small)
    namespace: dict = {}
    exec(compile("import torch\nfrom bench import create_model\n" + code, f"README block {index}", "exec"), namespace)


BASH_LINES = [line.strip() for page in PAGES for block in re.findall(r"```bash\n(.*?)```", page, flags=re.S)
              for line in block.splitlines()]
COMMANDS = [line for line in BASH_LINES if line.startswith(("python -m bench models", "python -m bench complexity"))]


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_model_and_complexity_commands_run(command):
    args = shlex.split(command.split("#")[0])
    proc = subprocess.run([sys.executable, *args[1:]], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_readme_commented_results_hold():
    """The first Python block's comments state results: run it at 64x64 (the same code) and check each one. The
    logits are 1/4 of the input: (1, 21, 128, 128) at 512x512 is (1, 21, 16, 16) at 64x64."""
    code = PYTHON_BLOCKS[0]
    assert "# (1, 21, 128, 128): 1/4 of the input" in code and "# ['rf101', 'rf:resnet101']" in code
    assert "# 'rf_lw101'" in code and '{"level4.after_rcu": "level4.before_rcu", ...}' in code
    for big, small in SMALL.items():
        code = code.replace(big, small)
    lines = code.splitlines()
    ns: dict = {}
    exec(compile("import torch\nfrom bench import create_model\n" + code, "README block 0", "exec"), ns)
    value = {}  # each commented expression (not an import or assignment) evaluated again
    for line in lines:
        expr = line.split("#")[0].strip()
        if "#" in line and expr and not expr.startswith(("import ", "from ")) and "=" not in expr.split("(")[0]:
            value[expr] = eval(expr, ns)
    assert tuple(ns["logits"].shape) == (1, 21, 16, 16)
    lw = value['list_models("rf_lw*")']
    assert all(name.startswith("rf_lw") for name in lw) and {"rf_lw101", "rf_lw_rcu50", "rf_lw_mbv2"} <= set(lw)
    assert value['list_models(family="rf", backbone="resnet101")'] == ["rf101", "rf:resnet101"]
    assert value['find_variant("rf_lw", "resnet101")'] == "rf_lw101"
    assert value["model.tap_aliases()"]["level4.after_rcu"] == "level4.before_rcu"
    info = value['variant_info("rf_lw101")']
    assert (info.family, info.backbone) == ("rf_lw", "resnet101")
    assert set(ns["taps"]) == {"level4.before_rcu", "level4.after_crp", "logits"}
    assert tuple(ns["taps"]["logits"].shape) == (1, 21, 16, 16)
    assert tuple(ns["taps"]["level4.after_crp"].shape[-2:]) == (2, 2)  # level 4: stride 32


def test_the_readme_is_a_guide_and_every_link_resolves():
    assert len(README.splitlines()) <= 250
    for name, page in [("README.md", README), *((f"docs/{n}", t) for n, t in DOCS.items())]:
        base = ROOT if name == "README.md" else ROOT / "docs"
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page):
            if target.startswith(("http://", "https://")):
                continue
            assert (base / target).exists(), f"{name} links to {target}, which does not exist"
    for page in DOCS:
        assert f"docs/{page}" in README or page == "README.md", f"the README does not link docs/{page}"
