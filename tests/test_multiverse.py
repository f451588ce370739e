"""The recipe multiverse (analysis.report.multiverse): one verdict per claim over the recipes, cell by cell, and the
section on tiny real networks under a subset of the protocol's recipes."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from analysis.report.multiverse import over_recipes
from analysis.verdicts import DEPENDS, INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED


@pytest.mark.parametrize("outcomes, verdict, words", [
    ({"base": REPRODUCED, "zero-init": REPRODUCED}, REPRODUCED, "reproduced under every recipe (2)"),
    ({"base": NOT_REPRODUCED, "zero-init": NOT_REPRODUCED}, NOT_REPRODUCED, "not reproduced under every recipe"),
    ({"base": REPRODUCED, "zero-init": NOT_REPRODUCED, "frozen-bn": REPRODUCED}, DEPENDS,
     "depends on the recipe: reproduced under base, frozen-bn; not reproduced under zero-init"),
    ({"base": REPRODUCED, "zero-init": INCONCLUSIVE}, INCONCLUSIVE, "reproduced under base; inconclusive under "
                                                                    "zero-init"),
    ({"base": NOT_TESTABLE, "zero-init": NOT_TESTABLE}, NOT_TESTABLE, "not testable under any recipe"),
    ({"base": REPRODUCED, "zero-init": NOT_TESTABLE}, REPRODUCED,
     "reproduced under every recipe that can test it (1 of 2; not testable under zero-init)"),
])
def test_one_verdict_over_the_recipes_names_them(outcomes, verdict, words):
    v = over_recipes(outcomes)
    assert v.outcome == verdict and words in v.why


def test_the_multiverse_section_on_tiny_networks(tmp_path):
    from analysis.probes.run import TINY_NETWORKS
    from analysis.report.multiverse import seeded

    setting = replace(TINY_NETWORKS, families=("rf", "rf_lw_rcu", "rf_lw"))
    section = seeded(tmp_path, setting, 2, "x", names=["zero-init", "twice-the-steps"])
    folder = tmp_path / "multiverse" / "x-2-seeds"
    cells = pd.read_csv(folder / "claims_by_recipe.csv")
    assert set(cells.recipe) == {"base", "zero-init", "twice-the-steps"}
    assert set(cells.status) <= {REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE}
    summary = pd.read_csv(folder / "over_recipes.csv")
    assert {"under base", "under zero-init", "under twice-the-steps"} <= set(summary.columns)
    # the zero-init starts every RCU branch at zero: growth since initialisation is undefined there
    saturation = cells[cells.claim.str.startswith("Section 3.3: RCUs saturate") & (cells.recipe == "zero-init")]
    assert (saturation.status == NOT_TESTABLE).all()
    for claim in summary.claim:
        assert any(p.name.startswith("spec_curve_") for p in folder.iterdir()), claim
    # the verdict over the recipes is the scorecard's, even beside a one-recipe run on the most seeds allowed
    from analysis.report import MAX_REPORT_SEEDS
    from analysis.report.scorecard import Current, strongest

    one_recipe = replace(section.scores[0], rank=float(MAX_REPORT_SEEDS), reason="one recipe")
    shown = strongest([Current(one_recipe, "k1", "2026-12-07"), Current(section.scores[0], "k2", "2026-12-06")])
    assert [c.key for c in shown] == ["k2"]
    assert "recipes: base, zero-init, twice-the-steps" in section.settings
    # the recipes left out are named wherever a verdict over the recipes is read
    assert "not run: classification-pretraining, from-scratch, frozen-bn" in section.settings
    assert all("not run: classification-pretraining, from-scratch, frozen-bn" in r.reason for r in section.scores)
    assert "not run: classification-pretraining" in (folder / "over_recipes.md").read_text()


@pytest.mark.parametrize("argv, words", [
    (["report", "multiverse", "--seeds", "3", "--recipes", "zero-inti"], "did you mean 'zero-init'?"),
    (["report", "networks", "--seeds", "3", "--recipes", "zero-init"], "--recipes is for the multiverse section"),
])
def test_recipes_refusals_name_the_valid_choices(argv, words, capsys):
    from analysis.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_recipes_keep_the_protocols_order():
    from analysis.report.multiverse import checked_recipes

    assert checked_recipes(["frozen-bn", "zero-init"]) == ["zero-init", "frozen-bn"]
    assert checked_recipes(None) is None


def test_a_spec_curve_draws_the_bounds_its_claims_rule_reads():
    from analysis.protocol import PROTOCOL, paper_margins
    from analysis.report.multiverse import claim_bounds

    margins = paper_margins()
    title = {key: PROTOCOL.claim(key)["title"] for key in ("lw_keeps_rf", "rcu_matter_in_rf", "rcu_idle_in_lw",
                                                            "rcu_saturation")}
    # non-inferiority: the upper margin only; 'above the paper's drop': the drop only; equivalence: both edges
    assert [round(b, 3) for b, _ in claim_bounds(title["lw_keeps_rf"])] == [round(margins["accuracy"], 3)]
    assert [round(b, 3) for b, _ in claim_bounds(title["rcu_matter_in_rf"])] == [round(margins["drop"], 3)]
    assert [round(b, 3) for b, _ in claim_bounds(title["rcu_idle_in_lw"])] == [
        round(1 / margins["accuracy"], 3), round(margins["accuracy"], 3)]
    assert claim_bounds(title["rcu_saturation"]) == []
