"""Occlusion ERF (Zhou et al., ICLR 2015), as the paper's Figures 3 and 8 draw it.

For a channel at a tap, the images of a set that activate it most (maximum over positions), and
per image the discrepancy map: a grey occluder slides over the image and the drop of the unit's
activation at its most active position is credited to the covered pixels (captum's ``Occlusion``
semantics; see :func:`occlusion_maps`), thresholded to the top region and drawn over the image.
All occluded copies of an image go through the network in batches, and one pass serves every tap
and channel asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bench import validation

from .gradient import check_channel, check_unit
from .taps import FeatureFn


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
    validation.integer("k", k, minimum=1)
    validation.integer("batch_size", batch_size, minimum=1)
    maxima: dict[tuple[str, int], list[tuple[float, int, tuple[int, int]]]] = {tc: [] for tc in taps_channels}
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            feats = features(images[start : start + batch_size])
            for tap, channel in taps_channels:
                check_channel(feats, tap, channel)
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
    validation.integer("window", window, minimum=1)
    validation.integer("stride", stride, minimum=1)
    validation.integer("batch_size", batch_size, minimum=1)
    h, w = image.shape[-2:]
    corners = occlusion_windows((h, w), window, stride)
    with torch.no_grad():
        clean = features(image.unsqueeze(0))
        for t, c, p in units:
            check_channel(clean, t, c)
            check_unit(clean, t, p)
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
