"""Timing, paired speed-ups, per-op profiles, roofline: bookkeeping, known answers, CUDA paths.

No absolute time is asserted anywhere (shared, noisy machines): only counts, ratios between a
record's own fields, outputs, and intervals of a model timed against itself.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from bench import create_model
from bench.profile import CATEGORIES, op_category, profile_model
from bench.roofline import Roofs, counted_work, math_mode, measure_roofs, point
from bench.speedup import geometric_mean_ratio, paired_speedup
from bench.stats import bootstrap_paired, percentile
from bench.timing import (
    TimingSettings,
    eager_pass,
    fold_batchnorm,
    graph_pass,
    make_input,
    prepare,
    sweep,
    time_model,
    time_variants,
)

TINY = dict(height=64, width=96, budget_s=0.5, min_runs=3, runs=5)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


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
    assert r.ms_per_image == pytest.approx(r.median_ms / 2)
    assert r.batches_per_s * r.median_ms == pytest.approx(1000)
    assert r.fps == pytest.approx(2 * r.batches_per_s)  # FPS = images per second, not batches
    assert r.macs > 0 and r.achieved_gflops == pytest.approx(2 * r.macs / (r.median_ms / 1e3) / 1e9)
    assert r.mode == "eager" and math.isnan(r.launch_overhead)  # no graph replay on a CPU
    row = r.flat()
    for key in ("device", "batch", "dtype", "channels_last", "compile", "cudnn_benchmark", "threads", "device_name",
                "torch", "tf32_matmul", "tf32_cudnn", "matmul_precision", "runs", "median_ms", "fps"):
        assert key in row


def test_cpu_runs_are_bounded_by_min_runs_and_cap():
    model = create_model("rf_lw_mbv2")
    r = time_model(model, TimingSettings(height=64, width=64, budget_s=0.0, min_runs=4, runs=10), "rf_lw_mbv2")
    assert r.runs == 4  # budget spent at once: exactly min_runs
    r = time_model(model, TimingSettings(height=64, width=64, budget_s=1e9, min_runs=1, runs=6), "rf_lw_mbv2")
    assert r.runs == 6  # the cap


def test_failures_are_rows_and_the_sweep_goes_on():
    records = sweep(["rf_lw_mbv2"], TimingSettings(**TINY), sizes=[(64, 64), (16, 16)], batches=[1], progress=None)
    assert len(records) == 3
    assert not records[0].error and not records[2].error
    assert "at least 32x32" in records[1].error and math.isnan(records[1].median_ms)


@pytest.mark.parametrize("bad, message", [
    (dict(dtype="fp8"), "unknown dtype 'fp8'; valid: fp32, fp16, bf16"),
    (dict(device="tpu"), "unknown device 'tpu'"),
    (dict(runs=0), "runs must be an integer >= 1, got 0"),
    (dict(threads=0), "threads must be an integer >= 1, got 0"),
    (dict(budget_s=-1), "budget_s must be a finite number >= 0"),
    (dict(cuda_graph=True), "cuda_graph needs a CUDA device"),
])
def test_invalid_settings_name_the_valid_choices(bad, message):
    with pytest.raises(ValueError, match=message):
        TimingSettings(**bad).validate()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="torch.cuda.is_available"):
        TimingSettings(device="cuda").validate()
    TimingSettings(device="cuda").validate(require_device=False)  # planning a sweep for another machine


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
    (r,) = time_variants(["rf_lw_mbv2"], TimingSettings(dtype="bf16", **TINY), progress=None)
    assert not r.error and r.settings["dtype"] == "bf16"


# --- CUDA: events and graph replay --------------------------------------------------------------


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_replay_gives_the_eager_output_and_an_overhead_share():
    settings = TimingSettings(device="cuda", height=256, width=256, runs=20, warmup=3, cudnn_benchmark=True,
                              cuda_graph=True)
    torch.manual_seed(0)
    model = create_model("rf_lw50").eval()
    runner = prepare(model, settings)
    x = make_input(settings)
    replay = graph_pass(runner, x, settings)
    with torch.no_grad():
        torch.testing.assert_close(replay(), eager_pass(runner, x, settings)(), rtol=1e-3, atol=1e-3)
    (r,) = time_variants(["rf_lw50"], settings, progress=None)
    assert not r.error and r.mode == "graph" and r.runs == 20 and r.peak_memory_mb > 0 and r.environment["cuda"]
    assert r.eager_median_ms > 0 and r.launch_overhead == pytest.approx(1 - r.median_ms / r.eager_median_ms)


@pytest.mark.gpu
@needs_cuda
def test_cuda_speedup_and_profile_run():
    s = TimingSettings(device="cuda", height=128, width=128, runs=10, warmup=2, cuda_graph=True)
    r = paired_speedup("rf_lw50", "rf_lw50", s)
    # two captures of the same network: replays are so steady (CI narrower than 0.1%) that the interval
    # need not cover 1 exactly; they agree within 1% (H200: 1.0012)
    assert not r.error and r.mode == "graph" and r.pairs == 10 and abs(r.ratio - 1) < 0.01
    assert r.base_eager_ms > r.base_median_ms > 0 and r.other_eager_ms > 0  # the eager times beside the replays
    p = profile_model(create_model("rf_lw50"), TimingSettings(device="cuda", height=128, width=128, warmup=2))
    assert not p.error and 0 <= p.idle_share <= 1  # the share the categories explain: tests/test_timing_shares.py
    assert p.explained == pytest.approx(1 - p.category_ms["other"] / p.busy_ms)  # on CUDA: of the kernel time


def test_math_mode_follows_the_record_not_this_process():
    gpu = TimingSettings(device="cuda")  # constructing needs no GPU; the record says how it ran
    assert math_mode(gpu, {"tf32_cudnn": True}) == "tf32" and math_mode(gpu, {"tf32_cudnn": False}) == "fp32-strict"
    assert math_mode(TimingSettings(device="cuda", tf32=False), {"tf32_cudnn": True}) == "fp32-strict"
    assert math_mode(TimingSettings(device="cuda", dtype="bf16"), {"tf32_cudnn": True}) == "bf16"
    assert math_mode(TimingSettings(), {"tf32_cudnn": True}) == "fp32"


# --- paired speed-ups ---------------------------------------------------------------------------


def test_bootstrap_of_paired_ratios_known_answers():
    a = [2.0, 4.0, 6.0, 8.0]
    ratio, low, high = bootstrap_paired(a, [x / 2 for x in a], geometric_mean_ratio)
    assert ratio == pytest.approx(2) and low == pytest.approx(2) and high == pytest.approx(2)  # every pair: 2x
    ratio, low, high = bootstrap_paired([1.0, 1.2, 0.9, 1.1, 1.0, 1.05], [1.0] * 6, geometric_mean_ratio, seed=3)
    assert low < ratio < high and low < 1.05 < high
    ratio, low, high = bootstrap_paired([3.0], [1.0], geometric_mean_ratio)  # one pair: no interval, not [3, 3]
    assert ratio == pytest.approx(3) and math.isnan(low) and math.isnan(high)
    assert percentile([1, 2, 3, 4, 5], 0.5) == 3 and percentile([0, 10], 0.1) == pytest.approx(1.0)


def test_a_speedup_says_when_it_has_no_interval():
    from bench.speedup import SpeedupRecord

    one = SpeedupRecord("a", "b", 64, 64, 1, "cpu", "fp32", "eager", ratio=1.5, pairs=1)
    assert one.interval_words() == "no interval: 1 pair"
    two = SpeedupRecord("a", "b", 64, 64, 1, "cpu", "fp32", "eager", ratio=1.5, ci_low=1.25, ci_high=1.75, pairs=2)
    assert two.interval_words() == "95% CI 1.250 to 1.750"


def test_log_ratio_t_interval_known_answers():
    from bench.stats import log_ratio_interval

    assert log_ratio_interval([2.0, 4.0, 6.0], [1.0, 2.0, 3.0]) == pytest.approx((2.0, 2.0, 2.0))
    # log ratios 0 and log 2: mean log(2)/2, sd log(2)/sqrt(2), t(1) = 12.706 -> exp(+-12.706 * log(2) / 2)
    ratio, low, high = log_ratio_interval([1.0, 2.0], [1.0, 1.0])
    half = 12.7062 * math.log(2) / math.sqrt(2) / math.sqrt(2)
    assert ratio == pytest.approx(math.sqrt(2)) and low == pytest.approx(math.exp(math.log(2) / 2 - half), rel=1e-4)
    a, b = [1.0, 1.3, 0.9, 1.2], [1.0] * 4
    _, t_low, t_high = log_ratio_interval(a, b)
    _, b_low, b_high = bootstrap_paired(a, b, geometric_mean_ratio)
    assert t_low < b_low and b_high < t_high  # with 4 pairs the bootstrap is narrower than it should be


@pytest.mark.slow  # asserts on a ratio of wall-clock times: not in the plain suite
def test_a_model_against_itself_is_1x_with_an_interval_covering_1():
    s = TimingSettings(height=64, width=64, runs=30, min_runs=30, budget_s=0.0)
    r = paired_speedup("rf_lw_mbv2", "rf_lw_mbv2", s, level=0.999)
    assert not r.error and r.pairs == 30 and r.mode == "eager"
    assert r.ci_low <= 1 <= r.ci_high and 0.8 < r.ratio < 1.25
    assert len(r.base_samples_ms) == len(r.other_samples_ms) == 30


def test_cli_speedup_json_records():
    proc = subprocess.run([sys.executable, "-m", "bench", "speedup", "rf_lw_mbv2", "rf_lw_nasnet", "--size", "64x64",
                           "--runs", "3", "--min-runs", "3", "--budget", "0", "--device", "cpu", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert {"base", "other", "height", "width", "ratio", "ci_low", "ci_high", "pairs"} <= set(row)
    assert row["base"] == "rf_lw_mbv2" and row["pairs"] == 3 and row["ci_low"] < row["ci_high"]
    # a t interval on the log ratios: symmetric around the log of the geometric-mean ratio (a percentile one is not)
    assert math.log(row["ratio"]) == pytest.approx((math.log(row["ci_low"]) + math.log(row["ci_high"])) / 2)


# --- where the time goes ------------------------------------------------------------------------


class Mixed(nn.Module):
    """One op of each category: conv, max-pool, batch norm, relu + add, bilinear upsampling, a copy."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(5, 1, 2)
        self.bn = nn.BatchNorm2d(16)

    def forward(self, x):
        y = self.bn(self.pool(self.conv(x)))
        y = torch.relu(y) + y
        y = nn.functional.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        return y.contiguous(memory_format=torch.channels_last).clone()


