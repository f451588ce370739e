"""Decoder-grid ERF: how far each decoder block spreads information on its own feature grid.

The gradient of a decoder tap's centre unit with respect to an earlier tap of the same level
(after CRP w.r.t. after the sum, after the RCUs w.r.t. before them, ...), measured on that level's
feature grid in cells of the level's stride. It isolates the decoder: the backbone only supplies the
features the gradient is evaluated at, so the measure exists at random initialisation and compares
the families' blocks as architecture: RefineNet's 3x3 RCUs and fusion convs against the
light-weight 1x1 convs, with and without CRP.

The theoretical field on the same grid comes from a two-channel replica of each level (same spec,
same blocks, positive averaging weights, max-pools as average pools, see
:mod:`analysis.erf.theoretical`): the support of a unit does not depend on channel counts, and the
replica costs nothing to run at any grid size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch

from bench import validation
from bench.errors import UsageError, UsageTypeError
from bench.models import RefineNet, variant_info
from bench.models.decoder import RefineLevel
from bench.stats import percentile_interval, resample_indices

from .gradient import ERFOptions, GradientERF, erf_pairs, mass_side, resampled_summaries
from .theoretical import structural_copy, support_extent

BLOCKS: tuple[tuple[str, str, str], ...] = (
    # (block, tap, with respect to), inside one level, in forward order
    ("RCU before CRP", "after_rcu", "before_rcu"),
    ("fusion + sum", "after_sum", "after_rcu"),
    ("CRP", "after_crp", "after_sum"),
    ("RCU after CRP", "after_out_rcu", "after_crp"),
    ("whole level", "after_out_rcu", "before_rcu"),
)
FRACTIONS = (0.5, 0.9)


def level_pairs(levels: Sequence[str]) -> list[tuple[str, str, str, str]]:
    """(level, block, tap, wrt) for every block of the given levels."""
    return [(lvl, block, f"{lvl}.{tap}", f"{lvl}.{wrt}") for lvl in levels for block, tap, wrt in BLOCKS]


def _replica(level: RefineLevel, spec, with_coarser: bool) -> RefineLevel:
    """A two-channel copy of ``level``'s structure (same spec and blocks), in structural form."""
    replica = RefineLevel([2] * len(level.dimred), 2, 2 if level.out_conv is not None else None, spec,
                          is_coarsest=not with_coarser)
    return structural_copy(replica)


