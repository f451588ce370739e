"""The gradient ERF against an independent computation: central finite differences on a tiny float64 network
(no autograd), image by image, and the mass radii counted square by square with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from analysis.erf.gradient import erf_pairs, gradient_erf


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1),
                        nn.ReLU(), nn.Conv2d(2, 3, 3, padding=1))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 1.5)
    return net.double().eval()


def finite_difference_map(fn, x: torch.Tensor, eps: float = 1e-6) -> np.ndarray:
    """|d scalar / d x| summed over channels for one image (1, C, H, W), by central differences; the scalar is the
    sum over channels of the output's centre unit. Every perturbed copy goes through ``fn`` in one batch (eval
    mode: the copies do not interact)."""
    n = x[0].numel()
    steps = eps * torch.eye(n, dtype=x.dtype).reshape(n, *x.shape[1:])
    with torch.no_grad():
        up, down = fn(x + steps), fn(x - steps)
    h, w = up.shape[-2:]
    grad = (up[:, :, h // 2, w // 2].sum(1) - down[:, :, h // 2, w // 2].sum(1)) / (2 * eps)
    return grad.reshape(x.shape[1:]).abs().sum(0).numpy()


def square_radius(m: np.ndarray, centre: tuple[int, int], fraction: float) -> int:
    """Smallest r whose (2r+1)-square around ``centre`` holds ``fraction`` of the mass, counted directly."""
    cy, cx = centre
    for r in range(max(m.shape)):
        if m[max(0, cy - r): cy + r + 1, max(0, cx - r): cx + r + 1].sum() >= fraction * m.sum() * (1 - 1e-12):
            return r
    return max(m.shape)


def test_image_space_erf_equals_finite_differences_image_by_image():
    net = tiny_net()
    images = torch.randn(3, 3, 9, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    erf = gradient_erf(net, images, "output", batch_size=2)["output"]  # batches of 2: one backward per batch
    expected = [finite_difference_map(net, images[k : k + 1]) for k in range(3)]
    np.testing.assert_allclose(erf.per_image.numpy(), np.stack(expected), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(erf.map.numpy(), np.mean(expected, 0), rtol=1e-4, atol=1e-7)
    assert erf.centre == (4, 5)
    mean = np.mean(expected, 0)
    assert erf.radius == {f: square_radius(mean, (4, 5), f) for f in (0.2, 0.5, 0.9, 0.99)}
    # three 3x3 convs: the gradient is zero outside the 7x7 square around the centre
    outside = np.ones_like(mean, dtype=bool)
    outside[1:8, 2:9] = False
    assert mean[outside].max() == 0 and mean[1:8, 2:9].min() >= 0 and erf.radius[0.99] <= 3


def test_decoder_grid_erf_is_the_gradient_with_respect_to_an_earlier_tap():
    net = tiny_net()
    head = net[:2]  # tap "a": conv + BN; tap "b": the rest of the network applied to "a"
    rest = net[2:]

    def features(x):
        a = head(x)
        return {"a": a, "b": rest(a)}

    images = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    erf = erf_pairs(features, images, [("b", "a")])[("b", "a")]
    with torch.no_grad():
        expected = np.mean([finite_difference_map(rest, head(images[k : k + 1])) for k in range(2)], 0)
    np.testing.assert_allclose(erf.map.numpy(), expected, rtol=1e-4, atol=1e-7)
    assert erf.input_size == (8, 8) and erf.wrt == "a"


def test_a_training_mode_model_is_refused():
    with pytest.raises(ValueError, match="eval mode"):
        gradient_erf(tiny_net().train(), torch.zeros(1, 3, 8, 8, dtype=torch.float64), "output")
