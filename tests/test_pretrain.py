"""The shared pretrained backbone (analysis.networks.pretrain): pretrained once per backbone architecture under a
decoder that is none of the compared ones, written as a backbone checkpoint, and the starting point of every
network of a setting: the same backbone weights in every family at step 0, its digest in every network's key."""

from __future__ import annotations

import dataclasses

import torch

from analysis.networks import NetworkSetting, trained_set
from analysis.networks import store as store_module
from analysis.networks.pretrain import BACKBONE_FILE, Pretrain, backbone_state
from bench.models import create_model

from .test_network_cache import NARROW, TINY_DATA, TINY_SCHEDULE


def test_backbone_state_is_a_backbone_checkpoint(tmp_path):
    """What backbone_state writes loads through the backbone-checkpoint path and gives the same backbone."""
    torch.manual_seed(1)
    source = create_model("rf:resnet18", num_classes=3).eval()
    torch.save(backbone_state(source), tmp_path / "b.pt")
    loaded = create_model("rf_lw:resnet18", num_classes=3, backbone_weights=tmp_path / "b.pt").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(source.backbone(x), loaded.backbone(x), strict=True):
            assert torch.equal(a, b)


def test_every_network_of_a_setting_starts_from_one_pretrained_backbone(tmp_path):
    setting = NetworkSetting("tiny", TINY_SCHEDULE, seeds=1, device="cpu", decoder=NARROW, backbone="resnet18",
                             families=("rf", "rf_lw"), data=TINY_DATA, pretrain=Pretrain(decoder=NARROW | {
                                 "crp_stages": 0}, seed=77))
    nets = trained_set(setting, cache_dir=tmp_path, progress=False, say=None, workers=1)
    backbones = sorted(tmp_path.glob(f"*/{BACKBONE_FILE}"))
    assert len(backbones) == 1  # pretrained once, for both families
    pretrained = torch.load(backbones[0])
    digest = store_module._file_digest(backbones[0])
    assert {n.record["family"] for n in nets} == {"rf", "rf_lw"}
    for net in nets:  # the digest of the shared backbone is part of every network's key
        assert net.record["backbone_weights"] == digest
    # the pretraining network itself: LW without CRP at the pretraining seed, not one of the compared networks
    record = store_module.record_beside(backbones[0].parent / store_module.CHECKPOINT)
    assert record["seed"] == 77 and record["layers"]["crp_stages"] == 0
    # a fresh rf built from the checkpoint holds the pretrained weights in its backbone
    fresh = create_model("rf:resnet18", num_classes=nets[0].record["num_classes"], backbone_weights=backbones[0])
    assert all(torch.equal(v, pretrained[k]) for k, v in backbone_state(fresh).items())
    # a second call trains nothing and pretrains nothing
    again = trained_set(setting, cache_dir=tmp_path, progress=False, say=None, workers=1)
    assert all(n.cached for n in again)
    # without a pretraining setting the networks start from scratch: other keys
    scratch = trained_set(dataclasses.replace(setting, pretrain=None), cache_dir=tmp_path, progress=False, say=None,
                          workers=1)
    assert all(n.record["backbone_weights"] is None for n in scratch)
    assert {n.path for n in scratch}.isdisjoint({n.path for n in nets})


def test_pretrain_applies_per_backbone_architecture(tmp_path):
    setting = NetworkSetting("tiny", dataclasses.replace(TINY_SCHEDULE, max_steps=1), seeds=1, device="cpu",
                             decoder=NARROW, backbone="resnet18", families=("rf_lw",), data=TINY_DATA,
                             pretrain=Pretrain(decoder=NARROW | {"crp_stages": 0}))
    nets = trained_set(setting, variants=["rf_lw:resnet18", "rf_lw:mobilenet_v2"], cache_dir=tmp_path,
                       progress=False, say=None, workers=1)
    assert len(list(tmp_path.glob(f"*/{BACKBONE_FILE}"))) == 2
    assert len({n.record["backbone_weights"] for n in nets}) == 2


