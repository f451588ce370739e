"""The recipe multiverse (``--seeds N`` only; ``nox -s multiverse``): every accuracy claim decided under every recipe of
the registered protocol, cell by cell, and one verdict per claim over the recipes.

A recipe (``[recipes.*]`` in ``analysis/protocol.toml``) changes one training choice of the base recipe (the named
setting): the backbone's pretraining (segmentation under a decoder none of the families has; none), the residual
branches' init, the schedule's length, BatchNorm. Under each recipe the set (RefineNet, LW with RCU, LW) and the
original without RCUs train on the same seeds, and each claim is decided by its own rule
(:mod:`analysis.networks.claims`). The controls are the base recipe's (the networks section's): they say whether the
task and pipeline resolve an effect of the margin's size, and gate every recipe's claims.

Over the recipes a claim is **reproduced** where every recipe reproduces it, **not reproduced** where every recipe
refutes it, **depends on the recipe** where some reproduce and some refute it (the row names which), and inconclusive
otherwise (naming what each recipe decided). One specification curve per claim draws its effect and interval under
each recipe, sorted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from bench.environment import device_description

from ..networks import NetworkSetting, trained_set
from ..networks.pretrain import Pretrain
from ..protocol import PROTOCOL, Recipe
from ..verdicts import DEPENDS, INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, Verdict
from .files import Artifact, ScoreRow, Section, save_figure, save_table

FOLDER = "multiverse"
BASE = "base"
OVER_RECIPES_RANK = 100
"""A benefit row decided over the recipes outranks any row decided under one recipe, on however many seeds
(``--seeds`` is at most 10): a claim about an architecture must survive the recipe, so the scorecard shows the verdict
over the recipes; a one-recipe run on more seeds (the networks section's) stays in its own section."""
OVER_RECIPES_RULE = ("over the protocol's recipes (the base and one change per axis, each on the same seeds): "
                     "reproduced where every recipe that can test the claim reproduces it, not reproduced where every "
                     "one refutes it, depends on the recipe where some reproduce and some refute it, inconclusive "
                     "otherwise")


def recipe_setting(setting: NetworkSetting, recipe: Recipe) -> NetworkSetting:
    """``setting`` with one recipe's change: its schedule fields, its steps factor (the cosine stretched with the step
    limit and the time guard; the shared backbone keeps its own steps) or its pretraining (a [pretrain] table, or
    "none": every network from a random backbone)."""
    schedule = replace(setting.schedule, **recipe.schedule)
    pretrain = setting.pretrain
    if recipe.steps_factor != 1:
        if pretrain is not None:  # the same backbone: the pretraining keeps its own step limit
            pretrain = replace(pretrain, max_steps=pretrain.max_steps or schedule.max_steps)
        schedule = replace(schedule, max_steps=round(schedule.max_steps * recipe.steps_factor),
                           budget_min=schedule.budget_min * recipe.steps_factor if schedule.budget_min else None)
    if recipe.pretrain == "none":
        pretrain = None
    elif isinstance(recipe.pretrain, dict):
        table = dict(recipe.pretrain)
        base = pretrain or Pretrain()
        task = table.get("task", base.task)
        decoder = table.get("decoder", base.decoder if task == "segmentation" else {})
        pretrain = replace(base, task=task, decoder=decoder)
    return replace(setting, schedule=schedule, pretrain=pretrain)


def recipes(setting: NetworkSetting, names: Sequence[str] | None = None) -> dict[str, NetworkSetting]:
    """The base and the protocol's recipes (``names``: a subset of the others, in the protocol's order)."""
    chosen = [r for r in PROTOCOL.recipes() if names is None or r.name in names]
    return {BASE: setting, **{r.name: recipe_setting(setting, r) for r in chosen}}


def checked_recipes(names: Sequence[str] | None) -> list[str] | None:
    """``--recipes``: protocol recipe names in the protocol's order (the base always runs); a wrong one is one line
    naming the nearest and the valid ones."""
    if names is None:
        return None
    from bench import validation

    valid = [r.name for r in PROTOCOL.recipes()]
    for name in names:
        validation.choice("recipe", name, valid)
    return [n for n in valid if n in names]


def not_run(data: Mapping[str, dict]) -> list[str]:
    """The protocol's recipes a multiverse left out (``--recipes``): every verdict over the recipes names them."""
    return [r.name for r in PROTOCOL.recipes() if r.name not in data]


def collect(setting: NetworkSetting, names: Sequence[str] | None = None,
            say: Callable[[str], None] | None = print) -> dict[str, dict]:
    """Per recipe: the per-image scores of every family and of the original without RCUs, the RCU share growth, and
    the training records (each network trained or loaded from the weights store)."""
    from .networks import growth_of, scores_of, without_rcu_runs

    out = {}
    for name, chosen in recipes(setting, names).items():
        if say:
            say(f"  recipe {name}")
        nets = trained_set(chosen, say=say)
        out[name] = {"setting": chosen, "scores": scores_of(nets), "growth": growth_of(chosen, nets),
                     "without_rcu": without_rcu_runs(chosen, say),
                     "miou": {(n.record["family"], n.record["seed"]): n.reported_miou for n in nets},
                     "records": [n.record for n in nets]}
    return out


def cells(data: Mapping[str, dict], gates: Mapping[str, Verdict] | None) -> pd.DataFrame:
    """One row per (claim, cell, recipe): the effect, its interval and the verdict (gated by the base controls)."""
    from .networks import claim_rows

    frames = []
    for name, d in data.items():
        rows, _ = claim_rows(d["scores"], d["growth"], d["without_rcu"], gates)
        frames.append(pd.DataFrame(rows).assign(recipe=name))
    return pd.concat(frames, ignore_index=True)


def over_recipes(outcomes: Mapping[str, str]) -> Verdict:
    """One claim's verdict over the recipes (:data:`OVER_RECIPES_RULE`)."""
    by: dict[str, list[str]] = {}
    for recipe, outcome in outcomes.items():
        by.setdefault(outcome, []).append(recipe)
    words = "; ".join(f"{outcome} under {', '.join(names)}" for outcome, names in by.items())
    decided = set(by) - {NOT_TESTABLE}
    every = (f"every recipe ({len(outcomes)})" if NOT_TESTABLE not in by else
             f"every recipe that can test it ({len(outcomes) - len(by[NOT_TESTABLE])} of {len(outcomes)}; not testable "
             f"under {', '.join(by[NOT_TESTABLE])})")
    if not decided:
        return Verdict(NOT_TESTABLE, f"not testable under any recipe: {words}")
    if decided == {REPRODUCED}:
        return Verdict(REPRODUCED, f"reproduced under {every}")
    if decided == {NOT_REPRODUCED}:
        return Verdict(NOT_REPRODUCED, f"not reproduced under {every}")
    if REPRODUCED in by and NOT_REPRODUCED in by:
        return Verdict(DEPENDS, f"depends on the recipe: {words}")
    return Verdict(INCONCLUSIVE, words)


def claim_outcomes(table: pd.DataFrame) -> dict[str, dict[str, str]]:
    """claim title -> recipe -> the claim's outcome under that recipe (a claim of several cells: their tally)."""
    from ..verdicts import tally

    out: dict[str, dict[str, str]] = {}
    for (claim, recipe), group in table.groupby(["claim", "recipe"], sort=False):
        out.setdefault(claim, {})[recipe] = tally(group.status, claim, "cells").outcome
    return out


def claim_bounds(title: str) -> list[tuple[float, str]]:
    """The error-ratio bounds a claim's rule reads (line styles: dashed for the protocol's margin, dotted for the
    paper's drop): non-inferiority its upper margin, equivalence both, 'above' its own bound; none otherwise."""
    claim = next((c for c in PROTOCOL.raw["claims"].values() if c.get("title") == title), {})
    if not isinstance(claim.get("bound"), str):
        return []
    bound = PROTOCOL.margin(claim["bound"])
    style = ":" if claim["bound"] == "drop" else "--"
    return {"non-inferiority": [(bound, style)], "equivalence": [(1 / bound, style), (bound, style)],
            "above": [(bound, style)]}.get(claim.get("rule"), [])


def spec_curve(table: pd.DataFrame, claim: str, where: str = ""):
    """The specification curve of one claim: each recipe's effect (error ratio) and interval, sorted, cell by cell,
    with the claim's bounds; colours by verdict."""
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    from ..style import use_style

    use_style()
    rows = table[table.claim == claim]
    effects = list(dict.fromkeys(rows.effect))
    n = max(len(rows[rows.effect == e]) for e in effects)
    fig, axes = plt.subplots(1, len(effects), figsize=(6.2 * len(effects), 0.42 * n + 2.2), squeeze=False)
    colours = {REPRODUCED: "#1b7837", NOT_REPRODUCED: "#b2182b", INCONCLUSIVE: "#878787", NOT_TESTABLE: "#c7c7c7"}
    for ax, name in zip(axes[0], effects, strict=True):
        cell = rows[rows.effect == name].sort_values("ratio")
        shares = "branch share" in name  # the saturation claim: its bound is x1, not an error-ratio margin
        lines = [] if shares else claim_bounds(claim)
        ends = [v for v in (*cell.ratio, *cell.ratio_low, *cell.ratio_high, 1.0, *(b for b, _ in lines))
                if v == v and v > 0]
        low, high = min(ends) / 1.05, max(ends) * 1.05
        for i, r in enumerate(cell.itertuples()):
            colour = colours.get(r.status, "#878787")
            if r.ratio_low == r.ratio_low:
                ax.plot([max(r.ratio_low, low), min(r.ratio_high, high)], [i, i], color=colour, lw=2.5,
                        solid_capstyle="butt")
            if r.ratio == r.ratio:
                ax.plot([r.ratio], [i], "o", color=colour, ms=7, mec="white", mew=0.8)
            else:  # e.g. share growth under the zero-init: the branches start at zero
                ax.text((low * high) ** 0.5, i, "no value (the table says why)", ha="center", va="center",
                        fontsize=8, color="0.4")
        ax.set_yticks(range(len(cell)), list(cell.recipe), fontsize=9)
        ax.axvline(1.0, color="0.25", lw=0.9)
        for bound, style in lines:
            ax.axvline(bound, color="0.45", ls=style, lw=0.9)
        ax.set_xscale("log")
        ax.set_xlim(low, high)
        steps = ((0.8, 0.9, 1.0, 1.1, 1.25) if high / low < 2 else  # a narrow axis: finer ticks
                 (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0))
        round_ticks = [v for v in steps if not any(abs(v / b - 1) < 0.1 for b, _ in lines)]  # no tick beside a bound
        labelled = [b for b, _ in lines] if high / low < 4 else []  # on a wide axis the caption names the bounds
        nice = [v for v in (*round_ticks, *labelled) if low <= v <= high]
        ax.xaxis.set_major_locator(FixedLocator(sorted(nice)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: "x" + f"{v:.3f}".rstrip("0").rstrip(".")))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelsize=8, labelrotation=0)
        ax.set_ylim(-0.6, len(cell) - 0.4)
        ax.set_xlabel(f"{name} ({'after / at initialisation' if shares else 'error ratio'}, log scale)", fontsize=9)
    fig.suptitle(claim + (f"\n{where}" if where else ""), fontsize=10)
    words = {"--": "dashed", ":": "dotted"}
    bounds = "".join(f" {words[style].capitalize()}: the claim's bound x{bound:.3f}." for bound, style in
                     claim_bounds(claim))
    caption = (f"Dots: the effect under each recipe; bars: its {PROTOCOL.level:.0%} interval over seeds and images "
               f"(cut at the plot's edge). Solid: x1.{bounds} Green: reproduced, red: not reproduced, dark grey: "
               f"inconclusive, light grey: not testable here ({PROTOCOL.stamp}).")
    fig.text(0.5, 0.01, "\n".join(textwrap.wrap(caption, 110 * len(effects))), ha="center", va="bottom", fontsize=7.5)
    fig.tight_layout(rect=(0, 0.09 + 0.02 * (3 - min(3, len(effects))), 1, 0.95))
    return fig


