"""What a trained network promises, each tested against the promise itself (issue 46): the kept weights are the best
evaluation's, two seeds see different batches, the plateau rule compares with the best before its window and never
stops a run early in its schedule, a run at its step limit is the step limit's, the key follows the data a backbone
was pretrained on and the torch release that trained it, and the reported split is test where there is one."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.datasets.synthetic import SyntheticSpec
from analysis.networks import Schedule, load_data, plateaued, train_network
from analysis.networks import evaluation as evaluation_module
from analysis.networks import loop as loop_module

TINY = SyntheticSpec(n_train=8, n_val=4, n_test=4, size=64, radius=(4, 14))
SCHEDULE = Schedule(size=64, max_steps=6, eval_every=1, batch_size=4, warmup_steps=1, patience=2, min_delta=0.01,
                    plateau_from=1.0)
NARROW = {"channels": 16, "top_channels": 32}
REAL_EVALUATE, REAL_MIOU = evaluation_module.evaluate, evaluation_module.miou


@pytest.fixture(scope="module")
def data():
    return load_data(TINY, 64, progress=None)


def _feed(monkeypatch, scores):
    """Every evaluation returns the next of ``scores`` as its mIoU and records the model's weights at that moment (the
    last score fed is the kept weights' own, which the loop reads once more at the end)."""
    fed, seen = iter([*scores, max(scores)]), []

    def evaluate(model, *args, **kwargs):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return REAL_EVALUATE(model, *args, **kwargs)

    monkeypatch.setattr(evaluation_module, "evaluate", evaluate)
    monkeypatch.setattr(evaluation_module, "miou", lambda cm: (next(fed), REAL_MIOU(cm)[1]))
    return seen


def test_the_kept_weights_are_the_best_evaluations_not_the_last(data, tmp_path, monkeypatch):
    seen = _feed(monkeypatch, [0.1, 0.6, 0.3, 0.2, 0.25, 0.2])  # the best at step 2 of 6
    net = train_network("rf_lw:resnet18", data, SCHEDULE, decoder=NARROW, cache_dir=tmp_path, progress=False)
    assert (net.record["best_step"], net.record["steps"], net.record["stop_reason"]) == (2, 6, "max_steps")
    kept = net.model.state_dict()
    best, last = seen[1], seen[-1]
    assert all(torch.equal(kept[k].cpu(), best[k]) for k in best)
    assert not all(torch.equal(kept[k].cpu(), last[k]) for k in last)  # the training moved on after step 2
    saved = torch.load(net.path / "model.pt", weights_only=True)  # and the store holds the same weights
    assert all(torch.equal(saved[k], best[k]) for k in best)


def test_a_flat_curve_at_the_step_limit_ends_by_the_step_limit(data, tmp_path, monkeypatch):
    _feed(monkeypatch, [0.5] * 6)
    schedule = dataclasses.replace(SCHEDULE, plateau_from=0.0, patience=5)  # the rule could fire only at step 6
    net = train_network("rf_lw:resnet18", data, schedule, decoder=NARROW, cache_dir=tmp_path, progress=False)
    assert (net.record["stop_reason"], net.record["steps"]) == ("max_steps", 6)


def test_the_plateau_rule_never_stops_a_run_before_plateau_from(data, tmp_path, monkeypatch):
    _feed(monkeypatch, [0.5] * 6)
    early = dataclasses.replace(SCHEDULE, plateau_from=0.0)
    assert train_network("rf_lw:resnet18", data, early, decoder=NARROW, cache_dir=tmp_path / "a",
                         progress=False).record["steps"] == 3  # flat after 2 + 1 evaluations
    _feed(monkeypatch, [0.5] * 6)
    late = dataclasses.replace(SCHEDULE, plateau_from=0.75)
    net = train_network("rf_lw:resnet18", data, late, decoder=NARROW, cache_dir=tmp_path / "b", progress=False)
    assert (net.record["stop_reason"], net.record["steps"]) == ("plateau", 5)  # 0.75 x 6 = 4.5: step 5 at the soonest


def _first_batches(data, seed: int, steps: int = 2) -> list[torch.Tensor]:
    """The inputs a real segmenter sees in its first training steps under a seed."""
    from bench.models import create_model

    model = create_model("rf_lw:resnet18", num_classes=data.num_classes, decoder=NARROW)
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()) if m.training else None)
    schedule = dataclasses.replace(SCHEDULE, max_steps=steps, eval_every=steps)
    loop_module.fit(model, data, schedule, seed, "cpu", "probe", progress=False)
    return seen[:steps]


def test_two_seeds_see_different_batches_and_one_seed_the_same(data):
    a, b, again = _first_batches(data, 0), _first_batches(data, 1), _first_batches(data, 0)
    assert all(torch.equal(x, y) for x, y in zip(a, again, strict=True))
    assert not torch.equal(a[0], b[0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), max_size=12), st.integers(1, 5),
       st.floats(0, 0.05, allow_nan=False))
def test_the_plateau_rule_is_no_gain_over_the_best_before_the_window(scores, patience, delta):
    expected = len(scores) > patience and max(scores[-patience:]) <= max(scores[:-patience]) + delta
    assert plateaued(scores, patience, delta) is expected


