"""Tests that fail on the one-line mutants the rest of the suite let pass (issue 31), each named by the
behaviour it pins: the Shapley weight beyond pairwise interactions, the manifest lock actually excluding a second
run, the CPU timer's warm-up passes, and the probes' majority baseline fit on the training labels."""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import random
import time
from pathlib import Path

import pytest
import torch

# --- Shapley weights: games with three-way interactions -------------------------------------------------------


def _shapley_by_orderings(n: int, value) -> list[float]:
    """The definition: each player's marginal contribution averaged over all n! orders of joining."""
    totals = [0.0] * n
    orders = list(itertools.permutations(range(n)))
    for order in orders:
        joined: frozenset[int] = frozenset()
        for player in order:
            totals[player] += value(joined | {player}) - value(joined)
            joined = joined | {player}
    return [t / len(orders) for t in totals]


def test_shapley_of_a_three_player_unanimity_game_is_a_third_each():
    from bench.ablations.attribution import shapley_values

    # v(S) = 1 only when all three are in: no pairwise term, so a weight that is right for pairs only fails here
    def unanimity(s):
        return 1.0 if s == frozenset({0, 1, 2}) else 0.0

    assert shapley_values(3, unanimity) == pytest.approx([1 / 3] * 3)
    assert _shapley_by_orderings(3, unanimity) == pytest.approx([1 / 3] * 3)


def test_shapley_of_a_random_four_player_game_is_the_average_over_all_orderings():
    from bench.ablations.attribution import all_subsets, shapley_values

    rng = random.Random(31)
    table = {s: rng.uniform(-10, 10) for s in all_subsets(4)}  # every interaction order present
    phi = shapley_values(4, table)
    assert phi == pytest.approx(_shapley_by_orderings(4, table.__getitem__), abs=1e-12)
    assert sum(phi) == pytest.approx(table[frozenset(range(4))] - table[frozenset()])


# --- the manifest lock: a second run waits while it is held ----------------------------------------------------


def _report_run(out: str, started: str) -> None:
    import analysis.report as report
    from analysis.report.files import Section

    def fake(out_dir):
        Path(started).write_text("section done")  # the section is measured; only the manifest write is left
        return Section("fake complexity", text="from the child")

    report.SECTIONS["complexity"] = fake
    report.run(["complexity"], out=Path(out), device="cpu")


def test_a_held_manifest_lock_makes_a_child_report_run_wait(tmp_path):
    from analysis.report import manifest_lock

    started = tmp_path / "started"
    child = mp.get_context("fork").Process(target=_report_run, args=(str(tmp_path), str(started)))
    with manifest_lock(tmp_path):
        child.start()
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the child never ran its section"
        time.sleep(1.0)  # ample for an unlocked write (milliseconds)
        assert child.is_alive() and not (tmp_path / "manifest.json").exists()  # it waits for the lock
    child.join(60)
    assert child.exitcode == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["complexity"]["text"] == "from the child"  # and writes once the lock is released


# --- time_cpu: warm-up passes happen, outside the timed ones --------------------------------------------------


@pytest.mark.parametrize("warmup, expected_warmup", [(None, 1), (0, 0), (3, 3)])
def test_time_cpu_runs_the_warmup_passes_before_the_timed_ones(warmup, expected_warmup):
    from bench.timing import TimingSettings, time_cpu

    calls = []

    def fn():
        calls.append(1)

    settings = TimingSettings(device="cpu", runs=4, min_runs=4, budget_s=0.0, warmup=warmup)
    assert settings.warmup_passes == expected_warmup
    samples = time_cpu(fn, settings)
    assert len(samples) == 4  # the timed passes: exactly min_runs with no budget
    assert len(calls) == 4 + expected_warmup  # every warm-up pass was a real call


# --- the probes' majority baseline comes from the training labels ----------------------------------------------


def test_majority_baseline_is_fit_on_train_not_val():
    from analysis.probes.run import trivial_baselines

    # train: class 1 on 3/4 of the pixels; val: class 2 on 3/4, class 1 on the rest; K = 3, no class 0 anywhere
    train = torch.ones(2, 8, 8, dtype=torch.long)
    train[:, :2] = 2
    val = torch.full((2, 8, 8), 2, dtype=torch.long)
    val[:, :2] = 1
    base = trivial_baselines(val, 3, train_masks=train)
    assert base["majority_class"] == 1.0  # train's majority, not val's (2)
    # predicting 1 everywhere on val: IoU(1) = 1/4 (its pixels over all), IoU(2) = 0, class 0 absent from both
    assert base["miou"] == pytest.approx((0.25 + 0.0) / 2)
    own = trivial_baselines(val, 3)  # without training labels: val's own majority, as documented
    assert own["majority_class"] == 2.0 and own["miou"] == pytest.approx((0.0 + 0.75) / 2)
