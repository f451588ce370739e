"""Gradient ERF (Luo et al., NeurIPS 2016), in image space or on a decoder's feature grid.

For a tap and a unit (a spatial position, the centre by default; one channel or all), the gradient
of a scalar made from that unit with respect to the input image (:func:`gradient_erf`), or with
respect to an earlier tap of the network (:func:`erf_pairs`; the *decoder-grid* ERF of
:mod:`analysis.erf.decoder_grid`: how far a decoder block spreads information on its own feature
grid, in cells of that grid, whatever the backbone). Its magnitude is summed over
colour (or feature) channels and averaged over the images. The scalar is the sum or the mean over
the selected channels, optionally after a ReLU.

One batched forward serves every tap; one backward per tap and batch: the model is in eval mode, so
each image's scalar depends on that image alone and one backward of the batch sum gives every
image's gradient. Summaries are computed on the unnormalised mean map: the radius of the smallest
centred square holding 20/50/90/99% of the gradient mass, and the theoretical receptive field
(:mod:`analysis.erf.theoretical`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from bench import validation
from bench.errors import UsageError, UsageTypeError

from .taps import FeatureFn, tap_features

FRACTIONS = (0.2, 0.5, 0.9, 0.99)
NORMALISATIONS = ("raw", "max", "sum", "log")


def check_channel(feats: Mapping[str, torch.Tensor], tap: str, channel: int | None) -> None:
    if channel is None:
        return
    n = feats[tap].shape[1]
    if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < n:
        raise UsageError(f"channel {channel!r} is out of range for tap {tap!r}, which has {n} channels (0..{n - 1})")


def check_unit(feats: Mapping[str, torch.Tensor], tap: str, unit: tuple[int, int] | None) -> None:
    if unit is None:
        return
    h, w = feats[tap].shape[-2:]
    ok = (isinstance(unit, (tuple, list)) and len(unit) == 2 and all(isinstance(u, int) for u in unit)
          and 0 <= unit[0] < h and 0 <= unit[1] < w)
    if not ok:
        raise UsageError(f"unit {unit!r} is outside tap {tap!r}'s {h}x{w} feature map: "
                         f"expected (row, column) with 0 <= row < {h}, 0 <= column < {w}")


@dataclass(frozen=True)
class ERFOptions:
    scalar: str = "sum"  # "sum" | "mean" over the selected channels
    unit_relu: bool = False  # ReLU on the unit's activations before the scalar
    rectify: str = "abs"  # "abs" | "relu" on the gradient
    normalise: str = "max"  # display only: "raw" | "max" | "sum" | "log"; summaries use the raw map

    def validate(self) -> None:
        checks = {"scalar": ("sum", "mean"), "rectify": ("abs", "relu"), "normalise": NORMALISATIONS}
        for name, valid in checks.items():
            if getattr(self, name) not in valid:
                raise UsageError(f"unknown {name} {getattr(self, name)!r}; valid: {', '.join(valid)}")


@dataclass
class GradientERF:
    tap: str
    unit: tuple[int, int]  # position in the tap's feature map
    channel: int | None  # None: all channels
    map: torch.Tensor  # (H, W) mean over images of the rectified gradient, summed over channels
    n_images: int
    input_size: tuple[int, int]  # the grid the map lives on: image pixels, or cells of ``wrt``
    centre: tuple[int, int]  # the unit's position on that grid
    options: ERFOptions
    radius: dict[float, int] = field(default_factory=dict)  # fraction -> r (square side 2r+1)
    theoretical: tuple[int, int] | None = None  # (height, width) of the theoretical receptive field
    wrt: str = "input"  # what the gradient is taken with respect to
    per_image: torch.Tensor | None = None  # (N, H, W) each image's map; ``map`` is their mean

    def side(self, fraction: float) -> int:
        return 2 * self.radius[fraction] + 1

    def display(self, normalise: str | None = None) -> torch.Tensor:
        return normalise_map(self.map, normalise or self.options.normalise)

    @property
    def clipped(self) -> bool:
        """The theoretical field reaches the edge of the grid: the grid, not the network, bounds it."""
        return self.theoretical is not None and (self.theoretical[0] >= self.input_size[0]
                                                 or self.theoretical[1] >= self.input_size[1])


def normalise_map(m: torch.Tensor, how: str) -> torch.Tensor:
    if how == "raw":
        return m
    if how == "max":
        return m / m.max().clamp_min(1e-30)
    if how == "sum":
        return m / m.sum().clamp_min(1e-30)
    if how == "log":
        return torch.log10(m / m.max().clamp_min(1e-30) + 1e-6)
    raise UsageError(f"unknown normalisation {how!r}; valid: {', '.join(NORMALISATIONS)}")


def unit_centre(unit: tuple[int, int], feature_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[int, int]:
    """A feature-map position on another grid (the centre of its cell on that grid)."""
    return tuple(  # type: ignore[return-value]
        min(n - 1, int(math.floor((u + 0.5) * n / f))) for u, f, n in zip(unit, feature_hw, input_hw, strict=True)
    )


def _square_masses(maps: torch.Tensor, centre: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """For maps (B, H, W): the mass inside the (2r+1)-square centred on ``centre`` for r = 0, 1, ... (clipped at
    the border), (B, R) in float64, and each map's total, (B,)."""
    h, w = maps.shape[-2:]
    cy, cx = centre
    integral = F.pad(maps.double().cumsum(-2).cumsum(-1), (1, 0, 1, 0))
    r = torch.arange(max(h, w))
    y0, y1 = (cy - r).clamp(0, h), (cy + r + 1).clamp(0, h)
    x0, x1 = (cx - r).clamp(0, w), (cx + r + 1).clamp(0, w)
    inside = integral[:, y1, x1] - integral[:, y0, x1] - integral[:, y1, x0] + integral[:, y0, x0]
    return inside, integral[:, -1, -1]


