"""Figure 8 as numbers: where each class unit of the classifier fires, against the ground truth and across
two networks (Network Dissection, Bau et al. 2017, with the class masks as concepts).

For a class unit c (channel c of the logits, upsampled to the labels), its *top region* over a split is
the set of pixels where its activation is above the unit's threshold; the threshold is chosen over the
whole split so that the region has as many pixels as the class has in the labels (a parameter-free
choice: a perfect unit's top region is exactly the class). Per unit:

- ``precision``: the share of the top region that lies on the unit's own class (its ground truth);
- ``overlap``: the IoU of the two networks' top regions (the paper: "semantically similar activation
  contours" in RefineNet-101 and RefineNet-LW-101).

Both are ratios of pixel counts summed over images, so an image bootstrap (shared resamples: paired
across networks) gives their intervals without running anything again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from bench import validation
from bench.errors import UsageError
from bench.stats import percentile_interval, resample_indices

from ..datasets.voc import IGNORE
from ..verdicts import REPRODUCED, Interval, above, tally

PRECISION_BAR = 0.5
OVERLAP_BAR = 0.5
RULE = (f"per class unit, 95% image-bootstrap CIs: reproduced where both networks' top regions lie on the unit's "
        f"own class (precision CI above {PRECISION_BAR}) and overlap each other (IoU CI above {OVERLAP_BAR}); not "
        f"reproduced where a precision or the overlap CI lies below its bar; inconclusive otherwise")


@torch.no_grad()
def class_maps(model: nn.Module, images: torch.Tensor, size: tuple[int, int], batch_size: int = 16,
               normalise=None) -> torch.Tensor:
    """(N, K, H, W) logits upsampled (bilinear) to ``size``, in fp16 on the CPU."""
    model = model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        x = normalise(x) if normalise is not None else x
        logits = F.interpolate(model(x).float(), size=size, mode="bilinear", align_corners=False)
        out.append(logits.half().cpu())
    return torch.cat(out)


def top_regions(maps: torch.Tensor, masks: torch.Tensor, unit: int) -> torch.Tensor:
    """(N, H, W) bool: the unit's top region over the split, as many pixels as class ``unit`` has in ``masks``
    (ignored pixels excluded from both)."""
    labelled = masks != IGNORE
    n_class = int((masks == unit).sum())
    values = maps[:, unit].float()[labelled]
    if n_class == 0 or values.numel() == 0:
        return torch.zeros_like(masks, dtype=torch.bool)
    threshold = torch.topk(values, n_class).values[-1]
    return (maps[:, unit].float() >= threshold) & labelled


def unit_agreement(maps: Mapping[str, torch.Tensor], masks: torch.Tensor, classes: Sequence[str],
                   units: Sequence[int] | None = None, n_boot: int = 500, seed: int = 0) -> pd.DataFrame:
    """One row per (class unit, network): precision with its CI; plus, for the first two networks, their
    overlap (IoU) with its CI on every row of that unit. ``maps``: network name -> :func:`class_maps`."""
    names = list(maps)
    if not names:
        raise UsageError("unit_agreement needs the class maps of at least one network")
    validation.integer("n_boot", n_boot, minimum=1)
    units = [c for c in range(1, len(classes)) if (masks == c).any()] if units is None else list(units)
    resamples = resample_indices(len(masks), n_boot, seed)
    rows = []
    for unit in units:
        truth = masks == unit
        tops = {name: top_regions(m, masks, unit) for name, m in maps.items()}
        overlap = (math.nan, math.nan, math.nan)
        if len(names) >= 2:
            a, b = tops[names[0]], tops[names[1]]
            inter, union = (a & b).flatten(1).sum(1).double(), (a | b).flatten(1).sum(1).double()
            overlap = _ratio_with_ci(inter, union, resamples)
        for name in names:
            top = tops[name]
            hits, size = (top & truth).flatten(1).sum(1).double(), top.flatten(1).sum(1).double()
            precision = _ratio_with_ci(hits, size, resamples)
            rows.append({"unit": unit, "class": classes[unit], "network": name, "class_pixels": int(truth.sum()),
                         "images_with_class": int(truth.flatten(1).any(1).sum()), "precision": precision[0],
                         "precision_ci_low": precision[1], "precision_ci_high": precision[2],
                         "overlap": overlap[0], "overlap_ci_low": overlap[1], "overlap_ci_high": overlap[2]})
    return pd.DataFrame(rows)


def _ratio_with_ci(numerator: torch.Tensor, denominator: torch.Tensor, resamples: torch.Tensor
                   ) -> tuple[float, float, float]:
    """sum(num) / sum(den) over images, and its percentile interval over image resamples (NaN where empty)."""
    total = float(denominator.sum())
    point = float(numerator.sum()) / total if total else math.nan
    den = denominator[resamples].sum(1)
    samples = torch.where(den > 0, numerator[resamples].sum(1) / den.clamp_min(1), torch.full_like(den, math.nan))
    low, high = percentile_interval(samples)
    return point, low, high


def unit_verdicts(agreement: pd.DataFrame) -> pd.DataFrame:
    """Figure 8's claim per class unit, by :data:`RULE`: each precision and the overlap is one ``above`` test of
    :mod:`analysis.verdicts` against its bar; the unit holds where all three hold, fails where one fails."""
    rows = []
    for (unit, name), group in agreement.groupby(["unit", "class"], sort=False):
        tests = [above(Interval(r.precision, r.precision_ci_low, r.precision_ci_high), PRECISION_BAR,
                       f"{r.network} precision") for r in group.itertuples()]
        first = group.iloc[0]
        tests.append(above(Interval(first.overlap, first.overlap_ci_low, first.overlap_ci_high), OVERLAP_BAR,
                           "overlap"))
        outcome = tally([t.outcome for t in tests], "").outcome
        decisive = [t.why for t in tests if t.outcome == outcome] if outcome != REPRODUCED else []
        why = ("both networks fire on the class, and on the same pixels" if outcome == REPRODUCED else
               "; ".join(decisive))
        rows.append({"unit": unit, "class": name, "precision_min": float(group.precision.min()),
                     "overlap": float(first.overlap), "overlap_ci_low": first.overlap_ci_low,
                     "overlap_ci_high": first.overlap_ci_high, "status": outcome, "why": why})
    return pd.DataFrame(rows)
