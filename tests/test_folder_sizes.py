"""A VOC-layout folder of any image size and aspect: ``--size`` is the short side, each image keeps its aspect,
and images of different shapes are padded with ignored pixels (they count in no loss and no score)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from analysis.datasets.voc import IGNORE, VOCSegmentation, write_voc
from analysis.networks import Schedule, folder_hash, load_data, train_network

from .test_networks import NARROW, VARIANT

SHAPES = {"train": [(64, 96), (80, 64), (64, 96), (96, 128)], "val": [(64, 96), (48, 72)]}  # (H, W)


def _mixed_folder(root):
    """Images of several shapes; each mask has class 1 in its left half and 2 in its right half."""
    rng = np.random.default_rng(0)
    images, masks, splits = {}, {}, {}
    for split, shapes in SHAPES.items():
        splits[split] = []
        for i, (h, w) in enumerate(shapes):
            mask = np.ones((h, w), np.uint8)
            mask[:, w // 2 :] = 2
            images[f"{split}{i}"] = (rng.uniform(0, 60, (h, w, 3)) + mask[..., None] * 60).astype(np.uint8)
            masks[f"{split}{i}"] = mask
            splits[split].append(f"{split}{i}")
    write_voc(root, splits, images, masks)
    return root


def test_the_short_side_is_the_size_and_the_aspect_is_kept(tmp_path):
    root = _mixed_folder(tmp_path / "mixed")
    data = load_data(root, 32, progress=None)
    # short sides 64, 64, 64, 96 -> 32: (32, 48), (40, 32), (32, 48), (32, 43); padded to 40 x 48
    assert tuple(data.train_images.shape) == (4, 3, 40, 48) and tuple(data.val_masks.shape) == (2, 32, 48)
    labelled = (data.train_masks != IGNORE).flatten(1).sum(1).tolist()
    assert labelled == [32 * 48, 40 * 32, 32 * 48, 32 * 43]  # the padding is ignored, the image is not
    first = data.train_masks[0, :32, :48]
    assert (first[:, :24] == 1).all() and (first[:, 24:] == 2).all()  # left and right halves kept in place
    assert (data.train_images[1, :, :, 32:] == 0).all()  # padded with black
    assert "short side 32px, aspect kept" in data.describe()


def test_a_square_resize_is_still_there_for_who_asks_and_the_hash_says_which(tmp_path):
    root = _mixed_folder(tmp_path / "mixed")
    square = VOCSegmentation(root, "train", (32, 32)).load_all()[0]
    assert tuple(square.shape) == (4, 3, 32, 32)
    # the folder hash includes how files become tensors: networks trained under the square resize retrain
    from analysis.networks import data as data_module

    before = folder_hash(root)
    data_module.RESIZE, kept = "something else", data_module.RESIZE
    try:
        assert folder_hash(root) != before
    finally:
        data_module.RESIZE = kept


def test_a_network_trains_and_scores_on_mixed_shapes_with_crops(tmp_path):
    root = _mixed_folder(tmp_path / "mixed")
    schedule = Schedule(size=32, max_steps=2, eval_every=1, batch_size=2, warmup_steps=1, crop=32)
    net = train_network(VARIANT, root, schedule, decoder=NARROW, cache_dir=tmp_path / "cache", progress=False)
    assert net.record["steps"] == 2 and 0 <= net.record["val_miou"] <= 1
    assert len(net.record["val_iou_per_class"]) == 3  # background (never labelled), 1, 2
    with pytest.raises(Exception, match="crop"):
        dataclasses.replace(schedule, crop=48).validate()  # a crop larger than the short side is refused
    assert torch.isfinite(torch.tensor(net.record["val_miou"]))
