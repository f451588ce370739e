"""Forward-pass timing on GPU or CPU, with the settings that made each number.

On CUDA, each pass is timed with CUDA events after a warm-up (compilation and cuDNN autotuning
happen there, outside the timed region), over a fixed number of passes (100 by default, as the
paper). On CPU a pass of a large model takes seconds, so the number of passes is adaptive: at least
``min_runs``, then more until ``budget_s`` is spent or ``runs`` is reached, as
``torch.utils.benchmark``'s adaptive autorange does; the thread count is set explicitly.

Reported per configuration: mean, std, median, p10, p90 (ms per batch), ms per image, FPS
(batches/s), images/s, peak memory, achieved GFLOP/s (2 x MACs / time; one MAC = 2 FLOPs here,
the hardware convention) and its fraction of a peak measured in the same run with a large matmul
in the same dtype.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from .complexity import complexity
from .models import create_model

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class TimingSettings:
    device: str = "cpu"
    batch: int = 1
    height: int = 512
    width: int = 512
    dtype: str = "fp32"  # fp16 / bf16 run under autocast
    channels_last: bool = False
    compile: bool = False  # torch.compile (compiled during warm-up)
    fold_bn: bool = False  # BatchNorm folded into the preceding convs
    cudnn_benchmark: bool = False
    threads: int | None = None  # CPU threads; None = all cores
    runs: int = 100  # passes on CUDA; the cap on CPU
    min_runs: int = 3  # CPU: at least this many
    budget_s: float = 10.0  # CPU: stop after this much timed time (once min_runs are done)
    warmup: int = 10  # CUDA warm-up passes (CPU: 1, or 2 with compile)

    def validate(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; valid: {', '.join(DTYPES)}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"unknown device {self.device!r}; valid: cpu, cuda, cuda:N")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False on this machine")
        if self.batch < 1 or self.height < 32 or self.width < 32:
            raise ValueError(f"batch must be >= 1 and the input at least 32x32, got {self}")


@dataclass
class TimingRecord:
    variant: str
    settings: dict
    device_name: str
    torch: str
    cuda: str | None
    cudnn: str | None
    tf32_matmul: bool
    tf32_cudnn: bool
    threads: int
    runs: int = 0
    mean_ms: float = math.nan
    std_ms: float = math.nan
    median_ms: float = math.nan
    p10_ms: float = math.nan
    p90_ms: float = math.nan
    ms_per_image: float = math.nan
    fps: float = math.nan  # forward passes (batches) per second
    images_per_s: float = math.nan
    peak_memory_mb: float = math.nan  # CUDA: max allocated; CPU: not measured (nan)
    params: int = 0
    macs: int = 0
    achieved_gflops: float = math.nan  # 2 x MACs / mean time
    peak_gflops: float = math.nan  # measured matmul peak in the same dtype, same run
    roofline_fraction: float = math.nan
    error: str = ""
    samples_ms: list[float] = field(default_factory=list)

    def flat(self) -> dict:
        """One flat row (settings expanded), for tables."""
        row = {k: v for k, v in asdict(self).items() if k not in ("settings", "samples_ms")}
        return {"variant": self.variant, **self.settings, **row}


def device_description(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    from_cpuinfo = ""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                from_cpuinfo = line.split(":", 1)[1].strip()
                break
    import os
    import platform

    return f"{from_cpuinfo or platform.processor() or platform.machine()} ({os.cpu_count()} logical cores)"


# --- inference-mode model ----------------------------------------------------------------------


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that directly follows a conv into that conv (a copy).

    Uses torch.fx's conv-BN fusion on the backbone graph, which sees through the stage modules;
    the decoder has no BatchNorm.
    """
    import copy

    from torch.fx.experimental.optimization import fuse

    model = copy.deepcopy(model).eval()
    model.backbone.body = fuse(model.backbone.body, inplace=True)
    return model


def prepare(model: nn.Module, settings: TimingSettings) -> Callable[[torch.Tensor], torch.Tensor]:
    """Apply the settings to a model: device, eval, folding, memory format, compile."""
    model = model.eval()
    if settings.fold_bn:
        model = fold_batchnorm(model)
    model = model.to(settings.device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if settings.compile:
        return torch.compile(model)
    return model


def make_input(settings: TimingSettings, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(settings.batch, 3, settings.height, settings.width, generator=g).to(settings.device)
    return x.contiguous(memory_format=torch.channels_last) if settings.channels_last else x


def _autocast(settings: TimingSettings):
    if settings.dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=settings.device.split(":")[0], dtype=DTYPES[settings.dtype])


# --- timers ------------------------------------------------------------------------------------


def _time_cuda(fn: Callable[[], object], settings: TimingSettings) -> list[float]:
    for _ in range(settings.warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(settings.runs)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(settings.runs)]
    for start, end in zip(starts, ends, strict=True):
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in zip(starts, ends, strict=True)]


def _time_cpu(fn: Callable[[], object], settings: TimingSettings) -> list[float]:
    for _ in range(2 if settings.compile else 1):
        fn()
    samples: list[float] = []
    spent = 0.0
    while len(samples) < settings.runs and (len(samples) < settings.min_runs or spent < settings.budget_s):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        samples.append(dt * 1e3)
        spent += dt
    return samples


