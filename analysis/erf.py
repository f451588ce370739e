"""Empirical receptive fields: gradient ERF (Luo et al. 2016) and occlusion ERF (Zhou et al. 2015).

Gradient ERF. For a tap and a unit (a spatial position, the centre by default; one channel or all),
the gradient of a scalar made from that unit with respect to the input image; its magnitude summed
over colour channels, averaged over the images. The scalar is the sum or the mean over the selected
channels, optionally after a ReLU. One batched backward per tap and batch of images: the model is in
eval mode, so each image's scalar depends on that image alone and one backward of the batch sum
gives every image's gradient. Summaries are computed on the unnormalised mean map: the smallest
centred square holding 20/50/90/99% of the gradient mass, and the theoretical receptive field.

Occlusion ERF. For a channel at a tap, the images of a set that activate it most (maximum over
positions), and per image the discrepancy map: a grey occluder slides over the image and the drop of
the unit's activation at its most active position is credited to the covered pixels (captum's
Occlusion semantics; see :func:`occlusion_maps`), thresholded to the top region and drawn over
the image. All occluded copies of an image go through the network in batches, and one pass serves
every tap and channel asked for.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

FeatureFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]
FRACTIONS = (0.2, 0.5, 0.9, 0.99)
NORMALISATIONS = ("raw", "max", "sum", "log")


def tap_features(model: nn.Module, taps: Sequence[str]) -> FeatureFn:
    """``x -> {tap: tensor}`` from one forward pass of a zoo model (or any module: tap "output")."""
    if hasattr(model, "forward_taps"):
        return lambda x: model.forward_taps(x, taps)
    if list(taps) != ["output"]:
        raise KeyError(f"a plain module has a single tap 'output', asked for {list(taps)}")
    return lambda x: {"output": model(x)}


@dataclass(frozen=True)
class ERFOptions:
    scalar: str = "sum"  # "sum" | "mean" over the selected channels
    unit_relu: bool = False  # ReLU on the unit's activations before the scalar
    rectify: str = "abs"  # "abs" | "relu" on the input gradient
    normalise: str = "max"  # display only: "raw" | "max" | "sum" | "log"; summaries use the raw map

    def validate(self) -> None:
        checks = {"scalar": ("sum", "mean"), "rectify": ("abs", "relu"), "normalise": NORMALISATIONS}
        for name, valid in checks.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; valid: {', '.join(valid)}")


@dataclass
class GradientERF:
    tap: str
    unit: tuple[int, int]  # position in the tap's feature map
    channel: int | None  # None: all channels
    map: torch.Tensor  # (H, W) mean over images of the rectified gradient, summed over colour
    n_images: int
    input_size: tuple[int, int]
    centre: tuple[int, int]  # the unit's position in input pixels
    options: ERFOptions
    radius: dict[float, int] = field(default_factory=dict)  # fraction -> r (square side 2r+1)
    theoretical: tuple[int, int] | None = None  # (height, width) of the theoretical receptive field

    def side(self, fraction: float) -> int:
        return 2 * self.radius[fraction] + 1

    def display(self, normalise: str | None = None) -> torch.Tensor:
        return normalise_map(self.map, normalise or self.options.normalise)


def normalise_map(m: torch.Tensor, how: str) -> torch.Tensor:
    if how == "raw":
        return m
    if how == "max":
        return m / m.max().clamp_min(1e-30)
    if how == "sum":
        return m / m.sum().clamp_min(1e-30)
    if how == "log":
        return torch.log10(m / m.max().clamp_min(1e-30) + 1e-6)
    raise ValueError(f"unknown normalisation {how!r}; valid: {', '.join(NORMALISATIONS)}")


def unit_centre(unit: tuple[int, int], feature_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[int, int]:
    """A feature-map position in input pixels (centre of its cell on the input grid)."""
    return tuple(  # type: ignore[return-value]
        min(n - 1, int(math.floor((u + 0.5) * n / f))) for u, f, n in zip(unit, feature_hw, input_hw, strict=True)
    )


def mass_radii(m: torch.Tensor, centre: tuple[int, int], fractions: Sequence[float] = FRACTIONS) -> dict[float, int]:
    """Smallest r such that the (2r+1)-square centred on ``centre`` holds >= fraction of the map's mass
    (clipped at the image border)."""
    h, w = m.shape
    cy, cx = centre
    integral = F.pad(m.double().cumsum(0).cumsum(1), (1, 0, 1, 0))
    total = integral[-1, -1].item()
    r = torch.arange(max(h, w))
    y0, y1 = (cy - r).clamp(0, h), (cy + r + 1).clamp(0, h)
    x0, x1 = (cx - r).clamp(0, w), (cx + r + 1).clamp(0, w)
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    out = {}
    for frac in fractions:
        hit = torch.nonzero(inside >= frac * total - 1e-12 * abs(total))
        out[frac] = int(hit[0]) if len(hit) else max(h, w)
    return out


def _unit_scalar(feature: torch.Tensor, unit: tuple[int, int], channel: int | None, options: ERFOptions):
    values = feature[:, :, unit[0], unit[1]] if channel is None else feature[:, channel : channel + 1, unit[0], unit[1]]
    if options.unit_relu:
        values = F.relu(values)
    per_image = values.sum(1) if options.scalar == "sum" else values.mean(1)
    return per_image.sum()  # images are independent in eval mode: one backward gives every gradient


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
    """Gradient ERF of one unit per tap, over ``images`` (N, 3, H, W), already normalised.

    ``features`` is a zoo model (taps by name) or a function ``x -> {tap: tensor}``. One forward
    per batch serves every tap; one backward per tap and batch.
    """
    options.validate()
    taps = [taps] if isinstance(taps, str) else list(taps)
    model = features if isinstance(features, nn.Module) else None
    if model is not None:
        if model.training:
            raise ValueError("gradient ERF needs the model in eval mode (BatchNorm must not mix the images)")
        features = tap_features(model, taps)
    sums: dict[str, torch.Tensor] = {}
    units: dict[str, tuple[int, int]] = {}
    shapes: dict[str, tuple[int, int]] = {}
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].detach().clone().requires_grad_(True)
        feats = features(x)
        for i, tap in enumerate(taps):
            f = feats[tap]
            shapes[tap] = tuple(f.shape[-2:])
            units[tap] = unit if unit is not None else (f.shape[-2] // 2, f.shape[-1] // 2)
            scalar = _unit_scalar(f, units[tap], channel, options)
            (grad,) = torch.autograd.grad(scalar, x, retain_graph=i < len(taps) - 1, allow_unused=True)
            if grad is None:
                grad = torch.zeros_like(x)
            grad = grad.abs() if options.rectify == "abs" else F.relu(grad)
            sums[tap] = sums.get(tap, 0) + grad.sum(dim=(0, 1)).detach()
    h, w = images.shape[-2:]
    results = {}
    for tap in taps:
        mean_map = sums[tap] / len(images)
        centre = unit_centre(units[tap], shapes[tap], (h, w))
        results[tap] = GradientERF(tap, units[tap], channel, mean_map, len(images), (h, w), centre, options,
                                   mass_radii(mean_map, centre))
    if theoretical and model is not None:
        for tap, rf in theoretical_rf(model, taps, (h, w), {t: units[t] for t in taps}).items():
            results[tap].theoretical = rf
    return results


# --- theoretical receptive field ---------------------------------------------------------------


def _structural_copy(model: nn.Module) -> nn.Module:
    """A float64 copy where every path that could carry signal does: averaging convs with positive
    weights, identity BatchNorm, max-pools as average pools. Activations stay positive, so ReLUs pass
    everything; the input-gradient support of a unit is then its theoretical receptive field."""
    m = copy.deepcopy(model).double().eval()

    def replace(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, nn.MaxPool2d):
                setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                   ceil_mode=child.ceil_mode, count_include_pad=True))
            else:
                replace(child)

    replace(m)  # call_module nodes of fx graphs look their module up by name at run time
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            fan_in = mod.weight[0].numel()
            mod.weight.data.fill_(1.0 / fan_in)
            if mod.bias is not None:
                mod.bias.data.fill_(0.0)
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.reset_parameters()  # mean 0, var 1, weight 1, bias 0
            mod.eps = 0.0
        elif isinstance(mod, nn.Linear):
            mod.weight.data.fill_(1.0 / mod.in_features)
    return m


def theoretical_rf(
    model: nn.Module, taps: Sequence[str], size: tuple[int, int], units: dict[str, tuple[int, int]] | None = None
) -> dict[str, tuple[int, int]]:
    """(height, width) of the input region that can influence each tap's unit (bounding box of the
    gradient support in the structural copy; clipped by the image border)."""
    structural = _structural_copy(model)
    features = tap_features(structural, list(taps))
    # small positive input: every activation stays positive and below ReLU6's clamp
    x = torch.full((1, 3, *size), 1e-3, dtype=torch.float64, requires_grad=True)
    feats = features(x)
    out = {}
    for i, tap in enumerate(taps):
        f = feats[tap]
        u = (units or {}).get(tap, (f.shape[-2] // 2, f.shape[-1] // 2))
        (grad,) = torch.autograd.grad(f[:, :, u[0], u[1]].sum(), x, retain_graph=i < len(taps) - 1)
        support = grad.abs().sum((0, 1)) > 0
        rows, cols = torch.nonzero(support.any(1)).flatten(), torch.nonzero(support.any(0)).flatten()
        out[tap] = (int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)) if len(rows) else (0, 0)
    return out


# --- occlusion ERF (Zhou et al.) ---------------------------------------------------------------


@dataclass
class TopImages:
    tap: str
    channel: int
    indices: list[int]  # into the image set, most active first
    activations: list[float]
    positions: list[tuple[int, int]]  # the most active position per image, in the feature map


def top_activating(features: FeatureFn, images: torch.Tensor, taps_channels: Sequence[tuple[str, int]], k: int = 3,
                   batch_size: int = 8) -> list[TopImages]:
    """For each (tap, channel): the k images with the highest maximum activation, in one pass."""
    maxima: dict[tuple[str, int], list[tuple[float, int, tuple[int, int]]]] = {tc: [] for tc in taps_channels}
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            feats = features(images[start : start + batch_size])
            for tap, channel in taps_channels:
                f = feats[tap][:, channel]
                flat = f.flatten(1)
                values, where = flat.max(1)
                for j, (v, idx) in enumerate(zip(values.tolist(), where.tolist(), strict=True)):
                    maxima[(tap, channel)].append((v, start + j, divmod(idx, f.shape[-1])))
    out = []
    for (tap, channel), items in maxima.items():
        best = sorted(items, key=lambda t: -t[0])[:k]
        out.append(TopImages(tap, channel, [b[1] for b in best], [b[0] for b in best], [b[2] for b in best]))
    return out


def occlusion_windows(size: tuple[int, int], window: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of the occluder, covering the image to its last row and column."""
    def starts(n: int) -> list[int]:
        s = list(range(0, max(n - window, 0) + 1, stride))
        if s[-1] + window < n:
            s.append(n - window)
        return s

    return [(y, x) for y in starts(size[0]) for x in starts(size[1])]