def test_the_plateau_rule_compares_with_the_best_before_the_window_not_the_last_score():
    # the best before the window is two evaluations back: the window beats the score just before it, not the best
    assert plateaued([0.8, 0.5, 0.6, 0.7], patience=2, min_delta=0.0) is True
    assert plateaued([0.5, 0.8, 0.6, 0.81], patience=2, min_delta=0.0) is False


def test_the_classification_backbone_is_keyed_by_the_data_it_was_pretrained_on(data, tmp_path):
    from analysis.networks.pretrain import Pretrain, classification_backbone

    pretrain = Pretrain(task="classification", decoder={}, max_steps=2)
    schedule = dataclasses.replace(SCHEDULE, max_steps=2)
    first = classification_backbone(pretrain, "resnet18", data, schedule, "cpu", tmp_path, progress=False, say=None)
    other = load_data(dataclasses.replace(TINY, seed=5), 64, progress=None)
    assert other.hash != data.hash
    assert classification_backbone(pretrain, "resnet18", other, schedule, "cpu", tmp_path, progress=False, say=None,
                                   only_cached=True) is None  # never another data's backbone
    assert classification_backbone(pretrain, "resnet18", data, schedule, "cpu", tmp_path, progress=False, say=None,
                                   only_cached=True) == first


def test_the_key_holds_torchs_major_and_minor_release():
    from packaging.version import Version

    from analysis.networks.store import training_environment

    release = Version(torch.__version__).release
    assert training_environment("cpu")["torch"] == f"{release[0]}.{release[1]}"


def test_reported_numbers_come_from_the_test_split_where_there_is_one(data, tmp_path):
    from analysis.metrics import mean_iou
    from analysis.networks.evaluation import evaluate
    from analysis.networks.settings import NetworkSetting
    from analysis.networks.spec_accuracy import spec_runs
    from bench.ablations.spec import parse_ablation

    spec = parse_ablation({"variants": {"promise_one": {"base": "rf_lw:resnet18", "decoder": {"dropout": 0.1}}}},
                          source="test")
    setting = NetworkSetting("tiny", SCHEDULE, 1, "cpu", NARROW, "resnet18", ("rf_lw",), TINY)
    runs = spec_runs(spec, ["promise_one"], setting, 1, cache_dir=tmp_path, say=None)
    net = train_network("promise_one", data, SCHEDULE, decoder=NARROW, cache_dir=tmp_path, progress=False)
    assert net.cached  # the network spec_runs trained
    on_test = mean_iou(evaluate(net.model, data.test_inputs, data.test_masks, data.num_classes))
    on_val = mean_iou(evaluate(net.model, data.val_inputs, data.val_masks, data.num_classes))
    assert on_test != on_val  # so that the two cannot be confused below
    assert net.reported_split == "test" and net.reported_miou == pytest.approx(on_test)
    assert net.reported_per_image.sum(0).tolist() == evaluate(net.model, data.test_inputs, data.test_masks,
                                                              data.num_classes).tolist()
    assert runs.miou.iloc[0] == pytest.approx(on_test) and runs.split.iloc[0] == "test"


def test_a_run_the_guard_stopped_continues_to_the_weights_of_an_unstopped_run(data, tmp_path, monkeypatch):
    """The time guard stops a run between steps and keeps its progress; the next call with a larger guard continues
    it, and the network it keeps is the one an uninterrupted run keeps, weight for weight."""
    from analysis.networks import IncompleteTraining
    from analysis.networks import loop as loop_module
    from analysis.networks.store import partial_path

    schedule = dataclasses.replace(SCHEDULE, max_steps=8, eval_every=3)
    whole = train_network("rf:resnet18", data, schedule, decoder=NARROW, cache_dir=tmp_path / "whole", progress=False)
    ticks = iter(range(0, 10**9, 60))  # a clock that moves a minute per look: the guard fires at its first check
    monkeypatch.setattr(loop_module.time, "perf_counter", lambda: float(next(ticks)))
    guarded = dataclasses.replace(schedule, budget_min=2.5)
    with pytest.raises(IncompleteTraining, match="its progress is kept") as err:
        train_network("rf:resnet18", data, guarded, decoder=NARROW, cache_dir=tmp_path / "split", progress=False)
    stopped_at = err.value.records[0]["steps"]
    assert 0 < stopped_at < 8
    monkeypatch.undo()
    (kept,) = (tmp_path / "split" / ".partial").glob("*.pt")  # the progress, beside the store
    folder = tmp_path / "split" / kept.stem
    assert not folder.exists() and partial_path(folder) == kept  # not kept as a network
    said: list[str] = []
    resumed = train_network("rf:resnet18", data, dataclasses.replace(schedule, budget_min=60.0), decoder=NARROW,
                            cache_dir=tmp_path / "split", progress=False, say=said.append)
    assert any(f"continues a run the time guard stopped at step {stopped_at}" in line for line in said)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["val_miou"] for h in whole.record["history"]] == [h["val_miou"] for h in resumed.record["history"]]
    assert not partial_path(resumed.path).exists()  # used up
