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
number of pairs is adaptive: at least ``min_runs``, then, with ``precision`` set, until the interval's half-width
is within that fraction of the ratio (or ``runs`` pairs, or ``budget_s`` seconds: the cap), else until ``budget_s``
or ``runs``. The record says which ended it (``stopped_by``) and what the machine did meanwhile
(:class:`Disturbance`: the spread of the pair ratios, the share of its threads' CPU time each pass got, the
hypervisor's steal time and the load), so a report can tell a disturbed run from a decided one. With graph
replay, the same two models are then run eagerly for ``EAGER_PAIRS`` interleaved pairs, and their eager
medians are recorded beside the replays (``base_eager_ms``, ``other_eager_ms``): the host's share of an
eager pass, and the ratio an eager timing would have reported.
"""

from __future__ import annotations

import math
import os
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
    precision: float = math.nan  # the target relative half-width of the interval (NaN: none, fixed pairs)
    stopped_by: str = ""  # "precision" (target reached), "runs" (the cap), "budget" (the time cap)
    log_ratio_sd: float = math.nan  # spread of the per-pair log ratios (disturbance)
    cpu_share: float = math.nan  # CPU: median over passes of process CPU time / (wall time x threads)
    steal_share: float = math.nan  # share of the machine's CPU time the hypervisor stole during the pairs
    load_avg: float = math.nan  # 1-minute load average at the end, per core
    base_samples_ms: list[float] = field(default_factory=list)
    other_samples_ms: list[float] = field(default_factory=list)

    def interval_words(self) -> str:
        """'95% CI a to b', or why there is none (one pair)."""
        if math.isnan(self.ci_low):
            return f"no interval: {self.pairs} pair" + ("s" if self.pairs != 1 else "")
        return f"95% CI {self.ci_low:.3f} to {self.ci_high:.3f}"

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


CPU_SHARES: list[float] = []
"""CPU passes of the current :func:`interleaved_samples` call: process CPU time / (wall time x threads) each."""


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
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            # another process on our cores shows as a pass that got less CPU time than its threads could use; the
            # process's helper threads can add a little CPU time beyond its compute threads': a share is at most 1
            CPU_SHARES.append(min(1.0, cpu / (wall * torch.get_num_threads())) if wall > 0 else math.nan)
            return wall * 1e3
    return run


def precise_enough(ta: Sequence[float], tb: Sequence[float], precision: float, level: float = 0.95) -> bool:
    """Whether the t interval of the paired log ratios is within ``precision`` of the ratio (relative half-width:
    high / ratio - 1 <= precision). The stopping rule is about width only, never about which side of a claim's
    boundary the ratio lies, so stopping does not bias the verdicts."""
    if len(ta) < 2:
        return False
    ratio, _, high = log_ratio_interval(ta, tb, level)
    return high / ratio - 1 <= precision


def sequential_pairs(next_pair: Callable[[int], tuple[float, float]], min_pairs: int, max_pairs: int,
                     budget_s: float = math.inf, precision: float | None = None, always_cap: bool = False
                     ) -> tuple[list[float], list[float], str]:
    """Pairs from ``next_pair(i)`` (ms, ms) until the rule says stop; returns both lists and what stopped them.

    At least ``min_pairs``; then, with ``precision``, until :func:`precise_enough` (or ``max_pairs``, or
    ``budget_s`` seconds spent: the caps); without, until ``budget_s`` or ``max_pairs`` (``always_cap``: exactly
    ``max_pairs``, as on CUDA). A pure loop, so a test can drive it with a fake clock."""
    ta: list[float] = []
    tb: list[float] = []
    spent = 0.0
    while len(ta) < max_pairs:
        if len(ta) >= min_pairs and not always_cap:
            if precision is not None and precise_enough(ta, tb, precision):
                return ta, tb, "precision"
            if spent >= budget_s:
                return ta, tb, "budget"
        x, y = next_pair(len(ta))
        ta.append(x)
        tb.append(y)
        spent += (x + y) / 1e3
    return ta, tb, "runs"


def interleaved_samples(
    fns: Sequence[Callable[[], object]], settings: TimingSettings, precision: float | None = None
) -> tuple[list[float], list[float]]:
    """Alternate two passes (A B, B A, ...) and return each one's times in ms, pair by pair."""
    return _interleaved(fns, settings, precision)[:2]


def _interleaved(fns: Sequence[Callable[[], object]], settings: TimingSettings, precision: float | None = None
                 ) -> tuple[list[float], list[float], str]:
    cuda = settings.is_cuda
    a, b = (_timed(fn, cuda) for fn in fns)
    for _ in range(settings.warmup_passes):
        a(), b()
    CPU_SHARES.clear()

    def pair(i: int) -> tuple[float, float]:
        if i % 2 == 0:
            x, y = a(), b()
        else:
            y, x = b(), a()
        return x, y

    # with no precision target a CPU keeps going until the budget (budget 0: exactly min_runs)
    return sequential_pairs(pair, settings.min_runs, settings.runs, settings.budget_s if not cuda else math.inf,
                            None if cuda else precision, always_cap=cuda)


def steal_ticks() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from /proc/stat (Linux), None where the OS does not report them."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def load_per_core() -> float:
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return math.nan


def geometric_mean_ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.log(a / b).mean(-1))