def test_op_categories_of_aten_names():
    assert op_category("aten::mkldnn_convolution") == op_category("aten::cudnn_convolution") == "convolution"
    assert op_category("aten::addmm") == "convolution"
    assert op_category("aten::max_pool2d_with_indices") == "pooling"
    assert op_category("aten::native_batch_norm") == "normalization"
    assert op_category("aten::clamp_min") == op_category("aten::add_") == "elementwise"
    assert op_category("aten::upsample_bilinear2d") == "resize"
    assert op_category("aten::copy_") == op_category("aten::cat") == "copy/layout"
    assert op_category("aten::something_new") == "other"


def test_profile_of_a_tiny_net_finds_every_category():
    r = profile_model(Mixed().eval(), TimingSettings(height=96, width=96), "mixed", runs=2)
    assert not r.error and set(r.category_ms) == set(CATEGORIES)
    for category in ("convolution", "pooling", "normalization", "elementwise", "resize", "copy/layout"):
        assert r.category_ms[category] > 0, category
    assert sum(r.category_ms.values()) == pytest.approx(r.busy_ms)
    named = sum(ms for category, ms in r.category_ms.items() if category != "other")
    assert r.explained == pytest.approx(named / r.wall_ms)  # on CPU: of the wall time (its size: slow suite)
    assert list(r.top_ops.values()) == sorted(r.top_ops.values(), reverse=True)  # the longest ops, longest first
    assert all(ms <= r.category_ms[op_category(op)] + 1e-9 for op, ms in r.top_ops.items())


