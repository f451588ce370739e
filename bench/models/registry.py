"""Variant registry: a name -> builder and its facts, plus ``family:backbone`` for any supported backbone.

A paper variant is a three-line builder; what distinguishes it from its siblings is its backbone
name and its decoder spec (see ``FAMILIES``). Every fact about a variant (family, backbone, depth,
the paper's names for it, its public checkpoint layout) lives in its :class:`VariantInfo`: callers
ask :func:`variant_info` or :func:`find_variant` and never parse a name.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .. import validation
from ..errors import UsageError, UsageTypeError
from .backbones import backbone_names, create_backbone
from .checkpoints import load_checkpoint
from .decoder import DecoderSpec, changeable_fields, check_decoder_change
from .meta import build_on_meta
from .refinenet import RefineNet

FAMILIES: dict[str, DecoderSpec] = {
    # original RefineNet: 3x3 everywhere, 2 RCUs before and 3 after CRP, dropout as the reference
    "rf": DecoderSpec(family="rf", crp_kernel=3, fusion_kernel=3, rcu="standard", rcu_in=2, rcu_out=3, dropout=0.5),
    # light-weight with RCU: 1x1 in CRP and fusion, bottleneck RCUs (Fig. 1e)
    "rf_lw_rcu": DecoderSpec(family="rf_lw_rcu", crp_kernel=1, fusion_kernel=1, rcu="bottleneck", rcu_in=2, rcu_out=3),
    # Light-Weight RefineNet: 1x1 convs, no RCUs, CRP kept
    "rf_lw": DecoderSpec(family="rf_lw", crp_kernel=1, fusion_kernel=1),
}

FAMILY_LABELS: dict[str, str] = {"rf": "RefineNet", "rf_lw_rcu": "LW with RCU", "rf_lw": "LW"}
"""How tables and figures name each family."""


@dataclass(frozen=True)
class VariantInfo:
    name: str
    builder: Callable[..., RefineNet]
    family: str  # a key of FAMILIES
    backbone: str  # a name from backbone_names()
    depth: int | None = None  # ResNet depth (50, 101, 152, ...); None for other backbones
    paper_names: tuple[str, ...] = ()  # the names the paper's tables use for it (first: the main one)
    checkpoint_layout: str | None = None  # public reference checkpoint layout, if any
    base: str | None = None  # register_variant: the built-in (or family:backbone) variant it changes
    changes: tuple[tuple[str, object], ...] = ()  # register_variant: its DecoderSpec changes, (field, value)

    def registration(self) -> dict | None:
        """What another process needs to register this name as this one did (:func:`register_again`): its name,
        base and changes; None for a built-in name, which every process knows."""
        return {"name": self.name, "base": self.base, "changes": dict(self.changes)} if self.base else None

    @property
    def decoder_spec(self) -> DecoderSpec:
        """The fully resolved DecoderSpec this variant builds (every field)."""
        return decoder_spec(self.name)

    @property
    def paper_name(self) -> str | None:
        return self.paper_names[0] if self.paper_names else None

    @property
    def family_label(self) -> str:
        return FAMILY_LABELS[self.family]

    @property
    def registered(self) -> bool:
        """A named variant (``rf_lw101``) rather than a ``family:backbone`` combination."""
        return ":" not in self.name


_REGISTRY: dict[str, VariantInfo] = {}


def _depth(backbone: str) -> int | None:
    match = re.fullmatch(r"resnet(\d+)", backbone)
    return int(match[1]) if match else None


def register_model(family: str, backbone: str, paper_names: tuple[str, ...] = (), checkpoint_layout: str | None = None):
    """Decorator registering a builder under its function name, with its facts; refuses duplicates."""

    def wrap(fn: Callable[..., RefineNet]) -> Callable[..., RefineNet]:
        if fn.__name__ in _REGISTRY:
            raise UsageError(f"variant {fn.__name__!r} is already registered")
        _REGISTRY[fn.__name__] = VariantInfo(fn.__name__, fn, family, backbone, _depth(backbone), paper_names,
                                             checkpoint_layout)
        return fn

    return wrap


def _build(name: str, backbone: str, spec: DecoderSpec, num_classes: int, backbone_weights=None,
           decoder: dict | None = None) -> RefineNet:
    if decoder:
        spec = spec.with_changes(**decoder)
    return RefineNet(create_backbone(backbone, weights=backbone_weights), spec, num_classes, name=name)


def _check_decoder_changes(decoder: dict | None) -> None:
    if decoder is None:
        return
    if not isinstance(decoder, dict):
        raise UsageTypeError(f"decoder must be a dict of DecoderSpec fields, got {decoder!r}")
    valid = changeable_fields()
    unknown = [k for k in decoder if k not in valid]
    if unknown:
        near = {k: validation.nearest(k, valid) for k in unknown if isinstance(k, str)}
        hint = "".join(f"; {k!r}: did you mean {n!r}?" for k, n in near.items() if n)
        raise UsageError(f"unknown decoder field(s) {unknown}; valid: {', '.join(valid)}{hint}")
    for key, value in decoder.items():
        check_decoder_change(key, value)


# --- the paper's variants --------------------------------------------------------------------


@register_model("rf", "resnet50", ("RefineNet-50",))
def rf50(**kwargs) -> RefineNet:
    return _build("rf50", "resnet50", FAMILIES["rf"], **kwargs)


@register_model("rf", "resnet101", ("RefineNet-101",), checkpoint_layout="refinenet")
def rf101(**kwargs) -> RefineNet:
    return _build("rf101", "resnet101", FAMILIES["rf"], **kwargs)


@register_model("rf", "resnet152", ("RefineNet-152",))
def rf152(**kwargs) -> RefineNet:
    return _build("rf152", "resnet152", FAMILIES["rf"], **kwargs)


@register_model("rf_lw_rcu", "resnet50")  # not in the paper
def rf_lw_rcu50(**kwargs) -> RefineNet:
    return _build("rf_lw_rcu50", "resnet50", FAMILIES["rf_lw_rcu"], **kwargs)


@register_model("rf_lw_rcu", "resnet101", ("RefineNet-101-LW-WITH-RCU",))
def rf_lw_rcu101(**kwargs) -> RefineNet:
    return _build("rf_lw_rcu101", "resnet101", FAMILIES["rf_lw_rcu"], **kwargs)


@register_model("rf_lw_rcu", "resnet152")  # not in the paper
def rf_lw_rcu152(**kwargs) -> RefineNet:
    return _build("rf_lw_rcu152", "resnet152", FAMILIES["rf_lw_rcu"], **kwargs)


@register_model("rf_lw", "resnet50", ("RefineNet-LW-50",), checkpoint_layout="lw_resnet")
def rf_lw50(**kwargs) -> RefineNet:
    return _build("rf_lw50", "resnet50", FAMILIES["rf_lw"], **kwargs)


@register_model("rf_lw", "resnet101", ("RefineNet-LW-101", "RefineNet-101-LW"), checkpoint_layout="lw_resnet")
def rf_lw101(**kwargs) -> RefineNet:
    return _build("rf_lw101", "resnet101", FAMILIES["rf_lw"], **kwargs)


@register_model("rf_lw", "resnet152", ("RefineNet-LW-152",), checkpoint_layout="lw_resnet")
def rf_lw152(**kwargs) -> RefineNet:
    return _build("rf_lw152", "resnet152", FAMILIES["rf_lw"], **kwargs)


@register_model("rf_lw", "mobilenet_v2_lwrf", ("RefineNet-LW-MobileNet-v2",), checkpoint_layout="lw_mbv2")
def rf_lw_mbv2(**kwargs) -> RefineNet:
    # the reference keeps 256 channels at the coarsest level and has no lateral fusion conv
    spec = FAMILIES["rf_lw"].with_changes(top_channels=256, lateral_fusion_conv=False, activation="relu6")
    return _build("rf_lw_mbv2", "mobilenet_v2_lwrf", spec, **kwargs)


@register_model("rf_lw", "nasnet_a_mobile", ("RefineNet-LW-NASNet-Mobile",))
def rf_lw_nasnet(**kwargs) -> RefineNet:
    # no public code: the decoder of the other light backbone (rf_lw_mbv2), which reproduces
    # the paper's MAC ratio between the two light models (see README)
    spec = FAMILIES["rf_lw"].with_changes(top_channels=256, lateral_fusion_conv=False)
    return _build("rf_lw_nasnet", "nasnet_a_mobile", spec, **kwargs)


# --- variants of one's own ------------------------------------------------------------------

_VARIANT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
MAX_VARIANT_NAME = 64
"""The longest variant name: names become file names (records, the trained-network cache) and table cells."""


def check_variant_name(name: object) -> str:
    """A name a variant of one's own may take: a string of at most :data:`MAX_VARIANT_NAME` letters, digits,
    ``_``, ``.``, ``-`` (starting with a letter or ``_``) that is not a decoder family, a backbone or a built-in
    variant. The one check for :func:`register_variant`, ablation specs and the command lines."""
    if not isinstance(name, str):
        raise UsageTypeError(f"variant name must be a string, got {name!r} ({type(name).__name__})")
    if len(name) > MAX_VARIANT_NAME:
        raise UsageError(f"variant name {name[:24]!r}... is {len(name)} characters; at most {MAX_VARIANT_NAME}")
    if not _VARIANT_NAME.fullmatch(name):
        raise UsageError(f"variant name must be letters, digits, '_', '.', '-' (starting with a letter or '_'), "
                         f"got {name!r}")
    if name in FAMILIES:
        raise UsageError(f"variant name {name!r} is a decoder family's name; families: {', '.join(FAMILIES)}; "
                         f"choose another name")
    if name in backbone_names():
        raise UsageError(f"variant name {name!r} is a backbone's name (see list_models()); choose another name")
    return name


def effective_spec(spec: DecoderSpec) -> DecoderSpec:
    """``spec`` with the fields that build nothing set to their neutral values: RCU counts without an RCU kind
    (or an RCU kind with no RCUs), CRP's conv and pool settings without CRP stages. Two specs build the same
    network exactly when their effective specs are equal (the ``family`` label aside)."""
    defaults = DecoderSpec(family=spec.family, crp_kernel=1, fusion_kernel=spec.fusion_kernel)
    rcu_in = spec.rcu_in if spec.rcu != "none" else 0
    rcu_out = spec.rcu_out if spec.rcu != "none" else 0
    rcu = spec.rcu if rcu_in or rcu_out else "none"
    out = spec.with_changes(rcu=rcu, rcu_in=rcu_in, rcu_out=rcu_out)
    if spec.crp_stages == 0:
        out = out.with_changes(crp_kernel=defaults.crp_kernel, crp_pool_kernel=defaults.crp_pool_kernel,
                               crp_pool=defaults.crp_pool)
    return out


def resolve_variant(name: str, base: str, changes: dict, local: dict[str, tuple[str, dict]] | None = None
                    ) -> tuple[str, dict, DecoderSpec]:
    """Check a variant of one's own and resolve it: (built-in root, merged changes from the root, DecoderSpec).

    The one validation path for a new variant (:func:`register_variant`, ablation specs, the command lines): the
    name (:func:`check_variant_name`), the base (an unknown one names the nearest), every change (an unknown
    field names the nearest), and at least one change that changes the network built: no changes, or changes
    the base already has, or changes that build nothing (RCU counts with ``rcu = "none"``), are refused.
    ``local``: bases not registered (yet), as {name: (root, changes)}: an ablation spec's own ``[variants]``."""
    check_variant_name(name)
    if local and isinstance(base, str) and base in local:
        root, base_changes = local[base]
    else:
        base_info = variant_info(base)
        root, base_changes = base_info.base or base_info.name, dict(base_info.changes)
    for key, value in changes.items():
        check_decoder_change(key, value)
    if not changes:
        raise UsageError(f"variant {name!r} gives no change of its base {base!r}; give at least one decoder field "
                         f"({', '.join(changeable_fields())}), or use {base!r} itself")
    merged = {**base_changes, **changes}
    spec = decoder_spec(root).with_changes(**merged)
    if effective_spec(spec) == effective_spec(decoder_spec(root).with_changes(**base_changes)):
        raise UsageError(f"variant {name!r}: the changes {changes} of {base!r} change nothing in the network it "
                         f"builds (the base already has them, or they set counts of a part it does not have); "
                         f"it would be {base!r} itself under another name")
    return root, merged, spec


