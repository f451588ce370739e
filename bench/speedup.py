"""Paired speed-ups: two models timed in one interleaved loop, the ratio with a bootstrap interval.

Dividing two separately measured means mixes the networks' difference with whatever the machine
did in between (another job, a clock change, the thermal state). Here both models get the same
input and alternate pass by pass (A B, then B A, so neither always goes first); each pair sees
the same conditions, and the ratio is computed from the pairs:

    ratio = exp(mean(log(t_base_i / t_other_i)))   (geometric mean of the per-pair time ratios)

i.e. how many times faster ``other`` is than ``base``. Its 95% interval is a t interval on the log
ratios (``bench.stats.log_ratio_interval``): on a CPU a pair takes seconds and a handful is all the budget
allows, and with so few pairs a percentile bootstrap is too narrow. The percentile bootstrap over pairs
(resampling pairs keeps each pair together) is recorded beside it (``boot_low``, ``boot_high``); with the
100 pairs of a GPU run the two agree. On CUDA each pass is timed with events
(one replay of a captured graph with ``cuda_graph=True``); on CPU with ``perf_counter``, and the
number of pairs is adaptive (at least ``min_runs``, then until ``budget_s`` or ``runs``). With graph
replay, the same two models are then run eagerly for ``EAGER_PAIRS`` interleaved pairs, and their eager
medians are recorded beside the replays (``base_eager_ms``, ``other_eager_ms``): the host's share of an
eager pass, and the ratio an eager timing would have reported.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch

from . import validation
from .environment import environment
from .errors import UsageError, UsageTypeError
from .models import variant_info
from .stats import bootstrap_paired, log_ratio_interval
from .timing import TimingSettings, eager_pass, graph_or_fallback, make_input, prepare, seeded_model, torch_settings

STATISTIC = "geometric mean of paired time ratios base/other"
EAGER_PAIRS = 20  # graph mode: eager pairs timed after the replays, for the launch-overhead share


@dataclass
class SpeedupRecord:
    base: str
    other: str
    height: int
    width: int
    batch: int
    device: str
    dtype: str
    mode: str  # "graph" or "eager"
    ratio: float = math.nan  # base time / other time: how many times faster `other` is
    ci_low: float = math.nan  # t interval on the log ratios
    ci_high: float = math.nan
    boot_low: float = math.nan  # percentile bootstrap over pairs
    boot_high: float = math.nan
    pairs: int = 0
    base_median_ms: float = math.nan
    other_median_ms: float = math.nan
    base_eager_ms: float = math.nan  # graph mode: eager medians of the same two models, interleaved the same way
    other_eager_ms: float = math.nan
    statistic: str = STATISTIC
    settings: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    fallback: str = ""
    error: str = ""
    base_samples_ms: list[float] = field(default_factory=list)
    other_samples_ms: list[float] = field(default_factory=list)

    def flat(self) -> dict:
        row = {k: v for k, v in asdict(self).items() if k not in ("settings", "environment", "base_samples_ms",
                                                                  "other_samples_ms")}
        return {**row, **{k: v for k, v in self.settings.items() if k not in row}, **self.environment}


def _passes(
    models: Sequence[torch.nn.Module], settings: TimingSettings
) -> tuple[list[Callable], list[Callable], str, str]:
    """Per model: the timed forward (graph replay where asked and possible) and its eager pass."""
    runners = [prepare(m, settings) for m in models]
    x = make_input(settings)
    eager = [eager_pass(r, x, settings) for r in runners]
    if settings.cuda_graph:
        replays = []
        for r in runners:
            replay, why = graph_or_fallback(r, x, settings)
            if replay is None:  # capture failed: eager for both (a fair pair), said in the record
                return eager, eager, "eager", why
            replays.append(replay)
        return replays, eager, "graph", ""
    return eager, eager, "eager", ""


def _timed(fn: Callable[[], object], cuda: bool) -> Callable[[], float]:
    if cuda:
        def run() -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
    else:
        def run() -> float:
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) * 1e3
    return run


def interleaved_samples(
    fns: Sequence[Callable[[], object]], settings: TimingSettings
) -> tuple[list[float], list[float]]:
    """Alternate two passes (A B, B A, ...) and return each one's times in ms, pair by pair."""
    cuda = settings.is_cuda
    a, b = (_timed(fn, cuda) for fn in fns)
    for _ in range(settings.warmup_passes):
        a(), b()
    ta: list[float] = []
    tb: list[float] = []
    spent = 0.0
    while len(ta) < settings.runs and (cuda or len(ta) < settings.min_runs or spent < settings.budget_s):
        if len(ta) % 2 == 0:
            x, y = a(), b()
        else:
            y, x = b(), a()
        ta.append(x)
        tb.append(y)
        spent += (x + y) / 1e3
    return ta, tb


