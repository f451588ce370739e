"""The model zoo: every registered variant builds, runs forward and backward, has the paper's size,
exposes its taps, and loads the public reference checkpoints with identical outputs."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from analysis.paper import paper_numbers, paper_values
from bench import create_model, list_models
from bench.models import CheckpointError, load_checkpoint
from bench.models.backbones import probe_stages, torchvision_backbone_names
from tests import reference_nets as ref

PAPER_VARIANTS = list_models(include_backbones=False)
# a sample of "family:backbone" names across torchvision families (the full list is probed below)
DYNAMIC_SAMPLE = [
    "rf:resnet18",
    "rf_lw_rcu:regnet_y_400mf",
    "rf_lw:convnext_tiny",
    "rf_lw:efficientnet_b0",
    "rf_lw:mobilenet_v3_small",
    "rf_lw_rcu:resnext50_32x4d",
]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def lw50() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("rf_lw50").eval()


# --- registry ----------------------------------------------------------------------------------


def test_registry_lists_paper_variants_and_backbone_names():
    names = list_models()
    for expected in ("rf50", "rf101", "rf152", "rf_lw_rcu101", "rf_lw50", "rf_lw_mbv2", "rf_lw_nasnet"):
        assert expected in names
    assert "rf_lw:convnext_tiny" in names and "rf:resnet18" in names
    assert list_models("rf_lw_rcu1*") == ["rf_lw_rcu101", "rf_lw_rcu152"]


def test_variant_facts_live_in_the_registry():
    from bench.models import find_variant, variant_info, variants_by_paper_name

    info = variant_info("rf_lw101")
    assert (info.family, info.backbone, info.depth, info.checkpoint_layout) == ("rf_lw", "resnet101", 101, "lw_resnet")
    assert info.paper_names == ("RefineNet-LW-101", "RefineNet-101-LW") and info.paper_name == "RefineNet-LW-101"
    dynamic = variant_info("rf_lw_rcu:resnet34")
    assert (dynamic.family, dynamic.backbone, dynamic.depth, dynamic.registered) == ("rf_lw_rcu", "resnet34", 34, False)
    assert variant_info("rf_lw_mbv2").depth is None and variant_info("rf_lw_mbv2").family == "rf_lw"
    assert list_models(family="rf", include_backbones=False) == ["rf50", "rf101", "rf152"]
    assert list_models(backbone="resnet101", include_backbones=False) == ["rf101", "rf_lw_rcu101", "rf_lw101"]
    on_101 = list_models(backbone="resnet101")
    assert "rf:resnet101" in on_101 and "rf:resnet50" not in on_101
    assert find_variant("rf_lw", "resnet101") == "rf_lw101" and find_variant("rf", "resnet18") == "rf:resnet18"
    assert find_variant("rf_lw", "mobilenet_v2_lwrf") == "rf_lw_mbv2"
    # every model named by the paper's published numbers is a registered variant (Table 4 names probe points)
    names = variants_by_paper_name()
    assert {n.model for n in paper_numbers() if n.source != "Table 4"} <= set(names)


def test_every_listed_name_builds_on_meta_with_its_parameter_count():
    """`python -m bench models --all` lists every name of list_models() with its parameters (meta device)."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "bench", "models", "--all", "--json"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["variant"] for r in rows] == list_models(include_backbones=True)
    assert all(float(r["params_m"]) > 0 for r in rows)
    by_name = {r["variant"]: float(r["params_m"]) for r in rows}
    assert by_name["rf101"] == pytest.approx(118.05, abs=0.01)
    assert by_name["rf:regnet_y_400mf"] > by_name["rf_lw:regnet_y_400mf"]  # RegNet reads tensors while building


def test_decoder_changes_make_an_ablation_of_a_family():
    narrow = create_model("rf:resnet18", decoder={"channels": 64, "top_channels": 128})
    assert narrow.decoder.level3.crp.convs[0].in_channels == 64
    assert narrow.decoder.level4.crp.convs[0].in_channels == 128
    assert narrow.spec.family == "rf" and narrow.spec.rcu == "standard"
    assert len(create_model("rf_lw:resnet18", decoder={"crp_stages": 2}).decoder.level1.crp.convs) == 2


@pytest.mark.parametrize("bad", ["rf_lw202", "rf_lw:vit_b_16", "lw:resnet18", ""])
def test_unknown_name_error_lists_valid_names(bad):
    with pytest.raises(ValueError) as err:
        create_model(bad)
    msg = str(err.value)
    assert repr(bad) in msg and "rf_lw101" in msg and "resnet18" in msg


@pytest.mark.parametrize("bad, words", [
    ("rf_lw", "'rf_lw' is a decoder family, not a model: give it a backbone, e.g. 'rf_lw:mobilenet_v2'"),
    ("rf_lww:mobilenet_v2", "unknown family 'rf_lww' (did you mean 'rf_lw'?)"),
    ("rf_lw:resnet181", "unknown backbone 'resnet181' (did you mean 'resnet18'?)"),
    ("rf_lw5", "did you mean 'rf_lw50'?"),
])
def test_an_unknown_name_says_which_part_is_wrong_and_the_nearest_valid_one(bad, words):
    with pytest.raises(ValueError) as err:
        create_model(bad)
    assert str(err.value).startswith(f"unknown model {bad!r}; {words}") and "rf_lw101" in str(err.value)


