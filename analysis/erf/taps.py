"""A model's tap features as a function of its input: the one way every ERF measurement reads a network."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from bench.errors import UsageError

FeatureFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def tap_features(model: nn.Module, taps: Sequence[str]) -> FeatureFn:
    """``x -> {tap: tensor}`` from one forward pass of a zoo model (or any module: tap "output").

    Unknown taps are refused here, before any forward pass, with the valid names.
    """
    taps = [taps] if isinstance(taps, str) else list(taps)
    if hasattr(model, "forward_taps"):
        valid = model.tap_names()
        unknown = [t for t in taps if t not in valid]
        if unknown:
            raise UsageError(f"unknown tap(s) {unknown} for {getattr(model, 'name', '') or 'this model'}; "
                             f"valid: {', '.join(valid)}")
        return lambda x: model.forward_taps(x, taps)
    if taps != ["output"]:
        raise UsageError(f"a plain module has a single tap 'output', asked for {taps}")
    return lambda x: {"output": model(x)}