def geometric_mean_ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.log(a / b).mean(-1))


def paired_speedup(
    base: str, other: str, settings: TimingSettings, seed: int = 0, n_boot: int = 2000, level: float = 0.95
) -> SpeedupRecord:
    """How many times faster ``other`` runs than ``base`` (same input, interleaved), with a bootstrap CI.

    A configuration that fails (e.g. out of memory) becomes a record with ``error`` set.
    """
    for name in (base, other):
        variant_info(name)
    validation.integer("n_boot", n_boot, minimum=1, maximum=validation.MAX_RUNS)
    if validation.number("level", level) <= 0 or level >= 1:
        raise UsageError(f"level must be a confidence level between 0 and 1 (e.g. 0.95), got {level!r}")
    record = SpeedupRecord(base, other, settings.height, settings.width, settings.batch, settings.device,
                           settings.dtype, "graph" if settings.cuda_graph else "eager",
                           settings=asdict(settings.resolved()))
    try:
        settings.validate()
        with torch_settings(settings):
            record.environment = environment(settings.device)
            models = [seeded_model(name, seed) for name in (base, other)]
            fns, eager, record.mode, record.fallback = _passes(models, settings)
            ta, tb = interleaved_samples(fns, settings)
            if record.mode == "graph":  # the eager times beside the replays: the host's share of each pass
                ea, eb = interleaved_samples(eager, replace(settings, runs=EAGER_PAIRS, warmup=2))
                record.base_eager_ms, record.other_eager_ms = statistics.median(ea), statistics.median(eb)
    except (RuntimeError, ValueError, TypeError, torch.OutOfMemoryError) as err:
        record.error = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
        return record
    record.base_samples_ms, record.other_samples_ms = ta, tb
    record.pairs = len(ta)
    record.base_median_ms, record.other_median_ms = statistics.median(ta), statistics.median(tb)
    record.ratio, record.ci_low, record.ci_high = log_ratio_interval(ta, tb, level)
    _, record.boot_low, record.boot_high = bootstrap_paired(ta, tb, geometric_mean_ratio, n_boot, seed, level)
    return record


def _check_pairs(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """A non-empty list of (base, other) name pairs, both registered ("rf50" is not a pair of letters)."""
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise UsageTypeError(f"pairs must be a list of (base, other) pairs, got {pairs!r}")
    if not pairs:
        raise UsageError("pairs must hold at least one (base, other) pair, got an empty list")
    out = []
    for pair in pairs:
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise UsageTypeError(f"each of pairs must be a (base, other) pair of names, got {pair!r}")
        variant_info(pair[0]), variant_info(pair[1])
        out.append((pair[0], pair[1]))
    return out


def paired_speedups(
    pairs: Sequence[tuple[str, str]],
    settings: TimingSettings | Sequence[TimingSettings],
    progress: Callable[[str], None] | None = print,
    **kwargs,
) -> list[SpeedupRecord]:
    """:func:`paired_speedup` for every (base, other) pair under every settings; names checked first."""
    grid = [settings] if isinstance(settings, TimingSettings) else list(settings)
    pairs = _check_pairs(pairs)
    if not grid:
        raise UsageError("settings must hold at least one TimingSettings, got none")
    records = []
    for i, (s, (base, other)) in enumerate([(s, p) for s in grid for p in pairs], 1):
        record = paired_speedup(base, other, s, **kwargs)
        records.append(record)
        if progress:
            status = record.error or (f"{record.ratio:.3f}x (95% CI {record.ci_low:.3f} to {record.ci_high:.3f}, "
                                      f"{record.pairs} pairs, {record.mode})")
            progress(f"  [{i}/{len(grid) * len(pairs)}] {other} vs {base} {s.batch}x{s.height}x{s.width} "
                     f"{s.device}: {status}")
    return records
