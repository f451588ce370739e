"""Sweeps on submitit: specs, resumable records, real local subprocesses killed and resumed, the merged
table against the single-process CLI, failures as rows, and the SLURM submission through submitit's
own test double."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.sweeps import SPECS, config_id, load_spec, merged_frame, parse_spec, read_records, run_sweep

FOUR = """
measure = ["complexity"]
variants = ["rf_lw_mbv2", "rf_lw:resnet18"]
sizes = ["64x64", "96x128"]
chunk = 1
"""


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_spec_expands_patterns_and_hashes_stably(tmp_path):
    spec = load_spec(write_spec(tmp_path, FOUR))
    configs = spec.configurations()
    assert len(configs) == 4 and {c["kind"] for c in configs} == {"complexity"}
    assert len({config_id(c) for c in configs}) == 4
    assert config_id(dict(reversed(list(configs[0].items())))) == config_id(configs[0])  # key order does not matter
    zoo = load_spec(SPECS / "zoo.toml")
    assert len(zoo.configurations()) == 2 * len(zoo.variants) and "rf_lw:convnext_tiny" in zoo.variants
    gpu = load_spec(SPECS / "example-gpu.toml")  # a CUDA spec is checked on a machine without CUDA
    assert {c["kind"] for c in gpu.configurations()} == {"time", "speedup"}


@pytest.mark.parametrize("text, words", [
    ('measure = ["flops"]\nvariants = ["rf50"]', "unknown measure 'flops'"),
    ('measure = ["complexity"]\nvariants = ["rf_lw:nothing*"]', "matches no built-in name"),
    ('measure = ["complexity"]\nvariants = ["rf50"]\nsizes = ["16x16"]', "at least 32x32"),
    ('measure = ["speedup"]', "'speedup' needs 'pairs'"),
    ('measure = ["time"]\nvariants = ["rf50"]\n[timing]\nrunz = 3', "unknown [timing] field(s) ['runz']"),
    ('measure = ["time"]\nvariants = ["rf50"]\n[timing]\nruns = 0', "runs must be an integer >= 1"),
    ('mesure = ["complexity"]', "unknown key(s) ['mesure']"),
])
def test_bad_specs_are_named(text, words):
    import tomllib

    with pytest.raises(ValueError) as err:
        parse_spec(tomllib.loads(text))
    assert words in str(err.value)


def test_local_sweep_merges_to_what_the_single_process_cli_gives(tmp_path):
    spec = load_spec(write_spec(tmp_path, FOUR))
    status = run_sweep(spec, tmp_path / "out", executor="local", workers=2, progress=None)
    assert (status.done, status.failed, status.left) == (4, 0, 0)
    merged = merged_frame(tmp_path / "out")
    proc = subprocess.run([sys.executable, "-m", "bench", "complexity", "rf_lw_mbv2", "rf_lw:resnet18", "--size",
                           "64x64", "--size", "96x128", "--json"], capture_output=True, text=True, timeout=300)
    single = json.loads(proc.stdout)
    key = ("variant", "height", "width")
    fields = list(single[0])
    got = sorted(tuple(r[k] for k in fields) for r in merged[fields].to_dict("records"))
    want = sorted(tuple(r[k] for k in fields) for r in single)
    assert got == want and len({tuple(r[k] for k in key) for r in single}) == 4
    again = run_sweep(spec, tmp_path / "out", executor="local", workers=2, progress=None)
    assert again.skipped == 4 and again.done == 4  # nothing to do the second time


def test_a_killed_sweep_resumes_and_runs_only_what_is_missing(tmp_path):
    spec_path = write_spec(tmp_path, FOUR)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "sweep", str(spec_path), "--out", str(out),
                             "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / "records").glob("*.json")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep, its job controller and the job: a node lost mid-sweep
    proc.wait()
    first = {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    assert 1 <= len(first) < 4, first
    status = run_sweep(load_spec(spec_path), out, executor="local", workers=1, progress=None)
    assert status.skipped == len(first) and status.done == 4 and status.left == 0
    after = {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    assert all(after[name] == stamp for name, stamp in first.items())  # finished records were not redone
    assert len(after) == 4


def test_a_failing_configuration_is_an_error_row_and_the_rest_go_on(tmp_path):
    spec = load_spec(write_spec(tmp_path, """