def level_theoretical(model: RefineNet, level: str, grid: tuple[int, int],
                      pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int]]:
    """Theoretical field in cells for (tap, wrt) pairs inside ``level`` (e.g. ("after_crp", "after_sum"))
    on a ``grid`` (height, width), centre unit."""
    module = getattr(model.decoder, level)
    coarsest = level == model.decoder.level_names[0]
    replica = _replica(module, model.spec, with_coarser=not coarsest)
    inputs = [torch.full((1, 2, *grid), 1e-3, dtype=torch.float64) for _ in module.dimred]
    coarser = None if coarsest else torch.full((1, 2, max(1, grid[0] // 2), max(1, grid[1] // 2)), 1e-3,
                                               dtype=torch.float64)
    taps: dict[str, torch.Tensor] = {}

    def tap(name: str, tensor: torch.Tensor) -> None:
        taps[name] = tensor

    with torch.enable_grad():
        for t in inputs:
            t.requires_grad_(True)
        replica(inputs, coarser, tap)
        out = {}
        for name, wrt in pairs:
            f = taps[name]
            u = (f.shape[-2] // 2, f.shape[-1] // 2)
            (grad,) = torch.autograd.grad(f[:, :, u[0], u[1]].sum(), taps[wrt], retain_graph=True, allow_unused=True)
            out[(name, wrt)] = support_extent(grad) if grad is not None else (0, 0)
    return out


@dataclass
class DecoderGrid:
    """One model's decoder-grid ERFs: a row per (level, block), the maps, bootstrap samples of the radii."""

    frame: pd.DataFrame
    maps: dict[tuple[str, str], GradientERF]
    boot: dict[tuple[str, str], dict[float, torch.Tensor]]  # (level, block) -> fraction -> (n_boot,) radii
    side_boot: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)  # (n_boot,) interpolated side90


def decoder_grid_erf(
    model: RefineNet, images: torch.Tensor, levels: Sequence[str] | None = None, batch_size: int = 4,
    options: ERFOptions | None = None, n_boot: int = 500, seed: int = 0, blocks: Sequence[str] | None = None,
) -> DecoderGrid:
    """Decoder-grid ERF of every block of every level (or the given levels) of a zoo model.

    ``blocks``: only these of :data:`BLOCKS` (e.g. ``["whole level"]``; default all). The frame has one row per
    level and block: radii (with 95% intervals from ``n_boot`` image
    resamples; the same resamples for every model given the same images, so comparisons are paired)
    and theoretical extent in cells, grid size, and whether the grid clips the theoretical field.
    """
    if not isinstance(model, RefineNet):
        raise UsageTypeError(f"decoder-grid ERF needs a zoo model (bench.create_model), got {type(model).__name__}")
    valid = model.decoder.level_names
    if isinstance(levels, str):
        raise UsageTypeError(f"levels must be a list of level names, got the string {levels!r}; write [{levels!r}]")
    validation.integer("n_boot", n_boot, minimum=1)
    validation.integer("batch_size", batch_size, minimum=1)
    levels = list(levels or valid)
    unknown = [lvl for lvl in levels if lvl not in valid]
    if unknown:
        raise UsageError(f"unknown level(s) {unknown}; valid: {', '.join(valid)}")
    names = [b for b, _, _ in BLOCKS]
    if isinstance(blocks, str):
        raise UsageTypeError(f"blocks must be a list of block names, got the string {blocks!r}; write [{blocks!r}]")
    unknown = [b for b in blocks or () if b not in names]
    if unknown:
        raise UsageError(f"unknown block(s) {unknown}; valid: {', '.join(names)}")
    rows_spec = [row for row in level_pairs(levels) if blocks is None or row[1] in blocks]
    maps = erf_pairs(model, images, [(t, w) for _, _, t, w in rows_spec], options=options or ERFOptions(),
                     batch_size=batch_size)
    info = variant_info(model.name) if model.name else None
    resamples = resample_indices(len(images), n_boot, seed)
    rows, boot, side_boot = [], {}, {}
    for lvl in levels:
        mine = [(t, w) for level, _, t, w in rows_spec if level == lvl]
        grid = maps[mine[0]].input_size
        fields = level_theoretical(model, lvl, grid, [(t.split(".")[1], w.split(".")[1]) for t, w in mine])
        for level, block, tap, wrt in rows_spec:
            if level != lvl:
                continue
            erf = maps[(tap, wrt)]
            erf.theoretical = fields[(tap.split(".")[1], wrt.split(".")[1])]
            samples, sides = resampled_summaries(erf, resamples, FRACTIONS)
            boot[(level, block)] = samples
            side_boot[(level, block)] = sides
            row = {"variant": model.name, "family": info.family if info else model.spec.family,
                   "level": level, "block": block, "tap": tap, "wrt": wrt, "grid_h": grid[0], "grid_w": grid[1]}
            for f in FRACTIONS:
                key = f"r{int(f * 100)}_cells"
                row[key] = erf.radius[f]
                row[f"{key}_ci_low"], row[f"{key}_ci_high"] = percentile_interval(samples[f])
            row["side90_cells"] = mass_side(erf.map, erf.centre, 0.9)
            row["side90_cells_ci_low"], row["side90_cells_ci_high"] = percentile_interval(sides)
            row.update({"theoretical_cells": erf.theoretical[0], "clipped": erf.clipped, "n_images": erf.n_images})
            rows.append(row)
    return DecoderGrid(pd.DataFrame(rows), maps, boot, side_boot)

