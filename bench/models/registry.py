"""Variant registry: a name -> builder, plus ``family:backbone`` for any supported backbone.

A paper variant is a three-line builder; what distinguishes it from its
siblings is its backbone name and its decoder spec (see ``FAMILIES``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .backbones import backbone_names, create_backbone
from .checkpoints import load_checkpoint
from .decoder import DecoderSpec
from .refinenet import RefineNet

FAMILIES: dict[str, DecoderSpec] = {
    # original RefineNet: 3x3 everywhere, 2 RCUs before and 3 after CRP, dropout as the reference
    "rf": DecoderSpec(family="rf", crp_kernel=3, fusion_kernel=3, rcu="standard", rcu_in=2, rcu_out=3, dropout=0.5),
    # light-weight with RCU: 1x1 in CRP and fusion, bottleneck RCUs (Fig. 1e)
    "rf_lw_rcu": DecoderSpec(family="rf_lw_rcu", crp_kernel=1, fusion_kernel=1, rcu="bottleneck", rcu_in=2, rcu_out=3),
    # Light-Weight RefineNet: 1x1 convs, no RCUs, CRP kept
    "rf_lw": DecoderSpec(family="rf_lw", crp_kernel=1, fusion_kernel=1),
}


@dataclass(frozen=True)
class VariantInfo:
    name: str
    builder: Callable[..., RefineNet]
    paper_name: str | None = None  # the name used in the paper's tables
    checkpoint_layout: str | None = None  # public reference checkpoint layout, if any


_REGISTRY: dict[str, VariantInfo] = {}


def register_model(paper_name: str | None = None, checkpoint_layout: str | None = None):
    """Decorator registering a builder under its function name; refuses duplicates."""

    def wrap(fn: Callable[..., RefineNet]) -> Callable[..., RefineNet]:
        if fn.__name__ in _REGISTRY:
            raise ValueError(f"variant {fn.__name__!r} is already registered")
        _REGISTRY[fn.__name__] = VariantInfo(fn.__name__, fn, paper_name, checkpoint_layout)
        return fn

    return wrap


def _build(name: str, backbone: str, spec: DecoderSpec, num_classes: int, backbone_weights=None) -> RefineNet:
    return RefineNet(create_backbone(backbone, weights=backbone_weights), spec, num_classes, name=name)


# --- the paper's variants --------------------------------------------------------------------


@register_model("RefineNet-50")
def rf50(**kwargs) -> RefineNet:
    return _build("rf50", "resnet50", FAMILIES["rf"], **kwargs)


@register_model("RefineNet-101", checkpoint_layout="refinenet")
def rf101(**kwargs) -> RefineNet:
    return _build("rf101", "resnet101", FAMILIES["rf"], **kwargs)


@register_model("RefineNet-152")
def rf152(**kwargs) -> RefineNet:
    return _build("rf152", "resnet152", FAMILIES["rf"], **kwargs)


@register_model()  # not in the paper
def rf_lw_rcu50(**kwargs) -> RefineNet:
    return _build("rf_lw_rcu50", "resnet50", FAMILIES["rf_lw_rcu"], **kwargs)


@register_model("RefineNet-101-LW-WITH-RCU")
def rf_lw_rcu101(**kwargs) -> RefineNet:
    return _build("rf_lw_rcu101", "resnet101", FAMILIES["rf_lw_rcu"], **kwargs)


@register_model()  # not in the paper
def rf_lw_rcu152(**kwargs) -> RefineNet:
    return _build("rf_lw_rcu152", "resnet152", FAMILIES["rf_lw_rcu"], **kwargs)


@register_model("RefineNet-LW-50", checkpoint_layout="lw_resnet")
def rf_lw50(**kwargs) -> RefineNet:
    return _build("rf_lw50", "resnet50", FAMILIES["rf_lw"], **kwargs)


@register_model("RefineNet-LW-101", checkpoint_layout="lw_resnet")
def rf_lw101(**kwargs) -> RefineNet:
    return _build("rf_lw101", "resnet101", FAMILIES["rf_lw"], **kwargs)


@register_model("RefineNet-LW-152", checkpoint_layout="lw_resnet")
def rf_lw152(**kwargs) -> RefineNet:
    return _build("rf_lw152", "resnet152", FAMILIES["rf_lw"], **kwargs)


@register_model("RefineNet-LW-MobileNet-v2", checkpoint_layout="lw_mbv2")
def rf_lw_mbv2(**kwargs) -> RefineNet:
    # the reference keeps 256 channels at the coarsest level and has no lateral fusion conv
    spec = FAMILIES["rf_lw"].with_changes(top_channels=256, lateral_fusion_conv=False, activation="relu6")
    return _build("rf_lw_mbv2", "mobilenet_v2_lwrf", spec, **kwargs)


@register_model("RefineNet-LW-NASNet-Mobile")
def rf_lw_nasnet(**kwargs) -> RefineNet:
    # no public code: the decoder of the other light backbone (rf_lw_mbv2), which reproduces
    # the paper's MAC ratio between the two light models (see README)
    spec = FAMILIES["rf_lw"].with_changes(top_channels=256, lateral_fusion_conv=False)
    return _build("rf_lw_nasnet", "nasnet_a_mobile", spec, **kwargs)


# --- lookup ----------------------------------------------------------------------------------


def list_models(pattern: str = "*", include_backbones: bool = True) -> list[str]:
    """Registered variant names, then ``family:backbone`` for every supported backbone.

    ``pattern`` is a shell-style filter, e.g. ``"rf_lw*"`` or ``"*:resnet*"``.
    """
    names = list(_REGISTRY)
    if include_backbones:
        names += [f"{fam}:{bb}" for fam in FAMILIES for bb in backbone_names()]
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def variant_info(name: str) -> VariantInfo:
    if name in _REGISTRY:
        return _REGISTRY[name]
    family, backbone = _split_dynamic(name)
    return VariantInfo(name, lambda **kw: _build(name, backbone, FAMILIES[family], **kw))


def _split_dynamic(name: str) -> tuple[str, str]:
    family, sep, backbone = name.partition(":")
    if not sep or family not in FAMILIES or backbone not in backbone_names():
        hint = (
            f"valid variants: {', '.join(_REGISTRY)}; or FAMILY:BACKBONE with FAMILY in "
            f"{', '.join(FAMILIES)} and BACKBONE in {', '.join(backbone_names())} (see list_models())"
        )
        raise ValueError(f"unknown model {name!r}; {hint}")
    return family, backbone


def create_model(
    name: str,
    num_classes: int = 21,
    checkpoint: str | Path | dict | None = None,
    checkpoint_layout: str = "auto",
    backbone_weights: str | Path | None = None,
) -> RefineNet:
    """Build a registered variant (``rf_lw101``) or ``family:backbone`` (``rf_lw:resnet18``).

    ``checkpoint`` is a file or state dict in this project's layout or a public
    reference layout (see :mod:`bench.models.checkpoints`), loaded strictly.
    ``backbone_weights`` is a torchvision weights name (downloaded by torchvision)
    or a local state-dict file for the backbone's classification network.
    """
    model = variant_info(name).builder(num_classes=num_classes, backbone_weights=backbone_weights)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, layout=checkpoint_layout)
    return model