def test_the_description_follows_the_pretraining_decoder():
    assert "without CRP (1x1 convolutions only)" in Pretrain().describe("mobilenet_v2")
    other = Pretrain(decoder={"crp_stages": 2}).describe("resnet18")
    assert "without CRP" not in other and "crp_stages=2" in other and "rf_lw:resnet18" in other


def test_crop_labels_say_which_foreground_classes_a_mask_holds():
    from analysis.networks.loop import crop_labels

    masks = torch.tensor([[[0, 2], [255, 2]], [[0, 0], [0, 0]], [[1, 3], [255, 255]]], dtype=torch.uint8)
    assert crop_labels(masks, 4).tolist() == [[0, 1, 0], [0, 0, 0], [1, 0, 1]]


def test_a_classification_pretraining_is_a_decoderless_backbone_shared_by_every_family(tmp_path, monkeypatch):
    from analysis.networks import loop as loop_module

    setting = NetworkSetting("tiny", TINY_SCHEDULE, seeds=1, device="cpu", decoder=NARROW, backbone="resnet18",
                             families=("rf", "rf_lw"), data=TINY_DATA,
                             pretrain=Pretrain(task="classification", decoder={}, seed=5))
    nets = trained_set(setting, cache_dir=tmp_path, progress=False, say=None, workers=1)
    (backbone,) = tmp_path.glob(f"resnet18-classifier-seed5-*/{BACKBONE_FILE}")
    record = store_module.record_beside(backbone.parent / store_module.CHECKPOINT)
    assert record["task"] == "classification" and record["steps"] == TINY_SCHEDULE.max_steps
    assert 0 <= record["val_label_accuracy"] <= 1
    digest = store_module._file_digest(backbone)
    assert all(n.record["backbone_weights"] == digest for n in nets)
    # it trained: its weights are not the seeded initial ones, and they load as the backbone of any family
    torch.manual_seed(5)
    initial = backbone_state(create_model("rf:resnet18", num_classes=3))
    trained = torch.load(backbone)
    assert any(not torch.equal(trained[k], initial[k]) for k in trained if k.endswith("weight"))
    fresh = create_model("rf_lw:resnet18", num_classes=3, backbone_weights=backbone)
    assert all(torch.equal(v, trained[k]) for k, v in backbone_state(fresh).items())
    # a second call pretrains nothing (the optimiser is never made again) and trains nothing
    monkeypatch.setattr(loop_module, "make_optimizer", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    again = trained_set(setting, cache_dir=tmp_path, progress=False, say=None, workers=1)
    assert all(n.cached for n in again)
    assert "as a classifier" in setting.pretrain.describe("resnet18")


def test_a_background_pretraining_gives_the_backbone_a_set_trains_from(tmp_path):
    """pretrain_in_background (the bench overlaps it with shape counting) trains the same store entry, bit for bit,
    as the set's own pretraining; a set trained meanwhile waits for it (or trains it and the process reuses it)."""
    from analysis.networks.sets import pretrain_in_background

    setting = NetworkSetting("tiny", TINY_SCHEDULE, seeds=1, device="cpu", decoder=NARROW, backbone="resnet18",
                             families=("rf_lw",), data=TINY_DATA, pretrain=Pretrain(decoder=NARROW | {
                                 "crp_stages": 0}, seed=77))
    process = pretrain_in_background(setting, cache_dir=tmp_path / "background")
    (net,) = trained_set(setting, cache_dir=tmp_path / "background", progress=False, say=None, workers=1)
    process.join(timeout=300)
    assert process.exitcode == 0
    assert len(list((tmp_path / "background").glob(f"*/{BACKBONE_FILE}"))) == 1  # pretrained once
    (alone,) = trained_set(setting, cache_dir=tmp_path / "alone", progress=False, say=None, workers=1)
    assert net.record["backbone_weights"] == alone.record["backbone_weights"]  # the same backbone, bit for bit
    assert pretrain_in_background(dataclasses.replace(setting, pretrain=None)) is None
    assert pretrain_in_background(dataclasses.replace(setting, device="cuda")) is None
