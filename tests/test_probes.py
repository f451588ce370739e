"""Probes: the VOC reader on real VOC files, metrics against hand-computed confusion matrices,
the feature cache (one forward per image), the generated dataset, and a tiny end-to-end run."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from analysis.datasets.images import VOC_SAMPLE
from analysis.datasets.synthetic import CLASSES, SyntheticSpec, generate_image, synthetic_voc
from analysis.datasets.voc import IGNORE, VOCSegmentation, dataset_classes, write_voc
from analysis.erf.claims import DEAD
from analysis.metrics import (
    average_precision,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    multilabel_metrics,
    per_image_confusion,
    presence,
)
from analysis.probes import (
    POINTS,
    ProbePlan,
    ProbeRun,
    cache_features,
    crp_verdicts,
    run_probes,
    tap_differences,
    trivial_baselines,
)
from analysis.probes.bootstrap import bootstrap_miou, bootstrap_multilabel
from bench import create_model
from bench.stats import percentile_interval, resample_indices

PROBE_TAPS = ("level4.before_rcu", "level4.after_rcu", "level4.after_crp")

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
    images, masks = val.load_all()  # compact whole split: uint8, the same content as item by item
    assert images.shape == (2, 3, 60, 80) and masks.shape == (2, 60, 80)
    assert images.dtype == torch.uint8 and masks.dtype == torch.uint8
    image, mask = val[1]
    assert torch.equal(masks[1].long(), mask)
    assert (images[1].float() / 255 - image).abs().max() <= 0.5 / 255 + 1e-6


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
    assert m["map"] == pytest.approx(1.0)
    assert average_precision(torch.tensor([0.9, 0.8, 0.1]), torch.tensor([False, True, True])) == pytest.approx(
        (1 / 2 + 2 / 3) / 2)
    empty = multilabel_metrics(torch.zeros(3, 3), targets)
    assert empty["label_accuracy"] == pytest.approx(5 / 9)  # why label accuracy alone flatters sparse labels


def test_per_image_confusion_by_hand_and_sums_to_the_split_matrix():
    target = torch.tensor([[[0, 1], [1, 255]], [[2, 2], [0, 1]]])
    pred = torch.tensor([[[0, 1], [0, 2]], [[2, 1], [0, 1]]])
    cms = per_image_confusion(pred, target, 3)
    assert cms.shape == (2, 3, 3)
    assert cms[0].tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]  # the 255 pixel is ignored
    assert cms[1].tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert torch.equal(cms.sum(0), confusion_matrix(pred, target, 3))


def test_bootstrap_of_identical_images_has_no_spread_and_is_seeded():
    cm = torch.tensor([[5, 1], [2, 4]])
    idx = resample_indices(6, n_boot=200, seed=1)
    assert torch.equal(idx, resample_indices(6, n_boot=200, seed=1)) and idx.shape == (200, 6)
    samples = bootstrap_miou(cm.expand(6, 2, 2), idx)
    low, high = percentile_interval(samples)
    assert low == pytest.approx(mean_iou(cm), abs=1e-6) and high == pytest.approx(mean_iou(cm), abs=1e-6)


def test_bootstrap_interval_brackets_the_split_value_and_widens_with_fewer_images():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (40, 8, 8), generator=g)
    pred = torch.where(torch.rand(40, 8, 8, generator=g) < 0.7, target, torch.randint(0, 3, (40, 8, 8), generator=g))
    cms = per_image_confusion(pred, target, 3)
    point = mean_iou(cms.sum(0))
    low, high = percentile_interval(bootstrap_miou(cms, resample_indices(40, 500)))
    assert low < point < high
    few_low, few_high = percentile_interval(bootstrap_miou(cms[:5], resample_indices(5, 500)))
    assert few_high - few_low > high - low


def test_bootstrap_multilabel_samples_are_resampled_metrics():
    targets = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=torch.bool)
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.3], [0.8, 0.7], [0.1, 0.6]])
    idx = torch.tensor([[0, 1, 2, 3], [0, 0, 0, 0], [3, 3, 1, 1]])
    boot = bootstrap_multilabel(scores, targets, idx)
    # row 0 is the split itself; row 1 is image 0 four times (both labels right); row 2: images 3 and 1 (1/2 right)
    assert boot["label_accuracy"].tolist() == pytest.approx([multilabel_metrics(scores, targets)["label_accuracy"],
                                                            1.0, 0.5])
    assert float(boot["map"][0]) == pytest.approx(multilabel_metrics(scores, targets)["map"])


def test_presence_ignores_background_and_boundary():
    masks = torch.tensor([[[0, 2], [255, 2]], [[0, 0], [0, 0]]])
    assert presence(masks, 4).tolist() == [[False, True, False], [False, False, False]]


# --- generated dataset -------------------------------------------------------------------------


def test_generated_images_are_seeded_and_labelled_by_shape_and_size():
    spec = SyntheticSpec(size=64, radius=(6, 18))
    a = generate_image(np.random.default_rng(3), spec)
    b = generate_image(np.random.default_rng(3), spec)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    labels = set(np.unique(a[1]).tolist())
    assert labels <= set(range(len(CLASSES))) | {IGNORE} and len(labels - {0, IGNORE}) >= 1


def test_synthetic_dataset_written_once_in_voc_layout(tmp_path):
    spec = SyntheticSpec(n_train=6, n_val=3, size=48, radius=(4, 14))
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



def _tiny(tmp_path, monkeypatch, **changes) -> ProbePlan:
    import analysis.datasets.synthetic as synthetic

    monkeypatch.setattr(synthetic, "CACHE", tmp_path / "cache")
    plan = ProbePlan.tiny()
    return ProbePlan(**{**plan.__dict__, **changes})


def test_tiny_end_to_end_is_repeatable(tmp_path, monkeypatch):
    plan = _tiny(tmp_path, monkeypatch, levels=("level4", "level2"))
    run = run_probes(plan, progress=None)
    again = run_probes(plan, progress=None)
    first, second = run.frame, again.frame
    assert len(first) == 3 * 2 * 4 and set(first.point) == set(POINTS) and set(first.level) == {"level4", "level2"}
    cols = ["miou", "label_accuracy", "map", "miou_ci_low", "miou_ci_high"]
    assert first[cols].equals(second[cols])  # seeded: same numbers (and intervals) twice
    assert (first["miou_ci_low"] <= first["miou"] + 1e-9).all()
    assert (first["miou"] <= first["miou_ci_high"] + 1e-9).all()
    lw = first[(first.family == "rf_lw") & (first.level == "level4")].set_index("point")
    assert lw.loc["after_rcu", "miou"] == lw.loc["before_rcu", "miou"]
    assert lw.loc["after_rcu", "same_as"] == "before_rcu"
    assert first["active_sum"].between(0, 1).all()
    assert "generated shapes" in run.setting and run.classes == CLASSES
    diffs = tap_differences(run)
    # per level: LW (no RCU) a sum row (against before RCU) and a CRP row; the others an RCU row too
    assert diffs.groupby("family").size().to_dict() == {"rf": 6, "rf_lw": 4, "rf_lw_rcu": 6}
    lw_sum = diffs[(diffs.family == "rf_lw") & (diffs.block == "sum")]
    assert set(lw_sum.before) == {"before_rcu"}
    rf = first[(first.family == "rf") & (first.level == "level2")].set_index("point")
    blocks = diffs[(diffs.family == "rf") & (diffs.level == "level2")].set_index("block")
    # CRP from its own input (after the summation with level 3), the summation from after RCU
    crp = blocks.loc["CRP"]
    assert crp["miou"] == pytest.approx(rf.loc["after_crp", "miou"] - rf.loc["after_sum", "miou"])
    assert blocks.loc["sum", "miou"] == pytest.approx(rf.loc["after_sum", "miou"] - rf.loc["after_rcu", "miou"])
    assert crp["miou_ci_low"] <= crp["miou"] + 1e-9 <= crp["miou_ci_high"] + 2e-9
    assert math.isnan(crp["miou_seed_sd"])  # one seed: no spread across seeds


def _fake_run(scores: dict[str, float], boot_shift: float = 0.0, baseline: float = 0.13) -> ProbeRun:
    """A hand-made run of one rf variant at level 4: point -> mIoU (the other metrics equal to it)."""
    import pandas as pd

    rows, boot = [], {}
    for point, value in scores.items():
        rows.append({"variant": "rf:x", "family": "rf", "seed": 0, "level": "level4", "tap": f"level4.{point}",
                     "point": point, "same_as": "", "miou": value, "label_accuracy": value, "map": value})
        samples = value + boot_shift * torch.linspace(-1, 1, 101)
        boot[("rf:x", 0, f"level4.{point}")] = {"miou": samples, "label_accuracy": samples, "map": samples}
    return ProbeRun(pd.DataFrame(rows), "hand-made", {"miou": baseline, "label_accuracy": 0.70, "map": 0.3}, boot,
                    CLASSES, "given", ProbePlan.tiny())


def test_level4_probe_power_is_decided_by_the_lowest_seed():
    from dataclasses import replace

    import pandas as pd

    from analysis.probes.differences import level_power
    from analysis.report.probes import power_row

    run = _fake_run({"before_rcu": 0.30, "after_rcu": 0.31, "after_sum": 0.32, "after_crp": 0.36}, baseline=0.12)
    power = level_power(run)
    assert power.lowest.tolist() == [pytest.approx(0.36)] and power.ratio.tolist() == [pytest.approx(3.0)]
    row = power_row(run, "hand-made", "probes", 1)
    assert row.status == "reproduced" and "36.0% (3.0x)" in row.ours and "12.0%" in row.paper
    second = _fake_run({"before_rcu": 0.20, "after_rcu": 0.21, "after_sum": 0.22, "after_crp": 0.23}, baseline=0.12)
    second.frame["seed"] = 1  # a second training run whose best level-4 probe is under twice the baseline
    run = replace(run, frame=pd.concat([run.frame, second.frame], ignore_index=True))
    row = power_row(run, "hand-made", "probes", 2)
    assert level_power(run).lowest.tolist() == [pytest.approx(0.23)]
    assert row.status == "not reproduced" and "RefineNet" in row.reason and "1.9x" in row.ours


def test_tap_differences_and_verdict_against_the_papers_table4():
    run = _fake_run({"before_rcu": 0.30, "after_rcu": 0.31, "after_sum": 0.32, "after_crp": 0.36})
    diffs = tap_differences(run).set_index("block")
    assert diffs.loc["RCU", "miou"] == pytest.approx(0.01) and diffs.loc["CRP", "miou"] == pytest.approx(0.04)
    assert diffs.loc["sum", "miou"] == pytest.approx(0.01) and math.isnan(diffs.loc["sum", "paper_miou"])
    # paired: the same resamples shift both taps together, so the difference has no spread
    assert diffs.loc["CRP", "miou_ci_low"] == pytest.approx(0.04) == diffs.loc["CRP", "miou_ci_high"]
    # the paper's Table 4 differences (RefineNet-101, VOC val): 55.16 - 54.63 and 57.83 - 55.16 (after CRP - after
    # RCU: the paper has no probe at CRP's input)
    assert diffs.loc["RCU", "paper_miou"] == pytest.approx(0.0053, abs=1e-9)
    assert diffs.loc["CRP", "paper_miou"] == pytest.approx(0.0267, abs=1e-9)
    verdicts = crp_verdicts(run, tap_differences(run))
    assert list(verdicts.status) == ["reproduced"]
    hurt = _fake_run({"before_rcu": 0.30, "after_rcu": 0.31, "after_sum": 0.31, "after_crp": 0.25})
    assert list(crp_verdicts(hurt, tap_differences(hurt)).status) == ["not reproduced"]
    rcu = _fake_run({"before_rcu": 0.30, "after_rcu": 0.40, "after_sum": 0.40, "after_crp": 0.42}, boot_shift=0.01)
    assert list(crp_verdicts(rcu, tap_differences(rcu)).status) == ["not reproduced"]  # RCU adds more than CRP
    wide = _fake_run({"before_rcu": 0.30, "after_rcu": 0.30, "after_sum": 0.30, "after_crp": 0.31}, boot_shift=0.05)
    wide.boot[("rf:x", 0, "level4.after_crp")]["miou"] = 0.31 + 0.05 * torch.linspace(1, -1, 101)  # unpaired noise
    assert list(crp_verdicts(wide, tap_differences(wide)).status) == ["inconclusive"]
    flat = _fake_run({"before_rcu": 0.135, "after_rcu": 0.135, "after_sum": 0.135, "after_crp": 0.132})
    assert list(crp_verdicts(flat, tap_differences(flat)).status) == ["not testable here"]
    # a dead level (its summation ReLU almost never positive): not testable, whatever the probes say
    dead = _fake_run({"before_rcu": 0.30, "after_rcu": 0.31, "after_sum": 0.31, "after_crp": 0.36})
    dead.frame["active_sum"] = 0.002
    (row,) = crp_verdicts(dead, tap_differences(dead)).itertuples()
    assert row.status == "not testable here" and "dead" in row.why and "0.2%" in row.why
    dead.frame["active_sum"] = 0.2  # alive: the verdict of the same scores
    assert list(crp_verdicts(dead, tap_differences(dead)).status) == ["reproduced"]


@pytest.mark.slow
def test_default_plan_learns_features_at_every_level():
    """The embedded default (several CPU minutes): every family's probes beat the trivial baseline at every level
    whose grid has at least 8x8 cells, by 10 points where it has at least 16x16, and no decoder's summation ReLUs
    died in training. On a CPU the images are 128 px: level 4 is 4x4 cells, where every family's probe sits at
    or near the all-background floor (as the README says), and level 3 is 8x8, where a linear probe upsampled to the
    labels reaches 17-40% (RefineNet 16.5% against a 12.9% floor, 2026-11-29); the 'gpu' setting's 256 px doubles
    every grid. RefineNet's level 2 may die in training (it did in seed 0): then it must be reported dead."""
    plan = ProbePlan.default()
    run = run_probes(plan, progress=None)
    stride = {"level4": 32, "level3": 16, "level2": 8, "level1": 4}
    best = run.frame.groupby(["family", "level"])[["miou"]].max().reset_index()
    cells = best.level.map(stride).rdiv(plan.image_size)
    assert set(best[cells >= 16].level) >= {"level2", "level1"}
    assert (best[cells >= 8]["miou"] > run.baselines["miou"] + 0.02).all(), best
    assert (best[cells >= 16]["miou"] > run.baselines["miou"] + 0.10).all(), best
    # the light-weight decoders keep every level alive; RefineNet's level 2 died in seed 0 of the 'cpu' set (0.9% of
    # its summation ReLUs positive, reports/probes), and a dead level must be reported as such, never judged
    light = run.frame[run.frame.family != "rf"]
    assert (light["active_sum"] > 0.01).all()
    verdicts = crp_verdicts(run, tap_differences(run))
    dead = run.frame[run.frame.active_sum < DEAD].groupby(["variant", "level"]).size().index
    for variant, level in dead:
        row = verdicts[(verdicts.variant == variant) & (verdicts.level == level)]
        assert (row.status == "not testable here").all() and row.why.str.contains("dead").all(), row


