"""Counting: closed-form counts on tiny nets, agreement with fvcore (real tensors) and with
torch's FlopCounterMode, nothing dropped silently, and the paper's Tables 1-3."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from analysis.paper import paper_values
from bench import create_model, list_models
from bench.complexity import COLUMNS, block_breakdown, complexity, count_ops
from bench.models import meta_model

PAPER_VARIANTS = list_models(include_backbones=False)


class Tiny(nn.Module):
    def __init__(self, extra: nn.Module | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(5, 1, 2)
        self.extra = extra

    def forward(self, x):
        y = self.bn(self.conv(x))
        y = torch.relu(y) + self.pool(y)
        return self.extra(y) if self.extra is not None else y


class Sine(nn.Module):
    def forward(self, x):
        return torch.sin(x)


def totals(model, h, w):
    return count_ops(model, h, w).frame()[list(COLUMNS)].sum()


def test_closed_form_counts_on_a_tiny_net():
    t = totals(Tiny(), 10, 10)
    out = 8 * 10 * 10
    conv_macs = out * 3 * 3 * 3  # each output element: Cin x 3 x 3 multiply-adds
    assert t["macs"] == conv_macs
    assert t["fvcore_flops"] == conv_macs + 2 * out  # fvcore: BN at inference is 2 per element
    assert t["paper_flops"] == conv_macs + 25 * out  # + 5x5 max-pool windows
    # all ops: + conv bias + BN + pool windows + relu + add
    assert t["all_ops"] == conv_macs + out + 2 * out + 25 * out + out + out


def test_uncounted_ops_are_reported_never_dropped():
    table = count_ops(Tiny(extra=Sine()), 10, 10)
    assert table.uncounted == {"sin": 1}
    records = complexity(PAPER_VARIANTS, [(64, 96)])
    assert {r.variant: r.uncounted_ops for r in records} == {v: "" for v in PAPER_VARIANTS}


@pytest.mark.parametrize("name", PAPER_VARIANTS + ["rf_lw:convnext_tiny", "rf_lw:efficientnet_b0"])
def test_meta_count_equals_fvcore_on_real_tensors(name):
    """The fast (meta, no forward) count equals fvcore's JIT count of a real forward, op for op."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    h, w = 70, 99  # small and odd: exercises ceil/floor of every stride
    fv = FlopCountAnalysis(model, torch.randn(1, 3, h, w))
    fv.unsupported_ops_warnings(False)
    fv.uncalled_modules_warnings(False)
    ops = count_ops(model, h, w).frame()
    assert ops["fvcore_flops"].sum() == fv.total()
    by_op = fv.by_operator()
    conv_ops = ops[ops.op.isin(["conv2d", "convolution"])]
    assert conv_ops["fvcore_flops"].sum() == by_op.get("conv", 0)
    assert ops[ops.op == "batch_norm"]["fvcore_flops"].sum() == by_op.get("batch_norm", 0)
    assert ops[ops.op == "upsample_bilinear2d"]["fvcore_flops"].sum() == by_op.get("upsample_bilinear2d", 0)


@pytest.mark.parametrize("name", ["rf101", "rf_lw_rcu50", "rf_lw_mbv2", "rf_lw_nasnet", "rf_lw:convnext_tiny"])
def test_macs_are_half_of_flop_counter_mode(name):
    """FlopCounterMode counts a multiply-add as 2 FLOPs, ignores bias, BN, pooling and upsampling."""
    model = meta_model(name).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.empty(1, 3, 96, 128, device="meta"))
    assert 2 * totals(model, 96, 128)["macs"] == counter.get_total_flops()


def test_counting_a_model_with_weights_leaves_it_untouched():
    model = create_model("rf_lw50").train()
    before = model.decoder.classifier.weight.clone()
    meta = totals(meta_model("rf_lw50"), 64, 64)
    real = totals(model, 64, 64)
    assert meta.equals(real)
    assert model.training and model.decoder.classifier.weight.device.type == "cpu"
    assert torch.equal(model.decoder.classifier.weight, before)


@pytest.mark.parametrize("name", ["rf_lw:convnext_tiny", "rf:regnet_x_400mf", "rf_lw:efficientnet_b0", "rf_lw_nasnet"])
def test_a_meta_build_skips_initialisation_yet_has_every_parameter_and_buffer(name):
    """nn.init is skipped on meta (no values to set) and restored after; shapes and names equal a real build."""
    from bench.models.meta import INIT_FUNCTIONS

    before = {f: getattr(torch.nn.init, f) for f in INIT_FUNCTIONS}
    meta = meta_model(name, num_classes=5)
    assert all(getattr(torch.nn.init, f) is before[f] for f in INIT_FUNCTIONS)
    real = create_model(name, num_classes=5)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(meta) == shapes(real) and all(v.device.type == "meta" for v in meta.state_dict().values())
    assert real.decoder.classifier.weight.std() > 0  # a real build is still initialised


def test_a_failed_meta_build_restores_initialisation():
    from bench.models.meta import INIT_FUNCTIONS, build_on_meta

    before = {f: getattr(torch.nn.init, f) for f in INIT_FUNCTIONS}
    with pytest.raises(ZeroDivisionError):
        build_on_meta(lambda: 1 / 0)
    assert all(getattr(torch.nn.init, f) is before[f] for f in INIT_FUNCTIONS)


