"""Which change buys what: per-step deltas along a path, the same in reverse order, and exact Shapley values.

For a path of n changes c_1..c_n from a start variant, ``v(S)`` is a metric of the start with the changes in
``S`` applied (in path order, so a later change of the same field wins, as on the path). Then:

- path delta of step i:     v({1..i}) - v({1..i-1})        (the forward ablation path)
- reverse delta of step i:  v({i..n}) - v({i+1..n})        (the changes applied last-first from the start)
- Shapley value of step i:  sum over S not holding i of |S|! (n-|S|-1)! / n! (v(S + i) - v(S)),
  its average marginal effect over all n! orders (Fawcett & Hoos 2016; Shapley 1953). Exact: all 2^n
  subsets are evaluated, so n is capped at :data:`MAX_SHAPLEY`. The values sum to v(all) - v(none).

Counting metrics (parameters, paper FLOPs) evaluate every subset's model shape-only
(:func:`bench.complexity.count_ops` on the meta device): cheap. Time: every subset's model is timed in
interleaved pairs against one fixed reference, the path's end (:func:`bench.speedup.paired_speedup`), so
each ``v(S)`` is the reference's median time over the subset's paired ratio and drift between pair-sets
cancels; :func:`timed_attribution` turns those ratios into step speed-ups and Shapley values in ms with
intervals.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import UsageError

MAX_SHAPLEY = 6
Subset = frozenset[int]


def all_subsets(n: int) -> list[Subset]:
    return [frozenset(c) for k in range(n + 1) for c in itertools.combinations(range(n), k)]


def shapley_values(n: int, value: Callable[[Subset], float] | Mapping[Subset, float]) -> list[float]:
    """Exact Shapley values of ``n`` players (steps 0..n-1) for a value function on subsets."""
    if n > MAX_SHAPLEY:
        raise UsageError(f"exact Shapley values need all 2^n subsets; at most {MAX_SHAPLEY} changes, got {n}")
    v = value if isinstance(value, Mapping) else {s: value(s) for s in all_subsets(n)}
    phi = [0.0] * n
    for s in all_subsets(n):
        weight = math.factorial(len(s)) * math.factorial(n - len(s) - 1) / math.factorial(n) if len(s) < n else 0
        for i in range(n):
            if i not in s:
                phi[i] += weight * (v[s | {i}] - v[s])
    return phi


def path_deltas(n: int, value: Callable[[Subset], float] | Mapping[Subset, float]) -> list[float]:
    get = value.__getitem__ if isinstance(value, Mapping) else value
    return [get(frozenset(range(i + 1))) - get(frozenset(range(i))) for i in range(n)]


def reverse_deltas(n: int, value: Callable[[Subset], float] | Mapping[Subset, float]) -> list[float]:
    get = value.__getitem__ if isinstance(value, Mapping) else value
    return [get(frozenset(range(i, n))) - get(frozenset(range(i + 1, n))) for i in range(n)]


def subset_changes(steps: Sequence[dict], subset: Subset) -> dict:
    """The decoder changes of the steps in ``subset``, applied in path order."""
    out: dict = {}
    for i, step in enumerate(steps):
        if i in subset:
            out.update(step)
    return out


@dataclass(frozen=True)
class LogRatio:
    """One subset's paired timing against the reference: mean log(t_reference / t_subset), its standard error
    and degrees of freedom (pairs - 1); the reference itself is LogRatio(0, 0, 0). ``source`` names the
    measurement: subsets measured by one record (equal eval-mode networks) share one draw in the bootstrap."""

    mean: float
    se: float
    df: int
    source: str = ""

    @staticmethod
    def from_interval(ratio: float, low: float, high: float, pairs: int, level: float = 0.95,
                      source: str = "") -> LogRatio:
        """From a record of :func:`bench.speedup.paired_speedup` (geometric-mean ratio, t interval)."""
        from scipy import stats

        if pairs < 2 or not (low > 0 and high > 0):
            return LogRatio(math.log(ratio), math.nan, max(pairs - 1, 0), source)
        half = (math.log(high) - math.log(low)) / 2
        return LogRatio(math.log(ratio), half / float(stats.t.ppf(0.5 + level / 2, pairs - 1)), pairs - 1, source)


def timed_attribution(n: int, ratios: Mapping[Subset, LogRatio], reference_ms: float, draws: int = 4000,
                      seed: int = 0, level: float = 0.95, reference_log_se: float = 0.0) -> dict[str, list]:
    """Per step: the path speed-up (t before / t after), path / reverse / Shapley deltas of the time in ms, each
    with a ``level`` interval.

    ``ratios``: every subset's :class:`LogRatio` against the reference (the full set: the path's end, LogRatio
    (0, 0, 0)); ``v(S) = reference_ms / exp(mean_S)``. Intervals: a parametric bootstrap, each subset's log ratio
    drawn as mean + se * t(df), independently for each pair-set (subsets with the same ``source`` share one
    draw: one measurement), and the reference's own time drawn as ``reference_ms * exp(reference_log_se * z)``
    (its uncertainty: the spread of its medians over the pair-sets that measured it). A subset measured by a
    single pair has no interval, and nor has any step whose value uses it: those intervals are NaN, and
    ``result["no_interval"]`` names the subsets, never a silently fixed value. With the exact subsets only
    (n > MAX_SHAPLEY: prefixes and suffixes), Shapley is left out.
    """
    import torch

    full = frozenset(range(n))
    exact = n <= MAX_SHAPLEY and all(s in ratios for s in all_subsets(n))  # never enumerates 2^n for a long path
    keys = list(ratios)
    g = torch.Generator().manual_seed(seed)
    columns, by_source = [], {}
    # se NaN: one pair, no interval; se 0 with df 0: the end's own network (ratio 1 exactly), a fixed value
    no_interval = [key for key in keys if key != full and not ratios[key].se == ratios[key].se]
    for key in keys:
        r = ratios[key]
        if key == full or key in no_interval or r.df < 1:
            columns.append(torch.full((draws,), r.mean, dtype=torch.float64))
        elif r.source and r.source in by_source:
            columns.append(by_source[r.source])
        else:
            # StudentT has no generator argument: t = z / sqrt(chi2_df / df) from seeded normals
            z = torch.randn(draws, generator=g, dtype=torch.float64)
            chi = (torch.randn(draws, r.df, generator=g, dtype=torch.float64) ** 2).sum(1)
            t = z / torch.sqrt(chi / r.df)
            columns.append(r.mean + r.se * t)
            if r.source:
                by_source[r.source] = columns[-1]
    logs = torch.stack(columns, 1)  # (draws, subsets)
    point = torch.tensor([[ratios[k].mean for k in keys]], dtype=torch.float64)
    reference = reference_ms * torch.exp(reference_log_se * torch.randn(draws, 1, generator=g, dtype=torch.float64))

    def metrics(log_ratios: torch.Tensor, ref: torch.Tensor) -> dict[str, torch.Tensor]:
        ms = {k: ref[:, 0] / torch.exp(log_ratios[:, i]) for i, k in enumerate(keys)}
        out = {"path_speedup": torch.stack([ms[frozenset(range(i))] / ms[frozenset(range(i + 1))]
                                            for i in range(n)], 1),
               "path_ms": torch.stack(path_deltas(n, ms), 1),
               "reverse_ms": torch.stack(reverse_deltas(n, ms), 1)}
        if exact:
            out["shapley_ms"] = torch.stack(shapley_values(n, ms), 1)
        return out

    central = metrics(point, torch.tensor([[reference_ms]], dtype=torch.float64))
    drawn = metrics(logs, reference)
    tail = (1 - level) / 2
    result: dict[str, list] = {}
    undefined = _steps_using(n, no_interval)
    for name, value in central.items():
        result[name] = value[0].tolist()
        low, high = torch.quantile(drawn[name], torch.tensor([tail, 1 - tail], dtype=torch.float64), dim=0)
        low, high = low.tolist(), high.tolist()
        for i in undefined.get(name.removesuffix("_ms").removesuffix("_speedup"), range(n) if no_interval else ()):
            low[i] = high[i] = math.nan
        result[f"{name}_low"], result[f"{name}_high"] = low, high
    result["subset_ms"] = {k: reference_ms / math.exp(ratios[k].mean) for k in keys}
    result["no_interval"] = no_interval
    return result


def _steps_using(n: int, subsets: Sequence[Subset]) -> dict[str, list[int]]:
    """Per metric family ("path", "reverse"; Shapley uses every subset), the steps whose value uses one of
    ``subsets``."""
    bad = set(subsets)
    path = [i for i in range(n) if {frozenset(range(i + 1)), frozenset(range(i))} & bad]
    reverse = [i for i in range(n) if {frozenset(range(i, n)), frozenset(range(i + 1, n))} & bad]
    return {"path": path, "reverse": reverse}
