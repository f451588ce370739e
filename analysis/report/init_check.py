"""Recipe check (``--seeds N`` only): does the zero-init of the residual branches decide claim (c)?

The trained set's recipe starts every RCU and CRP residual branch at zero (``Schedule.zero_init_residual``, chosen
to keep the original RefineNet's levels alive). On a real street-scene set the RCU branches then barely left zero,
so "CRP, not RCU" (claim (c)) could be the init's verdict rather than the architecture's. This section trains the
same families on the same seeds with a standard init (every branch as PyTorch initialises it), from the very same
shared backbone (``Pretrain.zero_init_residual`` fixes the pretraining's own init), probes both sets the same way, and
compares: claim (c) per (family, level) cell under each init, each RCU's branch share after training under each, and
mIoU (held-out test split). The check passes where claim (c)'s verdict is the same under both inits.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from bench.environment import device_description

from ..networks import NetworkSetting
from ..verdicts import tally
from . import recipe_check
from .files import Artifact, ScoreRow, Section, save_table

FOLDER = "init-check"
INITS = {"zero-init": True, "standard init": False}
CHECK_RULE = ("the recipe check: claim (c)'s tally over its (family, level) cells under the zero-init and under a "
              "standard init, same seeds, same probes; reproduced (the init does not decide the claim) where both "
              "tallies come out the same, not reproduced where one is reproduced and the other not reproduced, "
              "inconclusive otherwise")


SATURATION_CHECK_RULE = ("the recipe check of Section 3.3's saturation claim: its verdict (the networks section's "
                         "rule) under the zero-init and under a standard init, same seeds; reproduced (the init does "
                         "not decide the claim) where both come out the same, not reproduced where one is reproduced "
                         "and the other not reproduced, inconclusive otherwise")


def with_init(setting: NetworkSetting, zero_init: bool) -> NetworkSetting:
    """``setting`` with its residual branches zero-initialised or not (part of the weights store's key)."""
    return replace(setting, schedule=replace(setting.schedule, zero_init_residual=zero_init))


def collect(setting: NetworkSetting, seeds: int, say=print, plan=None) -> dict[str, dict]:
    """Per init: the probe run, its claim (c) cells, the trained networks' reported mIoU and RCU branch shares
    (:func:`analysis.report.recipe_check.collect`). ``plan``: the probes' plan (default: the probes section's,
    ``ProbePlan.default()``) whose networks are replaced by ``setting`` under each init."""
    return recipe_check.collect({name: with_init(setting, zero) for name, zero in INITS.items()}, seeds, say, plan)


def check_verdict(first: str, second: str, claim: str = "claim (c)") -> tuple[str, str]:
    """:data:`CHECK_RULE` on the two inits' outcomes of one claim."""
    return recipe_check.check_verdict(first, second, claim, ("the zero-init", "a standard init"))


def accuracy_claims_by_init(data: dict[str, dict]) -> pd.DataFrame:
    """Section 3.3's saturation claim and "LW keeps RF's accuracy", each decided by its own rule
    (:mod:`analysis.networks.claims`) under each init, from the same seeds: a row per (claim, init)."""
    from ..networks.claims import accuracy_verdict, saturation_verdict, shares_by_seed

    rows = []
    for init in INITS:
        shares = data[init]["shares"]
        if len(shares):
            x, v, n = saturation_verdict(shares_by_seed(shares))
            rows.append({"claim": "RCUs saturate in LW, not in RF (Section 3.3)", "init": init,
                         "effect": "mean RCU branch share, LW-with-RCU - RF", "estimate": x.estimate, "ci_low": x.low,
                         "ci_high": x.high, "n_seeds": n, "status": v.outcome, "why": v.why})
        miou = data[init]["miou"]
        per_miou = {f: dict(zip(g.seed, g.miou, strict=True)) for f, g in miou.groupby("family")}
        x, v, n = accuracy_verdict(per_miou)
        rows.append({"claim": "LW keeps RF's accuracy (Tables 2-3)", "init": init, "effect": "LW - RF mIoU (points)",
                     "estimate": x.estimate, "ci_low": x.low, "ci_high": x.high, "n_seeds": n, "status": v.outcome,
                     "why": v.why})
    return pd.DataFrame(rows)


def write(setting: NetworkSetting, seeds: int, data: dict[str, dict], out: Path, name: str) -> Section:
    from ..style import family_label
    from .probes import schedule_words

    folder = out / name
    setting = replace(setting, seeds=seeds)  # the words say how many runs each set has
    zero, standard = (data[k]["cells"] for k in INITS)
    cells = zero[["family", "level", "status", "crp_miou", "rcu_miou"]].merge(
        standard[["family", "level", "status", "crp_miou", "rcu_miou"]], on=["family", "level"],
        suffixes=("_zero_init", "_standard_init"))
    cells["same"] = cells.status_zero_init == cells.status_standard_init
    tallies = {k: tally(data[k]["cells"].status, "(c)", "family-level cells") for k in INITS}
    outcome, why = check_verdict(*(t.outcome for t in tallies.values()))
    shown = cells.assign(family=cells.family.map(family_label),
                         **{c: 100 * cells[c] for c in cells.columns if c.endswith("miou_zero_init")
                            or c.endswith("miou_standard_init")})
    save_table(cells, folder / "claim_c_by_init", f"Claim (c) under the zero-init and under a standard init, "
               f"{seeds} seeds", [
                   f"The '{setting.name}' set trained twice on seeds 0..{seeds - 1}: {schedule_words(setting)}; once "
                   "as is (zero-init: the last conv of every RCU and CRP residual branch starts at 0) and once with "
                   "every branch as PyTorch initialises it (standard init). The same probes (the probes section's) "
                   "on both.",
                   "crp_miou / rcu_miou: what CRP / the RCUs add to the probe mIoU (points, mean over seeds); status: "
                   "claim (c) per cell by the probes section's rule.",
                   f"Tallies: zero-init {tallies['zero-init'].why}; standard init {tallies['standard init'].why}.",
                   CHECK_RULE + "."], display=shown, floatfmt=".1f")
    shares = pd.concat([data[k]["shares"].assign(init=k) for k in INITS], ignore_index=True)
    share_table = (shares.groupby(["init", "family", "level"], sort=False)["branch_share"]
                   .agg(["mean", "min", "max"]).reset_index()) if len(shares) else shares
    save_table(share_table, folder / "rcu_branch_shares_by_init", "Each RCU's branch share after training, by init", [
        "Branch share of an RCU: ||branch(x)|| / (||x|| + ||branch(x)||) per val image, averaged over the level's "
        "RCUs, seeds and images (mean, and the lowest and highest RCU); 0: the RCU passes its input unchanged. Under "
        "the zero-init a share near 0 can be the init; under the standard init it cannot."], floatfmt=".3f")
    miou = pd.concat([data[k]["miou"].assign(init=k) for k in INITS], ignore_index=True)
    per = miou.groupby(["init", "family"], sort=False)["miou"].agg(["mean", "min", "max"]).reset_index()
    measure = "test mIoU" if (miou.split == "test").all() else "own val mIoU"
    save_table(per.assign(**{c: 100 * per[c] for c in ("mean", "min", "max")}), folder / "miou_by_init",
               f"{measure} of the two trained sets", [
                   f"{seeds} seeds per family and init; {measure} of the kept weights (picked on val), points."],
               floatfmt=".1f")
    by_init = accuracy_claims_by_init(data)
    save_table(by_init, folder / "accuracy_claims_by_init", "Section 3.3's saturation and LW vs RF, by init", [
        "Each claim by its own rule (the networks section's), on the same seeds under each init. Under the zero-init "
        "an RCU branch starts at 0, so a low share can be the init's; under the standard init it cannot: the "
        "saturation claim survives the recipe where it holds under both.", SATURATION_CHECK_RULE + "."],
        floatfmt=".3f")
    where = f"'{setting.name}' set, generated shapes, {setting.device}"
    same = int(cells.same.sum())
    scores = [ScoreRow("Recipe check: claim (c) under a standard init (ours, not a paper number)",
                       "the init decides nothing", f"claim (c) {tallies['zero-init'].outcome} (zero-init) vs "
                       f"{tallies['standard init'].outcome} (standard init); {same} of {len(cells)} cells the same",
                       where, outcome, why, CHECK_RULE, f"{name}/claim_c_by_init.md", seeds)]
    sat = by_init[by_init.claim.str.startswith("RCUs saturate")].set_index("init")
    if len(sat) == len(INITS):
        sat_outcome, sat_why = check_verdict(*(sat.loc[k, "status"] for k in INITS), claim="RCU saturation")
        scores.append(ScoreRow(
            "Recipe check: RCU saturation under a standard init (ours, not a paper number)", "the init decides nothing",
            "; ".join(f"{k}: LW-with-RCU - RF branch share {sat.loc[k, 'estimate']:.3f} ({sat.loc[k, 'ci_low']:.3f} "
                      f"to {sat.loc[k, 'ci_high']:.3f})" for k in INITS), where, sat_outcome, sat_why,
            SATURATION_CHECK_RULE, f"{name}/accuracy_claims_by_init.md", seeds))
    rf_shares = share_table[share_table.family.isin(["rf", "rf_lw_rcu"])] if len(share_table) else share_table
    share_words = "; ".join(f"{family_label(r.family)} {r.level} {r.init}: {r.mean:.3f}"
                            for r in rf_shares.itertuples() if r.level == "level4")
    text = (f"Claim (c) {tallies['zero-init'].outcome} under the zero-init and {tallies['standard init'].outcome} "
            f"under a standard init ({same} of {len(cells)} cells the same): {outcome}. Level-4 RCU branch shares: "
            f"{share_words}.")
    artifacts = [Artifact(f"{name}/claim_c_by_init.md", "Claim (c) by init", "per cell, both inits", inline=True),
                 Artifact(f"{name}/rcu_branch_shares_by_init.md", "RCU branch shares by init", "after training"),
                 Artifact(f"{name}/miou_by_init.md", f"{measure} by init", "per family"),
                 Artifact(f"{name}/accuracy_claims_by_init.md", "Saturation and LW vs RF by init",
                          "each claim's verdict under each init")]
    return Section(f"Recipe check: the residual-branch init, '{setting.name}' setting, {seeds} seeds, on "
                   f"{device_description(setting.device)}", artifacts, text, schedule_words(setting), scores, name)


def seeded(out: Path, setting: NetworkSetting, seeds: int, slug: str) -> Section:
    name = f"{FOLDER}/{slug}-{seeds}-seeds"
    return write(setting, seeds, collect(setting, seeds), out, name)
