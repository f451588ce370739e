"""Receptive fields: known answers on toy networks, batching, occlusion against captum, zoo taps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from analysis.erf import (
    ERFOptions,
    decoder_grid_erf,
    gradient_erf,
    level_theoretical,
    mass_radii,
    occlusion_maps,
    recalibrate_batchnorm,
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


def test_mass_side_interpolates_between_whole_squares():
    from analysis.erf.gradient import mass_side

    delta = torch.zeros(11, 11)
    delta[5, 5] = 1.0
    assert mass_side(delta, (5, 5), 0.9) == pytest.approx(0.9)  # the centre cell's mass spread over sides 0..1
    square = torch.zeros(11, 11)
    square[3:8, 3:8] = 1.0  # 25 cells: the 3x3 square holds 9, the 5x5 all 25
    assert mass_side(square, (5, 5), 9 / 25) == pytest.approx(3.0)  # exactly a whole square: 2r+1
    assert mass_side(square, (5, 5), 1.0) == pytest.approx(5.0)
    assert mass_side(square, (5, 5), 0.9) == pytest.approx(3 + 2 * (22.5 - 9) / 16)  # within the outer ring
    assert mass_side(torch.zeros(5, 5), (2, 2), 0.9) == 1.0  # no mass: radius 0, side 1
    sides = [mass_side(square, (5, 5), f) for f in (0.2, 0.5, 0.9, 0.99)]
    assert sides == sorted(sides)


def test_interpolated_side_gives_an_interval_where_whole_cell_radii_give_one_value():
    from analysis.erf.gradient import ERFOptions, GradientERF, resampled_summaries
    from bench.stats import resample_indices

    maps = torch.zeros(8, 9, 9)
    maps[:, 4, 4] = 1.0
    for i in range(8):  # each image puts a different share of its mass in the first ring, none beyond
        maps[i, 3:6, 3:6] += 0.1 * (i + 1) / 8
        maps[i, 4, 4] -= 0.1 * (i + 1) / 8
    erf = GradientERF("t", (4, 4), None, maps.mean(0), 8, (9, 9), (4, 4), ERFOptions(), per_image=maps)
    radii, sides = resampled_summaries(erf, resample_indices(8, 200, 0), (0.9,))
    assert radii[0.9].unique().numel() == 1  # r90 = 0 or 1 in every resample: one value, no interval
    assert sides.unique().numel() > 10 and 0.9 < float(sides.min()) < float(sides.max()) <= 3.0


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


# --- bad arguments ------------------------------------------------------------------------------


def test_out_of_range_channel_unit_or_tap_is_refused():
    model = create_model("rf_lw:resnet18", num_classes=40).eval()
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match=r"channel 40 is out of range for tap 'logits', which has 40 channels"):
        gradient_erf(model, x, "logits", channel=40)
    with pytest.raises(ValueError, match=r"unit \(-1, -1\) is outside tap 'logits'"):
        gradient_erf(model, x, "logits", unit=(-1, -1))
    with pytest.raises(ValueError, match="unknown tap.*'level9.after_crp'.*valid:"):
        gradient_erf(model, x, "level9.after_crp")
    with pytest.raises(ValueError, match="channel 99 is out of range"):
        occlusion_maps(tap_features(model, ["logits"]), x[0], [("logits", 99, (0, 0))], window=16, stride=16)


# --- decoder grid -------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_decoder_grid_theoretical_field_of_k_chained_max_pools_grows_by_4k(k):
    """CRP with 1x1 convs is k 5x5 stride-1 max-pools in a chain: each adds 4 cells to the field."""
    model = create_model("rf_lw:resnet18", decoder={"crp_stages": k}).eval()
    fields = level_theoretical(model, "level2", (41, 41), [("after_crp", "after_sum")])
    assert fields[("after_crp", "after_sum")] == (1 + 4 * k, 1 + 4 * k)


def test_1x1_decoder_without_crp_has_a_one_cell_decoder_erf():
    model = create_model("rf_lw:resnet18", decoder={"crp_stages": 0}).eval()
    grid = decoder_grid_erf(model, torch.randn(2, 3, 128, 128), levels=["level2", "level3"], n_boot=20)
    whole = grid.frame[grid.frame.block == "whole level"]
    assert (whole.theoretical_cells == 1).all() and (whole.r90_cells == 0).all()
    erf = grid.maps[("level2.after_out_rcu", "level2.before_rcu")]
    assert (erf.map > 0).sum() == 1 and erf.map.shape == (16, 16)  # one cell of level 2's 16x16 grid


def test_decoder_grid_of_the_three_families_matches_their_blocks():
    x = torch.randn(2, 3, 256, 256)
    rows = {}
    for name in ("rf50", "rf_lw50"):
        torch.manual_seed(0)
        grid = decoder_grid_erf(create_model(name).eval(), x, levels=["level1"], n_boot=20)
        rows[name] = grid.frame.set_index("block")
    rf, lw = rows["rf50"], rows["rf_lw50"]
    # theoretical fields from the architecture: 2 RCUs of two 3x3 convs = 9 cells, CRP 4 x (5x5 pool + 3x3 conv)
    assert rf.loc["RCU before CRP", "theoretical_cells"] == 9 and rf.loc["CRP", "theoretical_cells"] == 25
    assert lw.loc["RCU before CRP", "theoretical_cells"] == 1 and lw.loc["CRP", "theoretical_cells"] == 17
    assert (lw.loc["CRP", "r90_cells"] >= 1) and (lw.loc["fusion + sum", "r90_cells"] == 0)
    assert (rf["r50_cells_ci_low"] <= rf["r50_cells"]).all() and (rf["r50_cells"] <= rf["r50_cells_ci_high"]).all()


def test_batchnorm_re_estimation_keeps_weights_and_gives_unit_variance():
    torch.manual_seed(0)
    model = create_model("rf_lw:resnet18").eval()
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    images = torch.randn(6, 3, 64, 64) * 3 + 1
    recalibrate_batchnorm(model, images, batch_size=6)
    assert not model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    bn = model.backbone.body.get_submodule("layer2.0.bn1")
    seen = {}
    handle = bn.register_forward_hook(lambda m, i, o: seen.update(out=o.clone()))  # before the in-place ReLU
    with torch.no_grad():
        model(images)
    handle.remove()
    out = seen["out"]  # BN output with weight 1, bias 0 at init: normalised activations
    assert out.mean(dim=(0, 2, 3)).abs().max() < 5e-3  # float32 sums over 6 x 16 x 16 values
    assert out.var(dim=(0, 2, 3), unbiased=False).sub(1).abs().max() < 0.02


def test_batchnorm_re_estimation_on_the_backbone_alone_equals_the_whole_model():
    from analysis.erf.conditioning import batchnorm_scope

    images = torch.randn(4, 3, 64, 64)
    stats = {}
    for name, scoped in (("rf:resnet18", True), ("rf:resnet18", False)):
        torch.manual_seed(0)
        model = create_model(name).eval()
        assert batchnorm_scope(model) is model.backbone  # the RefineNet decoder has no BatchNorm
        if scoped:
            recalibrate_batchnorm(model, images, batch_size=4)
        else:  # by hand: every BatchNorm in train mode, the whole model's forward
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.reset_running_stats(), setattr(m, "momentum", None), m.train()
            with torch.no_grad():
                model(images)
        stats[scoped] = {k: v for k, v in model.state_dict().items() if "running" in k}
    assert stats[True].keys() == stats[False].keys() and len(stats[True]) > 10
    assert all(torch.equal(stats[True][k], stats[False][k]) for k in stats[True])
    # a model with a BatchNorm outside its backbone is re-estimated whole
    wrapped = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    wrapped.backbone = torch.nn.Sequential(torch.nn.BatchNorm2d(3))
    assert batchnorm_scope(wrapped) is wrapped


def test_claims_a_and_b_from_decoder_grids():
    from analysis.erf.claims import claim_a, claim_b

    x = torch.randn(2, 3, 128, 128)
    grids = {}
    for family in ("rf", "rf_lw"):
        torch.manual_seed(0)
        grids[family] = decoder_grid_erf(create_model(f"{family}:resnet18").eval(), x, levels=["level1"], n_boot=20)
    a, b = claim_a(grids), claim_b(grids)
    side = {f: g.frame.set_index("block").loc["whole level", "side90_cells"] for f, g in grids.items()}
    r90 = {f: g.frame.set_index("block").loc["whole level", "r90_cells"] for f, g in grids.items()}
    row = a.iloc[0]
    assert list(a.family) == ["rf_lw"] and row.side_ratio == pytest.approx(side["rf_lw"] / side["rf"])
    for f in grids:  # the interpolated side lies within the whole-cell square that holds 90%, above the one inside
        assert 2 * r90[f] - 1 < side[f] <= 2 * r90[f] + 1
    assert row.ci_low <= row.side_ratio <= row.ci_high
    assert set(b.family) == {"rf", "rf_lw"} and (b.status == "reproduced").all()  # CRP moves information
    nocrp = {f: decoder_grid_erf(create_model(f"{f}:resnet18", decoder={"crp_stages": 0}).eval(), x,
                                 levels=["level1"], n_boot=20) for f in ("rf_lw",)}
    assert (claim_b(nocrp).status == "not reproduced").all()  # no CRP: nothing spreads
    # a level dead in either network (its summation ReLU almost never positive) is not testable
    dead = {"rf": {"level1": 0.004}, "rf_lw": {"level1": 0.3}}
    (row,) = claim_a(grids, activity=dead).itertuples()
    assert row.status == "not testable here" and row.why.startswith("dead level (rf)")
    assert list(claim_b(grids, activity=dead).set_index("family").status) == ["not testable here", "reproduced"]
    assert claim_a(grids, activity={"rf": {"level1": 0.5}})["status"].tolist() == a["status"].tolist()


def test_level_activity_finds_a_dead_level():
    from analysis.erf.claims import level_activity

    torch.manual_seed(0)
    model = create_model("rf_lw:resnet18").eval()
    x = torch.randn(2, 3, 64, 64)
    alive = level_activity(model, x)
    assert set(alive) == {"level4", "level3", "level2", "level1"} and all(0 < v < 1 for v in alive.values())
    model.decoder.level2.act = lambda t: torch.relu(t - 1e4)  # the sum far below zero: the ReLU never fires
    assert level_activity(model, x)["level2"] == 0.0 and level_activity(model, x)["level1"] > 0
