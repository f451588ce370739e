"""Receptive fields: gradient ERF (image space and decoder grid), theoretical field, occlusion ERF,
BatchNorm conditioning of random networks, and their drawing."""

from .conditioning import recalibrate_batchnorm
from .decoder_grid import BLOCKS, DecoderGrid, decoder_grid_erf, level_theoretical
from .gradient import ERFOptions, GradientERF, erf_pairs, gradient_erf, mass_radii, radius_samples, tap_features
from .occlusion import occlusion_maps, occlusion_windows, top_activating, top_region
from .theoretical import structural_copy, theoretical_rf

__all__ = [
    "BLOCKS",
    "DecoderGrid",
    "ERFOptions",
    "GradientERF",
    "decoder_grid_erf",
    "erf_pairs",
    "gradient_erf",
    "level_theoretical",
    "mass_radii",
    "occlusion_maps",
    "radius_samples",
    "occlusion_windows",
    "recalibrate_batchnorm",
    "structural_copy",
    "tap_features",
    "theoretical_rf",
    "top_activating",
    "top_region",
]
