"""Kept so that old imports work: the recipe lives in :mod:`analysis.networks.recipe`."""

from .recipe import STOP_REASONS, Schedule, plateaued, positive_minutes

__all__ = ["STOP_REASONS", "Schedule", "plateaued", "positive_minutes"]
