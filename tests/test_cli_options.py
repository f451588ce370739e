"""CLI promises: ``python -m bench time --threads N`` runs the passes on N threads and says so in the record;
``python -m analysis sweep-report DIR`` writes its table and figures from a sweep's records."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torch import nn

import bench.timing as timing
from analysis.cli import main as analysis_main
from bench.cli import main


class ThreadSpy(nn.Module):
    """Records how many threads torch uses while it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        return self.conv(x)


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="needs a default of 2+ threads to tell 1 thread apart")
def test_time_threads_sets_the_threads_of_the_passes_and_the_record(monkeypatch, capsys):
    spy = ThreadSpy()
    monkeypatch.setattr(timing, "seeded_model", lambda name, seed=0: spy)
    before = torch.get_num_threads()
    code = main(["time", "rf_lw_mbv2", "--size", "64x64", "--runs", "2", "--budget", "0", "--threads", "1",
                 "--device", "cpu", "--json"])
    assert code == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert spy.seen and set(spy.seen) == {1}  # warm-up and timed passes, all on one thread
    assert row["threads"] == 1 and row["runs"] == 2
    assert torch.get_num_threads() == before  # restored afterwards


def test_sweep_report_writes_its_table_and_figures(tmp_path, capsys):
    from bench.complexity import complexity
    from bench.sweeps import parse_spec, run_sweep

    variants = ["rf:resnet18", "rf_lw_rcu:resnet18", "rf_lw:resnet18"]
    spec = parse_spec({"measure": ["complexity"], "variants": variants, "sizes": ["64x64"]})
    run_sweep(spec, tmp_path / "sweep", executor="debug", progress=None)
    assert analysis_main(["sweep-report", str(tmp_path / "sweep")]) == 0
    report = tmp_path / "sweep" / "report"
    written = capsys.readouterr().out
    for name in ("sweep.csv", "sweep.md", "family_cost.csv", "family_cost.md", "family_cost.png"):
        assert (report / name).stat().st_size > 0 and name in written
    rows = pd.read_csv(report / "sweep.csv")
    assert sorted(rows.variant) == sorted(variants) and (rows.kind == "complexity").all()
    cost = pd.read_csv(report / "family_cost.csv").iloc[0]
    flops = {r.variant.split(":")[0]: r.paper_flops for r in complexity(variants, [(64, 64)])}  # a direct count
    assert cost.backbone == "resnet18" and cost.rf_lw_gflops == pytest.approx(flops["rf_lw"] / 1e9)
    assert cost.rf_over_lw == pytest.approx(flops["rf"] / flops["rf_lw"])
    assert cost.rf_lw_rcu_over_lw == pytest.approx(flops["rf_lw_rcu"] / flops["rf_lw"])


def test_sweep_report_of_an_empty_folder_is_an_input_error(tmp_path, capsys):
    assert analysis_main(["sweep-report", str(tmp_path)]) == 2
    assert "no sweep records under" in capsys.readouterr().err
    (tmp_path / "spec.toml").write_text("measure = ['complexity']\n")
    assert analysis_main(["sweep-report", str(tmp_path / "spec.toml")]) == 2
    assert f"{tmp_path / 'spec.toml'} is a file, not a sweep folder" in capsys.readouterr().err


