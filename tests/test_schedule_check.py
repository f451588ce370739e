"""The recipe check of the schedule: the same set trained for twice the steps from one and the same pretrained
backbone; what doubling buys per family (convergence), and each claim's verdict under both schedules."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from analysis.networks.pretrain import Pretrain
from analysis.report.schedule_check import FACTOR, collect, convergence, schedules, with_steps, write
from analysis.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


def test_twice_the_steps_keeps_the_pretraining_and_scales_the_guard():
    from analysis.networks import SETTINGS

    cpu = SETTINGS["cpu"]
    longer = with_steps(cpu, 2)
    assert longer.schedule.max_steps == 2 * cpu.schedule.max_steps
    assert longer.schedule.budget_min == 2 * cpu.schedule.budget_min
    # the pretraining runs the setting's own steps under both: one backbone for both schedules
    from analysis.networks.store import NOT_IN_KEY

    def keyed(schedule):  # the time guard is no part of a network's key
        return replace(schedule, **dict.fromkeys(NOT_IN_KEY))

    assert keyed(longer.pretrain.schedule(longer.schedule)) == keyed(cpu.pretrain.schedule(cpu.schedule))
    assert "at 450 steps" in longer.pretrain.describe("mobilenet_v2")
    assert list(schedules(cpu)) == ["450 steps", "900 steps"]


def _frame(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"family": f, "seed": s, "miou": v, "split": "test"} for f, vs in values.items()
                         for s, v in enumerate(vs)])


def test_convergence_rule_from_known_values():
    """Paired by seed: a family that gains 3 points in every seed is not converged; one that gains a tenth of a
    point is; one whose gains scatter across the margin is inconclusive."""
    short = _frame({"rf": [0.90, 0.91, 0.92], "rf_lw": [0.80, 0.85, 0.90], "rf_lw_rcu": [0.90, 0.90, 0.90]})
    long = _frame({"rf": [0.901, 0.911, 0.921], "rf_lw": [0.83, 0.88, 0.93], "rf_lw_rcu": [0.88, 0.93, 0.90]})
    steps = {}
    table = convergence({"450 steps": {"miou": short, "steps": steps},
                         "900 steps": {"miou": long, "steps": steps}}).set_index("family")
    assert table.loc["rf", "outcome"] == REPRODUCED and table.loc["rf", "status"] == "converged"
    assert table.loc["rf", "gain"] == pytest.approx(0.1)
    assert table.loc["rf_lw", "outcome"] == NOT_REPRODUCED and table.loc["rf_lw", "gain"] == pytest.approx(3.0)
    assert table.loc["rf_lw_rcu", "outcome"] == INCONCLUSIVE
    assert (table.n_seeds == 3).all()


def test_both_schedules_train_their_own_networks_from_one_backbone(tmp_path):
    """Tiny networks, 2 seeds per schedule: the longer schedule's networks are other store entries that ran twice
    the steps, from the very same pretrained backbone; the section writes its tables and two scorecard rows."""
    from analysis.probes import ProbePlan
    from analysis.probes.run import TINY_NETWORKS

    setting = replace(TINY_NETWORKS, pretrain=Pretrain(decoder={"channels": 16, "top_channels": 32, "crp_stages": 0}),
                      schedule=replace(TINY_NETWORKS.schedule, patience=10))  # no plateau stop: every run ends at
    # its step limit
    plan = replace(ProbePlan.tiny(), cache_dir=str(tmp_path / "cache"), levels=("level4",))
    data = collect(setting, 2, say=None, plan=plan)
    short, long = list(data)
    assert (short, long) == ("2 steps", f"{2 * FACTOR} steps")
    assert data[short]["backbones"] == data[long]["backbones"] != ["None"] and len(data[short]["backbones"]) == 1
    assert {s for s, _ in data[long]["steps"].values()} == {2 * FACTOR}
    assert {s for s, _ in data[short]["steps"].values()} == {2}
    assert set(data[short]["without_rcu"]) == set(data[long]["without_rcu"]) == {0, 1}
    section = write(setting, 2, data, tmp_path, "schedule-check/x-2-seeds")
    folder = tmp_path / "schedule-check" / "x-2-seeds"
    conv = pd.read_csv(folder / "convergence.csv")
    assert set(conv.family) == set(setting.families) and (conv.n_seeds == 2).all()
    claims = pd.read_csv(folder / "claims_by_schedule.csv")
    assert {f"status {short}", f"status {long}", "check"} <= set(claims.columns)
    assert claims.claim.str.startswith("RCUs matter").sum() == 2  # both Section 3.3 cells, under each schedule
    power = pd.read_csv(folder / "level4_power_by_schedule.csv")
    assert set(power.schedule) == {short, long}
    convergence_row, claims_row = section.scores
    assert convergence_row.rank == claims_row.rank == 2
    assert claims_row.status in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
