"""Where the time goes: a forward pass broken down by operator category with torch.profiler.

Each aten op's *self* time is summed into a category (convolution/matmul, pooling, normalization,
elementwise/activation, resize/upsampling, copies/layout, other). Self times do not overlap, so the
categories add up. On CUDA the time is device (kernel) time: each op's ``self_device_time_total``,
the kernels it launched itself; the gap between the summed kernel time and the wall time of the
pass is the GPU's idle time, waiting for the host. On CPU it is each op's self CPU time, against
the wall time of the same profiled passes.

``explained`` is the share of the total (kernel time on CUDA, wall time on CPU) that the named
categories account for; the rest is "other" (and, on CPU, time outside any aten op).
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch
from torch import nn

from . import validation
from .environment import environment
from .errors import UsageTypeError
from .models import variant_info
from .timing import TimingSettings, eager_pass, make_input, prepare, seeded_model, time_cuda, torch_settings

CATEGORIES = ("convolution", "pooling", "normalization", "elementwise", "resize", "copy/layout", "other")

_ELEMENTWISE = {
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "relu", "relu_", "relu6", "clamp", "clamp_",
    "clamp_min", "clamp_min_", "hardtanh", "hardtanh_", "threshold", "threshold_", "sigmoid", "sigmoid_", "silu",
    "silu_", "gelu", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "where", "maximum", "minimum",
    "neg", "exp", "tanh", "abs", "rsqrt", "sqrt", "pow", "addcmul", "_softmax", "softmax",
}
_COPY = {
    "copy_", "_to_copy", "to", "contiguous", "clone", "cat", "_cat", "stack", "pad", "constant_pad_nd",
    "reflection_pad2d", "empty", "empty_like", "empty_strided", "zeros", "zeros_like", "zero_", "fill_",
    "as_strided", "view", "reshape", "_unsafe_view", "permute", "transpose", "t", "expand", "slice", "select",
    "resize_", "detach", "flatten", "unsqueeze", "squeeze", "narrow", "split", "split_with_sizes", "chunk", "alias",
    "lift_fresh", "_reshape_alias", "unfold", "index_select", "new_empty", "new_zeros",
}


def op_category(name: str) -> str:
    """The category of an aten op name (``aten::cudnn_convolution`` -> ``convolution``)."""
    op = name.removeprefix("aten::").split(".")[0]
    if "conv" in op or op in ("linear", "addmm", "mm", "bmm", "matmul", "baddbmm"):
        return "convolution"
    if "pool" in op:
        return "pooling"
    if "norm" in op:
        return "normalization"
    if "upsample" in op or "interpolate" in op or "grid_sampler" in op:
        return "resize"
    if op in _ELEMENTWISE:
        return "elementwise"
    if op in _COPY:
        return "copy/layout"
    return "other"


@dataclass
class ProfileRecord:
    variant: str
    settings: dict
    environment: dict
    runs: int
    wall_ms: float  # per pass: CUDA, eager pass timed with events (no profiler); CPU, the profiled passes
    busy_ms: float  # per pass: summed kernel time (CUDA) or summed self CPU time of all ops (CPU)
    category_ms: dict[str, float] = field(default_factory=dict)  # per pass
    explained: float = math.nan  # named categories / busy (CUDA) or / wall (CPU)
    idle_share: float = math.nan  # CUDA: 1 - busy / wall, the GPU waiting for the host
    top_ops: dict[str, float] = field(default_factory=dict)  # the ten longest ops, ms per pass
    error: str = ""

    def flat(self) -> dict:
        row = {k: v for k, v in asdict(self).items() if k not in ("settings", "environment", "category_ms", "top_ops")}
        return {**row, **{f"{c} ms": self.category_ms.get(c, 0.0) for c in CATEGORIES},
                **{k: v for k, v in self.settings.items() if k not in row}, "device_name": self.environment.get(
                    "device_name", "")}


def _self_times(prof, cuda: bool) -> dict[str, float]:
    """{op name: self time in ms over the profiled passes} (device time on CUDA, CPU time otherwise)."""
    out: dict[str, float] = defaultdict(float)
    for evt in prof.events():
        if evt.is_async or evt.device_type != torch.autograd.DeviceType.CPU:
            continue  # device-side events: their time is already on the op that launched them
        us = evt.self_device_time_total if cuda else evt.self_cpu_time_total
        if us:
            out[evt.name] += us / 1e3
    return out


def profile_model(model: nn.Module, settings: TimingSettings, variant: str = "", runs: int = 3) -> ProfileRecord:
    """Per-category time of ``runs`` eager forward passes (after one warm-up pass)."""
    from torch.profiler import ProfilerActivity, profile

    record = ProfileRecord(variant or getattr(model, "name", ""), asdict(settings.resolved()), {}, runs, math.nan,
                           math.nan)
    try:
        settings.validate()
        with torch_settings(settings):
            record.environment = environment(settings.device)
            runner = prepare(model, settings)
            forward = eager_pass(runner, make_input(settings), settings)
            cuda = settings.is_cuda
            wall_ms = statistics.median(time_cuda(forward, max(runs, 5), settings.warmup_passes)) if cuda else None
            forward()  # warm-up
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
            with profile(activities=activities) as prof:
                t0 = time.perf_counter()
                for _ in range(runs):
                    forward()
                if cuda:
                    torch.cuda.synchronize()
                elapsed_ms = (time.perf_counter() - t0) * 1e3
    except (RuntimeError, ValueError, TypeError, torch.OutOfMemoryError) as err:
        record.error = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
        return record
    per_op = {name: ms / runs for name, ms in _self_times(prof, cuda).items()}
    categories = dict.fromkeys(CATEGORIES, 0.0)
    for name, ms in per_op.items():
        categories[op_category(name)] += ms
    record.category_ms = categories
    record.busy_ms = sum(per_op.values())
    record.wall_ms = wall_ms if cuda else elapsed_ms / runs
    named = sum(ms for c, ms in categories.items() if c != "other")
    record.explained = named / (record.busy_ms if cuda else record.wall_ms)
    if cuda:
        record.idle_share = max(0.0, 1 - record.busy_ms / record.wall_ms)
    record.top_ops = dict(sorted(per_op.items(), key=lambda kv: -kv[1])[:10])
    return record


def profile_variants(
    variants: Iterable[str], settings: TimingSettings, runs: int = 3, seed: int = 0,
    progress: Callable[[str], None] | None = print,
) -> list[ProfileRecord]:
    variants = validation.names("variants", variants)
    for name in variants:
        variant_info(name)
    validation.integer("runs", runs, minimum=1, maximum=validation.MAX_RUNS)
    if not isinstance(settings, TimingSettings):
        raise UsageTypeError(f"settings must be one TimingSettings, got {settings!r} ({type(settings).__name__})")
    records = []
    for i, name in enumerate(variants, 1):
        record = profile_model(seeded_model(name, seed), settings, name, runs)
        records.append(record)
        if progress:
            status = record.error or (f"{record.wall_ms:.1f} ms/pass, categories explain {100 * record.explained:.0f}%")
            progress(f"  [{i}/{len(variants)}] profile {name} {settings.height}x{settings.width}: {status}")
    return records


def profile_frame(records: Iterable[ProfileRecord]) -> pd.DataFrame:
    """Long format: one row per (variant, category) with ms per pass and share of the total."""
    rows = []
    for r in records:
        if r.error:
            continue
        total = r.busy_ms if r.settings.get("device", "cpu").startswith("cuda") else r.wall_ms
        for category in CATEGORIES:
            ms = r.category_ms.get(category, 0.0)
            rows.append({"variant": r.variant, "category": category, "ms": ms, "share": ms / total,
                         "wall_ms": r.wall_ms, "busy_ms": r.busy_ms, "explained": r.explained,
                         "idle_share": r.idle_share})
    return pd.DataFrame(rows)
