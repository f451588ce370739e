"""The roofline's roofs: the compute roof is the faster of the matmul and the 3x3 convolution (whichever wins),
measured in the model's math mode; the FLOPs each kernel is credited with are the closed forms."""

from __future__ import annotations

import pytest
import torch

import bench.roofline as roofline


@pytest.fixture
def fake_rates(monkeypatch):
    calls = []

    def rates(matmul: float, conv: float):
        def fake_matmul(n, dtype, device, seconds):
            calls.append(("matmul", dtype))
            return matmul

        def fake_conv(batch, dtype, device, seconds):
            calls.append(("conv", dtype))
            return conv

        monkeypatch.setattr(roofline, "_matmul_rate", fake_matmul)
        monkeypatch.setattr(roofline, "_conv_rate", fake_conv)
        monkeypatch.setattr(roofline, "_copy_rate", lambda megabytes, device, seconds: 20.0)
        return calls

    return rates


@pytest.mark.parametrize("matmul, conv", [(100.0, 250.0), (300.0, 120.0)])
def test_compute_roof_is_the_faster_kernel(fake_rates, matmul, conv):
    fake_rates(matmul, conv)
    roofs = roofline.measure_roofs("cpu", "fp32", n=64, copy_mb=1, seconds=0.0)
    assert roofs.compute_gflops == max(matmul, conv)
    assert (roofs.matmul_gflops, roofs.conv_gflops, roofs.memory_gbs) == (matmul, conv, 20.0)
    assert roofs.ridge == pytest.approx(max(matmul, conv) / 20.0)


@pytest.mark.parametrize("mode, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16),
                                         ("fp16", torch.float32)])  # no fast fp16 matmul on a CPU: fp32's roof
def test_roofs_are_measured_in_the_math_mode(fake_rates, mode, dtype):
    calls = fake_rates(1.0, 2.0)
    roofline.measure_roofs("cpu", mode, n=64, copy_mb=1, seconds=0.0)
    assert calls == [("matmul", dtype), ("conv", dtype)]


def test_kernels_are_credited_with_their_closed_form_flops(monkeypatch):
    def once(fn, work, device, seconds):  # one second per run: the rate is the work credited to one run
        fn()
        return work

    monkeypatch.setattr(roofline, "_rate", once)
    assert roofline._matmul_rate(32, torch.float32, "cpu", 0.0) == 2 * 32**3 / 1e9
    # a 3x3 conv, C -> C on S x S, batch B: 2 x B x S^2 x C^2 x 9 FLOPs
    assert roofline._conv_rate(2, torch.float32, "cpu", 0.0, channels=8, side=16) == 2 * 2 * 16**2 * 8**2 * 9 / 1e9
    assert roofline._copy_rate(1.0, "cpu", 0.0) == 2 * 2**20 / 1e9  # 1 MiB read + 1 MiB written
