"""The registered protocol: its margins are the ones the paper's numbers give, its hash ignores line endings, every
recipe changes one training choice, and a result decided under another protocol never reaches the scorecard."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import pytest

from analysis.protocol import PATH, PROTOCOL, load, paper_margins, text_hash

ROOT = Path(__file__).resolve().parents[1]


def test_margins_are_the_papers_own_gaps_as_the_file_states():
    derived = paper_margins()
    # the CSV by hand: VOC test, ResNet-152: LW 82.7, RF 83.4; RF-101 VOC test 82.4, 5 points lost
    assert derived["on_par"] == pytest.approx((100 - 82.7) / (100 - 83.4))
    assert derived["drop"] == pytest.approx((100 - 77.4) / (100 - 82.4))
    for name in ("on_par", "drop", "accuracy"):
        assert PROTOCOL.margin(name) == pytest.approx(derived[name], abs=5e-4), name
    assert PROTOCOL.margin("on_par") < PROTOCOL.margin("accuracy") < PROTOCOL.margin("drop")


def test_the_flat_end_threshold_is_at_most_a_quarter_of_the_smallest_margin_in_points():
    # the margin in points is smallest where the error is smallest: at the top of the task's band
    top = PROTOCOL.task["miou"][1]
    margin_points = (100 - top) * (PROTOCOL.margin("accuracy") - 1)
    assert PROTOCOL.flat_points <= margin_points / 4


def test_the_hash_ignores_line_endings_and_sees_any_other_change(tmp_path):
    text = PATH.read_text()
    assert text_hash(text.replace("\n", "\r\n")) == PROTOCOL.sha256
    crlf = tmp_path / "protocol.toml"
    crlf.write_bytes(text.replace("\n", "\r\n").encode())
    assert load(crlf).sha256 == PROTOCOL.sha256
    assert text_hash(text.replace("accuracy = 1.157", "accuracy = 1.158")) != PROTOCOL.sha256


def test_a_broken_protocol_names_the_key(tmp_path):
    bad = tmp_path / "protocol.toml"
    bad.write_text(PATH.read_text().replace('rule = "non-inferiority"', 'rule = "roughly"', 1))
    with pytest.raises(ValueError, match="rule must be one of"):
        load(bad)


def test_every_recipe_changes_one_training_choice_of_the_base():
    from analysis.networks import SETTINGS
    from analysis.report.multiverse import recipe_setting

    base = SETTINGS["cpu"]
    axes = [r.axis for r in PROTOCOL.recipes()]
    assert {"backbone pretraining", "residual-branch init", "schedule", "BatchNorm"} <= set(axes)
    for recipe in PROTOCOL.recipes():
        changed = recipe_setting(base, recipe)
        differs = [f.name for f in fields(base.schedule) if getattr(base.schedule, f.name) != getattr(
            changed.schedule, f.name)]
        differs += ["pretrain"] if changed.pretrain != base.pretrain else []
        assert differs, recipe.name
        if recipe.axis == "backbone pretraining":
            assert differs == ["pretrain"], recipe.name
        elif recipe.axis == "schedule":
            assert set(differs) <= {"max_steps", "budget_min"} and changed.schedule.max_steps == 2 * \
                base.schedule.max_steps
            assert changed.pretrain.max_steps == base.pretrain.max_steps  # the same backbone
        else:
            assert len(differs) == 1, (recipe.name, differs)


def _entry(sha: str) -> dict:
    from analysis.networks.settings import SET_VERSION
    from analysis.networks.store import TRAINING_VERSION
    from analysis.verdicts import VERDICT_VERSION

    return {"section": "networks", "title": "Trained networks (another protocol)", "verdict_version": VERDICT_VERSION,
            "training_version": TRAINING_VERSION, "set_version": SET_VERSION, "folder": "networks/x",
            "protocol": {"version": 0, "sha256": sha},
            "scores": [{"artifact": "Tables 2-3 (mIoU): LW keeps RF's accuracy", "paper": "p", "ours": "o",
                        "measured_with": "m", "status": "reproduced", "reason": "r", "rule": "x",
                        "link": "networks/x/accuracy_claims.md", "rank": 3}]}


def test_a_section_decided_under_another_protocol_is_archived_not_scored(tmp_path):
    from analysis.report.front_page import front_page, superseded

    other = _entry("0" * 64)
    assert "protocol" in superseded(other) and PROTOCOL.stamp in superseded(other)
    page = front_page({"networks/x": other}, tmp_path)
    scorecard = page.split("## Sections")[0]
    assert "| **reproduced** |" not in scorecard and "archive" in page
    assert not superseded(_entry(PROTOCOL.sha256))
    assert PROTOCOL.stamp in page


def test_the_committed_scorecard_rests_on_this_protocol_only():
    """Every benefit row the committed front page shows comes from a section decided under this protocol's hash."""
    from analysis.report import TRAINED
    from analysis.report.front_page import superseded

    manifest = json.loads((ROOT / "reports" / "manifest.json").read_text())
    current = {k: e for k, e in manifest.items() if not superseded(e) and e.get("section") in TRAINED}
    assert current, "no current section on trained networks in reports/manifest.json"
    for key, entry in current.items():
        assert entry["protocol"]["sha256"] == PROTOCOL.sha256, key
    page = (ROOT / "reports" / "README.md").read_text()
    assert PROTOCOL.stamp in page


def test_the_margin_in_words_matches_the_number():
    from analysis.networks.claims import rule_words

    words = rule_words("lw_keeps_rf")
    assert f"x{PROTOCOL.margin('accuracy'):.3f}" in words and PROTOCOL.stamp in words
    assert math.isclose(PROTOCOL.bound(PROTOCOL.claim("rcu_matter_in_rf")), PROTOCOL.margin("drop"))