def _k_class_dataset(root, k: int, n_train: int = 6, n_val: int = 4, size: int = 64, png: bool = False):
    """A VOC-layout dataset of k classes (background + k-1 squares), images as JPEG or PNG, no classes.txt."""
    rng = np.random.default_rng(0)
    images, masks, splits = {}, {}, {"train": [], "val": []}
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            mask = np.zeros((size, size), np.uint8)
            for c in range(1, k):
                y, x = rng.integers(0, size - 12, 2)
                mask[y : y + 10, x : x + 10] = c
            image = (rng.random((size, size, 3)) * 255).astype(np.uint8)
            image[mask > 0] = (mask[mask > 0, None] * 37 % 255).astype(np.uint8)
            images[f"{split}{i}"], masks[f"{split}{i}"] = image, mask
            splits[split].append(f"{split}{i}")
    base = write_voc(root, splits, images, masks)
    if png:
        from PIL import Image

        for path in (base / "JPEGImages").glob("*.jpg"):
            Image.open(path).save(path.with_suffix(".png"))
            path.unlink()
    return root


def test_a_5_class_dataset_gets_baselines_over_its_4_foreground_classes(tmp_path):
    root = _k_class_dataset(tmp_path / "five", 5, png=True)
    k, names, source = dataset_classes(root, None, [VOCSegmentation(root, "train", (64, 64)).load_all()[1]])
    assert (k, source) == (5, "largest label + 1") and names[0] == "background" and len(names) == 5
    _, masks = VOCSegmentation(root, "val", (64, 64), num_classes=5).load_all()
    base = trivial_baselines(masks, 5)
    # every image holds all 4 foreground classes: the majority answer ("present") is always right, and the
    # multi-label scores say nothing about the features
    assert base["label_accuracy"] == pytest.approx(1.0) and base["multilabel_informative"] == 0.0
    plan = ProbePlan(**{**ProbePlan.tiny().__dict__, "voc_root": str(root), "num_classes": 5, "levels": ("level4",),
                        "families": ("rf_lw",)})
    run = run_probes(plan, progress=None)
    assert run.baselines["label_accuracy"] == pytest.approx(1.0) and len(run.classes) == 5
    assert "K = 5 classes (given)" in run.setting


