"""Coverage: the speed-up intervals cover a known true ratio about as often as their level says.

Simulated pairs of pass times with a known true ratio R: each pair shares a machine state (a common factor
that varies a lot from pair to pair, as a loaded machine does) and has its own log-normal noise, so the log
ratios are normal with mean log R. Fixed seed, a few hundred repetitions; the band is the level +- about 3
binomial standard deviations (300 repetitions: sd 1.3 points at 95%). A z instead of a t quantile, a standard
error without the square root, or a bootstrap that breaks the pairs misses the band (the last covers ~100%:
hence the check that the band is not trivial).
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.speedup import geometric_mean_ratio
from bench.stats import bootstrap_paired, log_ratio_interval

TRUE_RATIO = 1.7
REPS = 300


def simulated_pairs(rng: np.random.Generator, n: int, noise: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    machine = np.exp(rng.normal(0, 0.5, n))  # the state each pair sees: far larger than the pass-to-pass noise
    other = 10.0 * machine * np.exp(rng.normal(0, noise, n))
    base = TRUE_RATIO * 10.0 * machine * np.exp(rng.normal(0, noise, n))
    return base, other


def coverage(interval, n: int, reps: int = REPS, seed: int = 0) -> tuple[float, float]:
    """(share of intervals that cover TRUE_RATIO, mean of the point estimates' logs, exponentiated)."""
    rng = np.random.default_rng(seed)
    hits, logs = 0, []
    for rep in range(reps):
        base, other = simulated_pairs(rng, n)
        ratio, low, high = interval(base.tolist(), other.tolist(), rep)
        hits += low <= TRUE_RATIO <= high
        logs.append(np.log(ratio))
    return hits / reps, float(np.exp(np.mean(logs)))


def test_t_interval_covers_the_true_ratio_95_percent_of_the_time_with_few_pairs():
    # 5 pairs, as on a CPU: a z quantile (1.96 for t(4) = 2.78) covers ~88%, outside the band
    share, centre = coverage(lambda a, b, rep: log_ratio_interval(a, b, 0.95), n=5)
    assert 0.92 <= share <= 0.98, share
    assert centre == pytest.approx(TRUE_RATIO, rel=0.01)  # the geometric mean of the ratios is unbiased in logs


def test_t_interval_at_90_percent():
    share, _ = coverage(lambda a, b, rep: log_ratio_interval(a, b, 0.90), n=8, seed=1)
    assert 0.86 <= share <= 0.94, share


def test_percentile_bootstrap_over_pairs_covers_about_95_percent_with_many_pairs():
    # 30 pairs: the percentile bootstrap is slightly narrow (known), not trivially wide; resampling the two
    # models' times separately would carry the machine's pair-to-pair variation into the ratio and cover ~100%
    share, centre = coverage(lambda a, b, rep: bootstrap_paired(a, b, geometric_mean_ratio, 300, rep), n=30, reps=200)
    assert 0.88 <= share <= 0.98, share
    assert centre == pytest.approx(TRUE_RATIO, rel=0.01)


def test_a_bootstrap_that_breaks_the_pairs_is_caught_by_the_band():
    """The band is not trivial: an unpaired bootstrap on the same data covers (nearly) always."""
    import torch

    from bench.stats import percentile_interval, resample_indices

    def unpaired(a, b, rep):
        x, y = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
        i, j = resample_indices(len(a), 300, rep), resample_indices(len(a), 300, rep + 10_000)
        stat = torch.exp(torch.log(x[i]).mean(1) - torch.log(y[j]).mean(1))
        return (float(torch.exp(torch.log(x).mean() - torch.log(y).mean())), *percentile_interval(stat))

    share, _ = coverage(unpaired, n=30, reps=60)
    assert share > 0.98