# --- roofline -----------------------------------------------------------------------------------


def test_one_conv_counted_by_hand():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False))
    work = counted_work(conv, 10, 10).set_index("category")
    macs = 8 * 10 * 10 * 3 * 3 * 3  # outputs x (Cin x kh x kw)
    assert work.loc["convolution", "flops"] == 2 * macs == work.loc["all", "flops"]
    # each input, weight and output once: 1x3x10x10 + 8x3x3x3 + 1x8x10x10 elements, 4 bytes each
    assert work.loc["convolution", "bytes"] == 4 * (300 + 216 + 800)
    assert counted_work(conv, 10, 10, dtype="bf16").set_index("category").loc["all", "bytes"] == 2 * (300 + 216 + 800)


def test_roofline_point_known_answers_and_the_roof_flag():
    roofs = Roofs("cpu", "fp32", compute_gflops=100.0, memory_gbs=10.0, matmul_n=0, copy_mb=0, environment={})
    assert roofs.ridge == 10 and roofs.attainable(2) == 20 and roofs.attainable(50) == 100
    # 1 GFLOP over 0.1 GB (intensity 10, on the ridge: attainable 100 GFLOP/s) in 20 ms: 50 GFLOP/s, half the roof
    p = point("x", "all", 1e9, 1e8, 20.0, roofs)
    assert p["intensity"] == 10 and p["attainable_gflops"] == 100
    assert p["achieved_gflops"] == pytest.approx(50) and p["fraction_of_roof"] == pytest.approx(0.5)
    assert not p["above_roof"] and p["bound"] == "compute"
    fast = point("x", "all", 1e9, 1e9, 5.0, roofs)  # intensity 1: roof 10 GFLOP/s, achieved 200: impossible
    assert fast["above_roof"] and fast["bound"] == "memory"