def paired_speedup(
    base: str, other: str, settings: TimingSettings, seed: int = 0, n_boot: int = 2000, level: float = 0.95,
    precision: float | None = None,
) -> SpeedupRecord:
    """How many times faster ``other`` runs than ``base`` (same input, interleaved), with a bootstrap CI.

    ``precision`` (CPU): after ``settings.min_runs`` pairs, go on until the interval's relative half-width is at
    most this (e.g. 0.1), capped by ``settings.runs`` pairs and ``settings.budget_s`` seconds.
    A configuration that fails (e.g. out of memory) becomes a record with ``error`` set.
    """
    for name in (base, other):
        variant_info(name)
    validation.integer("n_boot", n_boot, minimum=1, maximum=validation.MAX_RUNS)
    if validation.number("level", level) <= 0 or level >= 1:
        raise UsageError(f"level must be a confidence level between 0 and 1 (e.g. 0.95), got {level!r}")
    if precision is not None and (validation.number("precision", precision) <= 0 or precision >= 1):
        raise UsageError(f"precision is a relative half-width between 0 and 1 (e.g. 0.1 for +-10%), got "
                         f"{precision!r}")
    record = SpeedupRecord(base, other, settings.height, settings.width, settings.batch, settings.device,
                           settings.dtype, "graph" if settings.cuda_graph else "eager",
                           settings=asdict(settings.resolved()),
                           precision=math.nan if precision is None else float(precision))
    try:
        settings.validate()
        with torch_settings(settings):
            record.environment = environment(settings.device)
            models = [seeded_model(name, seed) for name in (base, other)]
            fns, eager, record.mode, record.fallback = _passes(models, settings)
            steal0 = steal_ticks()
            ta, tb, record.stopped_by = _interleaved(fns, settings, precision)
            steal1 = steal_ticks()
            if not settings.is_cuda:
                record.cpu_share = statistics.median(CPU_SHARES) if CPU_SHARES else math.nan
            if steal0 and steal1 and steal1[1] > steal0[1]:
                record.steal_share = (steal1[0] - steal0[0]) / (steal1[1] - steal0[1])
            record.load_avg = load_per_core()
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
    logs = [math.log(x / y) for x, y in zip(ta, tb, strict=True)]
    record.log_ratio_sd = statistics.stdev(logs) if len(logs) > 1 else math.nan
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
            status = record.error or (f"{record.ratio:.3f}x ({record.interval_words()}, "
                                      f"{record.pairs} pairs, {record.mode}, stopped by {record.stopped_by})")
            progress(f"  [{i}/{len(grid) * len(pairs)}] {other} vs {base} {s.batch}x{s.height}x{s.width} "
                     f"{s.device}: {status}")
    return records
