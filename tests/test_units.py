"""Figure 8 as numbers: class units' top regions against the labels and across networks, on hand-made maps
whose answers are known, and the verdict rule on each side."""

from __future__ import annotations

import pytest
import torch

from analysis.erf.units import top_regions, unit_agreement, unit_verdicts

CLASSES = ("background", "square", "circle")


def _masks() -> torch.Tensor:
    masks = torch.zeros(6, 16, 16, dtype=torch.uint8)
    masks[:, 2:6, 2:6] = 1  # 16 pixels of class 1 per image
    masks[:3, 10:14, 10:14] = 2  # class 2 in half the images
    masks[:, 0, :] = 255  # an ignored row
    return masks


def _maps(masks: torch.Tensor, wrong_unit: int | None = None) -> torch.Tensor:
    """Logits that are the one-hot labels (a perfect network), optionally with one unit firing elsewhere."""
    maps = torch.nn.functional.one_hot(masks.long().clamp(max=2), 3).permute(0, 3, 1, 2).half()
    if wrong_unit is not None:
        maps[:, wrong_unit] = 0
        maps[:, wrong_unit, 8:12, 2:6] = 1  # a patch of background: as many pixels, never the class
    return maps


def test_top_region_of_a_perfect_unit_is_its_class():
    masks = _masks()
    top = top_regions(_maps(masks), masks, 1)
    assert torch.equal(top, masks == 1)
    assert int(top.sum()) == int((masks == 1).sum())  # as many pixels as the class


def test_agreement_known_answers_and_verdicts():
    masks = _masks()
    perfect, off = _maps(masks), _maps(masks, wrong_unit=1)
    same = unit_agreement({"rf": perfect, "lw": perfect}, masks, CLASSES, n_boot=100)
    assert (same.precision == 1).all() and (same.overlap == 1).all()
    assert set(same["class"]) == {"square", "circle"}
    assert list(unit_verdicts(same).status) == ["reproduced", "reproduced"]
    differ = unit_agreement({"rf": perfect, "lw": off}, masks, CLASSES, n_boot=100)
    row = differ[(differ.unit == 1) & (differ.network == "lw")].iloc[0]
    assert row.precision == 0 and row.overlap == 0  # disjoint from the class and from the other network
    verdicts = unit_verdicts(differ).set_index("unit")
    assert verdicts.loc[1, "status"] == "not reproduced" and verdicts.loc[2, "status"] == "reproduced"


def test_half_right_unit_is_inconclusive_or_worse_and_intervals_cover_the_point():
    masks = _masks()
    half = _maps(masks)
    half[3:, 1] = 0
    half[3:, 1, 8:12, 2:6] = 1  # right in 3 images, wrong in 3
    agreement = unit_agreement({"rf": _maps(masks), "lw": half}, masks, CLASSES, units=[1], n_boot=300)
    lw = agreement[agreement.network == "lw"].iloc[0]
    assert lw.precision == pytest.approx(0.5)
    assert lw.precision_ci_low < 0.5 < lw.precision_ci_high  # an image bootstrap of a half-right unit
    assert unit_verdicts(agreement).status.iloc[0] == "inconclusive"