def register_again(registration: dict | None) -> None:
    """Register, in a worker process, a name as its parent registered it (:meth:`VariantInfo.registration`, or an
    ablation record's ``registered`` entry); None (a built-in name): nothing to do."""
    if registration is not None:
        register_variant(registration["name"], registration["base"], exist_ok=True, **registration["changes"])


def register_variant(name: str, base: str, exist_ok: bool = False, **decoder_changes) -> VariantInfo:
    """Register ``name`` as ``base`` with ``decoder_changes`` to its DecoderSpec; it then works wherever a
    built-in name does (create_model, meta_model, variant_info, list_models, complexity, timing, the CLIs run
    in this process). Also importable as ``from bench import register_variant``.

    ``base`` may itself be a registered variant: the changes are merged onto its own, so every variant is one
    level from a built-in (or ``family:backbone``) base. Checked by :func:`resolve_variant`: the name (at most
    64 characters of ``[A-Za-z0-9_.-]``, not a family, backbone or taken name), every change (an unknown field
    names the nearest one), and that the changes change the network. A name already taken is refused; with
    ``exist_ok``, registering the very same variant again (same base, same resolved spec) returns the existing
    one.
    """
    if isinstance(name, str) and name in _REGISTRY and not _REGISTRY[name].base:
        raise UsageError(f"variant {name!r} is already registered (a built-in variant); choose another name")
    root, merged, spec = resolve_variant(name, base, decoder_changes)
    return _register(name, root, merged, spec, exist_ok)


