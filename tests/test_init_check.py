"""The recipe check of claim (c): the same set trained under the zero-init and under a standard init, probed the
same way; the init is part of the weights store's key; the check's rule on each pair of outcomes."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from analysis.report.init_check import INITS, check_verdict, collect, with_init, write
from analysis.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


@pytest.mark.parametrize("zero, standard, outcome", [
    (REPRODUCED, REPRODUCED, REPRODUCED),
    (NOT_REPRODUCED, NOT_REPRODUCED, REPRODUCED),
    (REPRODUCED, NOT_REPRODUCED, NOT_REPRODUCED),
    (NOT_REPRODUCED, REPRODUCED, NOT_REPRODUCED),
    (REPRODUCED, INCONCLUSIVE, INCONCLUSIVE),
    (INCONCLUSIVE, NOT_REPRODUCED, INCONCLUSIVE),
])
def test_check_rule_on_each_pair(zero, standard, outcome):
    assert check_verdict(zero, standard)[0] == outcome


def test_both_inits_train_their_own_networks_and_the_standard_one_leaves_zero(tmp_path):
    """Tiny networks, 2 seeds per init: the standard init's networks are other cache entries, their RCU branches
    start away from zero (share > 0 after two steps), the zero-init's start at 0; the section writes its three
    tables and one scorecard row that rests on 2 seeds."""
    from analysis.networks.pretrain import Pretrain
    from analysis.probes import ProbePlan
    from analysis.probes.run import TINY_NETWORKS

    setting = replace(TINY_NETWORKS, pretrain=Pretrain(decoder={"channels": 16, "top_channels": 32, "crp_stages": 0}))
    assert with_init(setting, False).schedule.zero_init_residual is False
    data = collect(setting, 2, say=None, plan=replace(ProbePlan.tiny(), cache_dir=str(tmp_path / "cache")))
    assert set(data) == set(INITS)
    for name in INITS:
        assert sorted(set(data[name]["miou"].seed)) == [0, 1]
    # one and the same pretrained backbone under both inits: the decoders' init is the only difference
    assert data["zero-init"]["backbones"] == data["standard init"]["backbones"] != ["None"]
    assert len(data["zero-init"]["backbones"]) == 1
    shares = {k: data[k]["shares"] for k in INITS}
    zero_rf = shares["zero-init"][shares["zero-init"].family == "rf"].branch_share
    std_rf = shares["standard init"][shares["standard init"].family == "rf"].branch_share
    assert std_rf.mean() > zero_rf.mean()  # two steps cannot carry a zero-init branch as far as a standard one
    section = write(setting, 2, data, tmp_path, "init-check/x-2-seeds")
    cells = pd.read_csv(tmp_path / "init-check" / "x-2-seeds" / "claim_c_by_init.csv")
    assert len(cells) == len(data["zero-init"]["cells"]) and {"status_zero_init", "status_standard_init"} <= set(
        cells.columns)
    claim_c, saturation = section.scores
    assert claim_c.rank == 2 and claim_c.status in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
    by_init = pd.read_csv(tmp_path / "init-check" / "x-2-seeds" / "accuracy_claims_by_init.csv")
    assert sorted(by_init.init.unique()) == sorted(INITS) and (by_init.n_seeds == 2).all()
    sat = by_init[by_init.claim.str.startswith("RCUs saturate")].set_index("init")
    # the row is the two inits' verdicts, each decided by the networks section's own rule
    expected = check_verdict(sat.loc["zero-init", "status"], sat.loc["standard init", "status"])[0]
    assert saturation.status == expected and saturation.rank == 2 and "standard init" in saturation.ours


def test_saturation_claim_by_init_from_known_shares():
    from analysis.report.init_check import accuracy_claims_by_init

    def shares(rf: list[float], lw_rcu: list[float]) -> pd.DataFrame:
        return pd.DataFrame([{"family": f, "seed": s, "level": "level4", "branch_share": v}
                             for f, values in (("rf", rf), ("rf_lw_rcu", lw_rcu)) for s, v in enumerate(values)])

    miou = pd.DataFrame([{"family": f, "seed": s, "miou": v} for f, values in
                         (("rf", [0.95, 0.96, 0.955]), ("rf_lw", [0.949, 0.958, 0.951])) for s, v in enumerate(values)])
    data = {"zero-init": {"shares": shares([0.10, 0.12, 0.11], [0.004, 0.003, 0.005]), "miou": miou},
            "standard init": {"shares": shares([0.10, 0.12, 0.11], [0.13, 0.15, 0.14]), "miou": miou}}
    table = accuracy_claims_by_init(data).set_index(["claim", "init"])
    sat = "RCUs saturate in LW, not in RF (Section 3.3)"
    assert table.loc[(sat, "zero-init"), "status"] == REPRODUCED  # LW's branches smaller in every seed
    assert table.loc[(sat, "standard init"), "status"] == NOT_REPRODUCED  # larger in every seed: the init decided
    assert table.loc[(sat, "zero-init"), "estimate"] == pytest.approx(-0.106, abs=1e-3)
    lw = table.loc[("LW keeps RF's accuracy (Tables 2-3)", "zero-init")]
    assert lw.status == REPRODUCED and lw.estimate == pytest.approx(-0.233, abs=1e-3)
