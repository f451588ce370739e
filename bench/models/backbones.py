"""Backbones behind one contract: ``backbone(x) -> list of feature maps``.

Each :class:`Backbone` declares its outputs in ``feature_info`` (node name,
channels, reduction); the decoder groups them by reduction into the levels of
strides 4, 8, 16 and 32. Torchvision classification networks are used as they
are (no hand-written copies): their stage outputs are found once, by running a
shape-only probe on the ``meta`` device, and extracted with a torch.fx trace
that stops at the stage modules (:func:`extract_stages`). The state-dict keys
keep torchvision's names under ``backbone.body.``, so torchvision ImageNet
weights load directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from ..errors import UsageError, UsageTypeError
from .meta import build_on_meta

TORCHVISION_FAMILIES = (
    "resnet",
    "resnext",
    "wide_resnet",
    "regnet_",
    "efficientnet_",
    "convnext_",
    "mobilenet_v2",
    "mobilenet_v3_",
    "mnasnet",
    "densenet",
)
"""Torchvision classification families whose stages reach strides 4, 8, 16 and 32."""

PROBE_SIZE = 128


@dataclass(frozen=True)
class FeatureInfo:
    name: str  # node (module path) in the backbone body
    channels: int
    reduction: int


class Backbone(nn.Module):
    """A feature extractor returning ``[body output at node f.name for f in feature_info]``."""

    def __init__(self, body: nn.Module, feature_info: list[FeatureInfo], name: str) -> None:
        super().__init__()
        self.body = body
        self.feature_info = list(feature_info)
        self.name = name

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.body(x)
        return [out[f.name] for f in self.feature_info]


def torchvision_backbone_names() -> list[str]:
    """Torchvision classification models usable as RefineNet backbones."""
    names = torchvision.models.list_models(module=torchvision.models)
    return sorted(n for n in names if n.startswith(TORCHVISION_FAMILIES))


def probe_stages(build: Callable[[], nn.Module], size: int = PROBE_SIZE, max_depth: int = 2) -> list[FeatureInfo]:
    """Find the last module output at each of the strides 4, 8, 16, 32.

    The network is built and run on the ``meta`` device, so this costs no
    weight initialisation and no arithmetic. Candidates are modules up to
    ``max_depth`` levels deep (``layer1``, ``features.3``, ``trunk_output.block2``),
    in the order their forward returns; the last one at a stride is that stage's
    output. A container returning its last child's tensor is named by the child.
    """
    model = build_on_meta(build).eval()
    seen: list[tuple[str, torch.Tensor]] = []
    hooks = []
    for name, module in model.named_modules():
        if name and name.count(".") < max_depth:
            hooks.append(module.register_forward_hook(lambda m, i, o, _n=name: seen.append((_n, o))))
    try:
        with torch.no_grad():
            model(torch.empty(1, 3, size, size, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    # one entry per distinct tensor; a container returning its last child's tensor adds a name to it
    names: dict[int, list[str]] = {}
    outputs: dict[int, torch.Tensor] = {}
    for name, out in seen:
        if isinstance(out, torch.Tensor) and out.dim() == 4:
            names.setdefault(id(out), []).append(name)
            outputs[id(out)] = out
    found: dict[int, int] = {}  # reduction -> tensor id
    for key, out in outputs.items():  # in the order the tensors were produced
        h, w = out.shape[-2:]
        if h == w and size % h == 0 and size // h in (4, 8, 16, 32):
            found[size // h] = key
    missing = [r for r in (4, 8, 16, 32) if r not in found]
    if missing:
        raise ValueError(f"backbone has no stage output at stride(s) {missing}")

    def pick(key: int) -> str:
        # the outermost name ("layer1" over "layer1.2") that can be a leaf: not an ancestor of another tap
        others = [n for k in found.values() if k != key for n in names[k]]
        for candidate in sorted(names[key], key=lambda n: n.count(".")):
            if not any(o.startswith(candidate + ".") for o in others):
                return candidate
        return names[key][0]

    return [FeatureInfo(pick(found[r]), int(outputs[found[r]].shape[1]), r) for r in (4, 8, 16, 32)]


@cache
def _stages(name: str) -> list[FeatureInfo]:
    """Stage outputs of a named backbone (probed once per process)."""
    if name == "nasnet_a_mobile":
        from .nasnet import NASNetAMobile

        # cells are top-level modules; deeper ones (a cell's input adjustments) are not stage outputs
        return probe_stages(NASNetAMobile, max_depth=1)
    builder = torchvision.models.get_model_builder(name)
    return probe_stages(lambda: builder(weights=None))


class _StageTracer(torch.fx.Tracer):
    """Traces only down to the stage modules: any module that is not an ancestor of a tap is a leaf."""

    def __init__(self, taps: set[str]) -> None:
        super().__init__()
        self.ancestors = {".".join(t.split(".")[:i]) for t in taps for i in range(1, t.count(".") + 1)}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname not in self.ancestors


def extract_stages(model: nn.Module, taps: list[str]) -> torch.fx.GraphModule:
    """A GraphModule computing ``{tap: output of module tap}`` and nothing after the last tap."""
    graph = _StageTracer(set(taps)).trace(model)
    nodes = {n.target: n for n in graph.nodes if n.op == "call_module"}
    missing = [t for t in taps if t not in nodes]
    if missing:
        raise ValueError(f"modules {missing} are not called directly by the network's forward")
    for node in [n for n in graph.nodes if n.op == "output"]:
        graph.erase_node(node)
    graph.output({t: nodes[t] for t in taps})
    module = torch.fx.GraphModule(model, graph, class_name=type(model).__name__ + "Stages")
    module.graph.eliminate_dead_code()  # the classifier head and anything after the last tap
    module.delete_all_unused_submodules()
    module.recompile()
    return module


def _extract(model: nn.Module, feature_info: list[FeatureInfo], name: str) -> Backbone:
    return Backbone(extract_stages(model, [f.name for f in feature_info]), feature_info, name)


def load_backbone_weights(model: nn.Module, weights: str | Path) -> None:
    """Load a local state dict (e.g. a torchvision ImageNet .pth) into a classification network.

    Only the classifier (``fc``/``classifier``) may be absent from the file;
    any other missing, unexpected or mis-shaped key is an error that lists them.
    """
    from .checkpoints import check_state_dict, read_state_dict

    state = read_state_dict(weights)
    check_state_dict(model, state, ignore_missing=("fc.", "classifier."), source=str(weights))
    model.load_state_dict(state, strict=False)


def torchvision_backbone(name: str, weights: str | Path | None = None) -> Backbone:
    """A torchvision classification network as a RefineNet backbone.

    ``weights`` is either a torchvision weights name (e.g. ``"DEFAULT"``,
    ``"IMAGENET1K_V1"``, downloaded by torchvision into its cache) or a path
    to a local state-dict file.
    """
    valid = torchvision_backbone_names()
    if name not in valid:
        raise UsageError(f"unknown torchvision backbone {name!r}; valid: {', '.join(valid)}")
    builder = torchvision.models.get_model_builder(name)
    is_path = weights is not None and (
        Path(str(weights)).suffix in (".pth", ".pt", ".bin") or Path(str(weights)).exists()
    )
    if weights is not None and not is_path:
        _check_weights_name(name, weights)
    model = builder(weights=None if (weights is None or is_path) else weights)
    if is_path:
        load_backbone_weights(model, weights)
    return _extract(model, _stages(name), name)


def _check_weights_name(name: str, weights: object) -> None:
    """A torchvision weights name the builder knows ("DEFAULT" or an enum member such as "IMAGENET1K_V1");
    else a UsageError listing them (torchvision itself raises the enum's KeyError)."""
    if not isinstance(weights, str):
        raise UsageTypeError(f"backbone_weights must be a torchvision weights name or a file path, got {weights!r}")
    enum = torchvision.models.get_model_weights(name)
    valid = ["DEFAULT", *(w.name for w in enum)]
    if weights not in valid and weights.split(".")[-1] not in valid:
        raise UsageError(f"unknown weights {weights!r} for {name} (and no such file); valid: {', '.join(valid)}, "
                         "or a path to a local .pth state dict")


def nasnet_a_mobile(weights: str | Path | None = None) -> Backbone:
    """NASNet-A Mobile (written here, see :mod:`bench.models.nasnet`); ``weights``: a local state dict."""
    from .nasnet import NASNetAMobile

    model = NASNetAMobile()
    if weights is not None:
        load_backbone_weights(model, weights)
    return _extract(model, _stages("nasnet_a_mobile"), "nasnet_a_mobile")


# --- MobileNet-v2 as in DrSleep/light-weight-refinenet ---------------------------------------
#
# The reference MobileNet-v2 (models/mobilenet.py) differs from torchvision's in two
# details: its first inverted-residual block (t=1, 32 -> 16) keeps a 1x1 expansion
# conv + BN + ReLU6 (32 -> 32) before the depthwise conv, where torchvision has none;
# and it stops at the 320-channel block (no 1x1 conv to 1280). BatchNorm eps (1e-5),
# ReLU6 and all other blocks are identical. This backbone reproduces the reference
# exactly, so the official checkpoint loads and its numbers are the paper's.

MBV2_LWRF_TAPS = ("features.3", "features.6", "features.10", "features.13", "features.16", "features.17")
"""Reference taps l3..l8: channels 24, 32, 64, 96, 160, 320 at strides 4, 8, 16, 16, 32, 32."""


class _ReferenceFirstBlock(nn.Module):
    """The reference's t=1 block: pw + dw + pw-linear (keys like torchvision's InvertedResidual)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            Conv2dNormActivation(32, 32, 1, activation_layer=nn.ReLU6),  # pw (absent in torchvision)
            Conv2dNormActivation(32, 32, 3, groups=32, activation_layer=nn.ReLU6),  # dw
            nn.Conv2d(32, 16, 1, bias=False),  # pw-linear
            nn.BatchNorm2d(16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def mobilenet_v2_lwrf(weights: str | Path | None = None) -> Backbone:
    """MobileNet-v2 as in the Light-Weight RefineNet reference, with its six taps."""

    def build() -> nn.Module:
        model = torchvision.models.mobilenet_v2(weights=None)
        model.features[1] = _ReferenceFirstBlock()
        del model.features[18]  # the 320 -> 1280 conv is not part of the reference
        return model

    model = build()
    if weights is not None:
        load_backbone_weights(model, weights)
    channels = (24, 32, 64, 96, 160, 320)
    reductions = (4, 8, 16, 16, 32, 32)
    info = [FeatureInfo(n, c, r) for n, c, r in zip(MBV2_LWRF_TAPS, channels, reductions, strict=False)]
    return _extract(model, info, "mobilenet_v2_lwrf")


SPECIAL_BACKBONES: dict[str, Callable[..., Backbone]] = {
    "mobilenet_v2_lwrf": mobilenet_v2_lwrf,
    "nasnet_a_mobile": nasnet_a_mobile,
}


def create_backbone(name: str, weights: str | Path | None = None) -> Backbone:
    if name in SPECIAL_BACKBONES:
        return SPECIAL_BACKBONES[name](weights=weights)
    return torchvision_backbone(name, weights=weights)


def backbone_names() -> list[str]:
    return sorted(SPECIAL_BACKBONES) + torchvision_backbone_names()
