"""On a CUDA device: graph replay gives the eager output, replays remove the host's launch overhead, CUDA events
time a kernel of known length and a matmul of known size, and a failed capture falls back to eager with its reason.

Run with ``pytest -m gpu tests/test_gpu.py`` on a machine with a GPU; without one every test is skipped with its
reason. The tests that assert on measured times are also marked ``slow`` (no wall-clock assertions in the plain
suite); they compare a device's times with each other or with the host clock, never with a fixed number of ms.
"""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

import bench.timing as timing
from bench.timing import TimingSettings, eager_pass, graph_pass, make_input, prepare, time_cuda, time_model

NO_CUDA = "needs a CUDA device: torch.cuda.is_available() is False"
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)]


def launch_bound_chain(n: int = 100) -> nn.Module:
    """Many tiny kernels: an eager pass is mostly host work (Python, dispatcher, launches)."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 1)] + [m for _ in range(n) for m in (nn.Conv2d(8, 8, 1), nn.ReLU())]
    return nn.Sequential(*layers).eval()


def test_graph_replay_gives_the_eager_output():
    settings = TimingSettings(device="cuda", height=32, width=32, warmup=3, cuda_graph=True)
    runner = prepare(launch_bound_chain(), settings)
    x = make_input(settings)
    replay = graph_pass(runner, x, settings)
    with torch.no_grad():
        expected = eager_pass(runner, x, settings)().clone()
    torch.testing.assert_close(replay(), expected)
    torch.testing.assert_close(replay(), expected)  # the graph's output buffer is rewritten identically


def test_a_failed_capture_on_the_device_falls_back_to_eager_with_its_reason(monkeypatch):
    def capture(runner, x, settings):
        raise RuntimeError("operation not permitted when stream is capturing (injected)")

    monkeypatch.setattr(timing, "graph_pass", capture)
    settings = TimingSettings(device="cuda", height=32, width=32, runs=5, warmup=1, cuda_graph=True)
    r = time_model(launch_bound_chain(10), settings, "chain")
    assert not r.error and r.mode == "eager" and r.runs == 5
    assert r.fallback == ("graph capture failed, eager timing: RuntimeError: operation not permitted when stream is "
                          "capturing (injected)")
    assert math.isnan(r.launch_overhead)  # no replay to compare with


@pytest.mark.slow
def test_replay_removes_the_launch_overhead_of_a_launch_bound_network():
    settings = TimingSettings(device="cuda", height=32, width=32, runs=50, warmup=5, cuda_graph=True)
    r = time_model(launch_bound_chain(), settings, "chain")
    assert not r.error and r.mode == "graph" and not r.fallback
    # 201 kernels of a few microseconds: the host's launches dominate an eager pass, not a replay
    assert r.eager_median_ms >= r.median_ms
    assert r.launch_overhead == pytest.approx(1 - r.median_ms / r.eager_median_ms) and r.launch_overhead > 0.2


def _event_ms(fn) -> tuple[float, float]:
    """(CUDA-event time, host time around it with synchronisation), ms."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    start.record()
    fn()
    end.record()
    end.synchronize()
    host = (time.perf_counter() - t0) * 1e3
    return start.elapsed_time(end), host


@pytest.mark.slow
def test_cuda_events_time_a_sleep_kernel_as_the_host_clock_does():
    torch.cuda._sleep(1_000_000)  # warm-up
    per_million, _ = _event_ms(lambda: torch.cuda._sleep(1_000_000))
    cycles = int(1_000_000 * 50 / max(per_million, 1e-3))  # about 50 ms of spinning on the device
    events, host = _event_ms(lambda: torch.cuda._sleep(cycles))
    assert 40 <= events <= host  # the events bracket the kernel; the host also waits for launch and sync
    assert host - events < 5  # ... and little else
    double, _ = _event_ms(lambda: torch.cuda._sleep(2 * cycles))
    assert double / events == pytest.approx(2, rel=0.15)  # twice the cycles, twice the time


@pytest.mark.slow
def test_time_cuda_of_a_known_size_matmul_is_below_any_gpus_peak():
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.float16)
    b = torch.randn(n, n, device="cuda", dtype=torch.float16)
    samples = time_cuda(lambda: a @ b, runs=10, warmup=3)
    tflops = 2 * n**3 / (min(samples) / 1e3) / 1e12
    # an event pair that timed only the launch would give ~100,000 TFLOP/s; no GPU reaches 5,000 dense fp16
    assert 1 < tflops < 5000, tflops
    events, host = _event_ms(lambda: a @ b)
    assert events <= host
