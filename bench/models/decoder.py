"""The one RefineNet decoder, configured by a :class:`DecoderSpec`.

Every family (original RefineNet, light-weight with RCU, Light-Weight
RefineNet) is this decoder with a different spec, so an ablation reads as a
diff of specs. Data flow per level, coarsest (stride 32) first, following the
reference implementations (DrSleep/refinenet-pytorch and
DrSleep/light-weight-refinenet)::

    lateral = sum(dimred_i(feature_i))            # adaptation conv(s), tap before_rcu
    lateral = rcu_in(lateral)                     # RCUs before CRP,    tap after_rcu
    lateral = adapt(lateral)                      # fusion conv on the lateral path (not at the coarsest level)
    x = act(lateral + upsample(coarser))          # summation,          tap after_sum
    x = crp(x)                                    #                     tap after_crp
    x = rcu_out(x)                                # RCUs after CRP,     tap after_out_rcu
    coarser = out_conv(x)                         # fusion conv on the top-down path (not at the finest level)

and at the finest level ``logits = classifier(dropout(x))``. ``refine_levels`` below 4 builds only that many
levels, coarsest first, and puts the classifier on the last of them (1: the stride-32 level alone, logits at
stride 32, as FCN-32s: the refinement path removed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .. import validation
from ..errors import UsageError, UsageTypeError
from .blocks import POOL_KINDS, RCU_KINDS, ChainedResidualPooling, conv, rcu_chain

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": F.relu, "relu6": F.relu6}

LEVEL_TAPS = ("before_rcu", "after_rcu", "after_sum", "after_crp", "after_out_rcu")
"""Tap points inside each level, in forward order (see module docstring)."""

HEAD_TAPS = ("classifier_input", "logits")


@dataclass(frozen=True)
class DecoderSpec:
    """Everything that distinguishes one decoder family from another."""

    family: str
    crp_kernel: int  # conv kernel inside CRP
    fusion_kernel: int  # adaptation (dimred) and fusion convs
    rcu: str = "none"  # "none" | "standard" (Fig. 1b) | "bottleneck" (Fig. 1e)
    rcu_in: int = 0  # RCUs before CRP, per level
    rcu_out: int = 0  # RCUs after CRP, per level
    crp_stages: int = 4
    crp_pool_kernel: int = 5  # CRP's max-pool window (odd)
    crp_pool: str = "max"  # "max" (one k x k max-pool) | "separable" (k x 1 then 1 x k: equal outputs)
    top_channels: int = 512  # width of the coarsest level
    channels: int = 256  # width of every other level
    lateral_fusion_conv: bool = True  # extra fusion conv on the lateral path (ResNet models; not MobileNet-v2)
    activation: str = "relu"
    dropout: float = 0.0  # on the two coarsest inputs and the classifier input (original RefineNet)
    classifier_kernel: int = 3
    refine_levels: int = 4  # levels built, coarsest first (4: all; 1: stride 32 alone, no refinement path)

    def with_changes(self, **changes) -> DecoderSpec:
        return replace(self, **changes)

    @property
    def has_rcu(self) -> bool:
        return self.rcu != "none" and (self.rcu_in > 0 or self.rcu_out > 0)


KERNEL_FIELDS = ("crp_kernel", "fusion_kernel", "classifier_kernel", "crp_pool_kernel")
COUNT_FIELDS = ("crp_stages", "rcu_in", "rcu_out")
N_LEVELS = 4  # backbone strides 32, 16, 8, 4
WIDTH_FIELDS = ("top_channels", "channels")
MAX_KERNEL = 63
MAX_COUNT = 64
MAX_WIDTH = 65536


def changeable_fields() -> list[str]:
    """The DecoderSpec fields an ablation may change (``family`` is a label, not an axis)."""
    return [f for f in DecoderSpec.__dataclass_fields__ if f != "family"]


def check_decoder_change(key: str, value: object, where: str = "decoder") -> object:
    """One DecoderSpec change checked: an unknown key names the nearest field; a value of the wrong kind or out
    of range names the key, the value and what is accepted. Returns the value."""
    valid = changeable_fields()
    if key not in valid:
        near = validation.nearest(key, valid) if isinstance(key, str) else None
        hint = f" (did you mean {near!r}?)" if near else ""
        raise UsageError(f"unknown {where} field {key!r}{hint}; valid: {', '.join(valid)}")
    name = f"{where}.{key}"
    if key in KERNEL_FIELDS:
        validation.integer(name, value, minimum=1, maximum=MAX_KERNEL)
        if value % 2 != 1:
            raise UsageError(f"{name} must be odd (a 'same' padding keeps the spatial size), got {value}")
    elif key in COUNT_FIELDS:
        validation.integer(name, value, minimum=0, maximum=MAX_COUNT)
    elif key == "refine_levels":
        validation.integer(name, value, minimum=1, maximum=N_LEVELS)
    elif key in WIDTH_FIELDS:
        validation.integer(name, value, minimum=2, maximum=MAX_WIDTH)
    elif key == "rcu":
        validation.choice(name, value, ("none", *RCU_KINDS))
    elif key == "crp_pool":
        validation.choice(name, value, POOL_KINDS)
    elif key == "activation":
        validation.choice(name, value, ACTIVATIONS)
    elif key == "lateral_fusion_conv":
        if not isinstance(value, bool):
            raise UsageTypeError(f"{name} must be true or false, got {value!r} ({type(value).__name__})")
    elif key == "dropout":
        p = validation.number(name, value, minimum=0)
        if p >= 1:
            raise UsageError(f"{name} must be a probability in [0, 1), got {value!r}")
        return p
    return value


class RefineLevel(nn.Module):
    """One decoder level: adaptation, RCUs, fusion with the coarser level, CRP."""

    def __init__(
        self,
        in_channels: list[int],
        channels: int,
        out_channels: int | None,
        spec: DecoderSpec,
        is_coarsest: bool,
    ) -> None:
        super().__init__()
        self.dimred = nn.ModuleList(conv(c, channels, spec.fusion_kernel) for c in in_channels)
        self.rcu_in = rcu_chain(spec.rcu, channels, spec.rcu_in)
        has_adapt = spec.lateral_fusion_conv and not is_coarsest
        self.adapt = conv(channels, channels, spec.fusion_kernel) if has_adapt else None
        self.crp = ChainedResidualPooling(channels, spec.crp_stages, spec.crp_kernel, spec.crp_pool_kernel,
                                          spec.crp_pool)
        self.rcu_out = rcu_chain(spec.rcu, channels, spec.rcu_out)
        self.out_conv = conv(channels, out_channels, spec.fusion_kernel) if out_channels else None
        self.act = ACTIVATIONS[spec.activation]

    def forward(
        self,
        inputs: list[torch.Tensor],
        coarser: torch.Tensor | None,
        tap: Callable[[str, torch.Tensor], None],
    ) -> torch.Tensor:
        lateral = self.dimred[0](inputs[0])
        for dimred, feature in zip(self.dimred[1:], inputs[1:], strict=False):
            lateral = lateral + dimred(feature)
        tap("before_rcu", lateral)
        lateral = self.rcu_in(lateral)
        tap("after_rcu", lateral)
        if coarser is not None:
            if self.adapt is not None:
                lateral = self.adapt(lateral)
            coarser = F.interpolate(coarser, size=lateral.shape[-2:], mode="bilinear", align_corners=True)
            lateral = lateral + coarser
        x = self.act(lateral)
        tap("after_sum", x)
        x = self.crp(x)
        tap("after_crp", x)
        x = self.rcu_out(x)
        tap("after_out_rcu", x)
        if self.out_conv is not None:
            x = self.out_conv(x)
        return x


def _no_tap(name: str, tensor: torch.Tensor) -> None:
    return None


class RefineNetDecoder(nn.Module):
    """Multi-level RefineNet decoder over backbone features of strides 4, 8, 16, 32.

    ``feature_channels`` and ``feature_reductions`` describe the backbone's
    outputs in the order the backbone returns them. Features with the same
    reduction feed the same level (MobileNet-v2 feeds two to each of the two
    coarsest levels, as in the reference); levels are named by their stage,
    ``level4`` (stride 32) down to ``level1`` (stride 4).
    """

    def __init__(
        self,
        feature_channels: list[int],
        feature_reductions: list[int],
        spec: DecoderSpec,
        num_classes: int,
    ) -> None:
        super().__init__()
        reductions = sorted(set(feature_reductions), reverse=True)
        if reductions != [32, 16, 8, 4]:
            raise UsageError(
                f"the RefineNet decoder needs backbone features at strides 4, 8, 16 and 32; got strides {reductions}"
            )
        self.spec = spec
        self.level_inputs: list[list[int]] = [
            [i for i, r in enumerate(feature_reductions) if r == red] for red in reductions
        ]
        self.level_inputs = self.level_inputs[: spec.refine_levels]
        self.level_names = [f"level{n}" for n in range(len(reductions), 0, -1)][: spec.refine_levels]
        widths = [spec.top_channels] + [spec.channels] * (len(self.level_names) - 1)
        for k, (name, idx) in enumerate(zip(self.level_names, self.level_inputs, strict=False)):
            out_channels = widths[k + 1] if k + 1 < len(widths) else None
            level = RefineLevel([feature_channels[i] for i in idx], widths[k], out_channels, spec, is_coarsest=(k == 0))
            self.add_module(name, level)  # decoder.level4 ... decoder.level1
        self.dropout = nn.Dropout(spec.dropout) if spec.dropout > 0 else None
        self.classifier = conv(widths[-1], num_classes, spec.classifier_kernel, bias=True)

    def levels(self) -> list[RefineLevel]:
        """The levels, coarsest (level4, stride 32) first."""
        return [getattr(self, name) for name in self.level_names]

    def tap_names(self) -> list[str]:
        return [f"{lvl}.{t}" for lvl in self.level_names for t in LEVEL_TAPS] + list(HEAD_TAPS)

    def tap_aliases(self) -> dict[str, str]:
        """Taps that are the very same tensor as an earlier tap in this decoder: {alias: original}, where the
        original is the earliest tap holding that tensor (chains such as after_out_rcu -> after_crp ->
        after_sum, with no RCUs and no CRP stages, are followed to their start). Depends on the mode: with
        dropout, ``classifier_input`` is a tensor of its own in train mode only."""
        spec = self.spec
        same: dict[str, str] = {}
        for lvl in self.level_names:
            if spec.rcu == "none" or spec.rcu_in == 0:
                same[f"{lvl}.after_rcu"] = f"{lvl}.before_rcu"
            if spec.crp_stages == 0:
                same[f"{lvl}.after_crp"] = f"{lvl}.after_sum"
            if spec.rcu == "none" or spec.rcu_out == 0:
                same[f"{lvl}.after_out_rcu"] = f"{lvl}.after_crp"
        if self.dropout is None or not self.training:  # dropout returns its input unchanged in eval mode
            same["classifier_input"] = f"{self.level_names[-1]}.after_out_rcu"

        def root(tap: str) -> str:
            while tap in same:
                tap = same[tap]
            return tap

        return {alias: root(alias) for alias in same}

    def forward(
        self,
        features: list[torch.Tensor],
        tap: Callable[[str, torch.Tensor], None] = _no_tap,
    ) -> torch.Tensor:
        x = None
        n_levels = len(self.level_names)
        for k, (name, idx) in enumerate(zip(self.level_names, self.level_inputs, strict=False)):
            inputs = [features[i] for i in idx]
            if self.dropout is not None and k < 2:  # as the reference: dropout on the two coarsest stages
                inputs = [self.dropout(t) for t in inputs]
            x = getattr(self, name)(inputs, x, lambda t_name, t, _p=name: tap(f"{_p}.{t_name}", t))
            if k == n_levels - 1:
                if self.dropout is not None:
                    x = self.dropout(x)
                tap("classifier_input", x)
        logits = self.classifier(x)
        tap("logits", logits)
        return logits