measure = ["complexity", "time"]
variants = ["rf_lw_mbv2"]
sizes = ["64x64"]
device = "cuda"
[timing]
runs = 2
"""))
    if __import__("torch").cuda.is_available():
        pytest.skip("the failure is CUDA missing: this machine has it")
    status = run_sweep(spec, tmp_path / "out", executor="debug", progress=None)
    assert (status.done, status.failed) == (1, 1)
    merged = merged_frame(tmp_path / "out")
    row = merged[merged.kind == "time"].iloc[0]
    assert "torch.cuda.is_available() is False" in row.error
    assert merged[merged.kind == "complexity"].iloc[0].error == ""
    retried = run_sweep(spec, tmp_path / "out", executor="debug", retry_failed=True, progress=None)
    assert retried.failed == 1 and len(read_records(tmp_path / "out")) == 2


def test_slurm_submission_through_submitits_test_double(tmp_path):
    """make_executor's SLURM executor with submitit's mocked sbatch: the GPUs, partition, time limit and array in
    the generated sbatch file (run_sweep's phases and GPUs per job: tests/test_sweep_runner.py)."""
    from submitit.slurm.test_slurm import mocked_slurm

    spec = load_spec(write_spec(tmp_path, """
measure = ["time"]
variants = ["rf_lw50", "rf50"]
sizes = ["512x512"]
device = "cuda"
modes = ["graph"]
chunk = 1
"""))
    with mocked_slurm():
        from bench.sweeps.runner import make_executor

        executor = make_executor("slurm", tmp_path / "logs", gpus=1, timeout_min=30, slurm_partition="gpu")
        jobs = executor.map_array(lambda x: x, [1, 2])
    assert len(jobs) == 2
    sbatch = next((tmp_path / "logs").rglob("*submission_file*.sh")).read_text()
    assert "#SBATCH --partition=gpu" in sbatch and "#SBATCH --gpus-per-node=1" in sbatch
    assert "#SBATCH --time=30" in sbatch and "#SBATCH --array=0-1" in sbatch
    assert len(spec.configurations()) == 2


@pytest.mark.slow
def test_zoo_sweep_runs_with_two_local_workers(tmp_path):
    status = run_sweep(load_spec(SPECS / "zoo.toml"), tmp_path / "zoo", executor="local", workers=2, progress=None)
    assert status.done == status.total and not status.failed


def test_a_spec_means_the_same_whatever_this_process_registered_and_its_jobs_know_its_registered_names(tmp_path):
    """A pattern matches built-in names only (the bench's zoo once swept the ablation's registered paper.N names,
    which its worker processes did not know: 58 failed configurations); a registered name listed exactly travels
    into the jobs with its registration and is measured there."""
    from bench.models import register_variant

    before = load_spec(SPECS / "zoo.toml").variants
    register_variant("zz_sweep_narrow", "rf_lw_mbv2", exist_ok=True, channels=32)
    assert load_spec(SPECS / "zoo.toml").variants == before  # not swept by "*"
    spec = load_spec(write_spec(tmp_path, 'measure = ["complexity"]\nvariants = ["zz_sweep_narrow", "rf_lw_mbv2"]\n'
                                          'sizes = ["64x64"]'))
    (narrow,) = [c for c in spec.configurations() if c["variant"] == "zz_sweep_narrow"]
    assert narrow["registered"] == [{"name": "zz_sweep_narrow", "base": "rf_lw_mbv2", "changes": {"channels": 32}}]
    status = run_sweep(spec, tmp_path / "out", executor="local", workers=1, progress=None)  # another process
    assert (status.done, status.failed) == (2, 0)
    params = merged_frame(tmp_path / "out").set_index("variant").params
    assert params["zz_sweep_narrow"] < params["rf_lw_mbv2"]  # the registered network, not the base under its name