def test_labels_outside_the_class_range_name_the_file_and_value(tmp_path):
    root = _k_class_dataset(tmp_path / "seven", 7)
    with pytest.raises(ValueError, match=r"train0.png: label value 5 outside 0..4 \(num_classes=5"):
        VOCSegmentation(root, "train", (64, 64), num_classes=5)[0]


def test_real_data_path_probes_a_given_checkpoint_on_voc_layout_data(tmp_path):
    """The paper's setting in miniature: VOC-layout files (the shipped VOC sample, 21 classes) and a
    checkpoint file instead of training; the network must not be trained, only probed."""
    torch.manual_seed(0)
    trained = create_model("rf_lw:resnet18", num_classes=21)
    path = tmp_path / "rf_lw_resnet18_voc.pth"
    torch.save({"state_dict": trained.state_dict()}, path)
    plan = ProbePlan(**{**ProbePlan.tiny().__dict__, "voc_root": str(VOC_SAMPLE), "num_classes": 21,
                        "checkpoints": {"rf_lw:resnet18": str(path)}, "levels": ("level4",)})
    run = run_probes(plan, progress=None)
    assert list(run.frame.variant.unique()) == ["rf_lw:resnet18"] and len(run.frame) == len(POINTS)
    assert (run.frame["train_s"] == 0).all()  # loaded, not trained
    assert "VOC-layout data" in run.setting
    bad = ProbePlan(**{**plan.__dict__, "checkpoints": {"rf_lw:resnet34": str(path)}})
    with pytest.raises(Exception, match="missing|unexpected|shape"):  # a checkpoint for another model is named
        run_probes(bad, progress=None)