@pytest.mark.parametrize("name", torchvision_backbone_names())
def test_every_listed_torchvision_backbone_has_four_stages(name):
    builder = torchvision.models.get_model_builder(name)
    info = probe_stages(builder)  # meta device: shapes only
    assert [f.reduction for f in info] == [4, 8, 16, 32]
    assert all(f.channels > 0 for f in info)


# --- size against the paper --------------------------------------------------------------------

PAPER_PARAMS = paper_values("params")


@pytest.mark.parametrize("variant", sorted(PAPER_PARAMS))
def test_parameter_count_matches_paper(variant):
    """Within 1% of the paper's value, or within the paper's own rounding (27M is 26.5-27.5M)."""
    published = PAPER_PARAMS[variant]
    measured = n_params(create_model(variant, num_classes=21)) / 1e6
    tolerance = max(0.01 * published.value, published.rounding)
    assert abs(measured - published.value) <= tolerance, (variant, measured, published.value)


def test_decoder_is_what_the_paper_describes():
    rf = create_model("rf101")
    lw = create_model("rf_lw101")
    kernels = lambda m: {c.kernel_size for c in m.decoder.modules() if isinstance(c, torch.nn.Conv2d)}  # noqa: E731
    assert kernels(rf) == {(3, 3)}
    # light-weight: only 1x1 convs except the 3x3 classifier
    assert kernels(lw) == {(1, 1), (3, 3)}
    assert [c for c in lw.decoder.modules() if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (3, 3)] == [
        lw.decoder.classifier
    ]
    assert len(rf.decoder.level4.rcu_in) == 2 and len(rf.decoder.level4.rcu_out) == 3
    assert rf.decoder.level4.crp.convs[0].in_channels == 512
    assert rf.decoder.level3.crp.convs[0].in_channels == 256
    assert len(lw.decoder.level1.crp.convs) == 4


# --- forward and backward ----------------------------------------------------------------------


@pytest.mark.parametrize("name", PAPER_VARIANTS + DYNAMIC_SAMPLE)
def test_forward_backward_any_size(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).train()
    x = torch.randn(2, 3, 97, 131, requires_grad=True)  # not divisible by 32
    out = model(x)
    stride4 = model.forward_taps(x.detach(), [f"backbone.{model.backbone.feature_info[0].name}"])
    assert out.shape[:2] == (2, 5)
    assert out.shape[-2:] == next(iter(stride4.values())).shape[-2:]
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.decoder.parameters())


def quarter(n: int, name: str) -> int:
    """Reference models output ceil(H/4); NASNet's stem conv is unpadded (TF 'VALID'), then halves twice."""
    return math.ceil(((n - 3) // 2 + 1) / 2) if "nasnet" in name else math.ceil(n / 4)


@pytest.mark.parametrize("name", PAPER_VARIANTS)
def test_logits_at_quarter_resolution(name):
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 70, 101))
    assert out.shape == (1, 21, quarter(70, name), quarter(101, name))


def test_paper_input_size_625x468(lw50):
    with torch.no_grad():
        out = lw50(torch.randn(1, 3, 468, 625))
    assert out.shape == (1, 21, 117, 157)


@pytest.mark.parametrize("bad", [torch.randn(3, 64, 64), torch.randn(1, 4, 64, 64), torch.randn(1, 3, 16, 16)])
def test_bad_input_shape_is_a_clear_error(lw50, bad):
    with pytest.raises(ValueError, match=r"expects an image batch|at least 32x32"):
        lw50(bad)


# --- taps --------------------------------------------------------------------------------------


def test_tap_names_are_stable_across_families():
    decoder_taps = lambda m: [t for t in m.tap_names() if not t.startswith("backbone.")]  # noqa: E731
    rf, lw_rcu, lw = (create_model(n) for n in ("rf50", "rf_lw_rcu50", "rf_lw50"))
    assert decoder_taps(rf) == decoder_taps(lw_rcu) == decoder_taps(lw)
    assert "level4.before_rcu" in lw.tap_names() and "logits" in lw.tap_names()


def test_taps_one_forward_aliases_and_values(lw50):
    x = torch.randn(1, 3, 96, 96)
    taps = ["level4.before_rcu", "level4.after_rcu", "level4.after_crp", "level3.after_sum", "logits"]
    with torch.no_grad():
        out = lw50.forward_taps(x, taps)
        logits = lw50(x)
    assert list(out) == taps
    assert lw50.tap_aliases()["level4.after_rcu"] == "level4.before_rcu"
    assert out["level4.after_rcu"] is out["level4.before_rcu"]  # no RCU: the very same tensor
    assert out["level4.after_crp"].shape == (1, 512, 3, 3)
    assert out["level3.after_sum"].shape == (1, 256, 6, 6)
    assert torch.equal(out["logits"], logits)
    with pytest.raises(ValueError, match=r"unknown tap\(s\) \['level9.after_crp'\].*valid:"):  # as the README says
        lw50.forward_taps(x, ["level9.after_crp"])


