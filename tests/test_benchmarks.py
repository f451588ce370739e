"""pytest-benchmark suite: run with ``pytest --benchmark-only`` (skipped by the plain test run).

Timings are never asserted on in absolute seconds; see bench.timing for the timing API.
"""

from __future__ import annotations

import pytest
import torch

from bench import create_model, list_models
from bench.complexity import complexity
from bench.timing import TimingSettings, make_input, prepare

PAPER_VARIANTS = list_models(include_backbones=False)


@pytest.mark.benchmark(group="complexity")
def test_complexity_table_all_paper_variants(benchmark):
    """The whole complexity table: 11 paper variants at 512x512 and 468x625 (target: < 10 s)."""
    records = benchmark.pedantic(
        complexity, args=(PAPER_VARIANTS, [(512, 512), (468, 625)]), rounds=3, iterations=1
    )
    assert len(records) == 2 * len(PAPER_VARIANTS)
    benchmark.extra_info["variants"] = len(PAPER_VARIANTS)


# --- forward passes ----------------------------------------------------------------------------


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SIZE = (512, 512) if DEVICE == "cuda" else (256, 256)  # CPU-friendly on a laptop
REPRESENTATIVE = ["rf50", "rf_lw_rcu50", "rf_lw50", "rf_lw_mbv2", "rf_lw_nasnet"]


def _forward_benchmark(benchmark, name: str, settings: TimingSettings, rounds: int) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    runner = prepare(model, settings)
    x = make_input(settings)
    sync = torch.cuda.synchronize if settings.device.startswith("cuda") else (lambda: None)

    def forward():
        with torch.inference_mode():
            runner(x)
        sync()  # the pass is over when the device is done, not when the launch returns

    forward()  # warm-up (cuDNN autotuning, allocator)
    (record,) = complexity([name], [(settings.height, settings.width)], batch=settings.batch)
    benchmark.extra_info.update(
        variant=name, params=record.params, macs=record.macs, height=settings.height, width=settings.width,
        batch=settings.batch, device=settings.device, dtype=settings.dtype, fold_bn=settings.fold_bn,
        channels_last=settings.channels_last, threads=torch.get_num_threads(), torch=torch.__version__,
    )
    benchmark.pedantic(forward, rounds=rounds, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_forward(benchmark, name):
    """Default eval forward, fp32, batch 1, random init and input."""
    benchmark.group = f"forward {name} {SIZE[0]}x{SIZE[1]} {DEVICE}"
    settings = TimingSettings(device=DEVICE, height=SIZE[0], width=SIZE[1])
    _forward_benchmark(benchmark, name, settings, rounds=20 if DEVICE == "cuda" else 5)


@pytest.mark.parametrize("name", ["rf_lw50", "rf50"])
def test_forward_inference_mode(benchmark, name):
    """BatchNorm folded + channels_last: compare with test_forward in the same group."""
    benchmark.group = f"forward {name} {SIZE[0]}x{SIZE[1]} {DEVICE}"
    settings = TimingSettings(device=DEVICE, height=SIZE[0], width=SIZE[1], fold_bn=True, channels_last=True)
    _forward_benchmark(benchmark, name, settings, rounds=20 if DEVICE == "cuda" else 5)