def _first_square(inside: torch.Tensor, target: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """(B,) index of the first square holding ``target`` (up to rounding), -1 where none does."""
    hit = inside >= (target - 1e-12 * total.abs())[:, None]
    return torch.where(hit.any(1), hit.int().argmax(1), -1)


def batch_mass_radii(maps: torch.Tensor, centre: tuple[int, int],
                     fractions: Sequence[float] = FRACTIONS) -> dict[float, torch.Tensor]:
    """:func:`mass_radii` of each of the maps (B, H, W) at once: fraction -> (B,) radii."""
    inside, total = _square_masses(maps, centre)
    out = {}
    for frac in fractions:
        r = _first_square(inside, frac * total, total)
        out[frac] = torch.where(r < 0, max(maps.shape[-2:]), r)
    return out


def batch_mass_sides(maps: torch.Tensor, centre: tuple[int, int], fraction: float = 0.9) -> torch.Tensor:
    """:func:`mass_side` of each of the maps (B, H, W) at once, (B,) in float64."""
    inside, total = _square_masses(maps, centre)
    target = fraction * total
    k = _first_square(inside, target, total)
    k = torch.where(k < 0, inside.shape[1] - 1, k)  # rounding: the largest square holds everything
    rows = torch.arange(len(k))
    first = k == 0
    below = torch.where(first, 0.0, inside[rows, (k - 1).clamp_min(0)])
    side_below = torch.where(first, 0.0, 2.0 * k - 1)
    step = torch.where(first, 1.0, 2.0).double()
    ring = inside[rows, k] - below
    inner = torch.where(ring > 0, step * (target - below) / torch.where(ring > 0, ring, 1.0), step)
    return torch.where(total <= 0, 1.0, side_below + inner)


def mass_radii(m: torch.Tensor, centre: tuple[int, int], fractions: Sequence[float] = FRACTIONS) -> dict[float, int]:
    """Smallest r such that the (2r+1)-square centred on ``centre`` holds >= fraction of the map's mass
    (clipped at the border). A map without mass (no gradient reaches the grid) has radius 0."""
    return {f: int(r[0]) for f, r in batch_mass_radii(m[None], centre, fractions).items()}


def mass_side(m: torch.Tensor, centre: tuple[int, int], fraction: float = 0.9) -> float:
    """The side, in cells, of the centred square holding ``fraction`` of the map's mass, interpolated linearly
    between whole squares: the centre cell's mass is taken as spread over sides 0 to 1, each further ring's over
    the two sides it adds. Equal to 2r+1 where the (2r+1)-square holds exactly that fraction; unlike the
    whole-cell radius it moves when mass moves within a ring, so an image bootstrap of it gives an interval
    rather than one value. A map without mass has side 1 (radius 0, as :func:`mass_radii`)."""
    return float(batch_mass_sides(m[None], centre, fraction)[0])


def _unit_scalar(feature: torch.Tensor, unit: tuple[int, int], channel: int | None, options: ERFOptions):
    values = feature[:, :, unit[0], unit[1]] if channel is None else feature[:, channel : channel + 1, unit[0], unit[1]]
    if options.unit_relu:
        values = F.relu(values)
    per_image = values.sum(1) if options.scalar == "sum" else values.mean(1)
    return per_image.sum()  # images are independent in eval mode: one backward gives every gradient


def erf_pairs(
    features: FeatureFn | nn.Module,
    images: torch.Tensor,
    pairs: Sequence[tuple[str, str]],
    channel: int | None = None,
    unit: tuple[int, int] | None = None,
    options: ERFOptions = ERFOptions(),
    batch_size: int = 8,
) -> dict[tuple[str, str], GradientERF]:
    """Gradient ERFs for (tap, with respect to) pairs: "input" for the image, or an earlier tap.

    One forward per batch of images serves every pair; one backward per pair and batch.
    """
    options.validate()
    validation.integer("batch_size", batch_size, minimum=1)
    if isinstance(pairs, (str, tuple)) and (not pairs or isinstance(pairs[0], str)):
        raise UsageTypeError(f"pairs must be a list of (tap, with respect to) pairs, got {pairs!r}")
    pairs = list(dict.fromkeys((t, w) for t, w in pairs))
    model = features if isinstance(features, nn.Module) else None
    if model is not None:
        if model.training:
            raise UsageError("gradient ERF needs the model in eval mode (BatchNorm must not mix the images)")
        needed = list(dict.fromkeys([t for t, _ in pairs] + [w for _, w in pairs if w != "input"]))
        features = tap_features(model, needed)
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or len(images) == 0:
        raise UsageError(f"gradient ERF needs a non-empty (N, C, H, W) image batch, got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    maps: dict[tuple[str, str], list[torch.Tensor]] = {}
    units: dict[tuple[str, str], tuple[int, int]] = {}
    shapes: dict[tuple[str, str], tuple[tuple[int, int], tuple[int, int]]] = {}
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].detach().clone().requires_grad_(True)
        feats = features(x)
        for i, (tap, against) in enumerate(pairs):
            f = feats[tap]
            check_channel(feats, tap, channel)
            check_unit(feats, tap, unit)
            target = x if against == "input" else feats[against]
            shapes[(tap, against)] = (tuple(f.shape[-2:]), tuple(target.shape[-2:]))
            units[(tap, against)] = tuple(unit) if unit is not None else (f.shape[-2] // 2, f.shape[-1] // 2)
            scalar = _unit_scalar(f, units[(tap, against)], channel, options)
            (grad,) = torch.autograd.grad(scalar, target, retain_graph=i < len(pairs) - 1, allow_unused=True)
            if grad is None:
                grad = torch.zeros_like(target)
            grad = grad.abs() if options.rectify == "abs" else F.relu(grad)
            maps.setdefault((tap, against), []).append(grad.sum(dim=1).detach().float())
    results = {}
    for key in pairs:
        per_image = torch.cat(maps[key])
        mean_map = per_image.mean(0)
        feature_hw, grid = shapes[key]
        centre = unit_centre(units[key], feature_hw, grid)
        results[key] = GradientERF(key[0], units[key], channel, mean_map, len(images), grid, centre, options,
                                   mass_radii(mean_map, centre), wrt=key[1], per_image=per_image)
    return results


def radius_samples(erf: GradientERF, fraction: float, resamples: torch.Tensor) -> torch.Tensor:
    """Bootstrap samples of a mass radius: the images resampled (rows of ``resamples``), maps averaged again."""
    return resampled_summaries(erf, resamples, (fraction,), side_fraction=None)[0][fraction]


def resampled_summaries(erf: GradientERF, resamples: torch.Tensor, fractions: Sequence[float] = FRACTIONS,
                        side_fraction: float | None = 0.9, chunk: int = 64) -> tuple[dict[float, torch.Tensor],
                                                                                      torch.Tensor]:
    """Bootstrap samples, from one mean map per resample of the images (rows of ``resamples``): the mass radius
    of each fraction, and the interpolated side (:func:`mass_side`) of ``side_fraction`` (None: no sides, an
    empty tensor). ``chunk`` resamples' mean maps are held at a time."""
    if erf.per_image is None:
        raise UsageError("this ERF keeps no per-image maps")
    radii: dict[float, list[torch.Tensor]] = {f: [] for f in fractions}
    sides = []
    for rows in resamples.split(chunk):
        means = erf.per_image[rows].mean(1)  # (chunk, H, W): each resample's mean map
        for f, r in batch_mass_radii(means, erf.centre, fractions).items():
            radii[f].append(r.float())
        if side_fraction is not None:
            sides.append(batch_mass_sides(means, erf.centre, side_fraction))
    empty = torch.zeros(0)
    return ({f: torch.cat(v) if v else empty for f, v in radii.items()},
            torch.cat(sides) if sides else empty.double())


def gradient_erf(
    features: FeatureFn | nn.Module,
    images: torch.Tensor,
    taps: Sequence[str] | str,
    channel: int | None = None,
    unit: tuple[int, int] | None = None,
    options: ERFOptions = ERFOptions(),
    batch_size: int = 8,
    theoretical: bool = False,
) -> dict[str, GradientERF]:
    """Image-space gradient ERF of one unit per tap, over ``images`` (N, 3, H, W), already normalised.

    ``features`` is a zoo model (taps by name) or a function ``x -> {tap: tensor}``. An
    out-of-range ``channel`` or ``unit``, or an unknown tap, is a ValueError naming the valid range.
    With ``theoretical=True`` (zoo models) each result carries its theoretical receptive field.
    """
    taps = [taps] if isinstance(taps, str) else list(taps)
    measured = erf_pairs(features, images, [(t, "input") for t in taps], channel, unit, options, batch_size)
    results = {t: measured[(t, "input")] for t in taps}
    if theoretical and isinstance(features, nn.Module):
        from .theoretical import theoretical_rf

        fields = theoretical_rf(features, taps, tuple(images.shape[-2:]), {t: results[t].unit for t in taps})
        for tap, rf in fields.items():
            results[tap].theoretical = rf
    return results