def test_rcu_variants_have_distinct_rcu_taps():
    model = create_model("rf_lw_rcu50").eval()
    assert "level4.after_rcu" not in model.tap_aliases()
    with torch.no_grad():
        out = model.forward_taps(torch.randn(1, 3, 64, 64), ["level4.before_rcu", "level4.after_rcu"])
    assert not torch.equal(out["level4.before_rcu"], out["level4.after_rcu"])


# --- checkpoints -------------------------------------------------------------------------------


def test_nasnet_a_mobile_is_the_published_imagenet_model():
    """Zoph et al. 2018, Table 2: NASNet-A (4 @ 1056) has 5.3M parameters and 564M mult-adds at 224x224."""
    from fvcore.nn import FlopCountAnalysis

    from bench.models.nasnet import NASNetAMobile

    model = NASNetAMobile(num_classes=1000).eval()
    assert abs(n_params(model) / 1e6 - 5.3) <= 0.05
    flops = FlopCountAnalysis(model, torch.randn(1, 3, 224, 224))
    flops.unsupported_ops_warnings(False)
    counted = flops.by_operator()
    mult_adds = (counted["conv"] + counted["linear"]) / 1e6  # the paper counts conv and FC multiply-adds
    assert abs(mult_adds - 564) <= 0.01 * 564, mult_adds
    stages = create_model("rf_lw_nasnet").backbone.feature_info
    assert [(f.name, f.channels, f.reduction) for f in stages] == [
        ("cell_stem_0", 44, 4), ("cell_3", 264, 8), ("cell_9", 528, 16), ("cell_15", 1056, 32)
    ]


@pytest.mark.parametrize(
    "variant, make_state, forward",
    [
        ("rf_lw50", lambda: ref.reference_resnet_state_dict(50, original=False),
         lambda x, sd: ref.refinenet_resnet_forward(x, sd, 50, original=False)),
        ("rf101", lambda: ref.reference_resnet_state_dict(101, original=True),
         lambda x, sd: ref.refinenet_resnet_forward(x, sd, 101, original=True)),
        ("rf_lw_mbv2", ref.reference_mbv2_state_dict, ref.mbv2_forward),
    ],
    ids=["lw_resnet", "refinenet", "lw_mbv2"],
)
def test_reference_checkpoint_gives_reference_outputs(variant, make_state, forward):
    state = make_state()
    model = create_model(variant).eval()
    layout = load_checkpoint(model, {f"module.{k}": v for k, v in state.items()})  # DataParallel prefix too
    assert layout == model_layout(variant)
    x = torch.randn(2, 3, 83, 109, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(x), forward(x, state)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * theirs.abs().max().item())


def model_layout(variant: str) -> str:
    from bench.models import variant_info

    return variant_info(variant).checkpoint_layout


def test_checkpoint_round_trip_native(tmp_path, lw50):
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": lw50.state_dict()}, path)
    other = create_model("rf_lw50", checkpoint=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(other(x), lw50(x))


def test_checkpoint_with_wrong_keys_lists_them():
    state = ref.reference_resnet_state_dict(50, original=False)
    state.pop("mflow_conv_g1_pool.0.2_outvar_dimred.weight")
    state["clf_conv.weight"] = torch.zeros(21, 256, 1, 1)
    with pytest.raises(CheckpointError) as err:
        create_model("rf_lw50", checkpoint=state)
    msg = str(err.value)
    assert "1 missing key(s): decoder.level4.crp.convs.1.weight" in msg
    assert "decoder.classifier.weight (checkpoint (21, 256, 1, 1), model (21, 256, 3, 3))" in msg

    state = ref.reference_resnet_state_dict(50, original=False)
    state["extra_head.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="not in the 'lw_resnet' layout: extra_head.weight"):
        create_model("rf_lw50", checkpoint=state)


def test_checkpoint_for_another_variant_is_refused():
    with pytest.raises(CheckpointError, match="missing key"):
        create_model("rf_lw101", checkpoint=ref.reference_resnet_state_dict(50, original=False))


def test_missing_checkpoint_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        create_model("rf_lw50", checkpoint=tmp_path / "nope.pth")


def test_torchvision_imagenet_weights_load_into_backbone(tmp_path):
    torch.manual_seed(3)
    classifier = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(classifier.state_dict(), path)  # the layout of torchvision's released weights
    model = create_model("rf_lw:resnet18", backbone_weights=path)
    body = model.backbone.body
    assert torch.equal(body.get_submodule("layer3.1.conv2").weight, classifier.layer3[1].conv2.weight)
    assert torch.equal(model.backbone.body.bn1.running_var, classifier.bn1.running_var)

    broken = classifier.state_dict()
    broken["layer1.0.conv1.weight"] = torch.zeros(1)
    torch.save(broken, path)
    with pytest.raises(CheckpointError, match="layer1.0.conv1.weight"):
        create_model("rf_lw:resnet18", backbone_weights=path)
