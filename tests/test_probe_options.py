"""The probes' promises, through the CLI on a small VOC-layout folder (``--tiny``, 64 px, level 4): ``--seeds 2``
trains two networks per family and reports the seeds' spread; ``classes.txt`` sets K and the class names; every
tap, family and seed is bootstrapped with one and the same set of val-image resamples (paired differences)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import analysis.probes.heads as heads
import analysis.report.probes as report_probes
from analysis.datasets.voc import dataset_classes
from analysis.probes import POINTS

from .test_probes import _k_class_dataset

NAMES = ("background", "square", "disc", "triangle", "star", "ring")  # 6 names; the masks only use labels 0..3


@pytest.fixture
def four_label_folder_with_six_names(tmp_path):
    root = _k_class_dataset(tmp_path / "data", 4)
    (root / "VOC2012" / "classes.txt").write_text("\n".join(NAMES) + "\n")
    return root


def test_classes_txt_sets_k_over_the_largest_label(four_label_folder_with_six_names):
    root = four_label_folder_with_six_names
    masks = [torch.tensor([[0, 3], [1, 255]], dtype=torch.uint8)]
    assert dataset_classes(root, None, masks) == (6, NAMES, "classes.txt")
    (root / "VOC2012" / "classes.txt").unlink()
    assert dataset_classes(root, None, masks)[0] == 4  # without it: the largest label + 1


def test_a_repeated_class_name_is_bad_input(four_label_folder_with_six_names, capsys):
    """Per-class tables are keyed by name: a name given twice would silently drop a class from them."""
    from analysis.cli import main

    root = four_label_folder_with_six_names
    (root / "VOC2012" / "classes.txt").write_text("background\nred\nred\nblue\n")
    assert main(["train", "--data", str(root), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "class name 'red' appears twice (class 1 and class 2)" in err and "Traceback" not in err


def test_cli_seeds_classes_and_one_resample_set(four_label_folder_with_six_names, tmp_path, monkeypatch):
    from analysis.cli import main

    runs, resamples = [], []
    real_run, real_miou, real_multilabel = report_probes.run_probes, heads.bootstrap_miou, heads.bootstrap_multilabel

    def recording_run(plan, progress=print):
        runs.append(real_run(plan, progress))
        return runs[-1]

    def recording_miou(cms, idx):
        resamples.append(idx)
        return real_miou(cms, idx)

    def recording_multilabel(scores, targets, idx):
        resamples.append(idx)
        return real_multilabel(scores, targets, idx)

    # the tiny plan's networks train two steps each: what is checked needs no more
    monkeypatch.setattr(report_probes, "run_probes", recording_run)
    monkeypatch.setattr(heads, "bootstrap_miou", recording_miou)
    monkeypatch.setattr(heads, "bootstrap_multilabel", recording_multilabel)
    out = tmp_path / "out"
    assert main(["probes", "--tiny", "--voc-root", str(four_label_folder_with_six_names), "--families", "rf", "rf_lw",
                 "--levels", "level4", "--size", "64", "--seeds", "2", "--out", str(out)]) == 0
    (run,) = runs

    # --seeds 2: two networks per family, every tap probed for each
    assert run.plan.seeds == 2 and sorted(run.frame.seed.unique()) == [0, 1]
    n = len(POINTS)  # one level
    assert run.frame.groupby(["variant", "seed"]).size().to_dict() == {
        ("rf:resnet18", 0): n, ("rf:resnet18", 1): n, ("rf_lw:resnet18", 0): n, ("rf_lw:resnet18", 1): n}
    # the seeds' spread: the sample sd of the two per-seed differences, recomputed from the probes' own table
    diffs = pd.read_csv(out / "probes" / "differences.csv")
    frame = pd.read_csv(out / "probes" / "all.csv").set_index(["variant", "seed", "tap"])
    crp = diffs[(diffs.variant == "rf:resnet18") & (diffs.block == "CRP")].iloc[0]
    per_seed = [frame.loc[("rf:resnet18", s, "level4.after_crp"), "miou"]
                - frame.loc[("rf:resnet18", s, "level4.after_sum"), "miou"] for s in (0, 1)]  # from CRP's input
    assert crp.seeds == 2 and crp.miou == pytest.approx(sum(per_seed) / 2)
    assert crp.miou_seed_sd == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2**0.5)

    # classes.txt: K = 6 and its names, not the 4 labels seen
    assert run.classes == NAMES and "K = 6 classes (classes.txt)" in run.setting

    # one resample set: 2 seeds x (RefineNet's 4 taps + LW's 3: no RCU, after_rcu is before_rcu) x (mIoU, the
    # multi-label metrics), all the same indices
    assert len(resamples) == 2 * (4 + 3) * 2
    assert all(torch.equal(idx, resamples[0]) for idx in resamples)
    n_val = 4
    assert resamples[0].shape == (run.plan.probe.n_boot, n_val) and len(resamples[0].unique(dim=0)) > 1


def test_probes_reuse_what_train_made_with_the_same_budget_and_cache(four_label_folder_with_six_names, tmp_path,
                                                                     monkeypatch, capsys):
    """`train --budget-min M --cache D` then `probes --budget-min M --cache D` on the same folder: the probes load
    the networks `train` wrote instead of training them again. (The budget is a guard, not part of the cache key:
    a run it stops is incomplete and never cached, so the setting's schedule is made 2 steps long here.)"""
    from dataclasses import replace

    import analysis.networks.settings as settings_module
    from analysis.cli import main

    cpu = settings_module.SETTINGS["cpu"]
    monkeypatch.setitem(settings_module.SETTINGS, "cpu", replace(cpu, schedule=replace(cpu.schedule, max_steps=2)))
    root, cache = four_label_folder_with_six_names, tmp_path / "cache"
    assert main(["train", "rf_lw:resnet18", "--data", str(root), "--budget-min", "5", "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    size = cpu.schedule.size
    assert f"at a short side of {size}px, aspect kept;" in out and f"at {size}x{size}px;" not in out  # a folder
    assert (f"warm-up ({cpu.schedule.warmup_steps} steps) is not shorter than the step limit (2): the rate rises "
            f"for the whole run, ends at {2 / cpu.schedule.warmup_steps:.0%} of its peak") in out
    trained = sorted(p.name for p in cache.iterdir() if p.name != ".locks")
    assert len(trained) == 2  # the network and the setting's shared backbone's pretraining network
    runs = []
    real_run = report_probes.run_probes
    monkeypatch.setattr(report_probes, "run_probes", lambda plan, progress=print: runs.append(real_run(plan, None))
                        or runs[-1])
    assert main(["probes", "--voc-root", str(root), "--families", "rf_lw", "--backbone", "resnet18", "--levels",
                 "level4", "--budget-min", "5", "--cache", str(cache), "--out", str(tmp_path / "out")]) == 0
    (run,) = runs
    assert run.frame["cached"].all()
    assert sorted(p.name for p in cache.iterdir() if p.name != ".locks") == trained  # loaded, nothing new trained


def test_a_smaller_size_scales_the_settings_crops_instead_of_refusing_them():
    """--size 64 with the 'cpu' setting (random 80 px crops of 128 px images): 40 px crops, not 'crop must be an
    integer <= 64, got 80' (the crop is the setting's, not the user's)."""
    from analysis.probes import ProbePlan

    schedule = ProbePlan(size=64).setting().schedule
    assert (schedule.size, schedule.crop) == (64, 40)
    ProbePlan(size=64).validate()
    assert ProbePlan(size=256).setting().schedule.crop == 160
    assert ProbePlan().setting().schedule.crop == 80
