"""Every verdict of the project, in one vocabulary of four outcomes, each decided by one small rule.

    reproduced         the interval lies wholly inside the claim's region
    not reproduced     the interval lies wholly outside the claim's region
    inconclusive       the interval straddles the region's edge: say why (too few runs, too noisy, too few images,
                       a disturbed run)
    not testable here  the setting cannot hold the claim: say what it would need
    depends on the recipe  (over the recipe multiverse only) reproduced under some recipes, not reproduced under
                       others: the training recipe, not the architecture, decides it; the row names which

A *rule* is a function of an interval (estimate, low, high, its level) and a region stated before looking at
the data: a one-sided bound (``above``, ``below``), a band (``within``: the whole interval inside, as in two
one-sided tests, Schuirmann 1987). "Not reproduced" needs the whole interval outside the region, so an
interval that contains both the claim's region and its complement is never a failure. A deterministic count
is an interval of zero width (``Interval.exact``).

Aggregates over cells (levels, families, depths, units) are universal claims ("at every level"): *reproduced*
where every testable cell is; *not reproduced* where at least one cell is (one decided counterexample refutes
"at every level"); *inconclusive* where none is refuted but some cannot be decided; *not testable here* where
no cell is testable. The words always carry the counts: "reproduced in k of n testable cells, m inconclusive,
j not reproduced" -- an inconclusive cell is never counted as a failure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

VERDICT_VERSION = 1
"""Bump when a rule changes what a measurement's verdict is: a report section decided by an earlier version moves to
the archive until its machine reruns it. 1: this module (2026-12-04; before, each section had its own rules)."""

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable here"
DEPENDS = "depends on the recipe"
OUTCOMES = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE, DEPENDS)

VOCABULARY = (
    f"**{REPRODUCED}**: the whole interval lies inside the claim's region; **{NOT_REPRODUCED}**: the whole interval "
    f"lies outside it; **{INCONCLUSIVE}**: the interval straddles the region's edge (the reason says why: too few "
    f"runs, too noisy, too few images, a disturbed run); **{NOT_TESTABLE}**: the setting cannot hold the claim (the "
    f"reason says what it would need); **{DEPENDS}** (over the protocol's training recipes): reproduced under some, "
    "not reproduced under others, the recipes named. A claim over several cells (levels, families, depths, units) "
    "holds where "
    "every testable cell is reproduced, fails where one is not reproduced, and is inconclusive where none fails "
    "but some cannot be decided; an inconclusive cell is never counted as a failure. A count (parameters, FLOPs) "
    "is an interval of zero width."
)


@dataclass(frozen=True)
class Spread:
    """What an interval over training runs rests on: the variance between the runs' estimates (``between``, n - 1
    degrees of freedom), the variance the images every run shares add (``images``), the number of runs and of
    images."""

    between: float
    images: float
    runs: int
    n_images: int

    def standard_error(self, runs: int | None = None) -> float:
        """The standard error of the mean over ``runs`` training runs (default: as measured)."""
        n = runs or self.runs
        return math.sqrt(self.between / n + self.images)

    def df(self, runs: int | None = None) -> float:
        """Satterthwaite's degrees of freedom of that standard error."""
        n = runs or self.runs
        vs, vi = self.between / n, self.images
        denominator = vs**2 / max(1, n - 1) + vi**2 / max(1, self.n_images - 1)
        return (vs + vi) ** 2 / denominator if denominator > 0 else math.inf


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval (``level``: its coverage, e.g. 0.95; 1.0 for an exact count)."""

    estimate: float
    low: float
    high: float
    level: float = 0.95
    spread: Spread | None = None  # where the interval came from runs and images: what it rests on

    @staticmethod
    def exact(value: float) -> Interval:
        return Interval(value, value, value, 1.0)

    @property
    def missing(self) -> bool:
        return any(not isinstance(v, (int, float)) or math.isnan(v) for v in (self.estimate, self.low, self.high))

    def words(self, fmt: str = ".2f") -> str:
        if self.missing:
            return f"{self.estimate:{fmt}} (no interval)"
        if self.low == self.high == self.estimate:
            return f"{self.estimate:{fmt}}"
        return f"{self.estimate:{fmt}} ({self.low:{fmt}} to {self.high:{fmt}})"


@dataclass(frozen=True)
class Verdict:
    """One cell's outcome with its computed reason."""

    outcome: str
    why: str

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown verdict outcome {self.outcome!r}; valid: {', '.join(OUTCOMES)}")


