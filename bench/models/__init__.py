"""Models: the RefineNet families on any backbone, by name."""

from .checkpoints import CheckpointError, load_checkpoint
from .decoder import DecoderSpec
from .meta import build_on_meta
from .refinenet import RefineNet
from .registry import (
    FAMILIES,
    FAMILY_LABELS,
    VariantInfo,
    create_model,
    decoder_spec,
    find_variant,
    list_models,
    meta_model,
    register_again,
    register_variant,
    variant_info,
    variants_by_paper_name,
)

__all__ = [
    "FAMILIES",
    "FAMILY_LABELS",
    "CheckpointError",
    "DecoderSpec",
    "RefineNet",
    "VariantInfo",
    "build_on_meta",
    "create_model",
    "decoder_spec",
    "find_variant",
    "list_models",
    "load_checkpoint",
    "meta_model",
    "register_again",
    "register_variant",
    "variant_info",
    "variants_by_paper_name",
]
