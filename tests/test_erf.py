"""Receptive fields: known answers on toy networks, batching, occlusion against captum, zoo taps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from analysis.erf import (
    ERFOptions,
    gradient_erf,
    mass_radii,
    occlusion_maps,
    tap_features,
    theoretical_rf,
    top_activating,
    top_region,
)
from bench import create_model


def conv_stack(k: int, kernel: int = 3, pool: bool = False) -> nn.Sequential:
    torch.manual_seed(k)
    layers: list[nn.Module] = [nn.Conv2d(3 if i == 0 else 4, 4, kernel, padding=kernel // 2, bias=False)
                               for i in range(k)]
    if pool:
        layers.append(nn.MaxPool2d(5, 1, 2))
    return nn.Sequential(*layers).eval()


def support_side(m: torch.Tensor) -> tuple[int, int]:
    nz = torch.nonzero(m > 0)
    return int(nz[:, 0].max() - nz[:, 0].min() + 1), int(nz[:, 1].max() - nz[:, 1].min() + 1)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_stack_of_k_3x3_convs_has_support_2k_plus_1(k):
    images = torch.randn(4, 3, 21, 21)
    (erf,) = gradient_erf(conv_stack(k), images, "output").values()
    assert support_side(erf.map) == (2 * k + 1, 2 * k + 1)
    assert (erf.map > 0).sum() == (2 * k + 1) ** 2  # the whole square, not just its bounding box
    assert theoretical_rf(conv_stack(k), ["output"], (21, 21)) == {"output": (2 * k + 1, 2 * k + 1)}


def test_1x1_network_has_a_single_pixel_erf():
    (erf,) = gradient_erf(conv_stack(3, kernel=1), torch.randn(2, 3, 15, 15), "output").values()
    assert (erf.map > 0).sum() == 1 and erf.map[7, 7] > 0
    assert erf.radius == {0.2: 0, 0.5: 0, 0.9: 0, 0.99: 0}
    assert theoretical_rf(conv_stack(3, kernel=1), ["output"], (15, 15)) == {"output": (1, 1)}


@pytest.mark.parametrize("k", [0, 2])
def test_5x5_max_pool_widens_the_receptive_field_by_4(k):
    net = conv_stack(k, pool=True) if k else nn.Sequential(nn.MaxPool2d(5, 1, 2)).eval()
    assert theoretical_rf(net, ["output"], (21, 21)) == {"output": (2 * k + 1 + 4, 2 * k + 1 + 4)}
    # the gradient of one max goes to one pixel per window: over many images the union fills it
    (erf,) = gradient_erf(net, torch.randn(64, 3, 21, 21), "output").values()
    assert support_side(erf.map)[0] <= 2 * k + 1 + 4


def test_mass_radii_on_known_maps():
    delta = torch.zeros(11, 11)
    delta[5, 5] = 1
    assert mass_radii(delta, (5, 5)) == {0.2: 0, 0.5: 0, 0.9: 0, 0.99: 0}
    square = torch.zeros(11, 11)
    square[3:8, 3:8] = 1  # 5x5 uniform: 9/25 inside r=1
    assert mass_radii(square, (5, 5), (0.3, 0.5, 0.99)) == {0.3: 1, 0.5: 2, 0.99: 2}


def test_one_batched_forward_for_all_images_and_equal_to_per_image():
    net = conv_stack(2)
    calls = []

    def features(x):
        calls.append(len(x))
        return {"output": net(x)}

    images = torch.randn(16, 3, 17, 17)
    batched = gradient_erf(features, images, "output", batch_size=16)["output"]
    assert calls == [16]  # one forward (and one backward) for 16 images
    single = gradient_erf(features, images, "output", batch_size=1)["output"]
    torch.testing.assert_close(batched.map, single.map)


def test_options_and_modes_are_checked():
    with pytest.raises(ValueError, match="unknown rectify 'square'; valid: abs, relu"):
        gradient_erf(conv_stack(1), torch.randn(1, 3, 9, 9), "output", options=ERFOptions(rectify="square"))
    with pytest.raises(ValueError, match="eval mode"):
        gradient_erf(conv_stack(1).train(), torch.randn(1, 3, 9, 9), "output")


def test_occlusion_matches_captum():
    from captum.attr import Occlusion

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1)).eval()
    image = torch.randn(3, 24, 24)
    unit = ("output", 1, (12, 12))
    ours = occlusion_maps(tap_features(net, ["output"]), image, [unit], window=6, stride=3, batch_size=7)
    occ = Occlusion(lambda x: net(x)[:, 1, 12, 12])
    theirs = occ.attribute(image.unsqueeze(0), sliding_window_shapes=(3, 6, 6), strides=(3, 3, 3), baselines=0.0,
                           perturbations_per_eval=7)
    torch.testing.assert_close(ours[("output", 1)], theirs[0].sum(0) / 3, rtol=1e-4, atol=1e-5)


def test_zoo_taps_crp_and_skip_sum_enlarge_the_theoretical_field():
    model = create_model("rf_lw50").eval()
    taps = ["level1.before_rcu", "level1.after_sum", "level4.after_sum", "level4.after_crp"]
    rf = theoretical_rf(model, taps, (128, 128))
    assert rf["level1.before_rcu"][0] < rf["level1.after_sum"][0]  # the summation brings the coarse context
    assert rf["level4.after_crp"] == (128, 128)
    erf = gradient_erf(model, torch.randn(2, 3, 128, 128), taps, theoretical=True)
    for tap in taps:
        assert erf[tap].theoretical == rf[tap]
        r = erf[tap].radius
        assert r[0.2] <= r[0.5] <= r[0.9] <= r[0.99] <= 128 and erf[tap].map.shape == (128, 128)
        nz = torch.nonzero(erf[tap].map > 0)
        assert nz[:, 0].max() - nz[:, 0].min() + 1 <= rf[tap][0]  # gradient support inside the theoretical field


def test_top_activating_and_regions():
    net = conv_stack(1)
    images = torch.randn(5, 3, 16, 16)
    images[3] *= 10  # the strongest image for any channel with large weights
    (top,) = top_activating(tap_features(net, ["output"]), images, [("output", 0)], k=3)
    assert len(top.indices) == 3 and top.activations == sorted(top.activations, reverse=True)
    d = torch.zeros(8, 8)
    d[2:4, 2:4] = 1.0
    d[6, 6] = 0.3
    assert top_region(d, 0.5).sum() == 4
