"""Each report section runs end to end at a tiny size and writes whole tables and figures."""

from __future__ import annotations

import json

import pandas as pd

from analysis import report
from analysis.erf_report import ERFPlan
from analysis.erf_report import build as build_erf
from analysis.reporting import write_atomic
from analysis.timing_report import Plan
from analysis.timing_report import build as build_timing


def test_complexity_section_and_front_page(tmp_path, monkeypatch):
    status = report.run(["complexity"], out=tmp_path)
    assert status == {"complexity": "ok"}
    t3 = pd.read_csv(tmp_path / "table3_flops.csv")
    assert {"paper", "measured", "diff", "diff %"} <= set(t3.columns)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    front = (tmp_path / "README.md").read_text()
    for artifact in manifest["complexity"]["artifacts"]:
        assert (tmp_path / artifact["path"]).stat().st_size > 0
        assert f"]({artifact['path']})" in front
    assert not list(tmp_path.glob(".*.tmp"))  # no half-written files left behind


def test_failed_section_is_reported_and_others_run(tmp_path, monkeypatch):
    def broken(out):
        raise RuntimeError("no dataset here")

    monkeypatch.setitem(report.SECTIONS, "broken", broken)
    status = report.run(["broken", "complexity"], out=tmp_path)
    assert status["broken"] == "RuntimeError: no dataset here" and status["complexity"] == "ok"
    assert "failed on its last run" in (tmp_path / "README.md").read_text()


def test_timing_section_tiny(tmp_path):
    section = build_timing(tmp_path, Plan.tiny())
    ratios = pd.read_csv(tmp_path / "table2_speedup.csv")
    assert list(ratios["depth"]) == [50, 101, 152]
    assert ratios["paper RF/LW"].round(2).tolist() == [2.77, 2.22, 1.94]  # from the paper's runtimes
    assert all((tmp_path / a.path).exists() for a in section.artifacts)


def test_erf_section_small(tmp_path):
    section = build_erf(tmp_path, ERFPlan.small())
    sizes = pd.read_csv(tmp_path / "erf_sizes.csv")
    assert set(sizes.variant) == {"rf50", "rf_lw_rcu50", "rf_lw50"}
    assert (sizes["r50 (px)"] <= sizes["r90 (px)"]).all()
    assert all((tmp_path / a.path).exists() for a in section.artifacts)


def test_write_atomic_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "table.md"
    write_atomic(target, "old")
    try:
        write_atomic(target, 12345)  # type: ignore[arg-type]  # the write itself fails
    except TypeError:
        pass
    assert target.read_text() == "old"
    assert not list(tmp_path.glob(".*.tmp"))