def _register(name: str, root: str, merged: dict, spec: DecoderSpec, exist_ok: bool) -> VariantInfo:
    """Register a resolved variant (see :func:`resolve_variant`); ablation specs also register the derived
    subsets of a path's changes this way, which may equal another variant."""
    if name in _REGISTRY or variant_exists(name):
        existing = variant_info(name)
        if exist_ok and existing.base == root and decoder_spec(name) == spec:
            return existing
        raise UsageError(f"variant {name!r} is already registered"
                         + (f" (as {existing.base} with {dict(existing.changes)})" if existing.base else ""))
    root_info = variant_info(root)
    info = VariantInfo(name, lambda **kw: _build(name, root_info.backbone, spec, **kw), root_info.family,
                       root_info.backbone, root_info.depth, base=root, changes=tuple(merged.items()))
    _REGISTRY[name] = info
    _SPECS[name] = spec
    return info


_SPECS: dict[str, DecoderSpec] = {}


def decoder_spec(name: str) -> DecoderSpec:
    """The fully resolved DecoderSpec of a variant (built once on the meta device for a built-in, then kept)."""
    if name not in _SPECS:
        info = variant_info(name)
        _SPECS[name] = build_on_meta(lambda: info.builder(num_classes=1)).decoder.spec
    return _SPECS[name]


