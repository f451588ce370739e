"""Trained networks as a cached artifact: the record, the cache (reuse, and retraining whenever the
record does not match), any VOC-layout folder and class count, the plateau rule, the CLI's checks.

Everything runs on a few 64-px images and 2-4 training steps (seconds); the measured CPU and GPU
settings are not run here.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from analysis.cli import main as analysis_main
from analysis.datasets.synthetic import CLASSES, SyntheticSpec
from analysis.datasets.voc import IGNORE, write_voc
from analysis.networks import (
    IDENTITY,
    SETTINGS,
    NetworkSetting,
    Schedule,
    folder_hash,
    load_data,
    plateaued,
    train_network,
)
from analysis.networks import evaluation as evaluation_module
from analysis.networks import loop as loop_module
from analysis.networks import store as store_module
from analysis.networks import train as train_module
from bench.errors import DataError
from bench.models import FAMILIES

TINY_DATA = SyntheticSpec(n_train=8, n_val=4, size=64, radius=(4, 14))
TINY_SCHEDULE = Schedule(size=64, max_steps=3, eval_every=2, batch_size=4, warmup_steps=1)
NARROW = {"channels": 16, "top_channels": 32}
VARIANT = "rf_lw:resnet18"


class Trained(Exception):
    """Raised by a stand-in for the training: proves a call would have trained."""


def _no_training(*args, **kwargs):
    raise Trained


def _strict(text: str):
    def refuse(name):
        raise AssertionError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _own_miou(model, images, masks, k):
    """The val mIoU computed here by hand (per-class TP / (TP + FP + FN) over all labelled pixels)."""
    from analysis.datasets.images import normalise

    with torch.no_grad():
        logits = model(normalise(images))
    pred = torch.nn.functional.interpolate(logits, size=masks.shape[-2:], mode="bilinear",
                                           align_corners=False).argmax(1).numpy()
    y = masks.numpy()
    keep = y != IGNORE
    ious = []
    for c in range(k):
        tp = np.sum((pred == c) & (y == c) & keep)
        fp = np.sum((pred == c) & (y != c) & keep)
        fn = np.sum((pred != c) & (y == c) & keep)
        if tp + fp + fn:
            ious.append(tp / (tp + fp + fn))
    return float(np.mean(ious))


@pytest.fixture(scope="module")
def tiny_data():
    return load_data(TINY_DATA, TINY_SCHEDULE.size, progress=None)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("networks")


@pytest.fixture(scope="module")
def trained(tiny_data, cache):
    return train_network(VARIANT, tiny_data, TINY_SCHEDULE, seed=0, decoder=NARROW, cache_dir=cache, progress=False)


def test_the_record_holds_every_field(trained, tiny_data):
    record = trained.record
    assert not trained.cached
    for key in IDENTITY + ("key", "data", "class_source", "steps", "best_step", "stop_reason", "seconds",
                           "val_miou", "val_iou_per_class", "history", "device", "environment",
                           "checkpoint_sha256", "record_sha256"):
        assert key in record, key
    # the decoder spec is fully resolved: every DecoderSpec field of the family with the changes applied
    assert record["decoder"] == dataclasses.asdict(FAMILIES["rf_lw"].with_changes(**NARROW))
    assert (record["variant"], record["family"], record["backbone"]) == (VARIANT, "rf_lw", "resnet18")
    assert record["num_classes"] == len(CLASSES) and record["classes"] == list(CLASSES)
    assert record["data"] == {"kind": "generated", "spec": json.loads(json.dumps(dataclasses.asdict(TINY_DATA)))}
    recipe = {k: v for k, v in dataclasses.asdict(TINY_SCHEDULE).items() if k != "budget_min"}
    assert record["schedule"] == json.loads(json.dumps(recipe))  # the guard is not part of the recipe
    assert record["complete"] is True and record["budget_min"] is None
    assert (record["seed"], record["steps"], record["stop_reason"]) == (0, 3, "max_steps")
    assert [h["step"] for h in record["history"]] == [2, 3]  # every eval_every steps and at the last one
    best = max(record["history"], key=lambda h: h["val_miou"])
    assert record["best_step"] == best["step"] and record["val_miou"] == pytest.approx(best["val_miou"])
    assert record["environment"]["device"] == "cpu" and record["precision"] == "fp32"
    assert set(record["val_iou_per_class"]) == set(CLASSES)
    # the kept weights score the recorded mIoU, computed independently here
    own = _own_miou(trained.model, tiny_data.val_images, tiny_data.val_masks, len(CLASSES))
    assert record["val_miou"] == pytest.approx(own, abs=1e-9)
    on_disk = _strict((trained.path / "record.json").read_text())
    assert on_disk == record
    assert sorted(p.name for p in trained.path.iterdir()) == ["model.pt", "record.json"]


def test_a_second_call_loads_instead_of_training(trained, tiny_data, cache, monkeypatch):
    monkeypatch.setattr(loop_module, "fit", _no_training)
    again = train_network(VARIANT, tiny_data, TINY_SCHEDULE, seed=0, decoder=NARROW, cache_dir=cache, progress=False)
    assert again.cached and again.path == trained.path and again.record == trained.record
    first, second = trained.model.state_dict(), again.model.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("change", [
    {"schedule": dataclasses.replace(TINY_SCHEDULE, lr=5e-4)},
    {"schedule": dataclasses.replace(TINY_SCHEDULE, optimizer="adamw", lr=1e-3)},
    {"schedule": dataclasses.replace(TINY_SCHEDULE, momentum=0.5)},
    {"schedule": dataclasses.replace(TINY_SCHEDULE, max_steps=4)},
    {"seed": 1},
    {"decoder": {"channels": 8, "top_channels": 32}},
    {"variant": "rf:resnet18"},
])
def test_anything_that_changes_the_weights_retrains(trained, tiny_data, cache, monkeypatch, change):
    monkeypatch.setattr(loop_module, "fit", _no_training)
    args = {"variant": VARIANT, "schedule": TINY_SCHEDULE, "seed": 0, "decoder": NARROW, **change}
    with pytest.raises(Trained):
        train_network(args.pop("variant"), tiny_data, cache_dir=cache, progress=False, **args)


def test_changed_data_retrains(trained, cache, monkeypatch):
    monkeypatch.setattr(loop_module, "fit", _no_training)
    other = load_data(dataclasses.replace(TINY_DATA, seed=1), 64, progress=None)
    assert other.hash != trained.record["data_hash"]
    with pytest.raises(Trained):
        train_network(VARIANT, other, TINY_SCHEDULE, seed=0, decoder=NARROW, cache_dir=cache, progress=False)


def _copy_of(trained, tmp_path):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(trained.path, cache / trained.path.name)
    return cache, cache / trained.path.name


@pytest.mark.parametrize("edit", ["record_value", "record_identity_resigned", "checkpoint", "record_missing",
                                  "record_garbage"])
def test_a_record_that_does_not_match_retrains(trained, tiny_data, tmp_path, monkeypatch, edit):
    cache, folder = _copy_of(trained, tmp_path)
    monkeypatch.setattr(loop_module, "fit", _no_training)
    # the untouched copy is reused
    assert train_network(VARIANT, tiny_data, TINY_SCHEDULE, seed=0, decoder=NARROW, cache_dir=cache,
                         progress=False).cached
    record = json.loads((folder / "record.json").read_text())
    if edit == "record_value":
        record["val_miou"] = 0.99
        (folder / "record.json").write_text(json.dumps(record))
    elif edit == "record_identity_resigned":  # another schedule's record, with a digest that matches it
        record["schedule"]["lr"] = 0.5
        record["record_sha256"] = store_module._digest({k: v for k, v in record.items() if k != "record_sha256"})
        (folder / "record.json").write_text(json.dumps(record))
    elif edit == "checkpoint":
        state = torch.load(folder / "model.pt", weights_only=True)
        state["decoder.classifier.weight"] += 1
        torch.save(state, folder / "model.pt")
    elif edit == "record_missing":
        (folder / "record.json").unlink()
    else:
        (folder / "record.json").write_text("{not json")
    with pytest.raises(Trained):
        train_network(VARIANT, tiny_data, TINY_SCHEDULE, seed=0, decoder=NARROW, cache_dir=cache, progress=False)


def test_a_retrained_network_replaces_the_mismatching_one(trained, tiny_data, tmp_path):
    cache, folder = _copy_of(trained, tmp_path)
    record = json.loads((folder / "record.json").read_text())
    record["val_miou"] = 0.99
    (folder / "record.json").write_text(json.dumps(record))
    net = train_network(VARIANT, tiny_data, TINY_SCHEDULE, seed=0, decoder=NARROW, cache_dir=cache, progress=False)
    assert not net.cached and net.path == folder
    assert _strict((folder / "record.json").read_text())["val_miou"] == pytest.approx(trained.record["val_miou"])
    assert sorted(p.name for p in cache.iterdir()) == [".locks", folder.name]  # no temporary or stale folder left
    # seeded: the retrained weights equal the first training's
    first, second = trained.model.state_dict(), net.model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def _voc_folder(root, k, n_train, n_val, size=64, val_all_ignore=False, seed=0):
    """A VOC-layout folder with K classes (labels 0..K-1 as blocks), no classes.txt."""
    rng = np.random.default_rng(seed)
    images, masks, splits = {}, {}, {"train": [], "val": []}
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            image_id = f"{split}{i}"
            mask = np.zeros((size, size), np.uint8)
            for c in range(1, k):
                top, left = rng.integers(0, size - 16, 2)
                mask[top : top + 16, left : left + 16] = c
            if split == "val" and val_all_ignore:
                mask[:] = IGNORE
            image = (rng.uniform(0, 60, (size, size, 3)) + (mask[..., None] % 255) * 40).clip(0, 255)
            images[image_id], masks[image_id] = image.astype(np.uint8), mask
            splits[split].append(image_id)
    write_voc(root, splits, images, masks)
    return root


def test_a_voc_folder_with_five_classes_and_a_two_image_val_split_trains(tmp_path):
    root = _voc_folder(tmp_path / "five", k=5, n_train=6, n_val=2)
    schedule = dataclasses.replace(TINY_SCHEDULE, max_steps=2)
    net = train_network(VARIANT, str(root), schedule, decoder=NARROW, cache_dir=tmp_path / "cache", progress=False)
    record = net.record
    assert record["num_classes"] == 5 and record["class_source"] == "largest label + 1"
    assert record["classes"] == ["background", "class 1", "class 2", "class 3", "class 4"]
    assert record["data"] == {"kind": "voc", "root": str(root.resolve())}
    assert record["data_hash"] == folder_hash(root)
    assert len(record["val_iou_per_class"]) == 5 and 0 <= record["val_miou"] <= 1
    assert net.model.num_classes == 5


def test_the_folder_hash_sees_an_edited_mask(tmp_path):
    root = _voc_folder(tmp_path / "d", k=3, n_train=2, n_val=2)
    before = folder_hash(root)
    assert folder_hash(root) == before
    mask = root / "VOC2012" / "SegmentationClass" / "val1.png"
    from PIL import Image

    with Image.open(mask) as m:
        data = np.asarray(m).copy()
        palette = m.getpalette()
    data[0, 0] = 2 if data[0, 0] != 2 else 1
    edited = Image.fromarray(data, mode="P")
    edited.putpalette(palette)
    edited.save(mask)
    assert folder_hash(root) != before


def test_an_all_ignore_val_split_is_a_data_error(tmp_path, monkeypatch):
    root = _voc_folder(tmp_path / "ignored", k=3, n_train=4, n_val=2, val_all_ignore=True)
    monkeypatch.setattr(loop_module, "fit", _no_training)
    with pytest.raises(DataError, match="val split .* no labelled pixel"):
        train_network(VARIANT, root, TINY_SCHEDULE, num_classes=3, decoder=NARROW, cache_dir=tmp_path / "c",
                      progress=False)


@pytest.mark.parametrize("scores, patience, delta, stops", [
    ([], 2, 0.0, False),
    ([0.5, 0.5], 2, 0.0, False),  # not more than `patience` evaluations yet
    ([0.1, 0.2, 0.3, 0.4], 2, 0.005, False),  # still rising
    ([0.5, 0.6, 0.6, 0.602], 2, 0.005, True),  # +0.002 over two evaluations: below the delta
    ([0.5, 0.6, 0.6, 0.606], 2, 0.005, False),  # +0.006: more than the delta
    ([0.5, 0.6, 0.6, 0.6], 2, 0.0, True),  # equal is not better
    ([0.5, 0.6, 0.55, 0.59, 0.7], 3, 0.01, False),  # a dip, then a new best within the window
    ([0.5, 0.6, 0.55, 0.59, 0.58], 3, 0.01, True),
    ([0.9, 0.3, 0.4, 0.5], 3, 0.0, True),  # the best is before the window
])
def test_the_plateau_rule(scores, patience, delta, stops):
    assert plateaued(scores, patience, delta) is stops


def test_training_stops_at_the_plateau_and_keeps_the_best_weights(tiny_data, tmp_path, monkeypatch):
    fed = iter([0.1, 0.5, 0.45, 0.5, 0.5])  # 4 evaluations (plateau after 2 without gain), then the final one
    real = evaluation_module.miou
    monkeypatch.setattr(evaluation_module, "miou", lambda cm: (next(fed), real(cm)[1]))
    schedule = dataclasses.replace(TINY_SCHEDULE, max_steps=20, eval_every=1, patience=2, min_delta=0.01,
                                   plateau_from=0.0)
    net = train_network(VARIANT, tiny_data, schedule, decoder=NARROW, cache_dir=tmp_path, progress=False)
    assert (net.record["stop_reason"], net.record["steps"], net.record["best_step"]) == ("plateau", 4, 2)
    assert [h["val_miou"] for h in net.record["history"]] == [0.1, 0.5, 0.45, 0.5]


def test_a_run_the_time_guard_stops_is_incomplete_never_cached(tiny_data, tmp_path):
    from analysis.networks import IncompleteTraining

    schedule = dataclasses.replace(TINY_SCHEDULE, max_steps=20, eval_every=10, budget_min=1e-6)
    with pytest.raises(IncompleteTraining, match="time guard .* rf_lw:resnet18 seed 0 at step 1 of 20") as err:
        train_network(VARIANT, tiny_data, schedule, decoder=NARROW, cache_dir=tmp_path, progress=False)
    (record,) = err.value.records
    assert (record["stop_reason"], record["steps"], record["complete"]) == ("budget", 1, False)
    assert not any(p.name.startswith("resnet18") for p in tmp_path.iterdir())  # nothing cached as final


@pytest.mark.parametrize("change, words", [
    ({"optimizer": "adam"}, "unknown optimizer 'adam' (did you mean 'adamw'?); valid: sgd, adamw"),
    ({"optimizer": None}, "unknown optimizer None; valid: sgd, adamw"),
    ({"momentum": 1.0}, "momentum must be in [0, 1), got 1.0"),
    ({"momentum": -0.1}, "momentum must be a finite number >= 0"),
    ({"lr": float("nan")}, "lr must be a finite number"),
])
def test_a_bad_schedule_is_refused_naming_the_field_and_the_choices(change, words):
    with pytest.raises(ValueError) as err:
        dataclasses.replace(TINY_SCHEDULE, **change).validate()
    assert words in str(err.value)


def test_a_cpu_training_runs_on_one_thread_whatever_the_caller_set(tiny_data, tmp_path):
    """The weights depend on the thread count (the float order of a convolution), the cache key does not: so a
    CPU trains on loop.TRAIN_THREADS threads, and a network trained from a 2-thread caller equals one trained
    from a 1-thread caller; the caller's setting is restored."""
    from bench.environment import torch_threads

    nets = []
    for threads in (2, 1):
        with torch_threads(threads):
            nets.append(train_network("rf:resnet18", tiny_data, TINY_SCHEDULE, decoder=NARROW,
                                      cache_dir=tmp_path / str(threads), progress=False))
            assert torch.get_num_threads() == threads
    assert [n.record["threads"] for n in nets] == [train_module.TRAIN_THREADS] * 2 == [1, 1]
    a, b = (n.model.state_dict() for n in nets)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_named_settings_are_the_documented_ones():
    cpu, gpu = SETTINGS["cpu"], SETTINGS["gpu"]
    assert cpu.variants() == ["rf:mobilenet_v2", "rf_lw_rcu:mobilenet_v2", "rf_lw:mobilenet_v2"] == gpu.variants()
    assert (cpu.schedule.size, cpu.seeds, cpu.device, cpu.decoder) == (128, 1, "cpu",
                                                                        {"channels": 48, "top_channels": 96})
    assert (gpu.seeds, gpu.device, gpu.decoder) == (3, "cuda", None)


