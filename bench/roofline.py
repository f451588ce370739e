"""A roofline (Williams, Waterman, Patterson 2009): measured roofs, counted intensity, achieved rate.

Roofs are measured now, on this device, in the math mode the model runs in:

- compute: the faster of a square matmul large enough to saturate the device (8192 on a GPU; 2048
  on a CPU) and a large 3x3 convolution (512 -> 512 channels, 64x64; batch 64 on a GPU, 1 on a CPU,
  where oneDNN's convolutions outrun the BLAS matmul), in strict fp32, TF32, bf16 or fp16. On a GPU
  "fp32" convolutions run in TF32 unless
  ``torch.backends.cudnn.allow_tf32`` is cleared (it is set by default), so the roof of an fp32 run
  is the TF32 roof unless the run said otherwise;
- memory: a large device copy (bytes read + bytes written per second).

A model's (or an op category's) arithmetic intensity is FLOPs / bytes, both counted shape-only by
:mod:`bench.complexity` on the meta device: FLOPs = 2 x MACs (conv and linear) plus one per other op
(the ``all_ops`` convention), bytes = elements moved x element size, every input, weight and output
once per op. Real traffic is higher (re-reads), so the counted intensity is an upper bound and the
attainable rate ``min(compute, memory x intensity)`` is an optimistic roof; a point can only sit
above it when operands stay in cache between ops, which the table flags.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import pandas as pd
import torch
from torch import nn

from .complexity import count_ops
from .environment import environment
from .errors import UsageError
from .models import meta_model
from .profile import CATEGORIES, ProfileRecord, op_category
from .timing import ELEMENT_BYTES, TimingSettings, torch_settings

MATH_MODES = ("fp32-strict", "tf32", "bf16", "fp16", "fp32")  # "fp32": CPU single precision


def math_mode(settings: TimingSettings, environment: dict | None = None) -> str:
    """The math the model's convolutions run in under ``settings``; with ``settings.tf32`` unset, the
    cuDNN TF32 flag of the measuring run's ``environment`` record (this process's flag without one)."""
    if settings.dtype in ("bf16", "fp16"):
        return settings.dtype
    if not settings.is_cuda:
        return "fp32"
    default = torch.backends.cudnn.allow_tf32 if environment is None else environment["tf32_cudnn"]
    tf32 = default if settings.tf32 is None else settings.tf32
    return "tf32" if tf32 else "fp32-strict"


@dataclass
class Roofs:
    device: str
    mode: str
    compute_gflops: float  # the compute roof: the faster of the two measurements below, GFLOP/s
    memory_gbs: float  # measured copy bandwidth, GB/s (read + write)
    matmul_n: int
    copy_mb: float
    environment: dict
    matmul_gflops: float = 0.0
    conv_gflops: float = 0.0

    @property
    def ridge(self) -> float:
        """Intensity (FLOP/byte) where the two roofs meet."""
        return self.compute_gflops / self.memory_gbs

    def attainable(self, intensity: float) -> float:
        """GFLOP/s the roofs allow at ``intensity`` FLOP/byte."""
        return min(self.compute_gflops, self.memory_gbs * intensity)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _rate(fn, work: float, device: str, seconds: float) -> float:
    """work units per second of ``fn``, repeated until ``seconds`` have passed (at least 3 times)."""
    fn()
    _sync(device)
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        _sync(device)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and reps >= 3:
            return work * reps / elapsed


def measure_roofs(device: str = "cpu", mode: str = "fp32", n: int | None = None, copy_mb: float | None = None,
                  seconds: float = 1.0) -> Roofs:
    """Compute roof (square matmul) and memory roof (device copy), measured in ``mode``."""
    if mode not in MATH_MODES:
        raise UsageError(f"unknown math mode {mode!r}; valid: {', '.join(MATH_MODES)}")
    cuda = device.startswith("cuda")
    n = n or (8192 if cuda else 2048)
    copy_mb = copy_mb or (2048.0 if cuda else 256.0)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode, torch.float32)
    if not cuda and dtype == torch.float16:
        dtype = torch.float32  # no fast fp16 matmul on CPUs: the roof is the fp32 one
    settings = TimingSettings(device=device, tf32={"tf32": True, "fp32-strict": False}.get(mode))
    with torch_settings(settings):
        env = environment(device)
        matmul = _matmul_rate(n, dtype, device, seconds)
        conv = _conv_rate(64 if cuda else 1, dtype, device, seconds)
        memory = _copy_rate(copy_mb, device, seconds)
    return Roofs(device, mode, max(matmul, conv), memory, n, copy_mb, env, matmul, conv)


def _matmul_rate(n: int, dtype: torch.dtype, device: str, seconds: float) -> float:
    """GFLOP/s of an n x n x n matmul (2 n^3 FLOPs)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return _rate(lambda: a @ b, 2 * n**3 / 1e9, device, seconds)


