"""``python -m analysis report --data DIR``: the benefit side on a folder of one's own, with a plan first; folders the
tests build (several class counts, non-square images, with a test split and without) and the VOC sample, at tiny
sizes; the paper's setting (torchvision's pretrained weights by name) where torchvision can load them and a clear
error where it cannot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.cli import main as analysis_main
from analysis.datasets.voc import write_voc

TINY_SETTING = """backbone = "resnet18"
families = ["rf", "rf_lw_rcu", "rf_lw"]
[decoder]
channels = 16
top_channels = 32
[schedule]
size = 64
max_steps = 3
eval_every = 3
batch_size = 4
plateau_from = 1.0
zero_init_residual = false
[pretrain]
max_steps = 2
"""


def _folder(root: Path, k: int, test: bool, n: int = 8, shape=(72, 96), names: bool = True) -> Path:
    rng = np.random.default_rng(k)
    images, masks = {}, {}
    splits = {"train": [], "val": [], **({"test": []} if test else {})}
    for split in splits:
        for i in range(n if split == "train" else 4):
            mask = np.zeros(shape, np.uint8)
            for c in range(1, k):
                top, left = rng.integers(0, shape[0] - 12), rng.integers(0, shape[1] - 12)
                mask[top : top + 12, left : left + 12] = c
            images[f"{split}{i}"] = (rng.uniform(0, 60, (*shape, 3)) + mask[..., None] * (180 // k)).clip(
                0, 255).astype(np.uint8)
            masks[f"{split}{i}"] = mask
            splits[split].append(f"{split}{i}")
    write_voc(root, splits, images, masks, classes=tuple(["background", *(f"thing{c}" for c in range(1, k))])
              if names else None)
    return root


@pytest.fixture
def setting_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SETTING)
    return path


def test_dry_run_prints_the_plan_with_a_measured_estimate_and_trains_nothing(tmp_path, setting_file, capsys):
    root = _folder(tmp_path / "five", k=5, test=True)
    code = analysis_main(["report", "--data", str(root), "--setting", str(setting_file), "--seeds", "2", "--dry-run",
                          "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "plan: networks, probes on folder 'five' (5 classes, 8 train / 4 val / 4 test images" in out
    assert "the set: rf" in out and "control A/A" in out and "Section 3.3: RF without RCUs" in out
    assert "14 network(s) to train" in out and "estimated from steps timed here on your images" in out
    assert not (tmp_path / "out" / "README.md").exists()


def test_the_plan_of_a_multiverse_counts_its_recipes_and_the_base_controls_that_gate_it(tmp_path, setting_file,
                                                                                        capsys):
    root = _folder(tmp_path / "five", k=5, test=True)
    code = analysis_main(["report", "--data", str(root), "multiverse", "--setting", str(setting_file), "--seeds", "2",
                          "--recipes", "zero-init", "--dry-run", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "control A/A" in out and "control: small harm" in out and "recipe zero-init: rf without RCUs" in out
    assert "recipe frozen-bn" not in out
    # the set 3 x 2, the base's controls and RF without RCUs 4 x 2, the recipe's four families x 2
    assert "22 network(s) to train" in out


def test_a_plan_warns_before_the_start_when_the_guard_cannot_be_met(tmp_path, setting_file, capsys, monkeypatch):
    import analysis.report.own_data as own_data

    root = _folder(tmp_path / "slow", k=3, test=False)
    monkeypatch.setattr(own_data, "step_seconds", lambda run, variant, decoder: 60.0)  # a minute a step
    slow = setting_file.read_text().replace("[schedule]\n", "[schedule]\nbudget_min = 1.0\n")
    setting_file.write_text(slow)
    assert analysis_main(["report", "--data", str(root), "--setting", str(setting_file), "--seeds", "1",
                          "--dry-run", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "over the setting's 1-minute time guard" in out and "pass --budget-min" in out


def test_a_report_on_a_non_square_folder_without_a_test_split_names_the_data(tmp_path, setting_file, monkeypatch):
    import analysis.networks.train as train_module

    monkeypatch.setattr(train_module, "CACHE", tmp_path / "cache")
    root = _folder(tmp_path / "three", k=3, test=False, names=False)
    out = tmp_path / "report"
    assert analysis_main(["report", "networks", "--data", str(root), "--setting", str(setting_file), "--seeds", "2",
                          "--out", str(out)]) == 0
    front = (out / "README.md").read_text()
    assert "# rfbench on 'three'" in front and "3 classes, 8 train / 4 val / no test split" in front
    manifest = json.loads((out / "manifest.json").read_text())
    rows = manifest["networks"]["scores"]
    assert rows and all("folder 'three'" in r["measured_with"] for r in rows)
    assert any(r["artifact"] == "Tables 2-3 (mIoU): LW keeps RF's accuracy" for r in rows)
    per_class = (out / "networks" / "per_class_paired.md").read_text()
    assert "class 1" in per_class and "Majority-class baseline" in per_class
    assert manifest["networks"]["protocol"]["sha256"]


def test_a_class_with_no_pixel_in_the_reported_split_is_said_not_averaged(tmp_path):
    from analysis.report.networks import per_class_paired

    cm = torch.zeros(4, 3, 3, dtype=torch.long)
    cm[:, 0, 0], cm[:, 1, 1], cm[:, 1, 0] = 50, 20, 5  # class 2: no labelled pixel anywhere
    table = per_class_paired({"rf": {0: cm, 1: cm}, "rf_lw": {0: cm, 1: cm}}, ["background", "a", "b"])
    absent = table.set_index("class").loc["b"]
    assert "absent from the reported split" in absent.note and absent.pixels == 0
    assert table.set_index("class").loc["a"].rf_lw_minus_rf == pytest.approx(0.0)


@pytest.mark.parametrize("args, words", [
    (["--data", "/nowhere/at/all"], "no VOC-layout data under /nowhere/at/all"),
    (["timing", "--data", "FOLDER"], "unknown section (with --data) 'timing'"),
    (["--dry-run"], "--dry-run is for --data DIR"),
    (["--data", "FOLDER", "--backbone-weights", "IMAGENET9"], "unknown weights 'IMAGENET9' for mobilenet_v2"),
])
def test_bad_report_data_input_is_one_line(args, words, tmp_path, capsys):
    root = _folder(tmp_path / "f", k=3, test=True)
    args = [a.replace("FOLDER", str(root)) for a in args]
    assert analysis_main(["report", *args]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error:") and words in line, line


def test_the_voc_sample_plans(capsys, tmp_path):
    sample = Path(__file__).resolve().parents[1] / "analysis" / "data" / "voc-sample"
    setting = tmp_path / "tiny.toml"
    setting.write_text(TINY_SETTING)
    assert analysis_main(["report", "--data", str(sample), "--setting", str(setting), "--seeds", "2", "--dry-run",
                          "--out", str(tmp_path / "o")]) == 0
    assert "folder 'voc-sample' (18 classes, 2 train / 2 val" in capsys.readouterr().out  # K: largest label + 1


def test_torchvision_weights_by_name_where_torchvision_can_load_them(tmp_path, monkeypatch):
    """The paper's setting: torchvision's ImageNet weights by name. Offline, the file torchvision looks for is put
    where it looks (its hub cache), as a user with the file would; elsewhere torchvision downloads it."""
    import torchvision

    from analysis.networks.pretrain import torchvision_weights
    from bench.errors import DataError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(DataError, match="torchvision looked for .*mobilenet_v2-b0353104.pth.*--backbone-checkpoint"):
        torchvision_weights("mobilenet_v2", "IMAGENET1K_V1", tmp_path / "cache")
    state = torchvision.models.mobilenet_v2().state_dict()
    target = tmp_path / "torch" / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth"
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, target)
    path = torchvision_weights("mobilenet_v2", "IMAGENET1K_V1", tmp_path / "cache")
    loaded = torch.load(path, weights_only=True)
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    assert torchvision_weights("mobilenet_v2", "IMAGENET1K_V1", tmp_path / "cache") == path  # written once


@pytest.mark.slow
def test_the_whole_report_on_a_generated_folder_of_a_hundred_images(tmp_path, setting_file, monkeypatch):
    import analysis.networks.train as train_module

    monkeypatch.setattr(train_module, "CACHE", tmp_path / "cache")
    root = _folder(tmp_path / "hundred", k=4, test=True, n=70)
    out = tmp_path / "report"
    assert analysis_main(["report", "networks", "probes", "path-accuracy", "--data", str(root), "--setting",
                          str(setting_file), "--seeds", "3", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest) == {"networks", "probes", "path-accuracy"}
    assert "folder 'hundred'" in (out / "README.md").read_text()
