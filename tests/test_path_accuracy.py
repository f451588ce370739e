"""What each change of a path buys in accuracy, over training runs (analysis.networks.spec_accuracy and the
path-accuracy report section): paired per-step differences and their t intervals against scipy, Shapley values of
mIoU against the average over orderings, the effect words on each side of their bounds, the gate of the controls,
the store read without training, and the whole section on tiny real networks."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pandas as pd
import pytest
import torch
from scipy import stats

from analysis.networks.spec_accuracy import (
    accuracy_effect,
    path_accuracy,
    shapley_accuracy,
    spec_runs,
    step_claim,
)
from analysis.protocol import PROTOCOL
from analysis.verdicts import Interval
from bench.ablations.spec import parse_ablation

PATH = {"paths": {"p": {"start": "rf_lw:resnet18", "steps": [{"crp_kernel": 3, "label": "CRP 1x1 -> 3x3"},
                                                             {"crp_stages": 2, "label": "CRP 4 -> 2 stages"}]}}}


def _spec():
    return parse_ablation(PATH, source="test path")


def _per_image(miou: float, seed: int, images: int = 20) -> torch.Tensor:
    """(images, 2, 2) confusion matrices whose summed mIoU is about ``miou``: each class's IoU a / (a + 2b)."""
    g = torch.Generator().manual_seed(seed)
    a = 1000
    b = a * (1 - miou) / (2 * miou)
    wrong = (b * (1 + 0.05 * torch.randn(images, generator=g))).round().clamp_min(0).long()
    cms = torch.zeros(images, 2, 2, dtype=torch.long)
    cms[:, 0, 0] = cms[:, 1, 1] = a
    cms[:, 0, 1] = cms[:, 1, 0] = wrong
    return cms


def _runs(values: dict[str, list[float]]) -> pd.DataFrame:
    """Fabricated runs: variant -> mIoU (fractions) on seeds 0..n-1, with per-image scores of about that mIoU."""
    return pd.DataFrame([{"variant": v, "hash": "", "seed": s, "miou": x, "split": "test", "val_miou": x, "steps": 1,
                          "best_step": 1, "stop_reason": "max_steps", "per_image": _per_image(x, 17 * s + i)}
                         for i, (v, xs) in enumerate(values.items()) for s, x in enumerate(xs)])


def _t_interval(values):
    n = len(values)
    mean = sum(values) / n
    half = stats.t.ppf(0.975, n - 1) * stats.tstd(values) / math.sqrt(n)
    return mean, mean - half, mean + half


def test_per_step_delta_is_paired_by_seed_with_a_t_interval():
    spec = _spec()
    names = [v.name for v in spec.paths[0].variants]
    start, one, two = [0.90, 0.94, 0.88], [0.91, 0.96, 0.88], [0.856, 0.936, 0.808]  # two: 1.6x one's errors
    frame = path_accuracy(spec.paths[0], _runs(dict(zip(names, [start, one, two], strict=True))))
    step1 = frame.iloc[1]
    want = _t_interval([100 * (b - a) for a, b in zip(start, one, strict=True)])
    assert (step1.delta, step1.delta_low, step1.delta_high) == pytest.approx(want)
    assert step1.delta_seeds == 3
    # the seed-to-seed spread of the variants (6 points) does not widen the paired interval of the step
    unpaired_half = stats.t.ppf(0.975, 2) * stats.tstd([100 * x for x in one]) / math.sqrt(3)
    assert step1.delta_high - step1.delta < unpaired_half / 3
    step2 = frame.iloc[2]
    assert step2.from_start == pytest.approx(100 * (sum(two) - sum(start)) / 3)
    assert step2.effect == "lower"  # 1.6 times the errors on every seed
    assert step2.ratio == pytest.approx(1.6, rel=0.05) and step2.ratio_low > 1
    assert list(frame.n_seeds) == [3, 3, 3]