def not_testable(why: str) -> Verdict:
    return Verdict(NOT_TESTABLE, why)


def _no_interval(x: Interval, noun: str) -> Verdict | None:
    if x.missing:
        return Verdict(INCONCLUSIVE, f"{noun} {x.words()}: too few runs for an interval")
    return None


def above(x: Interval, bound: float, noun: str = "estimate", fmt: str = ".2f", strict: bool = True) -> Verdict:
    """Claim: the quantity is above ``bound`` (at or above where ``strict`` is False).

    reproduced where the whole interval is above the bound, not reproduced where it is wholly at or below it
    (wholly below where not ``strict``), inconclusive otherwise."""
    if (v := _no_interval(x, noun)) is not None:
        return v
    inside = x.low > bound if strict else x.low >= bound
    outside = x.high <= bound if strict else x.high < bound
    if inside:
        return Verdict(REPRODUCED, f"{noun} {x.words(fmt)}: wholly above {bound:{fmt}}")
    if outside:
        return Verdict(NOT_REPRODUCED, f"{noun} {x.words(fmt)}: wholly {'at or ' if strict else ''}below "
                                       f"{bound:{fmt}}")
    return Verdict(INCONCLUSIVE, f"{noun} {x.words(fmt)}: the interval contains {bound:{fmt}}")


def below(x: Interval, bound: float, noun: str = "estimate", fmt: str = ".2f", strict: bool = True) -> Verdict:
    """Claim: the quantity is below ``bound``; the mirror of :func:`above`."""
    mirrored = above(Interval(-x.estimate, -x.high, -x.low, x.level), -bound, noun, fmt, strict)
    if mirrored.outcome in (REPRODUCED, NOT_REPRODUCED):
        why = (f"{noun} {x.words(fmt)}: wholly below {bound:{fmt}}" if mirrored.outcome == REPRODUCED else
               f"{noun} {x.words(fmt)}: wholly {'at or ' if strict else ''}above {bound:{fmt}}")
        return Verdict(mirrored.outcome, why)
    return Verdict(mirrored.outcome, mirrored.why if x.missing else
                   f"{noun} {x.words(fmt)}: the interval contains {bound:{fmt}}")


def within(x: Interval, low: float, high: float, noun: str = "estimate", fmt: str = ".2f") -> Verdict:
    """Claim: the quantity lies in the band [low, high] (an equivalence region, a paper value's tolerance).

    reproduced where the whole interval is inside the band (two one-sided tests), not reproduced where it lies
    wholly outside (wholly below ``low`` or wholly above ``high``), inconclusive where it crosses an edge."""
    if (v := _no_interval(x, noun)) is not None:
        return v
    band = f"[{low:{fmt}}, {high:{fmt}}]"
    if low <= x.low and x.high <= high:
        return Verdict(REPRODUCED, f"{noun} {x.words(fmt)}: wholly inside {band}")
    if x.high < low or x.low > high:
        return Verdict(NOT_REPRODUCED, f"{noun} {x.words(fmt)}: wholly outside {band}")
    return Verdict(INCONCLUSIVE, f"{noun} {x.words(fmt)}: the interval crosses the edge of {band}")


def relative_band(value: float, tolerance: float) -> tuple[float, float]:
    """"Within ``tolerance`` of ``value``" as a band: [value (1 - tolerance), value (1 + tolerance)]."""
    return value * (1 - tolerance), value * (1 + tolerance)


def rounding_band(printed: float, decimals: int) -> tuple[float, float]:
    """The values that print as ``printed`` with ``decimals`` decimals: printed +- half a unit of the last digit."""
    half = 0.5 * 10 ** (-decimals)
    return printed - half, printed + half


