"""Order statistics and bootstrap intervals: one implementation for timings, speed-ups and probes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .errors import UsageError


def percentile(values: Sequence[float] | torch.Tensor, q: float) -> float:
    """The q-quantile (0..1) with linear interpolation between order statistics (NaNs dropped)."""
    t = torch.as_tensor(values, dtype=torch.float64).flatten()
    t = t[~torch.isnan(t)]
    if t.numel() == 0:
        return float("nan")
    return float(torch.quantile(t, q))


def percentile_interval(samples: Sequence[float] | torch.Tensor, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of (bootstrap) samples."""
    alpha = (1 - level) / 2
    return percentile(samples, alpha), percentile(samples, 1 - alpha)


def resample_indices(n_items: int, n_boot: int = 1000, seed: int = 0) -> torch.Tensor:
    """(n_boot, n_items) indices drawn with replacement, seeded."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n_items, (n_boot, n_items), generator=g)


def bootstrap_paired(
    a: Sequence[float], b: Sequence[float], statistic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    n_boot: int = 2000, seed: int = 0, level: float = 0.95,
) -> tuple[float, float, float]:
    """``statistic(a, b)`` and its percentile interval over paired resamples (pair i keeps a[i] with b[i]).

    ``statistic`` maps two (n_boot, n) tensors to (n_boot,); it is also applied to the data itself. One pair: no
    interval (NaN), as every resample of it is the pair itself.
    """
    x = torch.as_tensor(a, dtype=torch.float64)
    y = torch.as_tensor(b, dtype=torch.float64)
    if x.shape != y.shape or x.dim() != 1 or len(x) < 1:
        raise UsageError(f"paired samples need two equal-length lists, got {tuple(x.shape)} and {tuple(y.shape)}")
    point = float(statistic(x[None], y[None])[0])
    if len(x) < 2:
        return point, math.nan, math.nan
    idx = resample_indices(len(x), n_boot, seed)
    low, high = percentile_interval(statistic(x[idx], y[idx]), level)
    return point, low, high


def log_ratio_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Geometric mean of the paired ratios a_i / b_i and its t interval: mean(log r) +- t(n-1) sd / sqrt(n),
    exponentiated. With a handful of pairs (a CPU's few seconds-long passes) a percentile bootstrap is known to
    be too narrow; the t interval widens with few pairs as it should. One pair: no interval (NaN)."""
    from scipy import stats

    logs = torch.log(torch.as_tensor(a, dtype=torch.float64) / torch.as_tensor(b, dtype=torch.float64))
    point = float(torch.exp(logs.mean()))
    n = len(logs)
    if n < 2:
        return point, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * float(logs.std()) / n**0.5
    return point, float(torch.exp(logs.mean() - half)), float(torch.exp(logs.mean() + half))