def variant_exists(name: str) -> bool:
    try:
        variant_info(name)
    except UsageError:
        return False
    return True


# --- lookup ----------------------------------------------------------------------------------


def list_models(
    pattern: str = "*",
    include_backbones: bool = True,
    family: str | None = None,
    backbone: str | None = None,
    registered: bool = True,
) -> list[str]:
    """Registered variant names, then ``family:backbone`` for every supported backbone.

    ``registered=False`` leaves out the variants registered in this process (:func:`register_variant`, e.g. by an
    ablation spec read earlier): the built-in names, the same in every process.

    ``pattern`` is a shell-style filter on the name (``"rf_lw*"``, ``"*:resnet*"``); ``family``
    and ``backbone`` keep the variants with that family / backbone (e.g. ``family="rf"``,
    ``backbone="resnet101"`` gives ``rf101`` and ``rf:resnet101``).
    """
    if not isinstance(pattern, str):
        raise UsageTypeError(f"pattern must be a string, got {pattern!r}")
    if family is not None:
        validation.choice("family", family, FAMILIES)
    if backbone is not None:
        validation.choice("backbone", backbone, backbone_names())
    infos = [i for i in _REGISTRY.values() if registered or not i.base]
    if include_backbones:
        infos += [_dynamic_info(fam, bb) for fam in FAMILIES for bb in backbone_names()]
    return [
        i.name
        for i in infos
        if fnmatch.fnmatchcase(i.name, pattern)
        and (family is None or i.family == family)
        and (backbone is None or i.backbone == backbone)
    ]


