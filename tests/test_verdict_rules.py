"""The verdict rules at both edges of every region, and as properties over many intervals (hypothesis): an interval
wholly inside a claim's region reproduces it, one wholly outside refutes it, and one that touches or crosses an edge
from outside is inconclusive, never a failure."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analysis.networks.claims import decide
from analysis.verdicts import INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, Interval, above, below, within

finite = st.floats(min_value=-50, max_value=50, allow_nan=False, allow_infinity=False)


def _interval(a: float, b: float) -> Interval:
    low, high = min(a, b), max(a, b)
    return Interval((low + high) / 2, low, high)


# --- within: the band's edges belong to it ------------------------------------------------------------------------
@pytest.mark.parametrize(("low", "high", "outcome"), [
    (-2.0, 2.0, REPRODUCED),           # exactly the band
    (-2.0, 0.0, REPRODUCED),           # touching the lower edge from inside
    (-3.0, -2.0, INCONCLUSIVE),        # touching the lower edge from outside: not wholly outside
    (-3.0, -2.0001, NOT_REPRODUCED),   # wholly below
    (2.0, 3.0, INCONCLUSIVE),          # touching the upper edge from outside
    (2.0001, 3.0, NOT_REPRODUCED),
    (-3.0, 3.0, INCONCLUSIVE),         # containing the band and its complement
])
def test_within_at_the_edges_of_its_band(low, high, outcome):
    assert within(Interval((low + high) / 2, low, high), -2.0, 2.0).outcome == outcome


@given(finite, finite, finite, finite)
def test_within_is_set_inclusion(a, b, c, d):
    x, (lo, hi) = _interval(a, b), sorted((c, d))
    outcome = within(x, lo, hi).outcome
    assert (outcome == REPRODUCED) == (lo <= x.low and x.high <= hi)
    assert (outcome == NOT_REPRODUCED) == (x.high < lo or x.low > hi)


@given(finite, finite, finite, st.booleans())
def test_above_and_below_are_set_inclusion(a, b, bound, strict):
    x = _interval(a, b)
    up = above(x, bound, strict=strict).outcome
    assert (up == REPRODUCED) == (x.low > bound if strict else x.low >= bound)
    assert (up == NOT_REPRODUCED) == (x.high <= bound if strict else x.high < bound)
    down = below(x, bound, strict=strict).outcome
    assert (down == REPRODUCED) == (x.high < bound if strict else x.high <= bound)
    assert (down == NOT_REPRODUCED) == (x.low >= bound if strict else x.low > bound)


def test_above_at_its_bound():
    assert above(Interval(2.5, 2.0, 3.0), 2.0).outcome == INCONCLUSIVE  # strict: the bound itself is not above
    assert above(Interval(2.5, 2.0, 3.0), 2.0, strict=False).outcome == REPRODUCED
    assert above(Interval(1.5, 1.0, 2.0), 2.0).outcome == NOT_REPRODUCED
    assert above(Interval(1.5, 1.0, 2.0), 2.0, strict=False).outcome == INCONCLUSIVE


# --- the protocol's rules on error ratios (log scale) ----------------------------------------------------------
BOUND = 1.2
EDGE = math.log(BOUND)


def _log(low: float, high: float) -> Interval:
    return Interval((low + high) / 2, low, high)


@pytest.mark.parametrize(("rule", "low", "high", "outcome"), [
    ("non-inferiority", -0.1, EDGE, REPRODUCED),       # the upper end at the margin: at or below it
    ("non-inferiority", EDGE, EDGE + 0.1, INCONCLUSIVE),  # the lower end at the margin: not wholly above
    ("non-inferiority", EDGE + 1e-6, 1.0, NOT_REPRODUCED),
    ("above", EDGE, 1.0, INCONCLUSIVE),                # the lower end at the bound: not wholly above
    ("above", EDGE + 1e-6, 1.0, REPRODUCED),
    ("above", -1.0, EDGE, NOT_REPRODUCED),             # wholly at or below
    ("equivalence", -EDGE, EDGE, REPRODUCED),          # both ends on the band's edges
    ("equivalence", EDGE, 1.0, INCONCLUSIVE),          # touching the band from outside
    ("equivalence", EDGE + 1e-6, 1.0, NOT_REPRODUCED),
    ("equivalence", -1.0, -EDGE - 1e-6, NOT_REPRODUCED),
    ("not equivalent", EDGE + 1e-6, 1.0, REPRODUCED),  # a harm seen beyond the margin
    ("not equivalent", -EDGE, EDGE, NOT_REPRODUCED),   # a harm that looks harmless
    ("not equivalent", 0.0, EDGE, NOT_REPRODUCED),
    ("not equivalent", EDGE, 1.0, INCONCLUSIVE),
])
def test_protocol_rules_at_both_edges(rule, low, high, outcome):
    assert decide(_log(low, high), rule, BOUND, "effect").outcome == outcome


@given(finite.map(lambda v: v / 10), finite.map(lambda v: v / 10),
       st.sampled_from(["non-inferiority", "above", "equivalence", "not equivalent"]))
def test_protocol_rules_are_set_relations(a, b, rule):
    lo, hi = sorted((a, b))
    outcome = decide(_log(lo, hi), rule, BOUND, "effect").outcome
    region = {"non-inferiority": (-math.inf, EDGE), "above": (EDGE, math.inf), "equivalence": (-EDGE, EDGE),
              "not equivalent": (EDGE, math.inf)}[rule]
    closed_low = rule != "above" and rule != "not equivalent"
    inside = (lo >= region[0] if closed_low else lo > region[0]) and hi <= region[1]
    assert (outcome == REPRODUCED) == inside
    if rule == "non-inferiority":
        assert (outcome == NOT_REPRODUCED) == (lo > EDGE)
    elif rule == "above":
        assert (outcome == NOT_REPRODUCED) == (hi <= EDGE)
    elif rule == "equivalence":
        assert (outcome == NOT_REPRODUCED) == (hi < -EDGE or lo > EDGE)
    else:
        assert (outcome == NOT_REPRODUCED) == (-EDGE <= lo and hi <= EDGE)
    assert outcome in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)  # no spread given: never 'not testable'


def test_an_undecided_claim_that_the_seeds_could_not_resolve_is_not_testable_and_says_how_many():
    import torch

    from analysis.verdicts import seeds_and_images

    noisy = seeds_and_images([0.0, 0.3, -0.25], torch.zeros(3, 10, dtype=torch.float64), n_images=100)
    v = decide(noisy, "non-inferiority", BOUND, "effect")
    assert v.outcome == NOT_TESTABLE and "needs" in v.why and "seeds" in v.why
    tight = seeds_and_images([0.13, 0.14, 0.18], torch.zeros(3, 10, dtype=torch.float64), n_images=100)
    assert decide(tight, "non-inferiority", BOUND, "effect").outcome == INCONCLUSIVE  # resolvable, undecided