def test_math_modes_and_measured_roofs_on_cpu():
    assert math_mode(TimingSettings()) == "fp32" and math_mode(TimingSettings(dtype="bf16")) == "bf16"
    roofs = measure_roofs("cpu", "fp32", n=256, copy_mb=8, seconds=0.05)
    assert roofs.compute_gflops > 0 and roofs.memory_gbs > 0 and roofs.environment["device"] == "cpu"
    with pytest.raises(ValueError, match="unknown math mode 'fp8'"):
        measure_roofs("cpu", "fp8")


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_time_json():
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "time", "rf_lw_mbv2", "--size", "64x64", "--runs", "3", "--budget", "0",
         "--device", "cpu", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["variant"] == "rf_lw_mbv2" and row["height"] == 64 and row["runs"] == 3 and row["device"] == "cpu"
    assert row["fps"] == pytest.approx(1000 / row["median_ms"])  # batch 1: images/s = passes/s
    assert "[1/1] rf_lw_mbv2" in proc.stderr  # progress on stderr, JSON alone on stdout


def test_cli_profile_json():
    proc = subprocess.run([sys.executable, "-m", "bench", "profile", "rf_lw_mbv2", "--size", "64x64",
                           "--profile-runs", "1", "--device", "cpu", "--json"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert set(row["category_ms"]) == set(CATEGORIES) and row["category_ms"]["convolution"] > 0
    named = sum(ms for category, ms in row["category_ms"].items() if category != "other")
    assert row["explained"] == pytest.approx(named / row["wall_ms"])


@pytest.mark.slow
def test_torch_compile_path_runs_on_cpu():
    """torch.compile is compiled during warm-up, outside the timed passes (minutes on a 2-core CPU)."""
    (r,) = time_variants(["rf_lw_mbv2"], TimingSettings(compile=True, **TINY), progress=None)
    assert not r.error, r.error
    assert r.settings["compile"] and r.runs >= 3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rf152", "rf_lw152", "rf_lw_rcu152"])
def test_full_paper_size_forward_625x468(name):
    model = create_model(name).eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 468, 625))
    assert out.shape == (1, 21, 117, 157)


def test_seeded_model_copies_equal_a_fresh_build_and_follow_a_new_registration(monkeypatch):
    from bench.models import register_variant, registry
    from bench.timing import seeded_model

    first, second = seeded_model("rf_lw_mbv2", 3), seeded_model("rf_lw_mbv2", 3)  # the second: a copy
    torch.manual_seed(3)
    fresh = create_model("rf_lw_mbv2").eval()
    assert first is not second and not first.training
    for a, b, c in zip(first.state_dict().values(), second.state_dict().values(), fresh.state_dict().values(),
                       strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    next(first.parameters()).data.zero_()  # a caller's changes do not reach the next copy
    assert next(seeded_model("rf_lw_mbv2", 3).parameters()).abs().sum() > 0
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # this test's names leave with it
    register_variant("t_seeded", "rf_lw:resnet18", crp_stages=2)
    two = seeded_model("t_seeded")
    del registry._REGISTRY["t_seeded"]
    register_variant("t_seeded", "rf_lw:resnet18", crp_stages=1)  # the same name, other changes
    one = seeded_model("t_seeded")
    crp = lambda m: next(mod for mod in m.modules() if hasattr(mod, "convs") and hasattr(mod, "pool"))  # noqa: E731
    assert len(crp(two).convs) == 2 and len(crp(one).convs) == 1
