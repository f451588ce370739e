"""Models: the RefineNet families on any backbone, by name."""

from .checkpoints import CheckpointError, load_checkpoint
from .decoder import DecoderSpec
from .refinenet import RefineNet
from .registry import FAMILIES, create_model, list_models, variant_info

__all__ = [
    "FAMILIES",
    "CheckpointError",
    "DecoderSpec",
    "RefineNet",
    "create_model",
    "list_models",
    "load_checkpoint",
    "variant_info",
]
