"""Recipe check (``--seeds N`` only): is the trained set converged, and does the schedule's length decide a claim?

A network of the trained set is converged where its own val curve plateaus (the plateau rule ends it), not where the
step limit does: under a cosine schedule the learning rate reaches zero at the limit and flattens any curve, so a
flat end there proves nothing. This section trains the same families (and RefineNet without RCUs) on the same seeds
with ``1/SHORTER`` of the setting's steps (the cosine compressed into them, every other choice as in the setting),
from the very same shared backbone (``Pretrain.max_steps`` fixes the pretraining's own step limit), and reports:

- **convergence**: how each network of the set ended (:data:`CONVERGENCE_RULE`: converged where every one of them
  ended on the plateau rule), and per family what the setting's second half buys in test mIoU, seed by seed (the
  same seed: the same data order and crops), with a t interval over the seeds;
- **the accuracy claims** (the networks section's rules: LW keeps RF's accuracy, RCUs matter in RF and not in LW, RCU
  saturation) and **claim (c)** (the probes section's rule) under each schedule, each compared by the recipe checks'
  rule (:func:`analysis.report.recipe_check.check_verdict`): the schedule decides nothing where a claim comes out the
  same under both;
- the **level-4 probe power** under each schedule (:data:`analysis.probes.differences.POWER_RULE`).

History: until 2026-12-05 the 'cpu' set trained for 450 steps; this check (then run as 450 against 900 steps) found
LW 2.0 (1.1 to 2.9) points short of its plateau there and "LW keeps RF's accuracy" decided by the schedule, so the set
now trains for 900 (README, "How the named settings were chosen"). The controls (A/A, harmful change) are the
networks section's, on the setting's schedule; the shorter set is not gated by controls of its own.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from bench.environment import device_description

from ..networks import NetworkSetting, trained_set
from ..networks.claims import ACCURACY_MARGIN, RF_WITHOUT_RCU
from ..verdicts import below, seed_interval, tally
from . import recipe_check
from .files import Artifact, ScoreRow, Section, save_table

FOLDER = "schedule-check"
SHORTER = 2
HALF_MARGIN = ACCURACY_MARGIN / 2
GAIN_RULE = (
    f"per family: test mIoU after the setting's steps minus after 1/{SHORTER} of them, seed by seed, 95% t interval "
    f"over the seeds; the shorter schedule suffices where wholly below +{HALF_MARGIN:g} point (half the accuracy "
    f"claims' {ACCURACY_MARGIN:g}-point margin, so that two families' unfinished gains together stay within it), the "
    f"second half matters where wholly at or above +{HALF_MARGIN:g}, inconclusive otherwise")
CONVERGENCE_RULE = (
    "the setting's trained set is converged (reproduced) where every network of it ended on the plateau rule (its own "
    "val mIoU gained no more than the setting's min_delta over its last `patience` evaluations), not reproduced where "
    "one ran to its step limit still gaining more than min_delta over its last evaluation, inconclusive otherwise (a "
    "flat end at the step limit, where the cosine's learning rate reaches zero)")
CHECK_RULE = (
    f"the recipe check of the schedule: each accuracy claim's cell (the networks section's rules) and claim (c)'s "
    f"tally (the probes section's rule) under the setting's steps and under 1/{SHORTER} of them, same seeds and "
    "backbone; per cell reproduced (the schedule decides nothing) where both verdicts are the same, not reproduced "
    "where one is reproduced and the other not reproduced, inconclusive otherwise; the row tallies the cells")


def with_steps(setting: NetworkSetting, factor: float) -> NetworkSetting:
    """``setting`` trained ``factor`` times as long (step limit and time guard), from the same shared backbone."""
    sch = setting.schedule
    pretrain = setting.pretrain
    if pretrain is not None:
        pretrain = replace(pretrain, max_steps=pretrain.max_steps or sch.max_steps)
    budget = sch.budget_min * factor if sch.budget_min else None
    return replace(setting, schedule=replace(sch, max_steps=max(1, round(sch.max_steps * factor)), budget_min=budget),
                   pretrain=pretrain)


def schedules(setting: NetworkSetting) -> dict[str, NetworkSetting]:
    """The two recipes, named by their step limits: the shorter first, then the setting's own."""
    shorter = with_steps(setting, 1 / SHORTER)
    return {f"{shorter.schedule.max_steps} steps": shorter, f"{setting.schedule.max_steps} steps": setting}