def test_only_common_seeds_are_paired():
    spec = _spec()
    names = [v.name for v in spec.paths[0].variants]
    runs = _runs({names[0]: [0.9, 0.8, 0.7], names[1]: [0.9, 0.8], names[2]: [0.9, 0.8]})
    frame = path_accuracy(spec.paths[0], runs)
    assert list(frame.n_seeds) == [3, 2, 2] and frame.delta_seeds.iloc[1] == 2
    # a variant with more seeds than its pairing: the table says on how many seeds each change rests
    from analysis.report.path_accuracy import path_display

    runs = _runs({names[0]: [0.9, 0.8], names[1]: [0.91, 0.82, 0.7], names[2]: [0.9, 0.8, 0.7]})
    frame = path_accuracy(spec.paths[0], runs)
    assert list(frame.n_seeds) == [2, 3, 3] and list(frame.from_start_seeds.iloc[1:]) == [2, 2]
    shown = path_display(frame)
    assert shown["Δ vs previous [95% CI]"].iloc[1].endswith("(2 paired seeds)")
    assert not shown["Δ vs previous [95% CI]"].iloc[2].endswith("paired seeds)")  # steps 1 -> 2: all 3 seeds
    assert shown["Δ from start [95% CI]"].iloc[2].endswith("(2 paired seeds)")


def test_shapley_of_miou_is_the_average_over_orderings_per_seed():
    spec = _spec()
    path = spec.paths[0]
    by_subset = {subset: name for subset, name in path.subsets}
    values = {frozenset(): [0.80, 0.82, 0.81], frozenset({0}): [0.85, 0.86, 0.84],
              frozenset({1}): [0.78, 0.81, 0.77], frozenset({0, 1}): [0.90, 0.88, 0.91]}
    runs = _runs({by_subset[s]: v for s, v in values.items()})
    got = shapley_accuracy(path, runs)
    for player in (0, 1):
        per_seed = []
        for seed in range(3):
            marginals = []
            for order in itertools.permutations((0, 1)):
                before = frozenset(order[:order.index(player)])
                marginals.append(100 * (values[before | {player}][seed] - values[before][seed]))
            per_seed.append(sum(marginals) / len(marginals))
        assert (got[player].estimate, got[player].low, got[player].high) == pytest.approx(_t_interval(per_seed))
    # efficiency: the values sum to the path's total change
    total = sum(100 * (a - b) for a, b in zip(values[frozenset({0, 1})], values[frozenset()], strict=True)) / 3
    assert got[0].estimate + got[1].estimate == pytest.approx(total)
    frame = path_accuracy(path, runs)
    assert frame.attrs["shapley_seeds"] == [0, 1, 2] and frame.shapley.iloc[1] == pytest.approx(got[0].estimate)


def test_no_shapley_where_a_subset_is_not_trained():
    spec = _spec()
    names = [v.name for v in spec.paths[0].variants]  # the path alone: subset {1} is missing
    runs = _runs({n: [0.8, 0.81] for n in names})
    assert shapley_accuracy(spec.paths[0], runs) is None
    assert "shapley" not in path_accuracy(spec.paths[0], runs)


def test_a_partly_trained_path_says_which_variant_is_missing():
    """Step 1's variant is not trained: step 1 is 'not trained' (its claim not testable), and step 2, trained, says
    that its previous variant is not trained rather than 'not trained' itself."""
    spec = parse_ablation({"paths": {"p": {"start": "rf_lw:resnet18", "steps": [
        {"crp_kernel": 3, "label": "CRP 1x1 -> 3x3"}, {"fusion_kernel": 3, "label": "fusion 1x1 -> 3x3"}]}}},
        source="test path")
    names = [v.name for v in spec.paths[0].variants]
    frame = path_accuracy(spec.paths[0], _runs({names[0]: [0.8, 0.81, 0.79], names[2]: [0.8, 0.82, 0.78]}))
    assert list(frame.n_seeds) == [3, 0, 3]
    assert frame.effect.iloc[1] == "not trained" and frame.status.iloc[1] == "not testable here"
    assert frame.effect.iloc[2] == f"previous variant ({names[1]}) not trained"
    assert frame.status.iloc[2] == "not testable here"
    assert frame.from_start.iloc[2] == pytest.approx(0.0)  # the start is trained: the cumulative change still is
    late = _runs({names[1]: [0.1, 0.1, 0.8]}).query("seed == 2")  # names[1] on seed 2 only
    disjoint = path_accuracy(spec.paths[0], pd.concat([_runs({names[0]: [0.8, 0.81]}), late]))
    assert disjoint.effect.iloc[1] == f"no common seed ({names[0]}: 0, 1; {names[1]}: 2)"


