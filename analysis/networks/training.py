"""Kept so that old imports work: the training loop lives in :mod:`analysis.networks.loop`."""

from .loop import (
    DECAYS,
    OPTIMIZERS,
    TrainLog,
    TrainSettings,
    lr_factor,
    make_optimizer,
    train_segmenter,
    zero_init_residual_branches,
)

__all__ = ["DECAYS", "OPTIMIZERS", "TrainLog", "TrainSettings", "lr_factor", "make_optimizer", "train_segmenter",
           "zero_init_residual_branches"]
