"""The accuracy side over training runs (analysis.networks.claims): seed-level intervals, the non-inferiority rule
for "LW keeps RF's accuracy", RCU saturation by branch share, each on both sides of its boundary, and the branch
share measured on real models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from analysis.networks.claims import (
    ACCURACY_MARGIN,
    accuracy_verdict,
    rcu_branch_shares,
    saturation_verdict,
)
from analysis.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, seed_interval
from bench.models import create_model


def test_seed_interval_is_the_t_interval_over_runs():
    values = [1.0, 2.0, 4.0]
    x = seed_interval(values)
    half = stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)  # independent: numpy and scipy
    assert (x.estimate, x.low, x.high) == pytest.approx((np.mean(values), np.mean(values) - half,
                                                         np.mean(values) + half))
    one = seed_interval([3.0])
    assert one.estimate == 3.0 and math.isnan(one.low) and math.isnan(one.high)


def _miou(rf: list[float], lw: list[float]) -> dict:
    return {"rf": dict(enumerate(rf)), "rf_lw": dict(enumerate(lw))}


@pytest.mark.parametrize("rf, lw, outcome", [
    ([0.95, 0.96, 0.97], [0.947, 0.955, 0.966], REPRODUCED),  # LW 0.3-0.5 points below in every seed
    ([0.95, 0.96, 0.97], [0.97, 0.98, 0.99], REPRODUCED),  # LW better: "keeps" holds
    ([0.95, 0.96, 0.97], [0.88, 0.89, 0.905], NOT_REPRODUCED),  # 6.5-7 points below
    ([0.95, 0.96, 0.97], [0.945, 0.90, 0.97], INCONCLUSIVE),  # one seed far below: the interval crosses -2
    ([0.95], [0.949], INCONCLUSIVE),  # one training run: never a verdict about the architecture
])
def test_accuracy_claim_is_non_inferiority_over_seeds(rf, lw, outcome):
    x, v, n = accuracy_verdict(_miou(rf, lw))
    assert v.outcome == outcome, v.why
    assert n == len(rf) and x.estimate == pytest.approx(100 * np.mean(np.subtract(lw, rf)))
    if n == 1:
        assert "one training run" in v.why
    if outcome == REPRODUCED:
        assert x.low >= -ACCURACY_MARGIN
    if outcome == NOT_REPRODUCED:
        assert x.high < -ACCURACY_MARGIN


def test_accuracy_claim_pairs_by_seed():
    """Seeds present for one family only are not compared."""
    _, _, n = accuracy_verdict({"rf": {0: 0.9, 1: 0.9, 2: 0.9}, "rf_lw": {1: 0.9, 2: 0.9, 5: 0.9}})
    assert n == 2


@pytest.mark.parametrize("rf, lw, outcome", [
    ([0.30, 0.32, 0.31], [0.05, 0.06, 0.04], REPRODUCED),
    ([0.05, 0.06, 0.04], [0.30, 0.32, 0.31], NOT_REPRODUCED),
    ([0.30, 0.05, 0.31], [0.05, 0.30, 0.04], INCONCLUSIVE),
])
def test_saturation_claim_on_each_side_of_zero(rf, lw, outcome):
    shares = {"rf": dict(enumerate(rf)), "rf_lw_rcu": dict(enumerate(lw))}
    assert saturation_verdict(shares)[1].outcome == outcome


def test_branch_share_on_real_models():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    rf = create_model("rf:resnet18", num_classes=3).eval()
    shares = rcu_branch_shares(rf, x)
    assert len(shares) > 0 and shares.branch_share.between(0, 1).all() and (shares.branch_share > 0).all()
    assert set(shares.level) == {"level4", "level3", "level2", "level1"}
    for m in rf.modules():  # every branch's last conv at zero: each RCU passes its input unchanged
        if hasattr(m, "conv2") and not hasattr(m, "conv3"):
            torch.nn.init.zeros_(m.conv2.weight)
    assert (rcu_branch_shares(rf, x).branch_share == 0).all()
    assert rcu_branch_shares(create_model("rf_lw:resnet18", num_classes=3).eval(), x).empty  # LW has no RCUs
    bottleneck = rcu_branch_shares(create_model("rf_lw_rcu:resnet18", num_classes=3).eval(), x)
    assert len(bottleneck) > 0 and bottleneck.branch_share.between(0, 1).all()


def test_seeds_then_images_covers_training_runs():
    """Three runs whose image intervals are each narrow but whose values disagree: the hierarchical interval spans
    the runs' spread; one run: the image bootstrap itself."""
    from analysis.verdicts import seeds_then_images

    per_seed = torch.stack([v + 0.001 * torch.randn(2000, generator=torch.Generator().manual_seed(i))
                            for i, v in enumerate((0.0, 0.05, 0.10))])
    pooled = seeds_then_images(per_seed)
    image_only = per_seed.mean(0)
    low, high = torch.quantile(pooled, torch.tensor([0.025, 0.975], dtype=pooled.dtype))
    assert float(high - low) > 0.05  # the runs' spread, not the images' 0.001
    assert float(image_only.quantile(0.975) - image_only.quantile(0.025)) < 0.01
    assert torch.equal(seeds_then_images(per_seed[:1]), per_seed[0])