def write(setting: NetworkSetting, seeds: int, data: Mapping[str, dict], gates: Mapping[str, Verdict] | None,
          out: Path, name: str) -> Section:
    from .networks import CLAIM_ROWS
    from .probes import schedule_words

    folder = out / name
    table = cells(data, gates)
    outcomes = claim_outcomes(table)
    shown = table.assign(**{c: table[c] for c in ("ratio", "ratio_low", "ratio_high")})
    recipe_words = {BASE: PROTOCOL.base_recipe, **{r.name: r.words for r in PROTOCOL.recipes()}}
    missing = not_run(data)
    left_out = (f"not run: {', '.join(missing)} (a verdict over the recipes rests on those run only)"
                if missing else "")
    save_table(table, folder / "claims_by_recipe", f"Every accuracy claim under every recipe, {seeds} seeds", [
        f"Recipes ({PROTOCOL.stamp}): " + "; ".join(f"{k}: {recipe_words.get(k, k)}" for k in data) + ".",
        *([f"Of the protocol's recipes {left_out}."] if missing else []),
        "Each cell by its claim's rule (the networks section's); the base recipe's controls gate every recipe.",
        OVER_RECIPES_RULE + "."], display=shown.drop(columns=["rule"]), floatfmt=".3f")
    artifacts = [Artifact(f"{name}/claims_by_recipe.md", "Claims by recipe", "every claim's cells under every recipe",
                          inline=True)]
    scores, summary = [], []
    from .networks import data_name

    where = f"'{setting.name}' set, {data_name(setting)}, {setting.device}, {len(data)} recipes"
    keys = {PROTOCOL.claim(k)["title"]: k for k in CLAIM_ROWS}
    for claim, by_recipe in outcomes.items():
        v = over_recipes(by_recipe)
        if missing:
            v = Verdict(v.outcome, f"{v.why}; {left_out}")
        slug = keys.get(claim, claim).replace("_", "-")
        save_figure(spec_curve(table, claim, f"{where}, {setting.schedule.size}px, {seeds} seeds per recipe"),
                    folder / f"spec_curve_{slug}")
        artifacts.append(Artifact(f"{name}/spec_curve_{slug}.png", f"Specification curve: {claim}",
                                  "the effect and its interval under each recipe"))
        rows = table[table.claim == claim]
        span = f"x{rows.ratio.min():.3f} to x{rows.ratio.max():.3f}"
        summary.append({"claim": claim, "status": v.outcome, "why": v.why, "effects": span,
                        **{f"under {r}": o for r, o in by_recipe.items()}})
        if keys.get(claim) in CLAIM_ROWS:
            artifact, paper = CLAIM_ROWS[keys[claim]]
            scores.append(ScoreRow(artifact, paper.format(on_par=PROTOCOL.margin("on_par"),
                                                          drop=PROTOCOL.margin("drop")),
                                   f"under {len(by_recipe)} recipes: {span} ({', '.join(dict.fromkeys(rows.effect))})",
                                   where, v.outcome, v.why, OVER_RECIPES_RULE + f"; {PROTOCOL.stamp}",
                                   f"{name}/claims_by_recipe.md", OVER_RECIPES_RANK + seeds))
    save_table(pd.DataFrame(summary), folder / "over_recipes", "Each claim over the recipes",
               [OVER_RECIPES_RULE + ".", *([f"Of the protocol's recipes {left_out}."] if missing else [])])
    artifacts.insert(0, Artifact(f"{name}/over_recipes.md", "Over the recipes", "one verdict per claim", inline=True))
    miou = pd.DataFrame([{"recipe": r, "family": f, "seed": s, "miou": 100 * v}
                         for r, d in data.items() for (f, s), v in d["miou"].items()])
    per = miou.groupby(["recipe", "family"], sort=False)["miou"].agg(["mean", "min", "max"]).reset_index()
    save_table(per, folder / "miou_by_recipe", "Test mIoU of each family under each recipe", [
        f"{seeds} seeds per family and recipe; points."], floatfmt=".1f")
    artifacts.append(Artifact(f"{name}/miou_by_recipe.md", "mIoU by recipe", "per family"))
    text = "; ".join(f"{s['claim']}: {s['status']}" for s in summary) + "."
    text += f" Recipes {left_out}." if missing else ""
    return Section(f"Recipe multiverse, '{setting.name}' setting, {seeds} seeds, on "
                   f"{device_description(setting.device)}", artifacts, text,
                   f"base: {schedule_words(setting)}; recipes: {', '.join(data)}"
                   + (f"; not run: {', '.join(missing)}" if missing else ""), scores, name)


def seeded(out: Path, setting: NetworkSetting, seeds: int, slug: str, names: Sequence[str] | None = None) -> Section:
    from .networks import control_rows, control_runs

    setting = replace(setting, seeds=seeds)
    data = collect(setting, names)
    controls = control_runs(setting)
    gates, _ = control_rows(data[BASE]["scores"], controls)
    return write(setting, seeds, data, gates, out, f"{FOLDER}/{slug}-{seeds}-seeds")
