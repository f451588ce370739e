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
    (row,) = section.scores
    assert row.rank == 2 and row.status in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
