"""Every ``--json`` output and every sweep record is strict JSON (a missing value is ``null``, never ``NaN``),
and record files are written whole, with a plain write's permissions. The outputs are those of the real
commands at tiny sizes, parsed the way jq or JavaScript would: ``NaN``/``Infinity`` raise."""

from __future__ import annotations

import json
import math
import os
import stat

import pytest

from bench.cli import main as bench_main
from bench.files import write_atomic
from bench.records import to_json
from bench.sweeps import load_spec, read_records, run_sweep


def strict(text: str):
    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


TINY = ["--size", "64x64", "--runs", "2", "--min-runs", "1", "--budget", "0", "--json"]


@pytest.mark.parametrize("args", [
    ["models", "rf_lw*", "--json"],
    ["complexity", "rf_lw_mbv2", "--size", "64x64", "--json"],
    ["time", "rf_lw_mbv2", *TINY],
    ["speedup", "rf_lw_mbv2", "rf_lw:resnet18", *TINY],
    ["profile", "rf_lw_mbv2", "--profile-runs", "1", *TINY],
], ids=lambda a: a[0])
def test_every_json_output_parses_strictly(args, capsys):
    assert bench_main(args) == 0
    records = strict(capsys.readouterr().out)
    assert records and all(isinstance(r, dict) for r in records)
    if args[0] in ("time", "speedup"):
        # values that are not measured on a CPU (peak memory; eager time beside a graph replay) are null
        missing = {"time": "peak_memory_mb", "speedup": "base_eager_ms"}[args[0]]
        assert all(r[missing] is None for r in records)
        assert all(isinstance(r["error"], str) and not r["error"] for r in records)


def test_to_json_replaces_non_finite_floats_at_any_depth():
    text = to_json({"a": math.nan, "b": [1.5, math.inf, (-math.inf, 2)], "c": {"d": [math.nan]}, "e": "NaN"})
    assert strict(text) == {"a": None, "b": [1.5, None, [None, 2]], "c": {"d": [None]}, "e": "NaN"}


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_sweep_records_are_strict_json_and_0644(tmp_path, umask_022):
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text('measure = ["complexity", "time"]\nvariants = ["rf_lw_mbv2"]\nsizes = ["64x64"]\n'
                         '[timing]\nruns = 2\nmin_runs = 1\nbudget_s = 0.0\n')
    status = run_sweep(load_spec(spec_path), tmp_path / "out", executor="debug", progress=None)
    assert (status.done, status.failed) == (2, 0)
    files = sorted((tmp_path / "out" / "records").glob("*.json"))
    assert len(files) == 2
    for path in files:
        record = strict(path.read_text())
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, oct(path.stat().st_mode)
        if record["config"]["kind"] == "time":
            assert record["rows"][0]["peak_memory_mb"] is None  # NaN in the dataclass, null in the file
    assert len(read_records(tmp_path / "out")) == 2


def test_one_atomic_writer_with_plain_write_permissions(tmp_path):
    from analysis.report import files as report_files

    assert report_files.write_atomic is write_atomic  # reports and records share it
    old = os.umask(0o027)
    try:
        path = write_atomic(tmp_path / "sub" / "x.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_text() == "{}"
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]  # no temporary file left behind
