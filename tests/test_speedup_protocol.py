"""The speed-up protocol, with fake models on a fake clock: the two models alternate A B, B A, ...; each time is
booked to the model that ran; the budget stops the loop where it says; a CUDA-graph capture that fails falls back
to eager timing of both models and says why. No wall-clock time is involved: the clock only moves when a fake
model runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bench.speedup as speedup
import bench.timing as timing
from bench.timing import TimingSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now


class Clocked(nn.Module):
    """A 'model' that takes exactly ``ms`` on the fake clock and logs its name."""

    def __init__(self, name: str, ms: float, clock: FakeClock) -> None:
        super().__init__()
        self.name, self.ms, self.clock = name, ms, clock
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        self.clock.calls.append(self.name)
        self.clock.now += self.ms / 1e3
        return x * self.scale


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(speedup.time, "perf_counter", fake)  # the module's clock (time is shared: restored after)
    return fake


def fns(clock: FakeClock, a_ms: float = 2.0, b_ms: float = 1.0):
    x = torch.zeros(1)
    return [lambda: Clocked("A", a_ms, clock)(x), lambda: Clocked("B", b_ms, clock)(x)]


def test_passes_alternate_a_b_then_b_a_and_times_go_to_the_model_that_ran(clock):
    s = TimingSettings(runs=4, min_runs=4, budget_s=0.0, warmup=1)
    ta, tb = speedup.interleaved_samples(fns(clock), s)
    assert clock.calls == ["A", "B"] + ["A", "B", "B", "A", "A", "B", "B", "A"]  # warm-up, then 4 pairs
    assert ta == pytest.approx([2.0] * 4) and tb == pytest.approx([1.0] * 4)  # A's 2 ms never booked to B


def test_the_cpu_budget_stops_after_min_runs_and_at_the_cap(clock):
    # 3 ms per pair against a 10 ms budget: pairs 1-3 spend 9 ms, the 4th reaches 12 ms and the loop stops
    ta, _ = speedup.interleaved_samples(fns(clock), TimingSettings(runs=10, min_runs=2, budget_s=0.010, warmup=0))
    assert len(ta) == 4
    ta, _ = speedup.interleaved_samples(fns(clock), TimingSettings(runs=10, min_runs=6, budget_s=0.0, warmup=0))
    assert len(ta) == 6  # budget spent at once: min_runs
    ta, _ = speedup.interleaved_samples(fns(clock), TimingSettings(runs=3, min_runs=1, budget_s=1e9, warmup=0))
    assert len(ta) == 3  # the cap


def test_paired_speedup_of_a_model_twice_as_slow_is_2x_with_an_exact_interval(clock, monkeypatch):
    times = {"rf_lw50": 2.0, "rf_lw_mbv2": 1.0}
    monkeypatch.setattr(speedup, "seeded_model", lambda name, seed=0: Clocked(name, times[name], clock))
    s = TimingSettings(height=32, width=32, runs=6, min_runs=6, budget_s=0.0, warmup=0)
    r = speedup.paired_speedup("rf_lw50", "rf_lw_mbv2", s)
    assert not r.error and r.pairs == 6 and r.mode == "eager" and not r.fallback
    assert (r.ratio, r.ci_low, r.ci_high) == pytest.approx((2.0, 2.0, 2.0))  # every pair: 2 ms / 1 ms
    assert r.base_median_ms == pytest.approx(2.0) and r.other_median_ms == pytest.approx(1.0)
    assert clock.calls[:4] == ["rf_lw50", "rf_lw_mbv2", "rf_lw_mbv2", "rf_lw50"]


def test_a_failed_capture_falls_back_to_eager_for_both_models_and_says_why(monkeypatch):
    captured = []

    def capture(runner, x, settings):
        captured.append(runner)
        if len(captured) == 2:  # the second model's capture fails (e.g. an op that syncs with the host)
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
        return lambda: "replay"

    monkeypatch.setattr(timing, "graph_pass", capture)
    models = [nn.Conv2d(3, 4, 1).eval(), nn.Conv2d(3, 2, 1).eval()]
    s = TimingSettings(height=32, width=32, cuda_graph=True)  # cuda_graph on a CPU: only the capture is faked
    timed, eager, mode, why = speedup._passes(models, s)
    assert mode == "eager" and timed is eager and len(captured) == 2
    assert why == "graph capture failed, eager timing: RuntimeError: CUDA error: operation not permitted when " \
                  "stream is capturing"
    x = timing.make_input(s)
    with torch.no_grad():
        for fn, model in zip(timed, models, strict=True):  # the eager passes of the two models, in order
            torch.testing.assert_close(fn(), model(x))


def test_a_successful_capture_times_the_replays(monkeypatch):
    monkeypatch.setattr(timing, "graph_pass", lambda runner, x, settings: (lambda: ("replay", runner)))
    models = [nn.Conv2d(3, 4, 1).eval(), nn.Conv2d(3, 2, 1).eval()]
    timed, eager, mode, why = speedup._passes(models, TimingSettings(height=32, width=32, cuda_graph=True))
    assert mode == "graph" and why == "" and [fn()[0] for fn in timed] == ["replay", "replay"]
    assert [fn()[1] for fn in timed] == models and len(eager) == 2


def test_graph_or_fallback_truncates_a_long_reason(monkeypatch):
    def capture(runner, x, settings):
        raise ValueError("x" * 1000)

    monkeypatch.setattr(timing, "graph_pass", capture)
    replay, why = timing.graph_or_fallback(nn.Identity(), torch.zeros(1), TimingSettings())
    assert replay is None and why.startswith("graph capture failed, eager timing: ValueError: xxx") and len(why) == 300