def test_an_interval_of_a_mean_miou_is_cut_to_0_100():
    """Two seeds near 100%: the t interval (12.7 x sd / sqrt 2) reaches past 100; the table's stops there, and the
    notes name the variant."""
    from analysis.networks.spec_accuracy import cut_words, variant_accuracy

    runs = _runs({"a": [0.99, 0.90], "b": [0.50, 0.52]})
    _, _, t_high = _t_interval([99.0, 90.0])
    assert t_high > 100
    acc = variant_accuracy(runs).set_index("variant")
    assert acc.miou_high["a"] == 100.0 and acc.miou_low["a"] == pytest.approx(_t_interval([99.0, 90.0])[1])
    assert (acc.miou_low["b"], acc.miou_high["b"]) == pytest.approx(_t_interval([50.0, 52.0])[1:])
    assert cut_words(acc.reset_index()).endswith("here a")
    assert cut_words(acc.reset_index().iloc[1:]) == ""
    # a change's interval stops at -100 / +100 points, the range a change in mIoU cannot leave
    spec = _spec()
    names = [v.name for v in spec.paths[0].variants]
    frame = path_accuracy(spec.paths[0], _runs({names[0]: [0.5, 0.52], names[1]: [0.9, 0.1], names[2]: [0.5, 0.5]}))
    step = frame.iloc[1]
    assert _t_interval([40.0, -42.0])[1] < -100 and (step.delta_low, step.delta_high) == (-100.0, 100.0)
    assert (step.from_start_low, step.from_start_high) == (-100.0, 100.0)
    assert frame.iloc[2].delta_low == -100.0 and frame.iloc[2].from_start_low > -100  # 0 and -2 points: not cut
    assert cut_words(frame).endswith(f"here {names[1]}, {names[2]}")  # the start's interval is not cut


EDGE = math.log(PROTOCOL.margin("accuracy"))


@pytest.mark.parametrize("interval, n, words", [  # intervals of the log error ratio after / before
    (Interval(0.3, 0.2, 0.4), 3, "lower"),     # wholly more errors
    (Interval(-0.3, -0.4, -0.2), 3, "higher"),  # wholly fewer errors
    (Interval(0.0, -EDGE, EDGE), 3, f"equivalent (within x{PROTOCOL.margin('accuracy'):.3f})"),
    (Interval(0.0, -EDGE - 0.01, EDGE), 3, "inconclusive"),
    (Interval(0.2, math.nan, math.nan), 1, "one run"),
])
def test_effect_words_on_each_side_of_their_bounds(interval, n, words):
    assert accuracy_effect(interval, n) == words


def test_the_paper_calls_only_its_kernel_and_rcu_steps_harmless():
    assert step_claim({"crp_kernel": 1}) == "Section 3.1"
    assert step_claim({"rcu": "none", "rcu_in": 0, "rcu_out": 0}) == "Section 3.3"  # by the value, not the field
    assert step_claim({"rcu": "bottleneck"}) == "Section 3.1"
    assert step_claim({"rcu": "standard"}) == ""  # back to the original's RCU: no claim of the paper
    assert step_claim({"dropout": 0.0}) == ""
    assert step_claim({"crp_kernel": 1, "dropout": 0.0}) == ""  # a step with an unclaimed change is no claim