@contextlib.contextmanager
def _torch_settings(settings: TimingSettings):
    old_threads = torch.get_num_threads()
    old_bench = torch.backends.cudnn.benchmark
    try:
        if settings.threads:
            torch.set_num_threads(settings.threads)
        torch.backends.cudnn.benchmark = settings.cudnn_benchmark
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.backends.cudnn.benchmark = old_bench


def peak_matmul_gflops(device: str = "cpu", dtype: str = "fp32", n: int = 2048, seconds: float = 1.0) -> float:
    """Achievable GFLOP/s of a large square matmul (2 n^3 FLOPs), measured now, on this device."""
    torch_dtype = DTYPES[dtype] if device.startswith("cuda") or dtype != "fp16" else torch.float32
    a = torch.randn(n, n, device=device, dtype=torch_dtype)
    b = torch.randn(n, n, device=device, dtype=torch_dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b
    sync()
    reps, t0 = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        sync()
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and reps >= 3:
            return 2 * n**3 * reps / elapsed / 1e9


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def time_model(
    model: nn.Module,
    settings: TimingSettings,
    variant: str = "",
    macs: int | None = None,
    peak_gflops: float | None = None,
) -> TimingRecord:
    """Time one model under one set of settings. Errors (e.g. out of memory) become the record's
    ``error`` rather than an exception, so sweeps go on."""
    cuda = settings.device.startswith("cuda")
    record = TimingRecord(
        variant=variant or getattr(model, "name", type(model).__name__),
        settings=asdict(settings),
        device_name=device_description(settings.device),
        torch=torch.__version__,
        cuda=torch.version.cuda if cuda else None,
        cudnn=str(torch.backends.cudnn.version()) if cuda else None,
        tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
        tf32_cudnn=bool(torch.backends.cudnn.allow_tf32),
        threads=settings.threads or torch.get_num_threads(),
        params=sum(p.numel() for p in model.parameters()),
    )
    try:
        settings.validate()
        with _torch_settings(settings):
            record.threads = torch.get_num_threads()
            runner = prepare(model, settings)
            x = make_input(settings)
            if cuda:
                torch.cuda.reset_peak_memory_stats(settings.device)

            def forward():
                with torch.inference_mode(), _autocast(settings):
                    return runner(x)

            samples = _time_cuda(forward, settings) if cuda else _time_cpu(forward, settings)
            if cuda:
                record.peak_memory_mb = torch.cuda.max_memory_allocated(settings.device) / 2**20
    except (RuntimeError, ValueError, torch.OutOfMemoryError) as err:  # recorded, the sweep goes on
        record.error = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
        if cuda:
            torch.cuda.empty_cache()
        return record
    record.samples_ms = samples
    record.runs = len(samples)
    record.mean_ms = statistics.fmean(samples)
    record.std_ms = statistics.stdev(samples) if len(samples) > 1 else 0.0
    record.median_ms = statistics.median(samples)
    record.p10_ms = _percentile(samples, 0.1)
    record.p90_ms = _percentile(samples, 0.9)
    record.ms_per_image = record.mean_ms / settings.batch
    record.fps = 1e3 / record.mean_ms
    record.images_per_s = record.fps * settings.batch
    if macs is not None:
        record.macs = macs
        record.achieved_gflops = 2 * macs / (record.mean_ms / 1e3) / 1e9
        if peak_gflops:
            record.peak_gflops = peak_gflops
            record.roofline_fraction = record.achieved_gflops / peak_gflops
    return record


def time_variants(
    variants: Iterable[str],
    settings: Iterable[TimingSettings] | TimingSettings,
    seed: int = 0,
    progress: Callable[[str], None] | None = print,
    measure_peak: bool = True,
) -> list[TimingRecord]:
    """Time each variant under each settings (random init, seeded); MACs from the shape-only count."""
    all_settings = [settings] if isinstance(settings, TimingSettings) else list(settings)
    peaks: dict[tuple[str, str], float] = {}
    records = []
    variants = list(variants)
    total = len(variants) * len(all_settings)
    done = 0
    for name in variants:
        torch.manual_seed(seed)
        model = create_model(name).eval()
        for s in all_settings:
            done += 1
            key = (s.device, s.dtype)
            try:
                s.validate()
            except ValueError:
                measure = False  # time_model records the reason
            else:
                measure = measure_peak
            if measure and key not in peaks:
                with _torch_settings(s):
                    peaks[key] = peak_matmul_gflops(s.device, s.dtype)
            try:
                (count,) = complexity([name], [(s.height, s.width)], batch=s.batch)
                macs = count.macs
            except ValueError:  # bad settings: time_model records the reason
                macs = None
            record = time_model(model, s, name, macs=macs, peak_gflops=peaks.get(key))
            records.append(record)
            if progress:
                status = record.error or f"{record.mean_ms:.1f} ± {record.std_ms:.1f} ms over {record.runs} runs"
                progress(f"  [{done}/{total}] {name} {s.batch}x{s.height}x{s.width} {s.device} {s.dtype}: {status}")
    return records


def sweep(
    variants: Sequence[str],
    base: TimingSettings,
    sizes: Sequence[tuple[int, int]] = (),
    batches: Sequence[int] = (),
    **kwargs,
) -> list[TimingRecord]:
    """Time over input sizes and batch sizes; failures are rows with ``error`` set."""
    grid = [replace(base, height=h, width=w) for h, w in sizes] + [replace(base, batch=b) for b in batches]
    return time_variants(variants, grid, **kwargs)