def test_probes_section_writes_tables_with_intervals_and_the_figure(tmp_path, monkeypatch):
    import pandas as pd

    from analysis.report.probes import build

    plan = _tiny(tmp_path, monkeypatch, levels=("level4", "level3"))
    section = build(tmp_path, plan)
    for artifact in section.artifacts:
        assert (tmp_path / artifact.path).stat().st_size > 0, artifact.path
    diffs = pd.read_csv(tmp_path / "probes" / "differences.csv")
    assert {"miou", "miou_ci_low", "miou_ci_high", "paper_miou"} <= set(diffs.columns)  # plain names in the CSV
    md = (tmp_path / "probes" / "differences.md").read_text()
    assert "mIoU % (95% CI)" in md and "ci_low" not in md  # intervals folded into text for reading
    table4 = (tmp_path / "probes" / "table4.md").read_text()
    assert "54.6" in table4 and "57.8" in table4 and "generated shapes" in table4  # paper values, setting named
    t4 = pd.read_csv(tmp_path / "probes" / "table4.csv")
    assert (t4["mIoU diff"] - (t4["measured mIoU %"] - t4["paper mIoU %"])).abs().max() < 1e-9
    assert {s.artifact for s in section.scores} == {"Table 4 (probe values)", "Table 4 / claim (c): CRP, not RCU",
                                                    "Level-4 probe power (ours, not a paper number)"}