def collect(setting: NetworkSetting, seeds: int, say=print, plan=None) -> dict[str, dict]:
    """Per schedule: what :func:`analysis.report.recipe_check.collect` returns, the original without RCUs on the
    same seeds (Section 3.3's "RCUs matter"), trained or loaded like the set, and how each network's training ended."""
    from .networks import last_gain

    recipes = schedules(setting)
    data = recipe_check.collect(recipes, seeds, say, plan)
    for name, probed in ((n, d["setting"]) for n, d in data.items()):
        without = trained_set(replace(probed, decoder={**(probed.decoder or {}), **RF_WITHOUT_RCU}),
                              variants=[f"rf:{probed.backbone}"], seeds=seeds, say=say,
                              cache_dir=plan.cache_dir if plan is not None else None)
        data[name]["without_rcu"] = {t.record["seed"]: t.reported_miou for t in without}
        data[name]["ends"] = {(r["family"], r["seed"]): {
            "steps": r["steps"], "stop_reason": r["stop_reason"], "last_gain": last_gain(r)}
            for r in data[name]["records"]}
    return data


def gains(data: dict[str, dict]) -> pd.DataFrame:
    """Per family: the setting's test mIoU minus the shorter schedule's, seed by seed (points), by
    :data:`GAIN_RULE`; with each schedule's mean and how the setting's runs ended."""
    short, long = list(data)
    rows = []
    for family, first in data[short]["miou"].groupby("family", sort=False):
        second = data[long]["miou"][data[long]["miou"].family == family]
        a, b = dict(zip(first.seed, first.miou, strict=True)), dict(zip(second.seed, second.miou, strict=True))
        seeds = sorted(set(a) & set(b))
        x = seed_interval([100 * (b[s] - a[s]) for s in seeds])
        v = below(x, HALF_MARGIN, f"{long} - {short} (points)", ".1f", strict=True)
        ends = [data[long]["ends"].get((family, s), {}).get("stop_reason", "") for s in seeds]
        rows.append({"family": family, f"mIoU {short}": 100 * sum(a[s] for s in seeds) / len(seeds),
                     f"mIoU {long}": 100 * sum(b[s] for s in seeds) / len(seeds), "gain": x.estimate,
                     "ci_low": x.low, "ci_high": x.high, "n_seeds": len(seeds),
                     f"plateau stops of {long}": sum(e == "plateau" for e in ends),
                     "status": {"reproduced": f"{short} suffice", "not reproduced": "the second half matters"}.get(
                         v.outcome, v.outcome), "outcome": v.outcome, "why": v.why})
    return pd.DataFrame(rows)


def convergence(ends: dict[tuple[str, int], dict], min_delta: float) -> tuple[str, str]:
    """:data:`CONVERGENCE_RULE` over the setting's networks (``ends``: (family, seed) -> stop reason and last gain)."""
    from ..style import family_label
    from ..verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

    plateau = [k for k, e in ends.items() if e["stop_reason"] == "plateau"]
    gaining = [k for k, e in ends.items() if e["stop_reason"] != "plateau" and not e["last_gain"] <= 100 * min_delta]
    words = f"{len(plateau)} of {len(ends)} networks ended on the plateau rule"
    if len(plateau) == len(ends):
        return REPRODUCED, words
    if gaining:
        names = ", ".join(f"{family_label(f)} seed {s}" for f, s in gaining)
        return NOT_REPRODUCED, f"{words}; still gaining at the step limit: {names}"
    return INCONCLUSIVE, f"{words}; the others end flat at the step limit, where the learning rate reaches zero"


