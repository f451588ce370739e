"""What the recipe checks share: the same families on the same seeds trained under two recipes (two values of one
training choice), probed the same way, and each claim's verdict compared between the two.

A recipe check passes (*reproduced*: the training choice decides nothing) where a claim comes out the same under
both recipes; *not reproduced* where one recipe reproduces it and the other refutes it; *inconclusive* otherwise.
The two checks: :mod:`analysis.report.init_check` (the residual branches' init) and
:mod:`analysis.report.schedule_check` (the schedule's length, and with it whether the set is converged).
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from ..networks import NetworkSetting, trained_set
from ..verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


def check_verdict(first: str, second: str, claim: str, names: tuple[str, str]) -> tuple[str, str]:
    """One claim's outcomes under two recipes (``names``: how each reads after "under") -> the check's outcome."""
    if first == second:
        return REPRODUCED, f"{claim} is {first} under both {names[0]} and {names[1]}"
    if {first, second} == {REPRODUCED, NOT_REPRODUCED}:
        return NOT_REPRODUCED, f"{claim} is {first} under {names[0]} but {second} under {names[1]}"
    return INCONCLUSIVE, f"{claim} is {first} under {names[0]}, {second} under {names[1]}"


def collect(recipes: dict[str, NetworkSetting], seeds: int, say=print, plan=None) -> dict[str, dict]:
    """Per recipe (name -> the setting trained under it): the probe run, its claim (c) cells, the trained networks'
    reported mIoU and RCU branch shares, the shared backbones they started from and their training records.
    ``plan``: the probes' plan (default: the probes section's, ``ProbePlan.default()``) whose networks are replaced by
    each recipe's setting."""
    from ..probes import ProbePlan
    from ..probes.differences import crp_verdicts, tap_differences
    from ..report.probes import collect as probe_collect
    from .networks import branch_shares

    out = {}
    for name, setting in recipes.items():
        probe_plan = replace(plan or ProbePlan.default(), networks=replace(setting, seeds=seeds), seeds=seeds)
        run = probe_collect(probe_plan, progress=say)
        probed = probe_plan.setting()  # the networks the probes ran on (loaded from the store, not trained again)
        nets = trained_set(probed, seeds=seeds, say=None, progress=False, cache_dir=probe_plan.cache_dir)
        out[name] = {"run": run, "cells": crp_verdicts(run, tap_differences(run)), "setting": probed,
                     "miou": pd.DataFrame([{"family": n.record["family"], "seed": n.record["seed"],
                                            "miou": n.reported_miou, "split": n.reported_split} for n in nets]),
                     "shares": branch_shares(probed, nets),
                     "backbones": sorted({str(n.record["backbone_weights"]) for n in nets}),
                     "records": [n.record for n in nets]}
    return out