def _conv_rate(batch: int, dtype: torch.dtype, device: str, seconds: float, channels: int = 512,
               side: int = 64) -> float:
    """GFLOP/s of a 3x3 convolution, channels -> channels on side x side (2 FLOPs per multiply-accumulate)."""
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device, dtype).eval()
    x = torch.randn(batch, channels, side, side, device=device, dtype=dtype)
    if device == "cpu" or dtype != torch.float32:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    flops = 2 * batch * side * side * channels * channels * 9

    def run():
        with torch.no_grad():
            conv(x)

    return _rate(run, flops / 1e9, device, seconds)


def _copy_rate(megabytes: float, device: str, seconds: float) -> float:
    """GB/s of a device copy, bytes read plus bytes written."""
    src = torch.empty(int(megabytes * 2**20 / 4), device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    return _rate(lambda: dst.copy_(src), 2 * src.numel() * 4 / 1e9, device, seconds)


def counted_work(model: str | nn.Module, height: int, width: int, batch: int = 1, dtype: str = "fp32") -> pd.DataFrame:
    """FLOPs and bytes per op category (and 'all' for the whole forward) of a variant or module, shape-only."""
    ops = count_ops(meta_model(model) if isinstance(model, str) else model, height, width, batch).frame()
    ops["category"] = ops["op"].map(op_category)
    # FLOPs: a multiply-accumulate is 2; every other counted op is 1 (all_ops counts a MAC once)
    ops["flops"] = ops["macs"] + ops["all_ops"]
    ops["bytes"] = ops["elements"] * ELEMENT_BYTES[dtype]
    by = ops.groupby("category")[["flops", "bytes"]].sum().reindex(CATEGORIES, fill_value=0)
    by.loc["all"] = by.sum()
    return by.reset_index()


def roofline_points(name: str, settings: TimingSettings, roofs: Roofs, median_ms: float,
                    profile: ProfileRecord | None = None) -> pd.DataFrame:
    """One row for the whole forward (timed ``median_ms``), one per op category with profiled time."""
    work = counted_work(name, settings.height, settings.width, settings.batch, settings.dtype)
    times = {"all": median_ms}
    if profile is not None and not profile.error:
        times.update(profile.category_ms)
    rows = []
    for r in work.itertuples():
        ms = times.get(r.category)
        if not ms or not r.flops or not r.bytes:
            continue
        rows.append(point(name, r.category, r.flops, r.bytes, ms, roofs))
    return pd.DataFrame(rows)


ABOVE_TOLERANCE = 0.02  # a point counts as above its roof beyond this (roofs and times are measured, noisy)


def point(name: str, category: str, flops: float, nbytes: float, ms: float, roofs: Roofs) -> dict:
    """One roofline point: intensity, achieved and attainable GFLOP/s, and their ratio."""
    intensity = flops / nbytes
    achieved = flops / (ms / 1e3) / 1e9
    attainable = roofs.attainable(intensity)
    return {
        "variant": name, "category": category, "gflop": flops / 1e9, "mbytes": nbytes / 1e6, "ms": ms,
        "intensity": intensity, "achieved_gflops": achieved, "attainable_gflops": attainable,
        "fraction_of_roof": achieved / attainable, "bound": "memory" if intensity < roofs.ridge else "compute",
        "above_roof": achieved > attainable * (1 + ABOVE_TOLERANCE), "mode": roofs.mode,
    }


def roofs_record(roofs: Roofs) -> dict:
    row = asdict(roofs)
    env = row.pop("environment")
    return {**row, "ridge_flop_per_byte": roofs.ridge, "device_name": env.get("device_name", ""),
            "matmul_precision": env.get("matmul_precision"), "tf32_matmul": env.get("tf32_matmul"),
            "tf32_cudnn": env.get("tf32_cudnn")}
