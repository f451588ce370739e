"""Ablations as data: the CRP pool axes, register_variant, the ablation spec, its runner and attribution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench import create_model
from bench.complexity import COLUMNS, complexity, count_ops
from bench.errors import UsageError, UsageTypeError
from bench.models import FAMILIES, decoder_spec, list_models, meta_model, register_variant, variant_info
from bench.models.blocks import crp_pool

# --- the CRP pool: kernel size and implementation ------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 7), (1, 16, 9, 4), (2, 8, 13, 13)])
def test_separable_pool_equals_the_square_max_pool_bit_for_bit(k, shape):
    torch.manual_seed(0)
    x = torch.randn(shape) - 1.0  # mostly negative: a zero padding instead of -inf would show at the borders
    square = F.max_pool2d(x, k, stride=1, padding=k // 2)  # the reference: one k x k window
    sep = crp_pool("separable", k)
    assert torch.equal(sep(x), square)
    assert torch.equal(crp_pool("max", k)(x), square)
    xl = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(sep(xl), square)


def test_separable_pool_model_gives_the_same_logits():
    torch.manual_seed(0)
    ref = create_model("rf_lw:resnet18", num_classes=3).eval()
    sep = create_model("rf_lw:resnet18", num_classes=3, decoder={"crp_pool": "separable"}).eval()
    sep.load_state_dict(ref.state_dict())  # the pool has no weights: same keys
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ref(x), sep(x))
        xl = x.contiguous(memory_format=torch.channels_last)
        assert torch.equal(ref.to(memory_format=torch.channels_last)(xl), sep.to(memory_format=torch.channels_last)(xl))


def test_pool_kernel_changes_the_pool_and_default_is_the_papers_5x5():
    lw = meta_model("rf_lw50")
    assert lw.decoder.level1.crp.pool.kernel_size == 5
    small = create_model("rf_lw:resnet18", decoder={"crp_pool_kernel": 3})
    assert small.decoder.level1.crp.pool.kernel_size == 3


def _crp_pool_outputs(h, w, stages=4):
    """Elements each CRP pool writes in rf_lw50 (512 channels at stride 32, 256 at 16, 8, 4)."""
    return stages * sum(c * (h // s) * (w // s) for c, s in ((512, 32), (256, 16), (256, 8), (256, 4)))


def test_pool_counts_per_window_element_separable_is_2k_not_k_squared():
    square = count_ops(meta_model("rf_lw50"), 64, 64).frame()[list(COLUMNS)].sum()
    sep_model = create_model("rf_lw50", decoder={"crp_pool": "separable"}).to("meta")
    sep = count_ops(sep_model, 64, 64).frame()[list(COLUMNS)].sum()
    n = _crp_pool_outputs(64, 64)
    assert square["macs"] == sep["macs"]
    assert square["paper_flops"] - sep["paper_flops"] == (25 - 10) * n  # 5x5 = 25, 5x1 + 1x5 = 10 per output
    k3 = count_ops(create_model("rf_lw50", decoder={"crp_pool_kernel": 3}).to("meta"), 64, 64).frame()
    assert square["paper_flops"] - k3["paper_flops"].sum() == (25 - 9) * n


def test_separable_pool_keeps_the_theoretical_receptive_field():
    from analysis.erf.theoretical import theoretical_rf

    # CRP's own field on its input grid: 4 stages of a k x k pool (+ 1x1 convs) reach 1 + 4 (k - 1) cells
    for k in (3, 5):
        for pool in ("max", "separable"):
            torch.manual_seed(0)
            model = create_model("rf_lw:resnet18", num_classes=2, decoder={"crp_pool": pool, "crp_pool_kernel": k})
            field = theoretical_rf(model, ["level1.after_crp"], (96, 96), wrt={"level1.after_crp": "level1.after_sum"})
            assert field["level1.after_crp"] == (1 + 4 * (k - 1),) * 2, (k, pool)


# --- register_variant ------------------------------------------------------------------------------


def test_registered_variant_works_like_a_built_in_one(capsys):
    from bench.cli import main

    info = register_variant("t_lw50_crp2", "rf_lw50", crp_stages=2, crp_pool="separable")
    assert info.base == "rf_lw50" and dict(info.changes) == {"crp_stages": 2, "crp_pool": "separable"}
    assert info.decoder_spec == FAMILIES["rf_lw"].with_changes(crp_stages=2, crp_pool="separable")
    assert info.backbone == "resnet50" and info.family == "rf_lw" and variant_info("t_lw50_crp2") is info
    assert "t_lw50_crp2" in list_models("t_lw50*", include_backbones=False)
    assert "t_lw50_crp2" in list_models(family="rf_lw", backbone="resnet50")
    assert len(create_model("t_lw50_crp2").decoder.level1.crp.convs) == 2
    # counted as the base with the same diff, built directly
    (rec,) = complexity(["t_lw50_crp2"], [(64, 64)])
    direct = count_ops(create_model("rf_lw50", decoder={"crp_stages": 2, "crp_pool": "separable"}).to("meta"), 64, 64)
    assert rec.paper_flops == direct.frame()["paper_flops"].sum()
    assert rec.params == sum(p.numel() for p in meta_model("t_lw50_crp2").parameters())
    assert main(["complexity", "t_lw50_crp2", "--size", "64x64"]) == 0
    assert "t_lw50_crp2" in capsys.readouterr().out
    # a variant of a variant is one level from the built-in base, its changes merged
    child = register_variant("t_lw50_crp2_k3", "t_lw50_crp2", crp_pool_kernel=3)
    assert child.base == "rf_lw50" and dict(child.changes) == {"crp_stages": 2, "crp_pool": "separable",
                                                                "crp_pool_kernel": 3}


def test_register_variant_refuses_duplicates_typos_and_bad_values():
    register_variant("t_dup", "rf_lw:resnet18", crp_stages=1)
    with pytest.raises(UsageError, match="'t_dup' is already registered"):
        register_variant("t_dup", "rf_lw:resnet18", crp_stages=1)
    assert register_variant("t_dup", "rf_lw:resnet18", exist_ok=True, crp_stages=1).name == "t_dup"
    with pytest.raises(UsageError, match="already registered"):
        register_variant("t_dup", "rf_lw:resnet18", exist_ok=True, crp_stages=2)
    with pytest.raises(UsageError, match="already registered"):
        register_variant("rf_lw50", "rf50")
    with pytest.raises(UsageError, match=r"unknown decoder field 'crp_stage' \(did you mean 'crp_stages'\?\)"):
        register_variant("t_typo", "rf_lw50", crp_stage=2)
    with pytest.raises(UsageError, match="crp_pool_kernel must be odd"):
        register_variant("t_even", "rf_lw50", crp_pool_kernel=4)
    with pytest.raises(UsageError, match=r"unknown decoder crp_pool 'seperable' \(did you mean 'separable'\?\)"):
        register_variant("t_pool", "rf_lw50", crp_pool="seperable")
    with pytest.raises(UsageTypeError, match="crp_stages must be an integer, got 2.0"):
        register_variant("t_float", "rf_lw50", crp_stages=2.0)
    with pytest.raises(UsageError, match=r"dropout must be a probability in \[0, 1\)"):
        register_variant("t_drop", "rf_lw50", dropout=1.5)
    with pytest.raises(UsageError, match="unknown model 'rf_lw5'"):
        register_variant("t_base", "rf_lw5")
    with pytest.raises(UsageError, match="variant name must be"):
        register_variant("a:b", "rf_lw50")
    for name in ("t_typo", "t_even", "t_pool", "t_float", "t_drop", "t_base"):
        assert name not in list_models(include_backbones=False)


def test_decoder_spec_of_built_ins_is_the_one_they_build():
    assert decoder_spec("rf50") == FAMILIES["rf"]
    mbv2 = decoder_spec("rf_lw_mbv2")
    assert (mbv2.top_channels, mbv2.lateral_fusion_conv, mbv2.activation) == (256, False, "relu6")
    assert variant_info("rf_lw:resnet18").decoder_spec == FAMILIES["rf_lw"]
