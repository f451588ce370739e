"""pytest-benchmark suite: run with ``pytest --benchmark-only`` (skipped by the plain test run).

Timings are never asserted on in absolute seconds; see bench.timing for the timing API.
"""

from __future__ import annotations

import pytest

from bench import list_models
from bench.complexity import complexity

PAPER_VARIANTS = list_models(include_backbones=False)


@pytest.mark.benchmark(group="complexity")
def test_complexity_table_all_paper_variants(benchmark):
    """The whole complexity table: 11 paper variants at 512x512 and 468x625 (target: < 10 s)."""
    records = benchmark.pedantic(
        complexity, args=(PAPER_VARIANTS, [(512, 512), (468, 625)]), rounds=3, iterations=1
    )
    assert len(records) == 2 * len(PAPER_VARIANTS)
    benchmark.extra_info["variants"] = len(PAPER_VARIANTS)