def with_reason(verdict: Verdict, reason: str) -> Verdict:
    """An inconclusive verdict with its cause named (e.g. "too noisy", "disturbed run"); other outcomes as given."""
    if verdict.outcome != INCONCLUSIVE or not reason:
        return verdict
    return Verdict(INCONCLUSIVE, f"{verdict.why} ({reason})")


@dataclass(frozen=True)
class Tally:
    """A claim over several cells (see the module's aggregate rule)."""

    outcome: str
    why: str
    counts: dict[str, int]

    @property
    def testable(self) -> int:
        return sum(v for k, v in self.counts.items() if k != NOT_TESTABLE)


def normalise_outcome(outcome: str) -> str:
    """Older tables said "not testable": the same outcome as "not testable here"."""
    return NOT_TESTABLE if outcome == "not testable" else outcome


def tally(outcomes: Iterable[str], claim: str, cells: str = "cells",
          failures: Sequence[str] = ()) -> Tally:
    """The aggregate of per-cell outcomes; ``failures``: names of the not-reproduced cells, for the words."""
    outcomes = [normalise_outcome(o) for o in outcomes]
    unknown = sorted({o for o in outcomes if o not in OUTCOMES})
    if unknown:
        raise ValueError(f"unknown verdict outcome(s) {unknown}; valid: {', '.join(OUTCOMES)}")
    counts = {o: outcomes.count(o) for o in OUTCOMES}
    n = len(outcomes) - counts[NOT_TESTABLE]
    if n == 0:
        return Tally(NOT_TESTABLE, f"{claim}: no testable {cells} ({counts[NOT_TESTABLE]} not testable here)", counts)
    words = (f"{claim}: reproduced in {counts[REPRODUCED]} of {n} testable {cells}, {counts[INCONCLUSIVE]} "
             f"inconclusive, {counts[NOT_REPRODUCED]} not reproduced")
    if failures:
        words += f" ({', '.join(failures)})"
    if counts[NOT_TESTABLE]:
        words += f"; {counts[NOT_TESTABLE]} not testable here"
    if counts[NOT_REPRODUCED]:
        return Tally(NOT_REPRODUCED, words, counts)
    if counts[INCONCLUSIVE]:
        return Tally(INCONCLUSIVE, words, counts)
    return Tally(REPRODUCED, words, counts)


TALLY_RULE = ("over cells: reproduced where every testable cell is, not reproduced where one is not, inconclusive "
              "where none fails but some cannot be decided")


# --- timing: a disturbed run is not evidence ---------------------------------------------------------------------
SPIKE = 1.3
"""A timed pass slower than this many times its model's median in the same measurement is a spike: something else
took the cores during it (passes of one model on one input vary by a few percent when the machine is quiet)."""
MAX_SPIKED_SHARE = 1 / 3
MIN_CPU_SHARE = 0.8
MAX_STEAL_SHARE = 0.05
DISTURBANCE_RULE = (f"a paired timing is disturbed where over {MAX_SPIKED_SHARE:.0%} of its pairs hold a spike (a pass "
                    f"over {SPIKE}x its model's median), where its passes got under {MIN_CPU_SHARE:.0%} of their "
                    f"threads' CPU time (median), or where the hypervisor stole over {MAX_STEAL_SHARE:.0%} of the "
                    "machine's CPU time meanwhile; a disturbed timing is inconclusive whatever its interval says")


def spiked_pairs(base_ms: Sequence[float], other_ms: Sequence[float], spike: float = SPIKE) -> int:
    """How many pairs hold a pass over ``spike`` times its own model's median."""
    import statistics

    if not base_ms:
        return 0
    mb, mo = statistics.median(base_ms), statistics.median(other_ms)
    return sum(1 for a, b in zip(base_ms, other_ms, strict=True) if a > spike * mb or b > spike * mo)


