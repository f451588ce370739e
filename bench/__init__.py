"""rfbench: cost and benefit of each part of the RefineNet decoders."""

from .models import create_model, list_models, variant_info

__all__ = ["create_model", "list_models", "variant_info"]