CLI_CASES = [
    (["train", "rf999"], "unknown model 'rf999'"),
    (["train", "rf_lw:resnet18", "--setting", "tpu"], "unknown setting 'tpu'"),
    (["train", "rf_lw:resnet18", "--setting", "cpuu"], "did you mean 'cpu'"),
    (["train", "rf_lw:resnet18", "--setting", "cpu", "--seeds", "0"], "--seeds must be an integer >= 1, got 0"),
    (["train", "rf_lw:resnet18", "--setting", "cpu", "--seeds", "x"], "invalid int value: 'x'"),
    (["train", "rf_lw:resnet18", "--setting", "cpu", "--budget-min", "-1"],
     "--budget-min must be a finite number of minutes > 0, got -1.0"),
    (["train", "rf_lw:resnet18", "--setting", "cpu", "--budget-min", "nan"],
     "--budget-min must be a finite number of minutes > 0, got nan"),
    (["train", "rf_lw:resnet18", "--setting", "cpu", "--budget-min", "0"],
     "--budget-min must be a finite number of minutes > 0, got 0.0"),
    (["train", "rf_lw:resnet18", "--setting", "cpu", "--seeds", "100000000000"],
     "--seeds must be an integer <= 1000, got 100000000000"),
    (["train", "rf_lw:resnet18", "--setting", "cpu", "--size", "8"], "--size must be an integer >= 32"),
    (["train", "rf_lw:resnet18", "--setting", "cpu", "--steps", "0"], "--steps must be an integer >= 1"),
    (["train", "rf_lw:resnet18", "--setting", "cpu", "--lr", "0"], "--lr must be a finite number > 0"),
    (["train", "rf_lw:resnet18", "--setting", "cpu", "--lr", "inf"], "--lr must be a finite number"),
    (["train", "rf_lw:resnet18", "--setting", "cpu", "--lr", "-5"], "--lr must be a finite number > 0, got -5.0"),
    (["train", "rf_lw:resnet18", "--setting", "cpu", "--backbone-checkpoint", "/nonexistent.pth"],
     "backbone checkpoint /nonexistent.pth: no such file"),
    (["train", "--spec", "/nonexistent.toml"], "ablation spec not found: /nonexistent.toml"),
    (["train", "rf_lw:resnet18", "--setting", "cpu", "--device", "tpu"], "unknown device 'tpu'"),
    (["train", "rf_lw:resnet18", "--setting", "cpu", "--num-classes", "1"], "--num-classes must be an integer >= 2"),
    (["train", "rf_lw:resnet18", "--setting", "cpu", "--data", "/nonexistent/voc"], "/nonexistent/voc"),
]