def timing_disturbance(base_ms: Sequence[float], other_ms: Sequence[float], cpu_share: float = math.nan,
                       steal_share: float = math.nan) -> str:
    """Why a paired timing is disturbed (``DISTURBANCE_RULE``), or "" where it is not."""
    reasons = []
    n = len(base_ms)
    spiked = spiked_pairs(base_ms, other_ms)
    if n and spiked / n > MAX_SPIKED_SHARE:
        reasons.append(f"{spiked} of {n} pairs hold a pass over {SPIKE}x its model's median")
    if cpu_share == cpu_share and cpu_share < MIN_CPU_SHARE:
        reasons.append(f"passes got {cpu_share:.0%} of their threads' CPU time")
    if steal_share == steal_share and steal_share > MAX_STEAL_SHARE:
        reasons.append(f"{steal_share:.0%} of CPU time stolen by the hypervisor")
    return "; ".join(reasons)


def seed_interval(values: Sequence[float], level: float = 0.95,
                  bounds: tuple[float, float] | None = None) -> Interval:
    """The mean of per-training-run values (one per seed) and its t interval over the runs, the images taken as fixed
    (:func:`seeds_and_images` without image resamples). One run: no interval (NaN)."""
    return seeds_and_images(values, None, level, bounds)


def seeds_and_images(estimates, samples=None, level: float = 0.95, bounds: tuple[float, float] | None = None,
                     n_images: int | None = None) -> Interval:
    """The mean over training runs of a per-run estimate, and its t interval, where every run is scored on the same
    images: the unit of evidence for a claim about an architecture on a task.

    ``estimates``: (n_runs,) each run's estimate on the whole split. ``samples``: (n_runs, n_boot) each run's estimate
    on image resamples, the same resamples for every run (None: the images are taken as fixed). The variance of the
    mean adds the spread between the runs (s^2 / n, n - 1 degrees of freedom) and what the shared images add: the
    mean covariance of two runs' estimates over the common resamples (the runs' own spread cannot show it, since
    every run sees the same images); Satterthwaite's degrees of freedom (``n_images`` - 1 for the image term). One
    run: no interval (NaN), so every rule says "too few runs". Its coverage is tested by simulation
    (tests/test_interval_coverage.py) at 3 and 5 runs, under run- and image-dominated variance.

    ``bounds``: the range the quantity cannot leave (an mIoU: 0 to 100 points); the interval is cut to it."""
    import torch
    from scipy import stats

    values = torch.as_tensor(estimates, dtype=torch.float64).flatten()
    n = len(values)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, level)
    mean = float(values.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, level)
    between = float(values.var(unbiased=True))
    shared = 0.0
    if samples is not None:
        drawn = torch.as_tensor(samples, dtype=torch.float64)
        centred = drawn - drawn.mean(1, keepdim=True)
        cov = centred @ centred.T / max(1, drawn.shape[1] - 1)
        shared = max(0.0, float((cov.sum() - cov.diagonal().sum()) / (n * (n - 1))))
    spread = Spread(between, shared, n, n_images or 10**6)
    se = spread.standard_error()
    if se == 0:
        return Interval(mean, mean, mean, level, spread)
    half = float(stats.t.ppf(0.5 + level / 2, spread.df())) * se
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Interval(mean, low, high, level, spread)


def detectable_effect(spread: Spread, level: float = 0.95, power: float = 0.8, runs: int | None = None) -> float:
    """The smallest true effect (on the interval's scale) that a two-sided test at 1 - ``level`` detects with
    ``power``, for ``runs`` training runs (default: as many as measured), from the measured spread."""
    from scipy import stats

    df = spread.df(runs)
    return (float(stats.t.ppf(0.5 + level / 2, df)) + float(stats.t.ppf(power, df))) * spread.standard_error(runs)


def runs_needed(spread: Spread, bound: float, level: float = 0.95, power: float = 0.8, most: int = 100) -> int | None:
    """The fewest training runs whose detectable effect is within ``bound`` (the same spread per run and the same
    images); None where even ``most`` runs are not enough (the shared images alone are too few)."""
    for runs in range(2, most + 1):
        if detectable_effect(spread, level, power, runs) <= bound:
            return runs
    return None