class _Upsamples(nn.Module):
    def forward(self, x):
        a = nn.functional.interpolate(x, scale_factor=2.5, mode="bilinear", align_corners=False)
        b = nn.functional.interpolate(x, size=(13, 7), mode="nearest")
        return a.mean() + b.mean() + nn.functional.interpolate(x, scale_factor=0.5, mode="nearest").mean()


@pytest.mark.parametrize("channels_last", [False, True])
def test_upsampling_on_meta_has_the_real_output_shape_and_count(channels_last, monkeypatch):
    """Upsampling takes a shape-only shortcut on meta: its output (shape, layout) and counts equal a real pass."""
    from bench.complexity import _shape_only

    x = torch.randn(2, 3, 9, 11)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for args in ((x, [13, 7], False), (x, None, False, [2.5, 2.5]), (x, None, [0.5, 0.5])):
        real = (torch.ops.aten.upsample_bilinear2d.vec(*args) if len(args) == 4
                else torch.ops.aten.upsample_nearest2d.vec(*args) if args[1] is None
                else torch.ops.aten.upsample_bilinear2d(*args))
        op = "upsample_bilinear2d" if len(args) != 3 or args[1] is not None else "upsample_nearest2d"
        meta = _shape_only(op, (x.to("meta"), *args[1:]), {})
        assert meta.shape == real.shape and meta.stride() == real.stride()
    shortcut = count_ops(_Upsamples(), 9, 11).frame()
    assert set(shortcut.op) >= {"upsample_bilinear2d", "upsample_nearest2d"}
    import bench.complexity

    monkeypatch.setattr(bench.complexity, "_shape_only", lambda op, args, kwargs: None)  # every meta kernel runs
    full = count_ops(_Upsamples(), 9, 11).frame()
    pd.testing.assert_frame_equal(shortcut, full)


# --- against the paper -------------------------------------------------------------------------

PAPER_FLOPS = paper_values("flops")
RESNET_ROWS = sorted(v for v in PAPER_FLOPS if v not in ("rf_lw_mbv2", "rf_lw_nasnet"))


@pytest.mark.parametrize("variant", RESNET_ROWS)
def test_paper_convention_reproduces_resnet_flops_within_rounding(variant):
    """Tables 1 and 3 at 512x512: within half a unit of the printed value (263 = [262.5, 263.5))."""
    published = PAPER_FLOPS[variant]
    (record,) = complexity([variant], [(512, 512)])
    assert abs(record.paper_flops / 1e9 - published.value) <= published.rounding, record.paper_flops / 1e9


@pytest.mark.parametrize("variant", ["rf_lw_mbv2", "rf_lw_nasnet"])
def test_light_backbones_within_three_percent(variant):
    """The light backbones' decoders are not fully published: 3% tolerance (explained in the report)."""
    published = PAPER_FLOPS[variant].value
    (record,) = complexity([variant], [(512, 512)])
    assert abs(record.paper_flops / 1e9 - published) <= 0.03 * published


def test_lw_is_several_times_cheaper_than_original():
    """Section 3.2: more than 2x fewer parameters and more than 3x fewer FLOPs (ResNet-101)."""
    rf, lw_rcu, lw = complexity(["rf101", "rf_lw_rcu101", "rf_lw101"], [(512, 512)])
    assert rf.params / lw_rcu.params > 2 and rf.macs / lw_rcu.macs > 3
    assert lw.macs < lw_rcu.macs < rf.macs


def test_macs_grow_quadratically_with_input_side():
    small, large = complexity(["rf_lw101"], [(1024, 1024), (2048, 2048)])
    assert large.macs / small.macs == pytest.approx(4.0, rel=0.005)


def test_block_breakdown_adds_up_and_locates_the_3x3_cost():
    frame = block_breakdown(["rf101", "rf_lw101"], 256, 256)
    for name in ("rf101", "rf_lw101"):
        rows = frame[frame.variant == name]
        (record,) = complexity([name], [(256, 256)])
        assert rows["macs"].sum() == record.macs
        assert rows["params"].sum() == record.params
    rf = frame[frame.variant == "rf101"].groupby("block")["macs"].sum()
    lw = frame[frame.variant == "rf_lw101"].groupby("block")["macs"].sum()
    assert rf["backbone"] == lw["backbone"]
    assert "rcu" not in lw.index or lw["rcu"] == 0
    assert rf["rcu"] > rf["crp"] > lw["crp"]  # the RCUs' 3x3 convs are the original decoder's largest cost


# --- CLI ---------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=300)


def test_cli_json_records():
    proc = run_cli("complexity", "rf101", "rf_lw101", "--size", "512x512", "--size", "468x625", "--json")
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert [(r["variant"], r["height"], r["width"]) for r in records] == [
        ("rf101", 512, 512), ("rf101", 468, 625), ("rf_lw101", 512, 512), ("rf_lw101", 468, 625)
    ]
    assert {"variant", "height", "width", "params", "macs"} <= set(records[0])
    assert records[0]["params"] > records[2]["params"] and records[1]["macs"] > records[0]["macs"]


@pytest.mark.parametrize("args, message", [
    (("complexity", "rf999"), "unknown model 'rf999'"),
    (("complexity", "rf101", "--size", "512by512"), "malformed size '512by512'"),
])
def test_cli_bad_input_exits_2_with_a_clear_message(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
