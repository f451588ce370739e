"""rfbench: cost and benefit of each part of the RefineNet decoders."""

from .models import create_model, list_models, register_variant, variant_info

__all__ = ["create_model", "list_models", "register_variant", "variant_info"]