def test_cli_probes_on_voc_layout_data_with_a_checkpoint(tmp_path):
    from analysis.cli import main

    torch.manual_seed(0)
    path = tmp_path / "lw18.pth"
    torch.save(create_model("rf_lw:resnet18", num_classes=21).state_dict(), path)
    out = tmp_path / "out"
    code = main(["probes", "--tiny", "--voc-root", str(VOC_SAMPLE), "--checkpoint", f"rf_lw:resnet18={path}",
                 "--size", "64", "--levels", "level4", "--out", str(out)])
    assert code == 0 and (out / "probes" / "table4.md").is_file() and (out / "probes" / "probes.png").is_file()
    assert "VOC-layout data" in (out / "probes" / "all.md").read_text()


def test_cli_probes_on_a_k_class_folder(tmp_path, monkeypatch):
    from analysis.cli import main

    root = _k_class_dataset(tmp_path / "seven", 7)
    out = tmp_path / "out"
    assert main(["probes", "--tiny", "--voc-root", str(root), "--num-classes", "7", "--families", "rf_lw",
                 "--levels", "level4", "--size", "64", "--out", str(out)]) == 0
    assert "K = 7 classes (given)" in (out / "probes" / "all.md").read_text()


def test_normalise_takes_uint8_images_as_0_to_255():
    from analysis.datasets.images import normalise

    u8 = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8)
    assert torch.allclose(normalise(u8), normalise(u8.float() / 255))