def test_sweep_report_of_registered_names_without_lw(tmp_path, capsys):
    """A sweep of a name registered in the sweep's process and of no built-in LW: the report registers the name
    again from the records (a fresh process knows only built-in names), a registered variant never stands in for
    its family's built-in network, and with no LW rows the table has no *_over_lw columns."""
    from bench.complexity import complexity
    from bench.models import register_variant, registry
    from bench.sweeps import parse_spec, run_sweep

    register_variant("zz_lw_crp2", "rf_lw:resnet18", crp_stages=2)
    variants = ["rf:resnet18", "zz_lw_crp2"]
    spec = parse_spec({"measure": ["complexity"], "variants": variants, "sizes": ["32x32"]})
    run_sweep(spec, tmp_path / "sweep", executor="debug", progress=None)
    registry._REGISTRY.pop("zz_lw_crp2")  # as in a new process: only the records know the name
    registry._SPECS.pop("zz_lw_crp2")
    assert analysis_main(["sweep-report", str(tmp_path / "sweep")]) == 0, capsys.readouterr().err
    report = tmp_path / "sweep" / "report"
    rows = pd.read_csv(report / "sweep.csv")
    assert sorted(rows.variant) == sorted(variants) and set(rows.family) == {"rf", "rf_lw"}
    cost = pd.read_csv(report / "family_cost.csv")
    assert list(cost.columns) == ["backbone", "rf_gflops"]  # the registered LW variant is not 'rf_lw'
    rf = complexity(["rf:resnet18"], [(32, 32)])[0].paper_flops / 1e9
    assert cost.rf_gflops.tolist() == [pytest.approx(rf)]
    md = (report / "family_cost.md").read_text()
    assert f"| resnet18 | {rf:.3g} |" in md and "nan" not in md  # a fraction of a GFLOP keeps its digits
    assert (report / "family_cost.png").stat().st_size > 0


def _forget(*names):
    """As in a new process: the names registered here are known only to the records."""
    from bench.models import registry

    for name in names:
        registry._REGISTRY.pop(name)
        registry._SPECS.pop(name, None)


def test_sweep_report_of_registered_names_only_and_of_a_size_that_failed(tmp_path, capsys):
    import json

    from bench.models import register_variant
    from bench.sweeps import parse_spec, run_sweep

    register_variant("zz_only_lw", "rf_lw:resnet18", crp_stages=2)
    only = tmp_path / "only"
    run_sweep(parse_spec({"measure": ["complexity"], "variants": ["zz_only_lw"], "sizes": ["32x32"]}), only,
              executor="debug", progress=None)
    _forget("zz_only_lw")
    assert analysis_main(["sweep-report", str(only)]) == 0, capsys.readouterr().err
    assert "family_cost: not drawn, the sweep counted no built-in decoder family" in capsys.readouterr().out
    assert (only / "report" / "sweep.csv").is_file() and not list((only / "report").glob("family_cost*"))
    # every configuration at the smallest size failed: the next size is drawn, and the note says which
    mixed = tmp_path / "mixed"
    run_sweep(parse_spec({"measure": ["complexity"], "variants": ["rf:resnet18", "rf_lw:resnet18"],
                          "sizes": ["32x32", "64x64"]}), mixed, executor="debug", progress=None)
    for path in (mixed / "records").glob("*.json"):
        record = json.loads(path.read_text())
        if record["config"]["height"] == 32:
            path.write_text(json.dumps({**record, "rows": [], "error": "RuntimeError: boom"}))
    assert analysis_main(["sweep-report", str(mixed)]) == 0, capsys.readouterr().err
    note = (mixed / "report" / "family_cost.md").read_text()
    assert "FLOPs at 64x64" in note and "1 backbones at 64x64" in note and "rf_over_lw" in note
    # a size asked for where nothing built-in was counted: said in one line, not drawn
    from analysis.report.sweep import write_sweep_report
    from bench.sweeps import merged_frame

    said: list[str] = []
    written = write_sweep_report(merged_frame(mixed), tmp_path / "at32", "t", size=(32, 32), say=said.append)
    assert said == ["family_cost: not drawn, no built-in decoder family was counted at 32x32 (counted at 64x64)"]
    assert [p.name for p in written] == ["sweep.csv", "sweep.md"]


def test_sweep_report_refuses_one_name_registered_two_ways(tmp_path, capsys):
    from bench.models import register_variant
    from bench.sweeps import parse_spec, run_sweep

    for stages in (2, 1):  # two runs into one folder, the name registered differently each time
        register_variant("zz_twice", "rf_lw:resnet18", crp_stages=stages)
        spec = parse_spec({"measure": ["complexity"], "variants": ["zz_twice"], "sizes": ["32x32"]})
        run_sweep(spec, tmp_path / "sweep", executor="debug", progress=None)
        _forget("zz_twice")
    assert analysis_main(["sweep-report", str(tmp_path / "sweep")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "register 'zz_twice' in 2 ways" in line and "'crp_stages': 2" in line and "'crp_stages': 1" in line
    assert line.count("/records/") == 2 and "delete the records of the one you do not mean" in line
