"""Forward-pass timing on GPU or CPU, with the settings that made each number.

CUDA. After warm-up (cuDNN autotuning and ``torch.compile`` happen there, outside the timed
region), each pass is timed with CUDA events. With ``cuda_graph=True`` (the report's default on a
GPU) the forward is captured once in a CUDA graph, after a warm-up on a side stream as torch's
CUDA-graphs notes prescribe, and each timed pass is one replay: no Python, no dispatcher, no kernel
launches from the host, so the number measures the network rather than the launcher. The eager
time is measured beside it, and ``launch_overhead = 1 - graph / eager`` says how much of an eager
pass was host work. A capture that fails falls back to eager timing and says why in the record.

CPU. A pass of a large model takes seconds, so the number of passes is adaptive: at least
``min_runs``, then more until ``budget_s`` is spent or ``runs`` is reached (as
``torch.utils.benchmark``'s adaptive autorange does); the thread count is set explicitly.

Reported per configuration: mean, std, median, p10, p90 (ms per batch), ms per image, FPS
(images per second, from the median), batches per second, peak memory (CUDA), achieved GFLOP/s
(2 x MACs / median time: one multiply-accumulate is 2 FLOPs here, the hardware convention) and the
environment record (device, versions, TF32 flags, matmul precision, threads).
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from . import validation
from .complexity import complexity
from .environment import environment, torch_threads
from .errors import UsageError, UsageTypeError
from .models import create_model, variant_info
from .stats import percentile

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


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
    cuda_graph: bool = False  # CUDA: time replays of a captured graph (eager time measured beside it)
    tf32: bool | None = None  # CUDA fp32: True = TF32 convs and matmuls, False = strict fp32, None = torch's default
    threads: int | None = None  # CPU threads; None = all cores
    runs: int = 100  # passes on CUDA; the cap on CPU
    min_runs: int = 3  # CPU: at least this many
    budget_s: float = 10.0  # CPU: stop after this much timed time (once min_runs are done)
    warmup: int | None = None  # warm-up passes; None: 10 on CUDA, 1 on CPU (2 with compile)

    def validate(self, require_device: bool = True) -> None:
        """Every field checked; a ValueError/TypeError names the field, the value and what is accepted.

        ``require_device=False`` checks a CUDA configuration on a machine without CUDA (planning a sweep
        that runs elsewhere)."""
        validation.choice("dtype", self.dtype, DTYPES)
        validation.device("device", self.device)
        if require_device and self.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise UsageError("device 'cuda' requested but torch.cuda.is_available() is False on this machine")
            index = int(self.device.partition(":")[2] or 0)
            if index >= torch.cuda.device_count():
                raise UsageError(f"device {self.device!r} requested but this machine has "
                                 f"{torch.cuda.device_count()} CUDA device(s) (cuda:0 to "
                                 f"cuda:{torch.cuda.device_count() - 1})")
        validation.integer("batch", self.batch, minimum=1, maximum=validation.MAX_BATCH)
        validation.image_size("input", self.height, self.width)
        validation.integer("runs", self.runs, minimum=1, maximum=validation.MAX_RUNS)
        validation.integer("min_runs", self.min_runs, minimum=1)
        if self.min_runs > self.runs and not self.device.startswith("cuda"):  # CPU only: CUDA times `runs` passes
            raise UsageError(f"min_runs ({self.min_runs}, --min-runs) is more than runs ({self.runs}, --runs), the "
                             f"most passes timed on a CPU; lower min_runs (default 3) or raise runs")
        if self.warmup is not None:
            validation.integer("warmup", self.warmup, minimum=0, maximum=validation.MAX_RUNS)
        validation.number("budget_s", self.budget_s, minimum=0)
        if self.threads is not None:
            validation.integer("threads", self.threads, minimum=1, maximum=validation.MAX_THREADS)
        for flag in ("channels_last", "compile", "fold_bn", "cudnn_benchmark", "cuda_graph"):
            validation.boolean(flag, getattr(self, flag))
        if self.tf32 is not None:
            validation.boolean("tf32", self.tf32)
        if not self.device.startswith("cuda"):  # flags that would be taken and do nothing on a CPU
            if self.cuda_graph:
                raise UsageError(f"cuda_graph needs a CUDA device (--cuda-graph), got device {self.device!r}")
            if self.tf32 is not None:
                raise UsageError(f"tf32={self.tf32} (--tf32/--no-tf32) sets CUDA's TF32 math mode (cuDNN convs, "
                                 f"cuBLAS matmuls) and does nothing on device {self.device!r}; leave it unset there")
            if self.cudnn_benchmark:
                raise UsageError(f"cudnn_benchmark (--cudnn-benchmark) autotunes cuDNN's convolution algorithms and "
                                 f"does nothing on device {self.device!r}; leave it off there")

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def warmup_passes(self) -> int:
        if self.warmup is not None:
            return self.warmup
        return 10 if self.is_cuda else (2 if self.compile else 1)

    def resolved(self) -> TimingSettings:
        """The settings with their device-dependent defaults filled in, as records state them."""
        return replace(self, warmup=self.warmup_passes)


@dataclass
class TimingRecord:
    variant: str
    settings: dict
    environment: dict
    mode: str = "eager"  # "graph" (CUDA-graph replay) or "eager"
    runs: int = 0
    mean_ms: float = math.nan
    std_ms: float = math.nan
    median_ms: float = math.nan
    p10_ms: float = math.nan
    p90_ms: float = math.nan
    ms_per_image: float = math.nan  # median / batch
    fps: float = math.nan  # images per second (median)
    batches_per_s: float = math.nan
    eager_median_ms: float = math.nan  # graph mode: the eager time of the same forward, same run
    launch_overhead: float = math.nan  # graph mode: 1 - graph / eager, the host's share of an eager pass
    fallback: str = ""  # why graph replay was not used where it was asked for
    peak_memory_mb: float = math.nan  # CUDA: max allocated in one pass after warm-up; CPU: not measured (nan)
    params: int = 0
    macs: int = 0
    achieved_gflops: float = math.nan  # 2 x MACs / median time
    error: str = ""
    samples_ms: list[float] = field(default_factory=list)

    def flat(self) -> dict:
        """One flat row (settings and environment expanded), for tables."""
        row = {k: v for k, v in asdict(self).items() if k not in ("settings", "environment", "samples_ms")}
        return {"variant": self.variant, **self.settings, **self.environment, **row}


def summarise(record: TimingRecord, samples: Sequence[float], batch: int) -> TimingRecord:
    """Fill a record's statistics from per-pass times in ms."""
    record.samples_ms = list(samples)
    record.runs = len(samples)
    record.mean_ms = statistics.fmean(samples)
    record.std_ms = statistics.stdev(samples) if len(samples) > 1 else 0.0
    record.median_ms = statistics.median(samples)
    record.p10_ms = percentile(samples, 0.1)
    record.p90_ms = percentile(samples, 0.9)
    record.ms_per_image = record.median_ms / batch
    record.batches_per_s = 1e3 / record.median_ms
    record.fps = record.batches_per_s * batch
    if record.macs:
        record.achieved_gflops = 2 * record.macs / (record.median_ms / 1e3) / 1e9
    return record


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