def test_every_bootstrap_sample_equals_the_metric_on_that_resample():
    """The resamples are computed at once; each must be the split metric of its own images."""
    g = torch.Generator().manual_seed(3)
    scores = (torch.rand(30, 4, generator=g) * 5).round() / 5  # ties in the ranking
    targets = torch.rand(30, 4, generator=g) < 0.3
    targets[:, 3] = False  # a label no image holds: left out of the mean
    cms = torch.randint(0, 20, (30, 5, 5), generator=g)
    idx = resample_indices(30, 50, seed=2)
    boot = bootstrap_multilabel(scores, targets, idx)
    miou = bootstrap_miou(cms, idx)
    for b, rows in enumerate(idx):
        one = multilabel_metrics(scores[rows], targets[rows])
        assert float(boot["map"][b]) == pytest.approx(one["map"], abs=1e-6)
        assert float(boot["label_accuracy"][b]) == pytest.approx(one["label_accuracy"], abs=1e-6)
        assert float(miou[b]) == pytest.approx(mean_iou(cms[rows].sum(0)), abs=1e-6)


@pytest.mark.parametrize("n, m", [(1, 1), (2, 1), (2, 2), (4, 1), (5, 2), (6, 3), (7, 7)])
def test_the_random_score_map_baseline_is_the_exact_expectation_over_every_order(n, m):
    """E[AP] of a random order, against the mean AP over all n! orders of m positives (enumerated): with few val
    images it is well above the positives' share (2 images, 1 positive: 0.75, not 0.5)."""
    import itertools

    from analysis.metrics import average_precision, expected_random_ap

    positives = torch.tensor([True] * m + [False] * (n - m))
    aps = [average_precision(torch.tensor(order, dtype=torch.float64), positives)
           for order in itertools.permutations(range(n))]
    assert expected_random_ap(n, m) == pytest.approx(sum(aps) / len(aps), abs=1e-12)
    assert math.isnan(expected_random_ap(n, 0))


def test_the_map_baseline_of_a_two_image_val_split_is_chance_not_the_share():
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    masks[0, :2, :2], masks[1, :2, :2] = 1, 2  # classes 1 and 2, each in one of the two images
    base = trivial_baselines(masks, 3)
    assert base["map"] == pytest.approx(0.75)
