"""Which change buys what: per-step deltas along a path, the same in reverse order, and exact Shapley values.

For a path of n changes c_1..c_n from a start variant, ``v(S)`` is a metric of the start with the changes in
``S`` applied (in path order, so a later change of the same field wins, as on the path). Then:

- path delta of step i:     v({1..i}) - v({1..i-1})        (the forward ablation path)
- reverse delta of step i:  v({i..n}) - v({i+1..n})        (the changes applied last-first from the start)
- Shapley value of step i:  sum over S not holding i of |S|! (n-|S|-1)! / n! (v(S + i) - v(S)),
  its average marginal effect over all n! orders (Fawcett & Hoos 2016; Shapley 1953). Exact: all 2^n
  subsets are evaluated, so n is capped at :data:`MAX_SHAPLEY`. The values sum to v(all) - v(none).

Counting metrics (parameters, paper FLOPs) evaluate every subset's model shape-only
(:func:`bench.complexity.count_ops` on the meta device): cheap. Time is attributed along the path steps
only (paired ratios of each step against its predecessor): timing 2^n models on a CPU is too slow.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence

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


def subset_values(start: str, start_changes: dict, steps: Sequence[dict], height: int, width: int,
                  num_classes: int = 21) -> dict[Subset, dict[str, int]]:
    """{subset: {"params", "macs", "paper_flops"}} for every subset of the path's steps, counted shape-only.

    Subsets that resolve to the same DecoderSpec are counted once.
    """
    from ..complexity import count_ops
    from ..models import create_model, decoder_spec
    from ..models.meta import build_on_meta

    if len(steps) > MAX_SHAPLEY:
        raise UsageError(f"exact Shapley values need all 2^n subsets; at most {MAX_SHAPLEY} changes, got "
                         f"{len(steps)}")
    root = decoder_spec(start)
    counted: dict = {}
    out = {}
    for s in all_subsets(len(steps)):
        changes = {**start_changes, **subset_changes(steps, s)}
        key = root.with_changes(**changes)
        if key not in counted:
            model = build_on_meta(lambda c=changes: create_model(start, num_classes=num_classes, decoder=c))
            totals = count_ops(model, height, width).frame()[["macs", "paper_flops"]].sum()
            counted[key] = {"params": sum(p.numel() for p in model.parameters()), "macs": int(totals["macs"]),
                            "paper_flops": int(totals["paper_flops"])}
        out[s] = counted[key]
    return out
