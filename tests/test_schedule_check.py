"""The recipe check of the schedule: the same set trained for half the steps from one and the same pretrained
backbone; whether the set's runs end on their plateau, what the second half buys per family, and each claim's verdict
under both schedules."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from analysis.networks.pretrain import Pretrain
from analysis.report.schedule_check import SHORTER, collect, convergence, gains, schedules, with_steps, write
from analysis.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


def test_half_the_steps_keeps_the_pretraining_and_scales_the_guard():
    from analysis.networks import SETTINGS
    from analysis.networks.store import NOT_IN_KEY

    cpu = SETTINGS["cpu"]
    shorter = with_steps(cpu, 1 / SHORTER)
    assert shorter.schedule.max_steps * SHORTER == cpu.schedule.max_steps
    assert shorter.schedule.budget_min * SHORTER == cpu.schedule.budget_min

    def keyed(schedule):  # the time guard is no part of a network's key
        return replace(schedule, **dict.fromkeys(NOT_IN_KEY))

    # the pretraining runs its own steps under both: one backbone for both schedules
    assert keyed(shorter.pretrain.schedule(shorter.schedule)) == keyed(cpu.pretrain.schedule(cpu.schedule))
    assert f"at {cpu.pretrain.max_steps} steps" in shorter.pretrain.describe("mobilenet_v2")
    assert list(schedules(cpu)) == [f"{cpu.schedule.max_steps // 2} steps", f"{cpu.schedule.max_steps} steps"]


def test_convergence_rule_on_how_the_runs_ended():
    plateau = {"stop_reason": "plateau", "last_gain": 0.1}
    flat = {"stop_reason": "max_steps", "last_gain": 0.2}
    gaining = {"stop_reason": "max_steps", "last_gain": 1.5}
    assert convergence({("rf", 0): plateau, ("rf_lw", 0): plateau}, 0.005)[0] == REPRODUCED
    assert convergence({("rf", 0): plateau, ("rf_lw", 0): flat}, 0.005)[0] == INCONCLUSIVE
    outcome, why = convergence({("rf", 0): plateau, ("rf_lw", 1): gaining}, 0.005)
    assert outcome == NOT_REPRODUCED and "LW seed 1" in why and "1 of 2" in why


def _frame(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"family": f, "seed": s, "miou": v, "split": "test"} for f, vs in values.items()
                         for s, v in enumerate(vs)])


def test_gain_rule_from_known_values():
    """Paired by seed: a family whose second half buys 3 points in every seed needs it; one that gains a tenth of a
    point does not; one whose gains scatter across the margin is inconclusive."""
    short = _frame({"rf": [0.90, 0.91, 0.92], "rf_lw": [0.80, 0.85, 0.90], "rf_lw_rcu": [0.90, 0.90, 0.90]})
    long = _frame({"rf": [0.901, 0.911, 0.921], "rf_lw": [0.83, 0.88, 0.93], "rf_lw_rcu": [0.88, 0.93, 0.90]})
    table = gains({"450 steps": {"miou": short, "ends": {}},
                   "900 steps": {"miou": long, "ends": {}}}).set_index("family")
    assert table.loc["rf", "outcome"] == REPRODUCED and table.loc["rf", "status"] == "450 steps suffice"
    assert table.loc["rf", "gain"] == pytest.approx(0.1)
    assert table.loc["rf_lw", "outcome"] == NOT_REPRODUCED and table.loc["rf_lw", "gain"] == pytest.approx(3.0)
    assert table.loc["rf_lw_rcu", "outcome"] == INCONCLUSIVE
    assert (table.n_seeds == 3).all()


def test_both_schedules_train_their_own_networks_from_one_backbone(tmp_path):
    """Tiny networks, 2 seeds per schedule: the shorter schedule's networks are other store entries that ran half
    the steps, from the very same pretrained backbone; the section writes its tables and two scorecard rows."""
    from analysis.probes import ProbePlan
    from analysis.probes.run import TINY_NETWORKS

    setting = replace(TINY_NETWORKS, pretrain=Pretrain(decoder={"channels": 16, "top_channels": 32, "crp_stages": 0}),
                      schedule=replace(TINY_NETWORKS.schedule, patience=10))  # no plateau stop: every run ends at
    # its step limit
    plan = replace(ProbePlan.tiny(), cache_dir=str(tmp_path / "cache"), levels=("level4",))
    data = collect(setting, 2, say=None, plan=plan)
    short, long = list(data)
    assert (short, long) == ("1 steps", "2 steps")
    assert data[short]["backbones"] == data[long]["backbones"] != ["None"] and len(data[short]["backbones"]) == 1
    assert {e["steps"] for e in data[long]["ends"].values()} == {2}
    assert {e["steps"] for e in data[short]["ends"].values()} == {1}
    assert set(data[short]["without_rcu"]) == set(data[long]["without_rcu"]) == {0, 1}
    section = write(setting, 2, data, tmp_path, "schedule-check/x-2-seeds")
    folder = tmp_path / "schedule-check" / "x-2-seeds"
    assert len(pd.read_csv(folder / "ends.csv")) == 2 * len(setting.families)
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
