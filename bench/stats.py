"""Order statistics and bootstrap intervals: one implementation for timings, speed-ups and probes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


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

    ``statistic`` maps two (n_boot, n) tensors to (n_boot,); it is also applied to the data itself.
    """
    x = torch.as_tensor(a, dtype=torch.float64)
    y = torch.as_tensor(b, dtype=torch.float64)
    if x.shape != y.shape or x.dim() != 1 or len(x) < 1:
        raise ValueError(f"paired samples need two equal-length lists, got {tuple(x.shape)} and {tuple(y.shape)}")
    point = float(statistic(x[None], y[None])[0])
    idx = resample_indices(len(x), n_boot, seed)
    low, high = percentile_interval(statistic(x[idx], y[idx]), level)
    return point, low, high


def ratio_of_means(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.mean(-1) / b.mean(-1)