@pytest.mark.parametrize("args, words", CLI_CASES)
def test_cli_bad_input_is_one_line_and_exit_2_before_any_data_is_read(args, words, capsys, monkeypatch):
    import analysis.networks.sets as sets_module

    monkeypatch.setattr(sets_module, "load_data", _no_training)  # reading data would raise Trained
    assert analysis_main(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and words in line


def test_cli_bad_folders_are_refused_before_any_data_is_read(tmp_path, capsys, monkeypatch):
    import analysis.networks.sets as sets_module

    monkeypatch.setattr(sets_module, "load_data", _no_training)
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    for args, words in ((["--data", str(tmp_path / "empty")], "no VOC2012 segmentation data"),
                        (["--data", str(tmp_path / "file")], "is a file, not a folder"),
                        (["--cache", str(tmp_path / "file")], "is an existing file, not a folder")):
        assert analysis_main(["train", "rf_lw:resnet18", "--setting", "cpu", *args]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert words in line


def test_cli_trains_then_loads_and_prints_strict_json(tmp_path, capsys, monkeypatch):
    import analysis.networks.settings as settings_module

    tiny = NetworkSetting("cpu", TINY_SCHEDULE, seeds=1, device="cpu", decoder=NARROW, families=("rf_lw",),
                          data=TINY_DATA)
    monkeypatch.setitem(settings_module.SETTINGS, "cpu", tiny)
    args = ["train", "--setting", "cpu", "--cache", str(tmp_path), "--json"]
    assert analysis_main(args) == 0
    (row,) = _strict(capsys.readouterr().out)
    assert (row["variant"], row["seed"], row["steps"], row["stop_reason"], row["cached"]) == (
        VARIANT, 0, 3, "max_steps", False)
    # a class absent from the 4 val images and from the predictions has no IoU: null, never NaN
    assert all(v is None or 0 <= v <= 1 for v in row["val_iou_per_class"].values())
    monkeypatch.setattr(loop_module, "fit", _no_training)
    assert analysis_main(args[:-1]) == 0
    out = capsys.readouterr().out
    assert "cached" in out and VARIANT in out and f"{100 * row['val_miou']:.1f}%" in out
    assert not math.isnan(row["val_miou"])


def test_a_trained_set_trains_in_worker_processes_and_the_caller_loads_what_they_wrote(tmp_path):
    from analysis.networks import trained_set
    from analysis.probes.run import TINY_NETWORKS

    said: list[str] = []
    nets = trained_set(TINY_NETWORKS, workers=2, progress=False, say=said.append, cache_dir=tmp_path)
    assert any("in 2 processes" in line for line in said)  # spawned: the workers wrote the cache ...
    assert [n.record["variant"] for n in nets] == TINY_NETWORKS.variants()
    assert not any(n.cached for n in nets)  # ... and these networks were trained by this call
    assert all(n.path.parent == tmp_path and (n.path / "model.pt").is_file() for n in nets)
    assert all(0 <= n.record["val_miou"] <= 1 and n.record["steps"] == 2 for n in nets)
    assert all(n.record["threads"] == train_module.TRAIN_THREADS for n in nets)  # one thread each
    said.clear()
    again = trained_set(TINY_NETWORKS, workers=2, progress=False, say=said.append, cache_dir=tmp_path)
    assert all(n.cached for n in again) and not any("processes" in line for line in said)  # nothing to train
    for a, b in zip(nets, again, strict=True):  # the same weights: loaded, not retrained
        assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(),
                                                     strict=True))


def test_a_name_registered_in_the_caller_trains_in_a_worker_process(tmp_path):
    from analysis.networks import trained_set
    from analysis.probes.run import TINY_NETWORKS
    from bench.models import register_variant

    register_variant("tiny_lw_crp1", "rf_lw:resnet18", crp_stages=1)  # the test's registry is restored afterwards
    nets = trained_set(TINY_NETWORKS, variants=["tiny_lw_crp1", "rf_lw:resnet18"], workers=2, progress=False,
                       say=None, cache_dir=tmp_path)
    assert [n.record["variant"] for n in nets] == ["tiny_lw_crp1", "rf_lw:resnet18"] and not any(n.cached for n in nets)
    assert nets[0].record["decoder"]["crp_stages"] == 1 and nets[1].record["decoder"]["crp_stages"] == 4