def test_report_seeds_option_is_checked_and_keeps_its_own_folders(tmp_path, monkeypatch):
    from analysis import report
    from analysis.report.files import Section
    from bench.errors import UsageError

    with pytest.raises(UsageError, match="seeds"):
        report.run(["networks"], out=tmp_path, device="cpu", seeds=1)
    with pytest.raises(UsageError, match="applies to the sections networks, erf, probes"):
        report.run(["timing"], out=tmp_path, device="cpu", seeds=3)
    calls = []
    monkeypatch.setitem(report.SEEDED, "networks",
                        lambda out, seeds: calls.append(seeds) or Section("nets", text="ran", folder="networks/x-3"))
    assert report.run(["networks"], out=tmp_path, device="cpu", seeds=3) == {"networks": "ok"}
    import json

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert calls == [3] and [k for k in manifest if k.startswith("networks/")][0].endswith("-3-seeds")


# --- controls ---------------------------------------------------------------------------------------------------


def test_welch_interval_matches_scipy():
    from analysis.networks.claims import welch_interval

    a, b = [1.0, 2.0, 4.0, 3.5], [0.5, 0.7, 2.0]
    x = welch_interval(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (x.low, x.high) == pytest.approx((ci.low, ci.high))


@pytest.mark.parametrize("first, second, outcome", [
    ([0.920, 0.925, 0.918], [0.921, 0.919, 0.926], REPRODUCED),  # the same variant: equivalent within 2 points
    ([0.920, 0.925, 0.918], [0.860, 0.855, 0.862], NOT_REPRODUCED),  # 6 points apart: the task is not repeatable
    ([0.920, 0.925, 0.918], [0.93, 0.85, 0.90], INCONCLUSIVE),  # too noisy to call equivalent
])
def test_aa_control_on_each_side(first, second, outcome):
    from analysis.networks.claims import aa_control

    assert aa_control(first, second)[1].outcome == outcome


@pytest.mark.parametrize("rf, rf_no_rcu, lw_rcu, lw, outcome", [
    # the paper's picture: RF loses 6 points without RCUs, LW with and without RCU within 0.5 points
    ([0.95, 0.96, 0.97], [0.89, 0.90, 0.91], [0.93, 0.935, 0.94], [0.932, 0.93, 0.944], REPRODUCED),
    # RCUs cost the original nothing: the first cell is wholly at or below +2 points
    ([0.95, 0.96, 0.97], [0.951, 0.958, 0.969], [0.93, 0.935, 0.94], [0.932, 0.93, 0.944], NOT_REPRODUCED),
    # RCUs matter in LW too (LW with RCU 5 points better): the second cell lies wholly outside +-2
    ([0.95, 0.96, 0.97], [0.89, 0.90, 0.91], [0.98, 0.985, 0.99], [0.93, 0.935, 0.94], NOT_REPRODUCED),
    # LW's seeds disagree: the equivalence interval crosses +-2, the other cell holds
    ([0.95, 0.96, 0.97], [0.89, 0.90, 0.91], [0.93, 0.90, 0.96], [0.932, 0.93, 0.944], INCONCLUSIVE),
    ([0.95], [0.89], [0.93], [0.93], INCONCLUSIVE),  # one training run
])
def test_rcu_matters_claim_needs_both_cells(rf, rf_no_rcu, lw_rcu, lw, outcome):
    from analysis.networks.claims import rcu_matters_verdict

    miou = {"rf": dict(enumerate(rf)), "rf_lw_rcu": dict(enumerate(lw_rcu)), "rf_lw": dict(enumerate(lw))}
    cells, v = rcu_matters_verdict(miou, dict(enumerate(rf_no_rcu)))
    assert v.outcome == outcome, v.why
    assert [c[3] for c in cells] == [len(rf), len(rf)]
    assert cells[0][1].estimate == pytest.approx(100 * np.mean(np.subtract(rf, rf_no_rcu)))
    assert cells[1][1].estimate == pytest.approx(100 * np.mean(np.subtract(lw_rcu, lw)))


def test_harmful_control_and_the_gate():
    from analysis.networks.claims import gated, harmful_control
    from analysis.verdicts import NOT_TESTABLE, Verdict

    full = {0: 0.92, 1: 0.93, 2: 0.925}
    assert harmful_control(full, {0: 0.80, 1: 0.81, 2: 0.79})[1].outcome == REPRODUCED  # a real loss shows
    weak = harmful_control(full, {0: 0.915, 1: 0.925, 2: 0.92})[1]
    assert weak.outcome == NOT_REPRODUCED  # under 2 points lost: the task cannot show a harmful change
    claim = Verdict(NOT_REPRODUCED, "LW 4 points below")
    assert gated(claim, {"A/A": Verdict(REPRODUCED, "ok"), "harmful-change": Verdict(REPRODUCED, "ok")}) == claim
    g = gated(claim, {"A/A": Verdict(REPRODUCED, "ok"), "harmful-change": weak})
    assert g.outcome == NOT_TESTABLE and "harmful-change control not reproduced" in g.why and "LW 4 points" in g.why


def test_networks_section_with_seeds_runs_both_controls(tmp_path):
    from dataclasses import replace

    import pandas as pd

    from analysis.probes.run import TINY_NETWORKS
    from analysis.report.networks import build

    section = build(tmp_path, replace(TINY_NETWORKS, seeds=2))
    claims = pd.read_csv(tmp_path / "networks" / "accuracy_claims.csv")
    assert list(claims.claim) == ["LW keeps RF's accuracy (Tables 2-3)", "RCUs matter in RF, not in LW (Section 3.3)",
                                  "RCUs matter in RF, not in LW (Section 3.3)",
                                  "RCUs saturate in LW, not in RF (Section 3.3)",
                                  "control: A/A (LW on two disjoint seed sets)",
                                  "control: harmful change (LW on the coarsest level alone)"]
    assert list(claims.n_seeds) == [2, 2, 2, 2, 4, 2]
    assert set(claims.status) <= {"reproduced", "not reproduced", "inconclusive", "not testable here"}
    controls_pass = (claims.status.iloc[4:] == "reproduced").all()
    assert (claims.status.iloc[0] == "not testable here") == (not controls_pass)  # the gate
    assert "2 seeds" in section.title
    nets = pd.read_csv(tmp_path / "networks" / "networks.csv")
    assert nets.last_gain.notna().all() and "gained under 0.5 points over their last" in section.text


def test_last_gain_is_the_last_two_evaluations():
    from analysis.report.networks import last_gain

    record = {"history": [{"step": 75, "val_miou": 0.5}, {"step": 150, "val_miou": 0.9}, {"step": 225,
                                                                                         "val_miou": 0.925}]}
    assert last_gain(record) == pytest.approx(2.5)
    assert math.isnan(last_gain({"history": [{"step": 75, "val_miou": 0.5}]}))  # one evaluation: no gain