def occlusion_maps(
    features: FeatureFn,
    image: torch.Tensor,
    units: Sequence[tuple[str, int, tuple[int, int]]],
    window: int = 32,
    stride: int = 16,
    baseline: float = 0.0,
    batch_size: int = 16,
) -> dict[tuple[str, int], torch.Tensor]:
    """Discrepancy maps of one image (3, H, W) for several units (tap, channel, position) at once.

    For every occluder position, the drop of each unit's activation (clean minus occluded) is added
    to the covered pixels, and each pixel's total is divided by the number of windows covering it,
    as captum's ``Occlusion`` does (tested against it). ``baseline`` is the occluder's value in the
    normalised input (0 = the dataset mean colour).
    """
    h, w = image.shape[-2:]
    corners = occlusion_windows((h, w), window, stride)
    with torch.no_grad():
        clean = features(image.unsqueeze(0))
        ref = {(t, c): clean[t][0, c, p[0], p[1]] for t, c, p in units}
        maps = {(t, c): torch.zeros(h, w) for t, c, _ in units}
        counts = torch.zeros(h, w)
        for start in range(0, len(corners), batch_size):
            chunk = corners[start : start + batch_size]
            batch = image.unsqueeze(0).repeat(len(chunk), 1, 1, 1)
            for j, (y, x) in enumerate(chunk):
                batch[j, :, y : y + window, x : x + window] = baseline
            feats = features(batch)
            for t, c, p in units:
                drop = ref[(t, c)] - feats[t][:, c, p[0], p[1]]
                for j, (y, x) in enumerate(chunk):
                    maps[(t, c)][y : y + window, x : x + window] += drop[j]
            for y, x in chunk:
                counts[y : y + window, x : x + window] += 1
    return {key: m / counts.clamp_min(1) for key, m in maps.items()}


def top_region(discrepancy: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Boolean mask of the top-activated region: discrepancy above ``threshold`` x its maximum."""
    peak = discrepancy.max()
    if peak <= 0:
        return torch.zeros_like(discrepancy, dtype=torch.bool)
    return discrepancy >= threshold * peak