def test_the_store_is_read_without_training(tmp_path, monkeypatch):
    from analysis.networks import loop as loop_module
    from analysis.networks import trained_set
    from analysis.probes.run import TINY_NETWORKS

    spec = _spec()
    names = [v.name for v in spec.paths[0].variants]
    assert spec_runs(spec, names[:2], TINY_NETWORKS, 1, only_cached=True, cache_dir=tmp_path, say=None).empty
    trained_set(TINY_NETWORKS, names[:1], 1, cache_dir=tmp_path, progress=False, say=None, workers=1)

    def no_training(*args, **kwargs):
        raise AssertionError("only_cached trained a network")

    monkeypatch.setattr(loop_module, "fit", no_training)
    runs = spec_runs(spec, names[:2], TINY_NETWORKS, [0, 1], only_cached=True, cache_dir=tmp_path, say=None)
    assert list(zip(runs.variant, runs.seed, strict=True)) == [(names[0], 0)]


def test_path_accuracy_section_on_tiny_networks_with_the_gate(tmp_path, monkeypatch):
    from analysis.probes.run import TINY_NETWORKS
    from analysis.report import path_accuracy as section_module
    from analysis.verdicts import OUTCOMES

    setting = replace(TINY_NETWORKS, seeds=2)
    spec, runs, controls = section_module.collect(setting, say=None)
    path = spec.paths[0]
    assert [v.name for v in path.variants][0] == "rf:resnet18" and path.end == "rf_lw:resnet18"
    assert len(runs) == 2 * len(path.variants) and set(runs.seed) == {0, 1}
    section = section_module.write(setting, spec, runs, controls, tmp_path, "path-accuracy/x-2-seeds")
    frame = pd.read_csv(tmp_path / "path-accuracy" / "x-2-seeds" / "paper_path_accuracy.csv")
    assert list(frame.n_seeds) == [2] * 6 and frame.delta.iloc[1:].notna().all()
    assert (tmp_path / "path-accuracy" / "x-2-seeds" / "paper_path_accuracy.png").stat().st_size > 10_000
    steps_row, whole_row = section.scores
    assert steps_row.status in OUTCOMES and steps_row.rank == 2
    assert whole_row.artifact.startswith("Sections 3.1-3.3: the whole path") and whole_row.status in OUTCOMES
    assert f"x{frame.from_start_ratio.iloc[-1]:.3f}" in whole_row.ours  # the whole path is its last step's from start
    # the gate: a control that did not pass decides no step, nor the whole path
    from analysis.verdicts import Verdict

    failing = {"A/A": Verdict("reproduced", "ok"), "small-harm": Verdict("inconclusive", "the harm unseen"),
               "gross-harm": Verdict("reproduced", "ok")}
    gated = section_module.write(setting, spec, runs, failing, tmp_path, "gated")
    assert all(r.status == "not testable here" and "small-harm control inconclusive" in r.reason
               for r in gated.scores)
    assert "measured: each harmless step keeps accuracy:" in gated.scores[0].reason  # the ungated words stay
    statuses = set(pd.read_csv(tmp_path / "gated" / "paper_path_accuracy.csv").status.dropna())
    assert statuses == {"not testable here"}


def test_path_accuracy_runs_only_over_seeds(tmp_path):
    from analysis import report
    from bench.errors import UsageError

    with pytest.raises(UsageError, match="add --seeds N"):
        report.run(["path-accuracy"], out=tmp_path, device="cpu")