def claims_by_schedule(data: dict[str, dict], name: str, where: str) -> pd.DataFrame:
    """Every accuracy claim's cell under each schedule (the networks section's rules, no control gating), and the
    check per cell: one row per (claim, effect)."""
    from .networks import accuracy_rows

    names = list(data)
    frames = []
    for recipe in names:
        miou = data[recipe]["miou"].rename(columns={"miou": "reported_miou"})
        miou.attrs["measure"] = "test mIoU" if (data[recipe]["miou"].split == "test").all() else "own val mIoU"
        _, rows = accuracy_rows(miou, data[recipe]["shares"], name, where, without_rcu=data[recipe]["without_rcu"])
        frames.append(rows[["claim", "effect", "estimate", "ci_low", "ci_high", "n_seeds", "status"]]
                      .assign(effect=rows.effect.str.replace("test mIoU ", "").str.replace("own val mIoU ", ""))
                      .rename(columns={c: f"{c} {recipe}" for c in ("estimate", "ci_low", "ci_high", "status")}))
    table = frames[0].merge(frames[1].drop(columns="n_seeds"), on=["claim", "effect"])
    checks = [recipe_check.check_verdict(a, b, effect, tuple(names)) for a, b, effect in
              zip(table[f"status {names[0]}"], table[f"status {names[1]}"], table.effect, strict=True)]
    return table.assign(check=[c[0] for c in checks], why=[c[1] for c in checks])


def level4_power(data: dict[str, dict]) -> pd.DataFrame:
    """Per schedule and family: the lowest seed's best level-4 probe and its ratio to the majority class."""
    from ..probes.differences import POWER_FACTOR, level_power

    frames = []
    for recipe, d in data.items():
        power = level_power(d["run"], "level4")
        family = {v: f for v, f in zip(d["run"].frame.variant, d["run"].frame.family, strict=True)}
        frames.append(power.assign(schedule=recipe, family=power.variant.map(family),
                                   passes=power.ratio >= POWER_FACTOR))
    return pd.concat(frames, ignore_index=True)[["schedule", "family", "lowest", "baseline", "ratio", "passes"]]


