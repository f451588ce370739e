"""Top-activated regions for a set of units (the paper's Figures 3 and 8): which images drive each unit
most, and where in them, found by occlusion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .occlusion import TopImages, occlusion_maps, top_activating
from .taps import FeatureFn


@dataclass
class TopRegions:
    top: TopImages
    maps: list[torch.Tensor]  # one discrepancy map per top image, in top.indices order


def most_active_channels(features: FeatureFn, images: torch.Tensor, taps: Sequence[str], k: int = 1,
                         batch_size: int = 8) -> dict[str, list[int]]:
    """Per tap, the k channels with the highest activation anywhere in the image set."""
    peaks: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            feats = features(images[start : start + batch_size])
            for t in taps:
                m = feats[t].amax(dim=(0, 2, 3))
                peaks[t] = m if t not in peaks else torch.maximum(peaks[t], m)
    return {t: [int(c) for c in peaks[t].topk(k).indices] for t in taps}


def top_regions(features: FeatureFn, images: torch.Tensor, units: Sequence[tuple[str, int]], k: int = 3,
                window: int = 32, stride: int = 16) -> list[TopRegions]:
    """For each (tap, channel): its k most activating images and the occlusion map of each.

    One occlusion pass per distinct image serves every unit that picked it.
    """
    tops = top_activating(features, images, units, k=k)
    needed = sorted({i for top in tops for i in top.indices})
    maps: dict[int, dict[tuple[str, int], torch.Tensor]] = {}
    for i in needed:
        here = [(t.tap, t.channel, t.positions[t.indices.index(i)]) for t in tops if i in t.indices]
        maps[i] = occlusion_maps(features, images[i], here, window, stride)
    return [TopRegions(t, [maps[i][(t.tap, t.channel)] for i in t.indices]) for t in tops]