def test_ablation_report_adds_accuracy_from_the_store_only(tmp_path, monkeypatch, capsys):
    """train --spec, then ablation-report --accuracy with the same options: every variant's mIoU over its seeds, the
    path's paired Δ and its Shapley value (a one-step path: both subsets trained), nothing trained by the report;
    before any training the report says what to run (exit 2)."""
    import analysis.networks.settings as settings_module
    from analysis.cli import main as analysis_main
    from analysis.networks import loop as loop_module
    from analysis.probes.run import TINY_NETWORKS
    from bench.ablations import load_ablation, run_ablation

    monkeypatch.setitem(settings_module.SETTINGS, "cpu", replace(TINY_NETWORKS, name="cpu", backbone="resnet18"))
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text('sizes = ["64x64"]\nnum_classes = 3\n[paths.p]\nstart = "rf_lw:resnet18"\n'
                         'steps = [{ crp_stages = 1, label = "CRP 4 -> 1 stage" }]\n')
    status = run_ablation(load_ablation(spec_file), tmp_path / "out", measure=("complexity",), executor="debug",
                          progress=None)
    assert not status.failed and not status.left
    cache = tmp_path / "cache"
    report_args = ["ablation-report", str(spec_file), str(tmp_path / "out"), "--report", str(tmp_path / "rep"),
                   "--accuracy", "--setting", "cpu", "--cache", str(cache), "--seeds", "4"]
    assert analysis_main(report_args) == 2
    hint = f"train them first: python -m analysis train --spec {spec_file} --setting cpu --seeds 4 --cache {cache}"
    assert hint in capsys.readouterr().err  # the user's own options, runnable as printed
    assert analysis_main(["train", "--spec", str(spec_file), "--setting", "cpu", "--seeds", "2", "--cache",
                          str(cache), "--json"]) == 0
    capsys.readouterr()

    def no_training(*args, **kwargs):
        raise AssertionError("the report trained a network")

    monkeypatch.setattr(loop_module, "fit", no_training)
    assert analysis_main(report_args) == 0
    variants = pd.read_csv(tmp_path / "rep" / "variants_accuracy.csv")
    assert sorted(variants.variant) == ["p.1", "rf_lw:resnet18"] and list(variants.n_seeds) == [2, 2]
    path = pd.read_csv(tmp_path / "rep" / "path_p_accuracy.csv")
    runs = {v: [float(x) for x in s.split(" / ")] for v, s in zip(variants.variant, variants.seeds_miou, strict=True)}
    deltas = [b - a for a, b in zip(runs["rf_lw:resnet18"], runs["p.1"], strict=True)]
    assert path.delta.iloc[1] == pytest.approx(sum(deltas) / 2, abs=0.06)  # the table's values are rounded to 0.1
    assert path.shapley.iloc[1] == pytest.approx(path.delta.iloc[1])  # one player: its Shapley value is its Δ
    assert (tmp_path / "rep" / "path_p_accuracy.png").is_file()
    assert "data: generated shapes" in (tmp_path / "rep" / "variants_accuracy.md").read_text()
    cost = next(p for p in (tmp_path / "rep").glob("*.md") if "Which change buys what" in p.read_text())
    assert "CPU time: not timed" in cost.read_text() and "pairs each" not in cost.read_text()  # counts only
    # without --accuracy: a recipe option is refused, and the accuracy files of the earlier run are removed
    cost_args = report_args[:5]
    assert analysis_main([*cost_args, "--setting", "cpu", "--lr", "-5"]) == 2
    assert "--setting, --lr are for --accuracy" in capsys.readouterr().err
    assert analysis_main(cost_args) == 0
    assert "removed 5 accuracy file(s) of an earlier --accuracy run" in capsys.readouterr().out
    left = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert left and not [name for name in left if "accuracy" in name]  # the cost tables stay


def test_a_harmless_step_is_decided_by_the_direction_of_its_effect():
    """A step the paper calls harmless (3x3 -> 1x1 CRP convolutions) that doubles the errors is not reproduced; the
    same step that halves them is (non-inferiority: more errors fail it, fewer never do)."""
    spec = parse_ablation({"paths": {"p": {"start": "rf:resnet18", "steps": [
        {"crp_kernel": 1, "label": "CRP 3x3 -> 1x1"}]}}}, source="test path")
    names = [v.name for v in spec.paths[0].variants]
    worse = path_accuracy(spec.paths[0], _runs({names[0]: [0.90, 0.91, 0.92], names[1]: [0.80, 0.82, 0.84]}))
    assert worse.paper.iloc[1] == "Section 3.1" and worse.ratio.iloc[1] == pytest.approx(2.0, rel=0.05)
    assert worse.status.iloc[1] == "not reproduced" and worse.effect.iloc[1] == "lower"
    assert worse.attrs["whole"]["status"] == "not reproduced"  # the whole path is that one step here
    better = path_accuracy(spec.paths[0], _runs({names[0]: [0.80, 0.82, 0.84], names[1]: [0.90, 0.91, 0.92]}))
    assert better.status.iloc[1] == "reproduced" and better.effect.iloc[1] == "higher"
