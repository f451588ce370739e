"""Ablations as data: the CRP pool axes, register_variant, the ablation spec, its runner and attribution."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench import create_model
from bench.complexity import COLUMNS, complexity, count_ops
from bench.errors import UsageError, UsageTypeError
from bench.models import FAMILIES, decoder_spec, list_models, meta_model, register_variant, variant_info
from bench.models.blocks import crp_pool

# --- the CRP pool: kernel size and implementation ------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 7), (1, 16, 9, 4), (2, 8, 13, 13)])
def test_separable_pool_equals_the_square_max_pool_bit_for_bit(k, shape):
    torch.manual_seed(0)
    x = torch.randn(shape) - 1.0  # mostly negative: a zero padding instead of -inf would show at the borders
    square = F.max_pool2d(x, k, stride=1, padding=k // 2)  # the reference: one k x k window
    sep = crp_pool("separable", k)
    assert torch.equal(sep(x), square)
    assert torch.equal(crp_pool("max", k)(x), square)
    xl = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(sep(xl), square)


def test_separable_pool_model_gives_the_same_logits():
    torch.manual_seed(0)
    ref = create_model("rf_lw:resnet18", num_classes=3).eval()
    sep = create_model("rf_lw:resnet18", num_classes=3, decoder={"crp_pool": "separable"}).eval()
    sep.load_state_dict(ref.state_dict())  # the pool has no weights: same keys
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ref(x), sep(x))
        xl = x.contiguous(memory_format=torch.channels_last)
        assert torch.equal(ref.to(memory_format=torch.channels_last)(xl), sep.to(memory_format=torch.channels_last)(xl))


def test_pool_kernel_changes_the_pool_and_default_is_the_papers_5x5():
    lw = meta_model("rf_lw50")
    assert lw.decoder.level1.crp.pool.kernel_size == 5
    small = create_model("rf_lw:resnet18", decoder={"crp_pool_kernel": 3})
    assert small.decoder.level1.crp.pool.kernel_size == 3


def _crp_pool_outputs(h, w, stages=4):
    """Elements each CRP pool writes in rf_lw50 (512 channels at stride 32, 256 at 16, 8, 4)."""
    return stages * sum(c * (h // s) * (w // s) for c, s in ((512, 32), (256, 16), (256, 8), (256, 4)))


def test_pool_counts_per_window_element_separable_is_2k_not_k_squared():
    square = count_ops(meta_model("rf_lw50"), 64, 64).frame()[list(COLUMNS)].sum()
    sep_model = create_model("rf_lw50", decoder={"crp_pool": "separable"}).to("meta")
    sep = count_ops(sep_model, 64, 64).frame()[list(COLUMNS)].sum()
    n = _crp_pool_outputs(64, 64)
    assert square["macs"] == sep["macs"]
    assert square["paper_flops"] - sep["paper_flops"] == (25 - 10) * n  # 5x5 = 25, 5x1 + 1x5 = 10 per output
    k3 = count_ops(create_model("rf_lw50", decoder={"crp_pool_kernel": 3}).to("meta"), 64, 64).frame()
    assert square["paper_flops"] - k3["paper_flops"].sum() == (25 - 9) * n


def test_separable_pool_keeps_the_theoretical_receptive_field():
    from analysis.erf.theoretical import theoretical_rf

    # CRP's own field on its input grid: 4 stages of a k x k pool (+ 1x1 convs) reach 1 + 4 (k - 1) cells
    for k in (3, 5):
        for pool in ("max", "separable"):
            torch.manual_seed(0)
            model = create_model("rf_lw:resnet18", num_classes=2, decoder={"crp_pool": pool, "crp_pool_kernel": k})
            field = theoretical_rf(model, ["level1.after_crp"], (96, 96), wrt={"level1.after_crp": "level1.after_sum"})
            assert field["level1.after_crp"] == (1 + 4 * (k - 1),) * 2, (k, pool)


# --- register_variant ------------------------------------------------------------------------------


def test_registered_variant_works_like_a_built_in_one(capsys):
    from bench.cli import main

    info = register_variant("t_lw50_crp2", "rf_lw50", crp_stages=2, crp_pool="separable")
    assert info.base == "rf_lw50" and dict(info.changes) == {"crp_stages": 2, "crp_pool": "separable"}
    assert info.decoder_spec == FAMILIES["rf_lw"].with_changes(crp_stages=2, crp_pool="separable")
    assert info.backbone == "resnet50" and info.family == "rf_lw" and variant_info("t_lw50_crp2") is info
    assert "t_lw50_crp2" in list_models("t_lw50*", include_backbones=False)
    assert "t_lw50_crp2" in list_models(family="rf_lw", backbone="resnet50")
    assert len(create_model("t_lw50_crp2").decoder.level1.crp.convs) == 2
    # counted as the base with the same diff, built directly
    (rec,) = complexity(["t_lw50_crp2"], [(64, 64)])
    direct = count_ops(create_model("rf_lw50", decoder={"crp_stages": 2, "crp_pool": "separable"}).to("meta"), 64, 64)
    assert rec.paper_flops == direct.frame()["paper_flops"].sum()
    assert rec.params == sum(p.numel() for p in meta_model("t_lw50_crp2").parameters())
    assert main(["complexity", "t_lw50_crp2", "--size", "64x64"]) == 0
    assert "t_lw50_crp2" in capsys.readouterr().out
    # a variant of a variant is one level from the built-in base, its changes merged
    child = register_variant("t_lw50_crp2_k3", "t_lw50_crp2", crp_pool_kernel=3)
    assert child.base == "rf_lw50" and dict(child.changes) == {"crp_stages": 2, "crp_pool": "separable",
                                                                "crp_pool_kernel": 3}


def test_register_variant_refuses_duplicates_typos_and_bad_values():
    register_variant("t_dup", "rf_lw:resnet18", crp_stages=1)
    with pytest.raises(UsageError, match="'t_dup' is already registered"):
        register_variant("t_dup", "rf_lw:resnet18", crp_stages=1)
    assert register_variant("t_dup", "rf_lw:resnet18", exist_ok=True, crp_stages=1).name == "t_dup"
    with pytest.raises(UsageError, match="already registered"):
        register_variant("t_dup", "rf_lw:resnet18", exist_ok=True, crp_stages=2)
    with pytest.raises(UsageError, match="already registered"):
        register_variant("rf_lw50", "rf50")
    with pytest.raises(UsageError, match=r"unknown decoder field 'crp_stage' \(did you mean 'crp_stages'\?\)"):
        register_variant("t_typo", "rf_lw50", crp_stage=2)
    with pytest.raises(UsageError, match="crp_pool_kernel must be odd"):
        register_variant("t_even", "rf_lw50", crp_pool_kernel=4)
    with pytest.raises(UsageError, match=r"unknown decoder.crp_pool 'seperable' \(did you mean 'separable'\?\)"):
        register_variant("t_pool", "rf_lw50", crp_pool="seperable")
    with pytest.raises(UsageTypeError, match="crp_stages must be an integer, got 2.0"):
        register_variant("t_float", "rf_lw50", crp_stages=2.0)
    with pytest.raises(UsageError, match=r"dropout must be a probability in \[0, 1\)"):
        register_variant("t_drop", "rf_lw50", dropout=1.5)
    with pytest.raises(UsageError, match="unknown model 'rf_lw5'"):
        register_variant("t_base", "rf_lw5")
    with pytest.raises(UsageError, match="variant name must be"):
        register_variant("a:b", "rf_lw50")
    for name in ("t_typo", "t_even", "t_pool", "t_float", "t_drop", "t_base"):
        assert name not in list_models(include_backbones=False)


def test_decoder_spec_of_built_ins_is_the_one_they_build():
    assert decoder_spec("rf50") == FAMILIES["rf"]
    mbv2 = decoder_spec("rf_lw_mbv2")
    assert (mbv2.top_channels, mbv2.lateral_fusion_conv, mbv2.activation) == (256, False, "relu6")
    assert variant_info("rf_lw:resnet18").decoder_spec == FAMILIES["rf_lw"]


# --- the ablation spec --------------------------------------------------------------------------------

SMALL = """
sizes = ["64x64"]
num_classes = 3
[timing]
runs = 2
min_runs = 1
budget_s = 0.0
warmup = 0

