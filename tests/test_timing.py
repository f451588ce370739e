"""Timing: record bookkeeping, failures as rows, inference mode equal to the default, CLI.

No absolute time is asserted anywhere (shared, noisy machines): only counts, ratios between a
record's own fields, and outputs.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from bench import create_model
from bench.timing import TimingSettings, fold_batchnorm, prepare, sweep, time_model, time_variants

TINY = dict(height=64, width=96, budget_s=0.5, min_runs=3, runs=5)


def randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
    return model


def test_record_statistics_are_consistent():
    (r,) = time_variants(["rf_lw_mbv2"], TimingSettings(batch=2, **TINY), progress=None)
    assert not r.error
    assert 3 <= r.runs <= 5 and len(r.samples_ms) == r.runs
    assert min(r.samples_ms) <= r.p10_ms <= r.median_ms <= r.p90_ms <= max(r.samples_ms)
    assert r.ms_per_image == pytest.approx(r.mean_ms / 2)
    assert r.fps * r.mean_ms == pytest.approx(1000)
    assert r.images_per_s == pytest.approx(2 * r.fps)
    assert r.macs > 0 and r.achieved_gflops == pytest.approx(2 * r.macs / (r.mean_ms / 1e3) / 1e9)
    assert r.roofline_fraction == pytest.approx(r.achieved_gflops / r.peak_gflops)
    row = r.flat()
    for key in ("device", "batch", "dtype", "channels_last", "compile", "cudnn_benchmark", "threads", "device_name",
                "torch", "tf32_matmul", "runs", "mean_ms"):
        assert key in row


def test_cpu_runs_are_bounded_by_min_runs_and_cap():
    model = create_model("rf_lw_mbv2")
    r = time_model(model, TimingSettings(height=64, width=64, budget_s=0.0, min_runs=4, runs=10), "rf_lw_mbv2")
    assert r.runs == 4  # budget spent at once: exactly min_runs
    r = time_model(model, TimingSettings(height=64, width=64, budget_s=1e9, min_runs=1, runs=6), "rf_lw_mbv2")
    assert r.runs == 6  # the cap


def test_failures_are_rows_and_the_sweep_goes_on():
    records = sweep(["rf_lw_mbv2"], TimingSettings(**TINY), sizes=[(64, 64), (16, 16)], batches=[1],
                    progress=None, measure_peak=False)
    assert len(records) == 3
    assert not records[0].error and not records[2].error
    assert "at least 32x32" in records[1].error and math.isnan(records[1].mean_ms)


@pytest.mark.parametrize("bad, message", [
    (dict(dtype="fp8"), "unknown dtype 'fp8'; valid: fp32, fp16, bf16"),
    (dict(device="tpu"), "unknown device 'tpu'"),
])
def test_invalid_settings_name_the_valid_choices(bad, message):
    with pytest.raises(ValueError, match=message):
        TimingSettings(**bad).validate()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="torch.cuda.is_available"):
        TimingSettings(device="cuda").validate()


@pytest.mark.parametrize("name", ["rf_lw50", "rf_lw_mbv2", "rf_lw_nasnet", "rf_lw_rcu50"])
def test_inference_mode_equals_default_within_fp32_rounding(name):
    torch.manual_seed(0)
    model = randomise_batchnorm(create_model(name).eval())
    fast = prepare(model, TimingSettings(fold_bn=True, channels_last=True))
    x = torch.randn(1, 3, 80, 112)
    with torch.inference_mode():
        ref, out = model(x), fast(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())


def test_fold_batchnorm_removes_conv_bn_pairs_and_leaves_the_original():
    model = create_model("rf_lw50").eval()
    folded = fold_batchnorm(model)
    count = lambda m: sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())  # noqa: E731
    assert count(model) == 53 and count(folded) == 0


def test_autocast_dtype_runs_on_cpu():
    (r,) = time_variants(["rf_lw_mbv2"], TimingSettings(dtype="bf16", **TINY), progress=None, measure_peak=False)
    assert not r.error and r.settings["dtype"] == "bf16"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_events_timing():
    (r,) = time_variants(["rf_lw50"], TimingSettings(device="cuda", height=256, width=256, runs=20, warmup=5,
                                                     cudnn_benchmark=True), progress=None)
    assert not r.error and r.runs == 20 and r.peak_memory_mb > 0 and r.cuda and r.cudnn


def test_cli_time_json():
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "time", "rf_lw_mbv2", "--size", "64x64", "--runs", "3", "--budget", "0",
         "--no-peak", "--device", "cpu", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["variant"] == "rf_lw_mbv2" and row["height"] == 64 and row["runs"] == 3 and row["device"] == "cpu"
    assert "[1/1] rf_lw_mbv2" in proc.stderr  # progress on stderr, JSON alone on stdout


def test_cli_time_bad_device_exits_2():
    proc = subprocess.run([sys.executable, "-m", "bench", "time", "rf_lw50", "--device", "tpu"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "unknown device 'tpu'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_torch_compile_path_runs_on_cpu():
    """torch.compile is compiled during warm-up, outside the timed passes (minutes on a 2-core CPU)."""
    (r,) = time_variants(["rf_lw_mbv2"], TimingSettings(compile=True, **TINY), progress=None, measure_peak=False)
    assert not r.error, r.error
    assert r.settings["compile"] and r.runs >= 3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rf152", "rf_lw152", "rf_lw_rcu152"])
def test_full_paper_size_forward_625x468(name):
    model = create_model(name).eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 468, 625))
    assert out.shape == (1, 21, 117, 157)
