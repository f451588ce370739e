"""RefineNet = backbone + decoder, with named taps.

``logits = decoder(backbone(x))``; logits come out at 1/4 of the input
resolution (the resolution of the stride-4 stage), as in the reference models.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .. import validation
from ..errors import UsageError, UsageTypeError
from .backbones import Backbone
from .decoder import DecoderSpec, RefineNetDecoder


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


class RefineNet(nn.Module):
    def __init__(self, backbone: Backbone, spec: DecoderSpec, num_classes: int = 21, name: str = "") -> None:
        super().__init__()
        validation.integer("num_classes", num_classes, minimum=1)
        self.name = name
        self.num_classes = num_classes
        self.backbone = backbone
        self.decoder = RefineNetDecoder(
            [f.channels for f in backbone.feature_info],
            [f.reduction for f in backbone.feature_info],
            spec,
            num_classes,
        )

    @property
    def spec(self) -> DecoderSpec:
        return self.decoder.spec

    def _check_input(self, x: torch.Tensor) -> None:
        """Shape, dtype and device, checked before the first op so a mistake reads as one line."""
        who = self.name or "RefineNet"
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise UsageError(f"{who} expects an image batch of shape (N, 3, H, W), got {shape}")
        if x.shape[0] < 1:
            raise UsageError(f"{who} expects at least one image, got a batch of 0")
        if x.shape[-1] < validation.MIN_SIDE or x.shape[-2] < validation.MIN_SIDE:
            raise UsageError(f"input must be at least 32x32 (the backbone's stride), got {tuple(x.shape[-2:])}")
        weight = self.decoder.classifier.weight
        if not x.is_floating_point():
            raise UsageTypeError(f"{who} expects a floating-point image batch (normalised RGB), got dtype {x.dtype}; "
                            "convert with x.float() (and normalise uint8 images first)")
        if x.dtype != weight.dtype and not _autocast_on(x.device.type):
            raise UsageTypeError(f"{who} has {weight.dtype} weights but the input is {x.dtype}: convert one of them "
                            "(x.to(dtype) or model.to(dtype)), or run under torch.autocast")
        if x.device != weight.device:
            raise UsageError(f"{who} is on {weight.device} but the input is on {x.device}: move one of them")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.decoder(self.backbone(x))

    # --- taps --------------------------------------------------------------------------------

    def tap_names(self) -> list[str]:
        """Every tap this model exposes, in forward order.

        ``backbone.<node>`` are the backbone outputs; ``level{4..1}.{before_rcu,
        after_rcu, after_sum, after_crp, after_out_rcu}`` are the decoder points
        (level4 = stride 32); then ``classifier_input`` and ``logits``.
        """
        return [f"backbone.{f.name}" for f in self.backbone.feature_info] + self.decoder.tap_names()

    def tap_aliases(self) -> dict[str, str]:
        """Taps that are the same tensor as another tap (e.g. before/after RCU without RCUs)."""
        return self.decoder.tap_aliases()

    def forward_taps(self, x: torch.Tensor, taps: Iterable[str] | str) -> dict[str, torch.Tensor]:
        """One forward pass returning the requested taps by name (one name or several).

        Aliased taps (see :meth:`tap_aliases`) return the very same tensor object.
        """
        self._check_input(x)
        wanted = list(dict.fromkeys([taps] if isinstance(taps, str) else taps))
        valid = self.tap_names()
        unknown = [t for t in wanted if t not in valid]
        if unknown:
            raise UsageError(f"unknown tap(s) {unknown} for {self.name or 'this model'}; valid: {', '.join(valid)}")
        recorded: dict[str, torch.Tensor] = {}
        needed = set(wanted)

        def tap(name: str, tensor: torch.Tensor) -> None:
            if name in needed:
                recorded[name] = tensor

        features = self.backbone(x)
        for f, t in zip(self.backbone.feature_info, features, strict=False):
            tap(f"backbone.{f.name}", t)
        self.decoder(features, tap)
        return {t: recorded[t] for t in wanted}
