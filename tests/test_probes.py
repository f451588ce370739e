"""Probes: the VOC reader on real VOC files, metrics against hand-computed confusion matrices,
the feature cache (one forward per image), the generated dataset, and a tiny end-to-end run."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from analysis.images import VOC_SAMPLE
from analysis.metrics import average_precision, confusion_matrix, iou_per_class, mean_iou, multilabel_metrics, presence
from analysis.probes import PROBE_TAPS, cache_features
from analysis.probes_report import ProbePlan, run_probes
from analysis.synthetic import CLASSES, SyntheticSpec, generate_image, synthetic_voc
from analysis.voc import IGNORE, VOCSegmentation
from bench import create_model

# --- reader ------------------------------------------------------------------------------------


def test_reader_on_real_voc_files():
    train = VOCSegmentation(VOC_SAMPLE, "train", (60, 80))
    val = VOCSegmentation(VOC_SAMPLE / "VOC2012", "val", (60, 80))  # the VOC2012 folder itself works too
    assert train.ids == ["2007_004189", "2007_006449"] and len(val) == 2
    image, mask = train[0]
    assert image.shape == (3, 60, 80) and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    assert mask.shape == (60, 80) and mask.dtype == torch.int64
    values = set(mask.unique().tolist())
    assert IGNORE in values and values <= set(range(21)) | {IGNORE}  # class ids and the 255 boundary survive
    images, masks = val.load_all()
    assert images.shape == (2, 3, 60, 80) and masks.shape == (2, 60, 80)


def test_masks_are_resized_with_nearest_neighbour():
    from PIL import Image

    ds = VOCSegmentation(VOC_SAMPLE, "train", (37, 53))
    _, mask = ds[1]
    original = set(np.unique(np.asarray(Image.open(ds.paths(1)[1]))).tolist())
    assert set(mask.unique().tolist()) <= original  # nothing interpolated between class ids


def test_missing_files_and_splits_are_named(tmp_path):
    root = tmp_path / "VOCdevkit"
    shutil.copytree(VOC_SAMPLE, root)
    (root / "VOC2012" / "SegmentationClass" / "2007_006449.png").unlink()
    ds = VOCSegmentation(root, "train", (32, 32))
    with pytest.raises(FileNotFoundError, match="2007_006449.png"):
        ds[1]
    with pytest.raises(FileNotFoundError, match=r"split file not found: .*test.txt \(available splits: train"):
        VOCSegmentation(root, "test")
    with pytest.raises(FileNotFoundError, match="no VOC2012 segmentation data"):
        VOCSegmentation(tmp_path / "nowhere")


# --- metrics -----------------------------------------------------------------------------------


def test_confusion_matrix_and_miou_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 3]])
    cm = confusion_matrix(pred, target, num_classes=4)
    expected = torch.tensor([  # rows true, columns predicted; the 255 pixel is ignored
        [1, 1, 0, 0],
        [0, 2, 0, 1],
        [1, 0, 1, 0],
        [0, 0, 0, 0],
    ])
    assert torch.equal(cm, expected)
    # IoU: c0 1/(2+2-1)=1/3, c1 2/(3+3-2)=1/2, c2 1/(1+2-1)=1/2, c3 0/(1+0-0)=0
    iou = iou_per_class(cm)
    assert iou.tolist() == pytest.approx([1 / 3, 1 / 2, 1 / 2, 0.0])
    assert mean_iou(cm) == pytest.approx((1 / 3 + 1 / 2 + 1 / 2 + 0) / 4)


def test_classes_absent_from_prediction_and_label_are_excluded_not_counted_as_one():
    cm = confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), num_classes=5)
    iou = iou_per_class(cm)
    assert math.isnan(iou[2]) and math.isnan(iou[3]) and math.isnan(iou[4])
    assert mean_iou(cm) == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_label_values_out_of_range_are_an_error():
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_matrix(torch.tensor([0]), torch.tensor([7]), num_classes=3)


def test_multilabel_metrics_by_hand():
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=torch.bool)
    scores = torch.tensor([[0.9, 0.2, 0.1], [0.4, 0.8, 0.3], [0.6, 0.3, 0.2]])
    m = multilabel_metrics(scores, targets)
    # decisions at 0.5: [1,0,0] [0,1,0] [1,0,0]: 8 of 9 labels right, 2 of 3 images fully right
    assert m["label_accuracy"] == pytest.approx(8 / 9) and m["subset_accuracy"] == pytest.approx(2 / 3)
    # AP class 0: ranks 0.9(+) 0.6(+) 0.4(-) -> 1; class 1: 0.8(+) 0.3(+) 0.2(-) -> 1; class 2: no positive
    assert m["mAP"] == pytest.approx(1.0)
    assert average_precision(torch.tensor([0.9, 0.8, 0.1]), torch.tensor([False, True, True])) == pytest.approx(
        (1 / 2 + 2 / 3) / 2)
    empty = multilabel_metrics(torch.zeros(3, 3), targets)
    assert empty["label_accuracy"] == pytest.approx(5 / 9)  # why label accuracy alone flatters sparse labels


def test_presence_ignores_background_and_boundary():
    masks = torch.tensor([[[0, 2], [255, 2]], [[0, 0], [0, 0]]])
    assert presence(masks, 4).tolist() == [[False, True, False], [False, False, False]]


# --- generated dataset -------------------------------------------------------------------------


def test_generated_images_are_seeded_and_labelled_by_shape_and_size():
    spec = SyntheticSpec(size=64, small_radius=(6, 8), large_radius=(14, 18))
    a = generate_image(np.random.default_rng(3), spec)
    b = generate_image(np.random.default_rng(3), spec)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    labels = set(np.unique(a[1]).tolist())
    assert labels <= set(range(len(CLASSES))) | {IGNORE} and len(labels - {0, IGNORE}) >= 1


def test_synthetic_dataset_written_once_in_voc_layout(tmp_path):
    spec = SyntheticSpec(n_train=6, n_val=3, size=48, small_radius=(4, 6), large_radius=(10, 14))
    root = synthetic_voc(spec, cache=tmp_path, progress=None)
    stamp = (root / "spec.json").stat().st_mtime_ns
    assert synthetic_voc(spec, cache=tmp_path, progress=None) == root
    assert (root / "spec.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    images, masks = VOCSegmentation(root, "train", (48, 48)).load_all()
    assert images.shape == (6, 3, 48, 48) and masks.max() == IGNORE
    assert not list(tmp_path.glob(".partial-*"))


# --- cache and end to end ----------------------------------------------------------------------


def test_feature_cache_runs_the_network_once_per_image():
    model = create_model("rf_lw:resnet18", num_classes=7).eval()
    calls = []
    original = model.forward_taps
    model.forward_taps = lambda x, taps: calls.append(len(x)) or original(x, taps)  # counts images per call
    images = torch.rand(10, 3, 64, 64)
    with torch.no_grad():
        feats = cache_features(model, images, PROBE_TAPS, batch_size=4)
    assert sum(calls) == 10 and len(calls) == 3
    assert all(f.dtype == torch.float16 and f.shape[0] == 10 for f in feats.values())
    assert feats["level4.after_rcu"] is feats["level4.before_rcu"]  # no RCU: one tensor, cached once


def test_tiny_end_to_end_is_repeatable(tmp_path, monkeypatch):
    import analysis.synthetic as synthetic

    monkeypatch.setattr(synthetic, "CACHE", tmp_path)
    plan = ProbePlan.tiny()
    plan = ProbePlan(**{**plan.__dict__, "dataset": SyntheticSpec(n_train=16, n_val=8, size=64)})
    first, setting = run_probes(plan, progress=lambda msg: None)
    second, _ = run_probes(plan, progress=lambda msg: None)
    assert len(first) == 9 and set(first.tap) == set(PROBE_TAPS)
    cols = ["mIoU %", "label accuracy %", "mAP %"]
    assert first[cols].equals(second[cols])  # seeded: same numbers twice
    lw = first[first.family == "rf_lw"].set_index("tap")
    assert lw.loc["level4.after_rcu", "mIoU %"] == lw.loc["level4.before_rcu", "mIoU %"]
    assert "generated shapes" in setting