def _dynamic_info(family: str, backbone: str) -> VariantInfo:
    name = f"{family}:{backbone}"
    return VariantInfo(name, lambda **kw: _build(name, backbone, FAMILIES[family], **kw), family, backbone,
                       _depth(backbone))


def variant_info(name: str) -> VariantInfo:
    """Every fact about a variant; an unknown name is a ValueError listing the valid ones."""
    if not isinstance(name, str):
        raise UsageTypeError(f"model name must be a string such as 'rf_lw101' or 'rf_lw:resnet18', got {name!r}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    family, sep, backbone = name.partition(":")
    if not sep or family not in FAMILIES or backbone not in backbone_names():
        raise UsageError(f"unknown model {name!r}; {_unknown_model_hint(family, sep, backbone)}")
    return _dynamic_info(family, backbone)


def _unknown_model_hint(family: str, sep: str, backbone: str) -> str:
    """What is wrong with a name that is neither registered nor FAMILY:BACKBONE (the nearest valid part first
    where it looks like a misspelling), then every valid choice."""
    families, backbones = ", ".join(FAMILIES), ", ".join(backbone_names())
    if not sep and family in FAMILIES:
        what = (f"{family!r} is a decoder family, not a model: give it a backbone, e.g. '{family}:mobilenet_v2', "
                f"or name a registered variant; ")
    elif sep and family not in FAMILIES:
        near = validation.nearest(family, FAMILIES)
        what = f"unknown family {family!r}{f' (did you mean {near!r}?)' if near else ''}; "
    elif sep:
        near = validation.nearest(backbone, backbone_names())
        what = f"unknown backbone {backbone!r}{f' (did you mean {near!r}?)' if near else ''}; "
    else:
        near = validation.nearest(family, list(_REGISTRY))
        what = f"did you mean {near!r}? " if near else ""
    return (f"{what}valid variants: {', '.join(_REGISTRY)}; or FAMILY:BACKBONE with FAMILY in {families} and "
            f"BACKBONE in {backbones} (see list_models())")


def find_variant(family: str, backbone: str) -> str:
    """The name for a family on a backbone: the registered one where there is one (``rf_lw101``),
    else ``family:backbone``."""
    validation.choice("family", family, FAMILIES)
    for info in _REGISTRY.values():
        if info.family == family and info.backbone == backbone:
            return info.name
    return variant_info(f"{family}:{backbone}").name


def variants_by_paper_name() -> dict[str, str]:
    """{name in the paper's tables: registry name}, from the registry."""
    return {paper: info.name for info in _REGISTRY.values() for paper in info.paper_names}


def create_model(
    name: str,
    num_classes: int = 21,
    checkpoint: str | Path | dict | None = None,
    checkpoint_layout: str = "auto",
    backbone_weights: str | Path | None = None,
    decoder: dict | None = None,
) -> RefineNet:
    """Build a registered variant (``rf_lw101``) or ``family:backbone`` (``rf_lw:resnet18``).

    ``checkpoint`` is a file or state dict in this project's layout or a public
    reference layout (see :mod:`bench.models.checkpoints`), loaded strictly.
    ``backbone_weights`` is a torchvision weights name (downloaded by torchvision)
    or a local state-dict file for the backbone's classification network.
    ``decoder``: changes to the variant's :class:`DecoderSpec` for an ablation of your own,
    e.g. ``{"channels": 64, "top_channels": 128}`` for a narrower decoder of the same family.
    """
    info = variant_info(name)
    validation.integer("num_classes", num_classes, minimum=1)
    _check_decoder_changes(decoder)
    model = info.builder(num_classes=num_classes, backbone_weights=backbone_weights, decoder=decoder)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, layout=checkpoint_layout)
    return model


def meta_model(name: str, num_classes: int = 21) -> nn.Module:
    """A variant with shapes only (meta device): for counting, listing and layout questions."""
    info = variant_info(name)
    validation.integer("num_classes", num_classes, minimum=1)
    return build_on_meta(lambda: info.builder(num_classes=num_classes))
