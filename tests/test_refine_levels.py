"""The decoder's ``refine_levels``: a decoder refining only its coarsest levels (the harmful-change control's
network), its checks, and the architecture identities it must leave unchanged."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.ablations.spec import architecture_hash, load_ablation
from bench.errors import UsageError
from bench.models import create_model, decoder_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("levels", [1, 2, 4])
def test_a_decoder_of_fewer_levels_predicts_at_its_coarsest_stride(levels):
    torch.manual_seed(0)
    model = create_model("rf_lw:mobilenet_v2", num_classes=5,
                         decoder={"channels": 16, "top_channels": 24, "refine_levels": levels}).eval()
    x = torch.randn(2, 3, 64, 64)
    logits = model(x)
    stride = 32 // 2 ** (levels - 1)
    assert logits.shape == (2, 5, 64 // stride, 64 // stride)
    assert model.decoder.level_names == ["level4", "level3", "level2", "level1"][:levels]
    names = {n.split(".")[1] for n, _ in model.named_parameters() if n.startswith("decoder.level")}
    assert names == set(model.decoder.level_names)  # the dropped levels hold no weights
    taps = model.forward_taps(x, ["classifier_input", "logits"])
    assert taps["classifier_input"].shape[-1] == 64 // stride
    logits.sum().backward()  # the backbone learns through the levels left
    first = next(p for n, p in model.named_parameters() if n.startswith("backbone."))
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_fewer_levels_cost_fewer_parameters_and_change_the_identity():
    full = create_model("rf_lw:mobilenet_v2", num_classes=5)
    top = create_model("rf_lw:mobilenet_v2", num_classes=5, decoder={"refine_levels": 1})
    assert sum(p.numel() for p in top.parameters()) < sum(p.numel() for p in full.parameters())
    spec = decoder_spec("rf_lw:mobilenet_v2")
    assert architecture_hash("mobilenet_v2", spec) != architecture_hash(
        "mobilenet_v2", spec.with_changes(refine_levels=1))


def test_the_field_at_its_default_keeps_every_earlier_identity():
    # hashes written by the ablation report before refine_levels existed (reports/ablation/paper_path.csv)
    committed = pd.read_csv(ROOT / "reports" / "ablation" / "paper_path.csv")
    spec = load_ablation(ROOT / "bench" / "ablations" / "specs" / "paper-path.toml")
    ours = {v.name: v.hash for v in spec.paths[0].variants}
    for name, recorded in zip(committed.variant, committed.hash, strict=True):
        assert ours[name] == recorded, name


@pytest.mark.parametrize("bad", [0, 5, 1.5, "1"])
def test_a_bad_level_count_names_the_range(bad):
    with pytest.raises((UsageError, TypeError)) as err:
        create_model("rf_lw:mobilenet_v2", num_classes=5, decoder={"refine_levels": bad})
    assert "refine_levels" in str(err.value)


def test_a_trained_network_keeps_its_store_key_and_the_control_gets_its_own(tmp_path):
    from analysis.networks.data import load_data
    from analysis.networks.store import identity
    from analysis.probes.run import TINY_NETWORKS

    setting = TINY_NETWORKS
    data = load_data(setting.data, setting.schedule.size, progress=None)
    _, default, key, _, _ = identity("rf_lw:mobilenet_v2", data, setting.schedule, 0, "cpu", setting.decoder, tmp_path)
    assert "refine_levels" not in default["layers"]  # the records written before the field stay valid
    _, top, top_key, _, _ = identity("rf_lw:mobilenet_v2", data, setting.schedule, 0, "cpu",
                                     {**setting.decoder, "refine_levels": 1}, tmp_path)
    assert top["layers"]["refine_levels"] == 1 and top_key != key
