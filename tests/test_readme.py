"""The README's examples run: its Python blocks (at a small input size) and its model/complexity commands."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
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


BASH_LINES = [line.strip() for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S)
              for line in block.splitlines()]
COMMANDS = [line for line in BASH_LINES if line.startswith(("python -m bench models", "python -m bench complexity"))]


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_model_and_complexity_commands_run(command):
    args = shlex.split(command.split("#")[0])
    proc = subprocess.run([sys.executable, *args[1:]], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
