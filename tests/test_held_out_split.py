"""Weights picked on val, reported on a held-out split: the generated set's third split (drawn after val, so train,
val and every cached network's key stay as they were), a folder's test.txt with masks, or, without one, val picks
and reports and the data say so. Tiny data, 2-3 training steps."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from analysis.datasets.synthetic import SyntheticSpec
from analysis.datasets.voc import write_voc
from analysis.networks import Schedule, load_data, train_network
from bench.errors import DataError

from .test_networks import NARROW, VARIANT, _own_miou, _voc_folder

SPEC = SyntheticSpec(n_train=8, n_val=4, size=64, radius=(4, 14))
SCHEDULE = Schedule(size=64, max_steps=2, eval_every=1, batch_size=4, warmup_steps=1)


def test_a_generated_test_split_leaves_train_val_and_the_weights_key_unchanged(tmp_path, monkeypatch):
    from analysis.datasets import synthetic

    monkeypatch.setattr(synthetic, "CACHE", tmp_path)
    without = load_data(SPEC, 64, progress=None)
    with_test = load_data(dataclasses.replace(SPEC, n_test=6), 64, progress=None)
    assert with_test.hash == without.hash  # the test split decides no weight: every cached network stays valid
    assert torch.equal(with_test.train_images, without.train_images)
    assert torch.equal(with_test.val_masks, without.val_masks)
    assert without.test_images is None and "val picked the kept weights and reports them" in without.describe()
    assert with_test.test_images.shape == (6, 3, 64, 64) and with_test.reported_split == "test"
    assert "6 test images" in with_test.describe()
    # the test images are new draws, not copies of train or val
    seen = torch.cat([with_test.train_images, with_test.val_images]).flatten(1)
    assert not any((seen == t.flatten()).all(1).any() for t in with_test.test_images)
    # a spec without a test split keeps the folder (and key) it had before n_test existed
    assert SPEC.key() == dataclasses.replace(SPEC, n_test=0).key() != dataclasses.replace(SPEC, n_test=6).key()
    assert "n_test" not in SPEC.fields()


def _with_test(root, n, masks=True, all_masks=True):
    """Add a test split of ``n`` images to a VOC folder (masks for all, for none, or for all but the last)."""
    rng = np.random.default_rng(5)
    images, labels = {}, {}
    for i in range(n):
        mask = np.zeros((64, 64), np.uint8)
        mask[8:40, 8:40] = 1 + i % 2
        images[f"test{i}"] = (rng.uniform(0, 60, (64, 64, 3)) + mask[..., None] * 40).astype(np.uint8)
        labels[f"test{i}"] = mask
    staging = root.parent / "staging"
    write_voc(staging, {"test": list(images)}, images, labels)
    src, dst = staging / "VOC2012", root / "VOC2012"
    shutil.copy(src / "ImageSets" / "Segmentation" / "test.txt", dst / "ImageSets" / "Segmentation" / "test.txt")
    for image_id in images:
        shutil.copy(src / "JPEGImages" / f"{image_id}.jpg", dst / "JPEGImages")
        keep = masks and (all_masks or image_id != f"test{n - 1}")
        if keep:
            shutil.copy(src / "SegmentationClass" / f"{image_id}.png", dst / "SegmentationClass")
    return root


def test_a_folders_test_txt_with_masks_is_the_held_out_split_and_reports(tmp_path):
    root = _with_test(_voc_folder(tmp_path / "d", k=3, n_train=4, n_val=2), 3)
    before = load_data(root, 64, progress=None)
    net = train_network(VARIANT, root, SCHEDULE, decoder=NARROW, cache_dir=tmp_path / "cache", progress=False)
    assert before.test_images.shape[0] == 3 and before.reported_split == "test"
    # the reported mIoU is the kept weights' on test, computed here by hand; val's stays in the record
    own = _own_miou(net.model, before.test_images, before.test_masks.long(), 3)
    assert net.test["miou"] == pytest.approx(own, abs=1e-9) and net.reported_miou == net.test["miou"]
    assert net.reported_split == "test" and net.test["images"] == 3 and len(net.test["iou_per_class"]) == 3
    # loaded from the store: the same test score (the test split is not in the key, so no retraining)
    again = train_network(VARIANT, root, SCHEDULE, decoder=NARROW, cache_dir=tmp_path / "cache", progress=False)
    assert again.cached and again.test["miou"] == pytest.approx(net.test["miou"], abs=1e-12)


def test_a_folder_without_test_txt_or_with_unlabelled_test_images_reports_val_and_says_so(tmp_path):
    plain = _voc_folder(tmp_path / "plain", k=3, n_train=4, n_val=2)
    data = load_data(plain, 64, progress=None)
    assert data.test_images is None and "no test.txt" in data.test_note
    server = _with_test(_voc_folder(tmp_path / "server", k=3, n_train=4, n_val=2), 3, masks=False)
    data = load_data(server, 64, progress=None)  # VOC2012's own test split: images only
    assert data.test_images is None and "without masks" in data.test_note
    net = train_network(VARIANT, server, SCHEDULE, decoder=NARROW, cache_dir=tmp_path / "cache", progress=False)
    assert net.test is None and net.reported_split == "val" and net.reported_miou == net.record["val_miou"]


def test_a_test_txt_with_some_masks_missing_is_a_data_error_naming_one(tmp_path):
    root = _with_test(_voc_folder(tmp_path / "partial", k=3, n_train=4, n_val=2), 3, all_masks=False)
    with pytest.raises(DataError, match=r"1 of 3 images without a mask .*test2\.png"):
        load_data(root, 64, progress=None)


def test_the_embedded_default_has_a_test_split_larger_than_val():
    from analysis.networks.settings import DATA

    assert DATA.n_test >= 2 * DATA.n_val  # the split that reports is larger than the one that picks
    assert dataclasses.replace(DATA, n_test=0).fields() == DATA.fields(with_test=False)


def test_each_split_is_normalised_once_as_the_networks_inputs_and_never_sent_to_a_worker(tmp_path, monkeypatch):
    """The loop, evaluation and the branch shares read ``NetworkData.*_inputs``: the split ImageNet-normalised once.
    A crop of it must be the normalised crop, value for value (the weights must not change), and a pickled copy (a
    worker process's) carries the uint8 images only."""
    import pickle

    from analysis.datasets import synthetic
    from analysis.datasets.images import normalise
    from analysis.networks.loop import random_crop

    monkeypatch.setattr(synthetic, "CACHE", tmp_path)
    data = load_data(dataclasses.replace(SPEC, n_test=3), 64, progress=None)
    assert data.train_images.dtype == torch.uint8
    for split in ("train", "val", "test"):
        inputs, images = getattr(data, f"{split}_inputs"), getattr(data, f"{split}_images")
        assert inputs.dtype == torch.float32 and inputs.shape == images.shape
        assert torch.equal(inputs, normalise(images))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    crop_of_inputs, _ = random_crop(data.train_inputs[:4], data.train_masks[:4], 40, g1)
    crop_of_images, _ = random_crop(data.train_images[:4], data.train_masks[:4], 40, g2)
    assert torch.equal(crop_of_inputs, normalise(crop_of_images))
    sent = pickle.loads(pickle.dumps(data))
    assert not any(k.endswith("_inputs") for k in sent.__dict__)
    assert torch.equal(sent.val_inputs, data.val_inputs)
    assert load_data(SPEC, 64, progress=None).test_inputs is None