def autocast(settings: TimingSettings, cache_enabled: bool = True):
    """Autocast for fp16/bf16 (CUDA graphs need ``cache_enabled=False``); nothing for fp32."""
    if settings.dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=settings.device.split(":")[0], dtype=DTYPES[settings.dtype],
                          cache_enabled=cache_enabled)


@contextlib.contextmanager
def torch_settings(settings: TimingSettings):
    """Threads, cudnn.benchmark and TF32 flags for the duration of a measurement, then restored."""
    old = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        with torch_threads(settings.threads):
            torch.backends.cudnn.benchmark = settings.cudnn_benchmark
            if settings.tf32 is not None:
                torch.backends.cudnn.allow_tf32 = settings.tf32
                torch.backends.cuda.matmul.allow_tf32 = settings.tf32
            yield
    finally:
        torch.backends.cudnn.benchmark = old[0]
        torch.backends.cudnn.allow_tf32 = old[1]
        torch.backends.cuda.matmul.allow_tf32 = old[2]


# --- one pass, eager or replayed -----------------------------------------------------------------


def eager_pass(runner: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, settings: TimingSettings):
    def forward():
        with torch.inference_mode(), autocast(settings):
            return runner(x)

    return forward


def graph_pass(runner: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, settings: TimingSettings):
    """Capture one forward in a CUDA graph and return its replay.

    Warm-up runs on a side stream before capture (cuDNN autotuning, allocator, lazy init), as
    torch's CUDA-graphs notes prescribe; the input lives in a static tensor the graph reads.
    """
    static_x = x.clone()
    stream = torch.cuda.Stream(device=x.device)
    stream.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(stream), torch.no_grad(), autocast(settings, cache_enabled=False):
        for _ in range(max(3, settings.warmup_passes)):
            runner(static_x)
    torch.cuda.current_stream(x.device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad(), autocast(settings, cache_enabled=False):
        static_out = runner(static_x)

    def replay() -> torch.Tensor:
        graph.replay()
        return static_out  # the graph writes its output here; holding it keeps the buffer alive

    return replay


def graph_or_fallback(runner: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, settings: TimingSettings
                      ) -> tuple[Callable[[], torch.Tensor] | None, str]:
    """(the graph replay, "") or, where the capture fails, (None, why): the caller times eagerly and records why."""
    try:
        return graph_pass(runner, x, settings), ""
    except Exception as err:  # capture is fragile (compile, some kernels): eager instead, said in the record
        return None, f"graph capture failed, eager timing: {type(err).__name__}: {err}"[:300]


def time_cuda(fn: Callable[[], object], runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
    for start, end in zip(starts, ends, strict=True):
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in zip(starts, ends, strict=True)]


def steady_peak_memory_mb(fn: Callable[[], object], device: str) -> float:
    """Peak allocated memory of one more pass, after warm-up: cudnn.benchmark's autotuning tries
    workspaces of several GB while it warms up, which is not what a pass needs."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def time_cpu(fn: Callable[[], object], settings: TimingSettings) -> list[float]:
    for _ in range(settings.warmup_passes):
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


def time_model(model: nn.Module, settings: TimingSettings, variant: str = "", macs: int | None = None) -> TimingRecord:
    """Time one model under one set of settings. Errors (e.g. out of memory) become the record's
    ``error`` rather than an exception, so sweeps go on."""
    record = TimingRecord(
        variant=variant or getattr(model, "name", type(model).__name__),
        settings=asdict(settings.resolved()),
        environment={},
        params=sum(p.numel() for p in model.parameters()),
        macs=macs or 0,
    )
    try:
        settings.validate()
        with torch_settings(settings):
            record.environment = environment(settings.device)
            runner = prepare(model, settings)
            x = make_input(settings)
            if settings.is_cuda:
                timed = eager_pass(runner, x, settings)
                eager = time_cuda(timed, settings.runs, settings.warmup_passes)
                samples = eager
                if settings.cuda_graph:
                    replay, record.fallback = graph_or_fallback(runner, x, settings)
                    if replay is not None:
                        timed = replay
                        samples = time_cuda(timed, settings.runs, 3)
                        record.mode = "graph"
                        record.eager_median_ms = statistics.median(eager)
                        record.launch_overhead = 1 - statistics.median(samples) / record.eager_median_ms
                record.peak_memory_mb = steady_peak_memory_mb(timed, settings.device)
            else:
                samples = time_cpu(eager_pass(runner, x, settings), settings)
    except (RuntimeError, ValueError, TypeError, torch.OutOfMemoryError) as err:  # recorded, the sweep goes on
        record.error = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
        if settings.device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()
        return record
    return summarise(record, samples, settings.batch)


def time_variants(
    variants: Iterable[str],
    settings: Iterable[TimingSettings] | TimingSettings,
    seed: int = 0,
    progress: Callable[[str], None] | None = print,
) -> list[TimingRecord]:
    """Time each variant under each settings (random init, seeded); MACs from the shape-only count.

    Variant names are checked before anything is built; a setting that fails becomes a row.
    """
    all_settings = [settings] if isinstance(settings, TimingSettings) else list(settings)
    variants = validation.names("variants", variants)
    for name in variants:
        variant_info(name)
    if not all_settings:
        raise UsageError("settings must hold at least one TimingSettings, got none")
    for s in all_settings:
        if not isinstance(s, TimingSettings):
            raise UsageTypeError(f"settings must be TimingSettings, got {s!r} ({type(s).__name__})")
    records = []
    total = len(variants) * len(all_settings)
    done = 0
    for name in variants:
        model = seeded_model(name, seed)
        for s in all_settings:
            done += 1
            try:
                s.validate()
                (count,) = complexity([name], [(s.height, s.width)], batch=s.batch)
                macs = count.macs
            except (ValueError, TypeError):  # bad settings: time_model records the reason
                macs = None
            record = time_model(model, s, name, macs=macs)
            records.append(record)
            if progress:
                status = record.error or f"median {record.median_ms:.1f} ms over {record.runs} runs ({record.mode})"
                progress(f"  [{done}/{total}] {name} {s.batch}x{s.height}x{s.width} {s.device} {s.dtype}: {status}")
    return records


_BUILT: dict[tuple, nn.Module] = {}
_KEEP = 4


def seeded_model(name: str, seed: int = 0) -> nn.Module:
    """A fresh eval-mode ``create_model(name)`` built after ``torch.manual_seed(seed)``: a copy of one of the
    last few builds where it matches. A timing run asks for the same networks again and again (an ablation's
    reference, once per configuration), and a build initialises every weight (0.4-1.6 s for the ResNet
    variants on a CPU); a copy holds the same weights. The key holds the variant's registration, so a name
    registered again with other changes is built anew."""
    info = variant_info(name)
    key = (name, seed, info.builder, info.base, info.changes)
    if key not in _BUILT:
        torch.manual_seed(seed)
        _BUILT[key] = create_model(name).eval()
        while len(_BUILT) > _KEEP:
            del _BUILT[next(iter(_BUILT))]
    _BUILT[key] = _BUILT.pop(key)  # most recently used last
    return copy.deepcopy(_BUILT[key])


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