def write(setting: NetworkSetting, seeds: int, data: dict[str, dict], out: Path, name: str) -> Section:
    from ..style import family_label
    from .probes import schedule_words

    folder = out / name
    setting = replace(setting, seeds=seeds)
    short, long = list(data)
    where = f"'{setting.name}' set, generated shapes, {setting.device}"
    gain = gains(data)
    conv_outcome, conv_why = convergence(data[long]["ends"], setting.schedule.min_delta)
    ends = pd.DataFrame([{"family": f, "seed": sd, **e} for (f, sd), e in data[long]["ends"].items()])
    save_table(gain.drop(columns="outcome"), folder / "convergence", f"How the set's runs ended, and what its second "
               f"half buys ({short} -> {long})", [
                   f"The '{setting.name}' set trained on seeds 0..{seeds - 1} with its own schedule ({long}) and with "
                   f"1/{SHORTER} of it ({short}: the cosine decay compressed into them, the same shared backbone): "
                   f"{schedule_words(setting)}.",
                   f"gain: test mIoU ({long}) - test mIoU ({short}), points, mean over seeds (paired by seed); "
                   f"plateau stops: how many of the {long} runs the plateau rule ended (at or before the step limit).",
                   GAIN_RULE + ".", f"Convergence of the {long} set: {conv_why} ({conv_outcome}). " + CONVERGENCE_RULE
                   + "."],
               display=gain.drop(columns="outcome").assign(family=gain.family.map(family_label)), floatfmt=".2f")
    save_table(ends, folder / "ends", f"How each network of the {long} set ended", [
        "stop_reason: plateau (the plateau rule), max_steps (the step limit); last_gain: own val mIoU points gained "
        "over the last evaluation interval.", CONVERGENCE_RULE + "."], floatfmt=".2f")
    claims = claims_by_schedule(data, name, where)
    save_table(claims, folder / "claims_by_schedule", f"The accuracy claims under {short} and under {long}", [
        "Each cell by the networks section's rule on the same seeds under each schedule (no control gating here: "
        "the controls are the networks section's); effects in points (mIoU) or branch-share units.",
        CHECK_RULE + "."], floatfmt=".2f")
    cells = {k: data[k]["cells"] for k in data}
    tallies = {k: tally(cells[k].status, "(c)", "family-level cells") for k in data}
    c_outcome, c_why = recipe_check.check_verdict(tallies[short].outcome, tallies[long].outcome, "claim (c)",
                                                  (short, long))
    merged = cells[short][["family", "level", "status"]].merge(cells[long][["family", "level", "status"]],
                                                               on=["family", "level"], suffixes=(f" {short}",
                                                                                                 f" {long}"))
    save_table(merged, folder / "claim_c_by_schedule", f"Claim (c) under {short} and under {long}", [
        f"Per (family, level) cell by the probes section's rule, the same probes on both sets. Tallies: {short} "
        f"{tallies[short].why}; {long} {tallies[long].why}."])
    power = level4_power(data)
    save_table(power, folder / "level4_power_by_schedule", "Level-4 probe power under each schedule", [
        "lowest: the lowest seed's best level-4 probe mIoU (fraction); baseline: the majority class everywhere; "
        "passes: ratio >= 2 (the probes section's power rule)."], floatfmt=".3f")
    claim_checks = [*claims.check, c_outcome]
    claim_tally = tally(claim_checks, "the schedule decides nothing", "claim cells",
                        [*[e for e, c in zip(claims.effect, claims.check, strict=True) if c != "reproduced"],
                         *(["claim (c)"] if c_outcome != "reproduced" else [])])
    gain_words = "; ".join(f"{family_label(r.family)} {r.gain:+.1f} ({r.ci_low:+.1f} to {r.ci_high:+.1f})"
                      for r in gain.itertuples())
    scores = [
        ScoreRow("Recipe check: convergence (ours, not a paper number)", "every run ends on its val plateau",
                 f"{conv_why}; what the second half ({short} -> {long}) buys in test mIoU: {gain_words}", where,
                 conv_outcome, conv_why, CONVERGENCE_RULE, f"{name}/convergence.md", seeds),
        ScoreRow(f"Recipe check: the claims under 1/{SHORTER} of the steps (ours, not a paper number)",
                 "the schedule decides nothing",
                 f"{int((pd.Series(claim_checks) == 'reproduced').sum())} of {len(claim_checks)} claim cells the "
                 "same", where, claim_tally.outcome, f"{claim_tally.why}; claim (c): {c_why}", CHECK_RULE,
                 f"{name}/claims_by_schedule.md", seeds)]
    power_words = "; ".join(f"{r.schedule} {family_label(r.family)} {100 * r.lowest:.1f}% ({r.ratio:.1f}x)"
                            for r in power.itertuples())
    text = (f"Convergence of the {long} set: {conv_why} ({conv_outcome}). What its second half ({short} -> {long}) "
            f"buys, in test mIoU points: {gain_words}; the claims under both: {claim_tally.why}. Level-4 probe power "
            f"(lowest seed): {power_words}.")
    artifacts = [Artifact(f"{name}/convergence.md", "Convergence", "how the runs ended; what the second half buys",
                          inline=True),
                 Artifact(f"{name}/ends.md", "How each run ended", "per network"),
                 Artifact(f"{name}/claims_by_schedule.md", "The claims by schedule", "each cell under each",
                          inline=True),
                 Artifact(f"{name}/claim_c_by_schedule.md", "Claim (c) by schedule", "per cell"),
                 Artifact(f"{name}/level4_power_by_schedule.md", "Level-4 probe power by schedule", "per family")]
    return Section(f"Recipe check: the schedule's length, '{setting.name}' setting, {seeds} seeds, on "
                   f"{device_description(setting.device)}", artifacts, text, schedule_words(setting), scores, name)


def seeded(out: Path, setting: NetworkSetting, seeds: int, slug: str) -> Section:
    name = f"{FOLDER}/{slug}-{seeds}-seeds"
    return write(setting, seeds, collect(setting, seeds), out, name)
