"""Training as jobs on the sweeps' executors (analysis.networks.jobs): one job per network after the shared backbone,
the networks written to the same store the in-process path reads, a rerun submits only what is missing, a failed
job is one line and exit status 1, and the options are checked before anything runs. Tiny data and steps."""

from __future__ import annotations

import json

import pytest

from analysis.cli import main as analysis_main
from analysis.networks import trained_set
from analysis.networks.jobs import train_as_jobs
from analysis.networks.settings import load_setting
from bench.errors import UsageError

from .test_setting_files import TINY, _write

WITH_PRETRAIN = TINY.replace('families = ["rf_lw"]', 'families = ["rf", "rf_lw"]') + """
[pretrain]
decoder = { channels = 16, top_channels = 32, crp_stages = 0 }
seed = 9
"""


def test_debug_jobs_train_the_set_the_store_then_holds_and_a_rerun_submits_nothing(tmp_path):
    setting = load_setting(_write(tmp_path, WITH_PRETRAIN, "tiny.toml"))
    lines: list[str] = []
    outcome = train_as_jobs(setting, None, 2, "debug", cache_dir=tmp_path / "cache", say=lines.append)
    # phase 1: the shared backbone; phase 2: 2 families x 2 seeds, one job each
    assert outcome.submitted == 5 and not outcome.failed and outcome.already_cached == 0
    assert outcome.trained == {("rf:resnet18", 0), ("rf_lw:resnet18", 0), ("rf:resnet18", 1), ("rf_lw:resnet18", 1)}
    assert any("phase 1: 1 shared backbone" in line for line in lines)
    # the in-process path finds every network in the store: nothing left to train
    nets = trained_set(setting, seeds=2, cache_dir=tmp_path / "cache", say=None, progress=False, only_cached=True)
    assert len(nets) == 4 and len({n.record["backbone_weights"] for n in nets}) == 1
    again = train_as_jobs(setting, None, 2, "debug", cache_dir=tmp_path / "cache", say=lines.append)
    assert again.submitted == 0 and again.already_cached == 4


def test_the_caller_is_told_which_of_a_variants_changes_override_the_setting(tmp_path, capsys):
    """A job's own lines go to its log; the decoder changes a variant keeps over the setting's are said by the
    process that submits it too."""
    from bench.models import register_variant

    setting = load_setting(_write(tmp_path, TINY, "tiny.toml"))
    narrow = setting.decoder["channels"]
    register_variant("zz_jobs_wide", "rf_lw:resnet18", channels=narrow + 8)
    lines: list[str] = []
    outcome = train_as_jobs(setting, ["zz_jobs_wide"], 1, "debug", cache_dir=tmp_path / "cache", say=lines.append)
    assert not outcome.failed
    want = f"zz_jobs_wide: its own decoder changes kept over the setting's: channels={narrow + 8} (setting: {narrow})"
    assert any(want in line for line in lines), lines


def test_a_job_that_fails_is_one_line_and_the_rerun_resumes_it(tmp_path, monkeypatch, capsys):
    from analysis.networks import loop as loop_module

    path = _write(tmp_path, TINY, "tiny.toml")
    real_fit = loop_module.fit
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("node lost")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(loop_module, "fit", flaky)
    monkeypatch.setattr("pdb.post_mortem", lambda *a, **k: None)  # the debug executor opens pdb on a failed job
    args = ["train", "--setting", str(path), "--seeds", "2", "--cache", str(tmp_path / "c"), "--executor", "debug"]
    assert analysis_main(args) == 1
    said = capsys.readouterr()
    assert "1 job(s) ended without their network, each named on its own line above" in said.err
    (failed,) = [line for line in (said.out + said.err).splitlines() if "FAILED" in line]  # said once
    assert "FAILED: rf_lw:resnet18 seed 1" in failed and "RuntimeError: node lost" in failed
    assert analysis_main([*args, "--json"]) == 0  # the rerun submits only seed 1
    out = capsys.readouterr()
    rows = json.loads(out.out)
    assert [(r["seed"], r["cached"]) for r in rows] == [(0, True), (1, False)]
    assert "1 network(s) to train as jobs (debug executor), 1 already in the weights store" in out.err


def test_local_jobs_run_in_real_subprocesses(tmp_path, capsys):
    path = _write(tmp_path, TINY, "tiny.toml")
    args = ["train", "--setting", str(path), "--seeds", "2", "--cache", str(tmp_path / "c"), "--executor", "local",
            "--workers", "2", "--json"]
    assert analysis_main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and not any(r["cached"] for r in rows)
    logs = list((tmp_path / "c" / ".jobs").glob("*/*_log.out"))
    assert len(logs) == 2  # one job (one process) per network, each with its own log
    # a job that fails in its own process: one line with its own error and its log, not submitit's traceback
    assert analysis_main([*args[:-1], "--cache", str(tmp_path / "d"), "--budget-min", "0.00001"]) == 1
    said = capsys.readouterr()
    said = said.out + said.err
    failed = [line for line in said.splitlines() if "FAILED" in line]
    assert len(failed) == 2 and "Traceback" not in said and "File \"" not in said, said
    for line in failed:
        assert "IncompleteTraining: " in line and "_log.err)" in line, line


@pytest.mark.parametrize("extra, words", [
    (["--executor", "cluster"], "invalid choice: 'cluster'"),
    (["--workers", "3"], "--workers, --timeout-min and --slurm-partition are for --executor"),
    (["--executor", "local", "--workers", "0"], "--workers must be an integer >= 1"),
    (["--executor", "local", "--timeout-min", "0"], "--timeout-min must be a finite number of minutes > 0"),
    (["--executor", "local", "--slurm-partition", "gpu"], "--slurm-partition is for --executor slurm"),
    (["--executor", "debug", "--workers", "2"], "--workers does nothing with --executor debug"),
    (["--executor", "debug", "--timeout-min", "3"], "--timeout-min does nothing with --executor debug"),
])
def test_bad_job_options_are_one_line_and_exit_2_before_anything_runs(tmp_path, capsys, extra, words):
    path = _write(tmp_path, TINY, "tiny.toml")
    assert analysis_main(["train", "--setting", str(path), "--cache", str(tmp_path / "c"), *extra]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert words in line
    assert not (tmp_path / "c").exists()  # nothing trained, nothing written


def test_slurm_without_a_cluster_says_so(tmp_path):
    from bench.sweeps.runner import slurm_available

    if slurm_available():
        pytest.skip("this machine has a SLURM cluster")
    setting = load_setting(_write(tmp_path, TINY, "tiny.toml"))
    with pytest.raises(UsageError, match="needs a SLURM cluster"):
        train_as_jobs(setting, None, 1, "slurm", cache_dir=tmp_path / "c", say=lambda _: None)
