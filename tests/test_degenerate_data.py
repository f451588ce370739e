"""Degenerate data is a result, not a crash; a bug is never shown as bad input.

Small VOC-layout folders made here: a 1-image and a 2-image val split, a val split missing a class, a
class other than 0 as the majority, an all-ignore val split, and the shipped VOC sample (2 train / 2 val).
The probes CLI runs end to end on each (tiny plan); an injected plotting failure leaves the tables and
exits 1 with its traceback, never 2.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.cli import main as analysis_main
from analysis.datasets import VOC_SAMPLE, write_voc
from analysis.metrics import confusion_matrix, mean_iou
from analysis.probes import trivial_baselines
from bench.errors import DataError


def _folder(root, n_train: int, n_val: int, k: int = 4, size: int = 64, val_classes=None, ignore_val=False,
            majority: int = 0):
    """k classes; the ``majority`` class fills the background; squares of the others."""
    rng = np.random.default_rng(1)
    images, masks, splits = {}, {}, {"train": [], "val": []}
    for split, n in (("train", n_train), ("val", n_val)):
        classes = [c for c in range(k) if c != majority]
        if split == "val" and val_classes is not None:
            classes = [c for c in classes if c in val_classes]
        for i in range(n):
            mask = np.full((size, size), majority, np.uint8)
            for j, c in enumerate(classes):
                y, x = 4 + 18 * (j // 3), 4 + 18 * (j % 3)
                mask[y : y + 14, x : x + 14] = c
            if split == "val" and ignore_val:
                mask[:] = 255
            image = (rng.random((size, size, 3)) * 60).astype(np.uint8)
            image[mask != majority] += (mask[mask != majority, None] * 40).astype(np.uint8)
            images[f"{split}{i}"], masks[f"{split}{i}"] = image, mask
            splits[split].append(f"{split}{i}")
    write_voc(root, splits, images, masks)
    return root


def _probes(root, out, *extra) -> int:
    return analysis_main(["probes", "--tiny", "--voc-root", str(root), "--families", "rf_lw", "--levels", "level4",
                          "--size", "64", "--out", str(out), *extra])


@pytest.mark.parametrize("n_val, val_classes", [(1, None), (2, None), (3, (1,))],
                         ids=["1-image val", "2-image val", "val missing classes"])
def test_probes_run_on_tiny_val_splits(tmp_path, n_val, val_classes, capsys):
    root = _folder(tmp_path / "data", 6, n_val, val_classes=val_classes)
    out = tmp_path / "out"
    assert _probes(root, out) == 0, capsys.readouterr().err
    assert (out / "probes" / "probes.png").is_file()
    notes = (out / "probes" / "all.md").read_text()
    frame = pd.read_csv(out / "probes" / "all.csv")
    if n_val == 1:
        assert "no intervals: one val image" in notes and "miou_ci_low" not in frame  # undefined, not zero-width
    else:
        assert f"intervals from only {n_val} val images" in notes and frame["miou_ci_low"].notna().all()


def test_probes_on_the_shipped_voc_sample_train_here(tmp_path, capsys):
    """The issue's crash: the project's own sample data (2 train / 2 val images, 21 classes)."""
    assert _probes(VOC_SAMPLE, tmp_path / "out", "--num-classes", "21") == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "probes" / "probes.png").is_file()


def test_an_all_ignore_val_split_is_a_clear_error(tmp_path, capsys):
    root = _folder(tmp_path / "data", 4, 2, ignore_val=True)
    assert _probes(root, tmp_path / "out") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "val split" in line and "no labelled pixel" in line


def test_repeated_families_and_an_out_file_are_refused_before_training(tmp_path, capsys):
    root = _folder(tmp_path / "data", 4, 2)
    assert analysis_main(["probes", "--tiny", "--voc-root", str(root), "--families", "rf", "rf"]) == 2
    assert "more than once" in capsys.readouterr().err
    file = tmp_path / "a-file"
    file.write_text("x")
    assert _probes(root, file) == 2
    assert "is an existing file, not a folder" in capsys.readouterr().err


def test_a_plotting_bug_keeps_the_tables_and_is_not_reported_as_bad_input(tmp_path, monkeypatch, capsys):
    import analysis.report.probes as report

    def broken(*args, **kwargs):
        raise RuntimeError("injected plotting bug")

    monkeypatch.setattr(report, "probes_figure", broken)
    root = _folder(tmp_path / "data", 6, 2)
    out = tmp_path / "out"
    code = _probes(root, out)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" in err and "injected plotting bug" in err and "internal error" in err
    assert not any(line.startswith("error:") for line in err.splitlines())
    for table in ("table4", "all", "differences", "claims"):
        assert (out / "probes" / f"{table}.csv").stat().st_size > 0 and (out / "probes" / f"{table}.md").is_file()


def test_trivial_baselines_take_the_majority_class_not_class_0():
    # class 2 covers most pixels; class 0 ("sky" in a street scene) only a strip
    masks = torch.full((3, 8, 8), 2, dtype=torch.uint8)
    masks[:, :2] = 0
    masks[0, 5:, 5:] = 1
    base = trivial_baselines(masks, 3, train_masks=masks)
    assert base["majority_class"] == 2
    # independent: IoU of class 2 when it is predicted everywhere = its pixels / all labelled pixels; the
    # other classes are never predicted (IoU 0)
    share = float((masks == 2).sum()) / masks.numel()
    assert base["miou"] == pytest.approx(share / 3)
    assert base["miou"] == pytest.approx(mean_iou(confusion_matrix(torch.full_like(masks, 2), masks, 3)))
    # class 1 is in 1 of 3 images, class 2 in all: the majority answer is right on 2/3 and 3/3 of the decisions
    assert base["label_accuracy"] == pytest.approx(5 / 6) and base["multilabel_informative"] == 1.0


def test_an_id_listed_twice_is_read_once_with_a_warning(tmp_path):
    from analysis.datasets import VOCSegmentation

    root = _folder(tmp_path / "data", 3, 2)
    split = root / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt"
    split.write_text("val0\nval1\nval0\n")
    with pytest.warns(UserWarning, match="listed more than once"):
        data = VOCSegmentation(root, "val", (64, 64))
    assert data.ids == ["val0", "val1"] and len(data.load_all()[0]) == 2


def test_splits_that_share_images_are_one_warning_line(tmp_path, capsys):
    """val (or test) listing a train image: the run goes on, and the CLIs say so in one 'warning:' line."""
    from analysis.datasets.voc import warn_shared_images
    from analysis.networks.data import load_data
    from bench.errors import InputWarning, run_cli

    root = _folder(tmp_path / "data", 3, 2)
    segmentation = root / "VOC2012" / "ImageSets" / "Segmentation"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # disjoint splits: nothing to say
        warn_shared_images(root)
    (segmentation / "val.txt").write_text("val0\nval1\ntrain2\n")
    with pytest.warns(InputWarning, match=r"1 image id\(s\) are in both train.txt and val.txt \(train2\); val "
                                          "scores images the network trained on"):
        load_data(root, 64)
    assert run_cli(lambda: warn_shared_images(root) or 0, "python -m analysis") == 0
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert line.startswith("warning: ") and "train.txt and val.txt" in line and "Warning" not in line


def test_an_image_id_with_two_images_is_bad_input(tmp_path):
    from PIL import Image

    from analysis.datasets import VOCSegmentation

    root = _folder(tmp_path / "data", 3, 2)
    jpegs = root / "VOC2012" / "JPEGImages"
    first = next(p for p in jpegs.iterdir() if p.stem == "train1")
    other = jpegs / ("train1.png" if first.suffix != ".png" else "train1.jpg")
    Image.open(first).save(other)
    with pytest.raises(DataError, match=r"image id 'train1' has 2 images in .*: train1\.\w+, train1\.\w+; keep one"):
        VOCSegmentation(root, "train", (64, 64)).load_all()


def test_erf_api_arguments_are_checked():
    from analysis.erf import decoder_grid_erf, gradient_erf
    from bench import create_model

    model = create_model("rf_lw:resnet18", num_classes=3, decoder={"channels": 8, "top_channels": 16}).eval()
    x = torch.randn(2, 3, 64, 64)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        gradient_erf(model, x, "logits", batch_size=0)
    with pytest.raises(ValueError, match="n_boot must be an integer >= 1, got -5"):
        decoder_grid_erf(model, x, n_boot=-5)
    with pytest.raises(TypeError, match="levels must be a list"):
        decoder_grid_erf(model, x, levels="level4")
    with pytest.raises(ValueError, match=r"unknown tap\(s\) \['level9.after_crp'\]"):
        gradient_erf(model, x, ["level9.after_crp"])
    with pytest.raises(ValueError, match="non-empty"):
        gradient_erf(model, x[:0], "logits")