[variants.{p}_crp2]
base = "rf_lw:resnet18"
decoder.crp_stages = 2

[grids.{p}_g]
base = "{p}_crp2"
product.crp_pool_kernel = [3, 5]
zip.crp_pool = ["max", "separable"]
zip.activation = ["relu", "relu6"]
exclude = [{{crp_pool_kernel = 5, crp_pool = "max"}}]

[paths.{p}_path]
start = "rf:resnet18"
end = "rf_lw_rcu:resnet18"
steps = [{{crp_kernel = 1}}, {{fusion_kernel = 1, label = "1x1 fusion"}}, {{rcu = "bottleneck", dropout = 0.0}}]
"""


def _spec(tmp_path, prefix, text=SMALL, **fmt):
    path = tmp_path / f"{prefix}.toml"
    path.write_text(text.format(p=prefix, **fmt))
    return path


def test_spec_resolves_variants_grids_and_paths(tmp_path):
    from bench.ablations import architecture_hash, load_ablation

    spec = load_ablation(_spec(tmp_path, "s1"))
    names = [v.name for v in spec.variants]
    assert names == ["s1_crp2", "s1_g.crp_pool_kernel-3.crp_pool-max.activation-relu",
                     "s1_g.crp_pool_kernel-3.crp_pool-separable.activation-relu6",
                     "s1_g.crp_pool_kernel-5.crp_pool-separable.activation-relu6",
                     "rf:resnet18", "s1_path.1", "s1_path.2", "s1_path.3",
                     # every other subset of the path's 3 changes (for Shapley values): 2^3 - 4 prefixes
                     "s1_path.with-2", "s1_path.with-3", "s1_path.with-1-3", "s1_path.with-2-3", "rf_lw:resnet18"]
    assert spec.variant("rf_lw:resnet18").group == "base"  # counted beside the variants that change it
    point = spec.variant("s1_g.crp_pool_kernel-5.crp_pool-separable.activation-relu6")
    assert point.base == "rf_lw:resnet18"  # one level of base: the [variants] entry's changes are merged
    assert dict(point.changes) == {"crp_stages": 2, "crp_pool_kernel": 5, "crp_pool": "separable",
                                   "activation": "relu6"}
    assert point.decoder == FAMILIES["rf_lw"].with_changes(**dict(point.changes))
    assert variant_info(point.name).decoder_spec == point.decoder  # registered
    # the path: every variant and subset timed against the path's end; it ends where it says, and hashes as the end
    path = spec.paths[0]
    assert [v.reference for v in path.variants] == ["s1_path.3"] * 4
    assert spec.variant("s1_path.with-1-3").reference == "s1_path.3"
    subsets = path.subset_names()
    assert len(subsets) == 8 and subsets[frozenset()] == "rf:resnet18" and subsets[frozenset({0, 1, 2})] == "s1_path.3"
    assert spec.variant(subsets[frozenset({0, 2})]).decoder == FAMILIES["rf"].with_changes(
        crp_kernel=1, rcu="bottleneck", dropout=0.0)
    assert path.labels == ("crp_kernel 3->1", "1x1 fusion", "rcu standard->bottleneck, dropout 0.5->0.0")
    assert path.variants[-1].hash == architecture_hash("resnet18", FAMILIES["rf_lw_rcu"])
    assert len({v.hash for v in spec.variants}) == len(spec.variants)


def test_paper_path_is_rf50_to_lw50_through_lw_with_rcu():
    from bench.ablations import SPECS, architecture_hash, load_ablation

    spec = load_ablation(SPECS / "paper-path.toml")
    (path,) = spec.paths
    assert [v.name for v in path.variants][0] == "rf50" and path.end == "rf_lw50"
    assert path.variants[4].hash == architecture_hash("resnet50", FAMILIES["rf_lw_rcu"])  # the paper's middle model
    assert path.variants[5].hash == architecture_hash("resnet50", FAMILIES["rf_lw"])
    assert all(len(step) >= 1 for step in path.steps) and len(path.steps) == 5


@pytest.mark.parametrize("edit, error, message", [
    ("decoder.crp_stages = 2", "decoder.crp_stagse = 2",
     r"unknown key variants.s2_crp2.decoder.crp_stagse \(did you mean 'crp_stages'\?\)"),
    ("[grids.{p}_g]", "[grids.{p}_g]\nbse = 1", r"unknown key grids.s2_g.bse \(did you mean 'base'\?\)"),
    ("sizes = ", "size = 1\nsizes = ", r"unknown key size \(did you mean 'sizes'\?\)"),
    ("decoder.crp_stages = 2", "decoder.crp_stages = 2.5", "crp_stages must be an integer, got 2.5"),
    ("decoder.crp_stages = 2", "decoder.crp_stages = 99", "crp_stages must be an integer <= 64, got 99"),
    ('zip.activation = ["relu", "relu6"]', 'zip.activation = ["relu"]', "zip axes must have equal lengths"),
    ('end = "rf_lw_rcu:resnet18"', 'end = "rf_lw:resnet18"',
     r"does not end at 'rf_lw:resnet18': after its last step it differs in rcu 'bottleneck' \(end: 'none'\)"),
    ("{{crp_kernel = 1}}, ", "{{crp_kernel = 1}}, {{crp_kernel = 1}}, ", r"steps\[2\] changes nothing"),
    ('base = "rf_lw:resnet18"', 'base = "rf_lw:resnet181"', "unknown model 'rf_lw:resnet181'"),
])
def test_spec_errors_are_one_line_naming_the_file_and_key(tmp_path, edit, error, message):
    from bench.ablations import load_ablation
    from bench.errors import InputError

    text = SMALL.replace(edit, error)
    assert text != SMALL
    path = _spec(tmp_path, "s2", text)
    with pytest.raises(InputError, match=message) as info:
        load_ablation(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_ablate_print_runs_nothing_and_a_misspelt_key_exits_2(tmp_path, capsys):
    from bench.cli import main

    path = _spec(tmp_path, "s3")
    assert main(["ablate", str(path), "--print"]) == 0
    out = capsys.readouterr().out
    assert "s3_path.2" in out and "crp_kernel=1, fusion_kernel=1" in out and "Nothing was run" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s3.toml"]
    bad = _spec(tmp_path, "s4", SMALL.replace("product.crp_pool_kernel", "product.crp_pool_kernal"))
    assert main(["ablate", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'crp_pool_kernel'" in err
    assert not (tmp_path / "o").exists()


def test_ablation_runs_on_the_sweep_runner_and_records_the_resolved_decoder(tmp_path):
    from bench.ablations import load_ablation, run_ablation
    from bench.sweeps import read_records

    spec = load_ablation(_spec(tmp_path, "s5"))
    status = run_ablation(spec, tmp_path / "out", measure=("complexity", "time"), executor="debug", progress=None)
    assert status.failed == 0 and status.left == 0
    records = read_records(tmp_path / "out")
    counts = {r["config"]["variant"]: r for r in records if r["config"]["kind"] == "complexity"}
    assert set(counts) == {v.name for v in spec.variants}
    for v in spec.variants:
        if v.base == v.name:
            continue
        (reg,) = counts[v.name]["config"]["registered"]
        assert reg["decoder"]["crp_stages"] == v.decoder.crp_stages and reg["hash"] == v.hash
        direct = create_model(v.base, num_classes=3, decoder=dict(v.changes)).to("meta")
        assert counts[v.name]["rows"][0]["paper_flops"] == count_ops(direct, 64, 64).frame()["paper_flops"].sum()
    timed = [r for r in records if r["config"]["kind"] == "speedup"]
    pairs = {(r["config"]["base"], r["config"]["other"]) for r in timed}
    # every subset of the path timed against the path's end (not against its predecessor)
    assert {("s5_path.3", "rf:resnet18"), ("s5_path.3", "s5_path.1"), ("s5_path.3", "s5_path.with-2-3")} <= pairs
    assert ("s5_path.1", "s5_path.2") not in pairs
    assert all(r["rows"][0]["ratio"] > 0 and not r["error"] for r in timed)
    again = run_ablation(spec, tmp_path / "out", measure=("complexity", "time"), executor="debug", progress=None)
    assert again.skipped == again.total  # resumable: nothing measured twice


def test_a_worker_process_registers_the_names_it_measures(tmp_path):
    from bench.ablations import parse_ablation, run_ablation
    from bench.sweeps import read_records

    raw = {"sizes": ["64x64"], "variants": {"s6_worker": {"base": "rf_lw:resnet18", "decoder": {"crp_stages": 1}}}}
    spec = parse_ablation(raw, source="inline")
    status = run_ablation(spec, tmp_path / "out", executor="local", progress=None, poll_s=0.2)
    records = {r["config"]["variant"]: r for r in read_records(tmp_path / "out")}
    assert set(records) == {"s6_worker", "rf_lw:resnet18"}  # the variant and its base, counted in a subprocess
    record = records["s6_worker"]
    assert status.done == 2 and not record["error"]
    direct = create_model("rf_lw:resnet18", decoder={"crp_stages": 1}).to("meta")
    assert record["rows"][0]["paper_flops"] == count_ops(direct, 64, 64).frame()["paper_flops"].sum()


# --- which change buys what -------------------------------------------------------------------------


def test_shapley_of_an_additive_function_is_each_players_own_effect():
    from bench.ablations.attribution import all_subsets, path_deltas, reverse_deltas, shapley_values

    w = [3.0, -1.0, 0.5, 7.0]
    value = {s: sum(w[i] for i in s) for s in all_subsets(4)}
    assert shapley_values(4, value) == pytest.approx(w)
    assert path_deltas(4, value) == pytest.approx(w) and reverse_deltas(4, value) == pytest.approx(w)


def test_shapley_splits_an_interaction_evenly_and_sums_to_the_total():
    from bench.ablations.attribution import all_subsets, path_deltas, reverse_deltas, shapley_values

    # v = 2 x0 + x1 + 6 x0 x2: the interaction 6 is shared equally by players 0 and 2 (closed form)
    def v(s):
        return 2 * (0 in s) + (1 in s) + 6 * (0 in s and 2 in s)

    assert shapley_values(3, v) == pytest.approx([5.0, 1.0, 3.0])
    assert path_deltas(3, v) == pytest.approx([2.0, 1.0, 6.0])  # order matters: the forward path gives it to 2
    assert reverse_deltas(3, v) == pytest.approx([8.0, 1.0, 0.0])  # the reverse order gives it to 0
    assert sum(shapley_values(3, v)) == pytest.approx(v(frozenset({0, 1, 2})) - v(frozenset()))
    with pytest.raises(UsageError, match="at most 6 changes"):
        shapley_values(7, lambda s: 0.0)
    assert len(all_subsets(3)) == 8


def test_counting_shapley_on_a_real_path_sums_to_the_change_from_start_to_end(tmp_path):
    from analysis.report.ablation import frames
    from bench.ablations import parse_ablation, run_ablation

    steps = [{"crp_kernel": 1}, {"fusion_kernel": 1}, {"rcu": "none", "rcu_in": 0, "rcu_out": 0}]
    raw = {"sizes": ["64x64"], "num_classes": 3, "paths": {"s8": {"start": "rf:resnet18", "steps": steps}}}
    spec = parse_ablation(raw, source="inline")
    run_ablation(spec, tmp_path / "out", measure=("complexity",), executor="debug", progress=None)
    frame = frames(spec, tmp_path / "out").steps  # every subset counted by the runner, Shapley over all 8
    start = count_ops(meta_model("rf:resnet18", 3), 64, 64).frame()["paper_flops"].sum()
    end_model = create_model("rf:resnet18", num_classes=3, decoder={"crp_kernel": 1, "fusion_kernel": 1, "rcu": "none",
                                                                      "rcu_in": 0, "rcu_out": 0}).to("meta")
    end = count_ops(end_model, 64, 64).frame()["paper_flops"].sum()
    assert frame.paper_flops.iloc[0] == start and frame.paper_flops.iloc[-1] == end
    phi = frame.paper_flops_shapley.iloc[1:].tolist()
    assert sum(phi) == pytest.approx(end - start)
    assert all(p < 0 for p in phi)  # every change removes arithmetic
    # CRP's 3x3 -> 1x1 saves the same whatever else changed (no interaction with the fusion convs): closed form
    crp_3x3_macs = 4 * 8 * sum(c * c * (64 // s) ** 2 for c, s in ((512, 32), (256, 16), (256, 8), (256, 4)))
    assert phi[0] == pytest.approx(-crp_3x3_macs)  # 4 stages x (9 - 1) taps x C x C per output pixel


def test_timed_attribution_of_exact_ratios_is_the_shapley_of_the_times():
    from bench.ablations import LogRatio, shapley_values, timed_attribution
    from bench.ablations.attribution import all_subsets

    # times (ms) of a 2-change path with an interaction; the end (both changes) takes 10 ms
    ms = {frozenset(): 40.0, frozenset({0}): 25.0, frozenset({1}): 30.0, frozenset({0, 1}): 10.0}
    exact = {s: LogRatio(math.log(10.0 / t), 0.0, 3) for s, t in ms.items()}
    out = timed_attribution(2, exact, reference_ms=10.0, draws=200)
    assert shapley_values(2, ms) == pytest.approx([-17.5, -12.5])
    assert out["shapley_ms"] == pytest.approx([-17.5, -12.5])
    assert out["path_speedup"] == pytest.approx([40 / 25, 25 / 10])
    assert out["path_ms"] == pytest.approx([-15.0, -15.0]) and out["reverse_ms"] == pytest.approx([-20.0, -10.0])
    assert out["shapley_ms_low"] == pytest.approx(out["shapley_ms"])  # no noise: the interval is the point
    # noisy ratios: intervals around the point, wider with fewer pairs; Shapley still sums to the total
    noisy = {s: LogRatio(r.mean, 0.05, 2) for s, r in exact.items() if s != frozenset({0, 1})}
    noisy[frozenset({0, 1})] = LogRatio(0.0, 0.0, 0)
    wide = timed_attribution(2, noisy, 10.0, draws=2000)
    narrow = timed_attribution(2, {s: LogRatio(r.mean, r.se, 20) for s, r in noisy.items()}, 10.0, draws=2000)
    for i in range(2):
        assert wide["shapley_ms_low"][i] < wide["shapley_ms"][i] < wide["shapley_ms_high"][i]
        assert (wide["shapley_ms_high"][i] - wide["shapley_ms_low"][i] >
                narrow["shapley_ms_high"][i] - narrow["shapley_ms_low"][i])
    assert sum(wide["shapley_ms"]) == pytest.approx(10.0 - 40.0)
    assert len(all_subsets(2)) == len(exact)


def test_subsets_measured_by_one_record_share_one_draw():
    from bench.ablations import LogRatio, timed_attribution

    # change 1 does nothing at inference (e.g. dropout): {} and {1} are one network, one timing record; {0} is
    # the end's network (ratio 1 exactly)
    shared = LogRatio(math.log(10.0 / 40.0), 0.05, 2, source="net-a")
    ratios = {frozenset(): shared, frozenset({1}): shared, frozenset({0}): LogRatio(0.0, 0.0, 0),
              frozenset({0, 1}): LogRatio(0.0, 0.0, 0)}
    out = timed_attribution(2, ratios, reference_ms=10.0, draws=2000)
    for key in ("path_ms", "reverse_ms", "shapley_ms"):  # change 1's effect: 0 in every draw, not just on average
        assert out[key][1] == out[f"{key}_low"][1] == out[f"{key}_high"][1] == 0.0
    assert out["shapley_ms_low"][0] < -30.0 < out["shapley_ms_high"][0]  # change 0 keeps its noise
    independent = {s: LogRatio(r.mean, r.se, r.df) for s, r in ratios.items()}  # the same ratios, no source
    loose = timed_attribution(2, independent, reference_ms=10.0, draws=2000)
    assert loose["reverse_ms_low"][1] < 0.0 < loose["reverse_ms_high"][1]  # two draws of one measurement: spurious


def test_log_ratio_from_a_speedup_record_recovers_its_t_interval():
    from scipy import stats

    from bench.ablations import LogRatio
    from bench.stats import log_ratio_interval

    a, b = [10.0, 11.0, 10.5, 12.0], [5.0, 5.2, 5.1, 5.9]
    ratio, low, high = log_ratio_interval(a, b)
    r = LogRatio.from_interval(ratio, low, high, 4)
    logs = [math.log(x / y) for x, y in zip(a, b, strict=True)]
    mean = sum(logs) / 4
    sd = (sum((v - mean) ** 2 for v in logs) / 3) ** 0.5
    assert r.mean == pytest.approx(mean) and r.se == pytest.approx(sd / 2) and r.df == 3
    assert stats.t.ppf(0.975, 3) > 3  # few pairs: the t quantile, not 1.96


# --- the report ------------------------------------------------------------------------------------------


def test_ablation_report_tabulates_the_path_and_draws_the_waterfall(tmp_path):
    from analysis.cli import main as analysis_main
    from analysis.report.ablation import frames
    from bench.ablations import load_ablation, run_ablation

    spec_file = _spec(tmp_path, "s7")
    spec = load_ablation(spec_file)
    run_ablation(spec, tmp_path / "out", measure=("complexity",), executor="debug", progress=None)
    data = frames(spec, tmp_path / "out")
    steps = data.steps
    assert list(steps.variant) == ["rf:resnet18", "s7_path.1", "s7_path.2", "s7_path.3"]
    total = steps.paper_flops.iloc[-1] - steps.paper_flops.iloc[0]
    assert steps.paper_flops_shapley.iloc[1:].sum() == pytest.approx(total)
    assert steps.paper_flops_delta.iloc[1:].sum() == pytest.approx(total)
    assert steps.params_reverse_delta.iloc[1:].sum() == pytest.approx(steps.params.iloc[-1] - steps.params.iloc[0])
    # the grid: separable crp_pool_kernel 3 -> 5 adds (2*5 - 2*3) window ops per pool output, all else held
    effects = data.axes.set_index(["axis", "from"])
    assert effects.loc[("crp_pool_kernel", 3), "pairs"] == 1
    crp2_outputs = 2 * sum(c * (64 // s) ** 2 for c, s in ((512, 32), (256, 16), (256, 8), (256, 4)))
    assert effects.loc[("crp_pool_kernel", 3), "flops_delta_mean"] == pytest.approx(4 * crp2_outputs)
    assert analysis_main(["ablation-report", str(spec_file), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report" / "paper_path_waterfall.png").stat().st_size > 10_000
    assert "Shapley FLOPs (G)" in (tmp_path / "out" / "report" / "paper_path.md").read_text()
    assert analysis_main(["ablation-report", str(spec_file), str(tmp_path / "nothing")]) == 2


def test_path_erf_follows_each_step_and_shrinks_the_field_where_a_3x3_conv_goes(tmp_path):
    from analysis.report.ablation import path_erf
    from bench.ablations import parse_ablation

    steps = [{"crp_kernel": 1}, {"rcu": "none", "rcu_in": 0, "rcu_out": 0}]
    spec = parse_ablation({"sizes": ["64x64"], "paths": {"s9": {"start": "rf:resnet18", "steps": steps}}},
                          source="inline")
    frame = path_erf(spec.paths[0], side=256, n_canvas=2, n_boot=10, progress=None)  # level 1: 64x64 cells
    assert list(frame.step.unique()) == [0, 1, 2] and frame.groupby("step")["level"].count().tolist() == [4, 4, 4]
    level1 = frame[frame.level == "level1"].set_index("step")
    assert not level1.clipped.any()  # the grid holds the whole theoretical field: its extent is the wiring's
    # CRP: its 4 chained 3x3 convs -> 1x1 (the 5x5 pools stay), each 3x3 having widened the field by 2 cells
    assert level1.theoretical_cells[0] - level1.theoretical_cells[1] == 4 * 2
    assert level1.theoretical_cells[2] < level1.theoretical_cells[1]  # removing the RCUs' 3x3 convs shrinks it again
    assert (frame.r90_ci_low <= frame.r90_cells).all() and (frame.r90_cells <= frame.r90_ci_high).all()
    assert (frame.r50_cells <= frame.r90_cells).all()
    # the interpolated 90% side lies within the whole-cell square that holds 90%, above the one inside it
    assert ((2 * frame.r90_cells - 1 < frame.side90_cells) & (frame.side90_cells <= 2 * frame.r90_cells + 1)).all()
    assert ((frame.side90_ci_low <= frame.side90_cells) & (frame.side90_cells <= frame.side90_ci_high)).all()


def test_path_erf_reuses_batchnorm_statistics_only_where_they_are_the_same(monkeypatch):
    """The path's changes are decoder-only, so every step's backbone (all its BatchNorms) has the same weights: its
    statistics are re-estimated once, and the path ERF equals one that re-estimates every step."""
    import pandas as pd

    import analysis.erf.conditioning as conditioning
    import analysis.report.ablation as ablation_report
    from bench.ablations import parse_ablation

    steps = [{"crp_kernel": 1}, {"rcu": "none", "rcu_in": 0, "rcu_out": 0}]
    spec = parse_ablation({"sizes": ["64x64"], "paths": {"s10": {"start": "rf:resnet18", "steps": steps}}},
                          source="inline")
    calls = []
    original = conditioning.recalibrate_batchnorm
    monkeypatch.setattr(conditioning, "recalibrate_batchnorm", lambda *a, **k: calls.append(1) or original(*a, **k))
    reused = ablation_report.path_erf(spec.paths[0], side=128, n_canvas=2, n_boot=10, progress=None)
    assert len(calls) == 1
    monkeypatch.setattr(conditioning, "same_weights", lambda a, b: False)  # never reuse
    fresh = ablation_report.path_erf(spec.paths[0], side=128, n_canvas=2, n_boot=10, progress=None)
    assert len(calls) == 1 + 3
    pd.testing.assert_frame_equal(reused, fresh)


def test_path_erf_runs_on_its_own_thread_count_whatever_the_callers(monkeypatch):
    """Its values' last digits depend on the float order, so on the thread count: the path ERF always runs on
    ERF_THREADS (the same values beside the bench's background pretraining, alone, or on a larger machine), and the
    caller's thread count is restored after it."""
    import analysis.erf as erf
    import analysis.report.ablation as ablation_report
    from bench.ablations import parse_ablation

    spec = parse_ablation({"sizes": ["64x64"], "paths": {"s": {"start": "rf:resnet18",
                                                               "steps": [{"crp_kernel": 1}]}}}, source="inline")
    seen = []
    original = erf.decoder_grid_erf
    monkeypatch.setattr(erf, "decoder_grid_erf", lambda *a, **k: seen.append(torch.get_num_threads()) or
                        original(*a, **k))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        frame = ablation_report.path_erf(spec.paths[0], side=64, n_canvas=2, n_boot=10, progress=None)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [ablation_report.ERF_THREADS] * 2 and len(frame) > 0


def test_dropout_alone_is_timed_once_the_eval_mode_network_is_the_same():
    from analysis.report.ablation import timed_variants
    from bench.ablations import SPECS, load_ablation

    spec = load_ablation(SPECS / "paper-path.toml")
    (path,) = spec.paths
    by_name = {v.name: v for v in spec.variants}
    dropout_step = next(i for i, step in enumerate(path.steps, 1) if set(step) == {"dropout"})
    before, after = path.variants[dropout_step - 1], path.variants[dropout_step]
    assert before.hash != after.hash and before.inference_hash == after.inference_hash
    # in eval mode the two give the same logits from the same weights
    torch.manual_seed(0)
    a = create_model(before.name, num_classes=3).eval()
    b = create_model(after.name, num_classes=3).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    timed = [v for v in timed_variants(spec) if v.group.startswith("path")]
    hashes = [v.inference_hash for v in timed]
    assert len(hashes) == len(set(hashes))  # each eval-mode network once
    subsets = {by_name[name].inference_hash for name in path.subset_names().values()}
    assert subsets == set(hashes) | {path.variants[-1].inference_hash}  # every subset covered, the end as reference
    assert len(hashes) < len({by_name[name].hash for name in path.subset_names().values()}) - 1
