"""Conditioned random initialisation: BatchNorm statistics re-estimated on the images at hand.

A freshly built network in eval mode has BatchNorm running statistics (0, 1): the identity, so
activations grow layer after layer (~5e4 at level 4 of a random ResNet-101), and image-space
receptive fields measure that blow-up. Re-estimating the statistics on a few batches (train-mode
BatchNorm forward passes, cumulative averaging, no weight update) gives a well-conditioned random
network: each BatchNorm output has zero mean and unit variance on those images.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from bench import validation
from bench.errors import UsageError


def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int = 8,
                          normalise: Callable[[torch.Tensor], torch.Tensor] | None = None) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance on ``images``; weights untouched.

    Only the BatchNorm layers run in train mode (dropout and everything else stay in eval mode);
    statistics are averaged over the batches with equal weight (``momentum=None``). Returns the
    model in eval mode.
    """
    validation.integer("batch_size", batch_size, minimum=2)
    norms = _batchnorms(model)
    if not norms:
        return model.eval()
    runner = batchnorm_scope(model)
    if len(images) < 2:
        raise UsageError("BatchNorm re-estimation needs at least 2 images (a variance of one sample is undefined)")
    momenta = [m.momentum for m in norms]
    model.eval()
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
            m.train()
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                x = images[start : start + batch_size]
                if len(x) < 2:  # a trailing single image: its batch variance is undefined
                    continue
                runner(normalise(x) if normalise is not None else x)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()
    return model


def _batchnorms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def batchnorm_scope(model: nn.Module) -> nn.Module:
    """The part of ``model`` whose forward pass decides every BatchNorm's statistics: the backbone of a zoo model
    whose decoder has no BatchNorm (the RefineNet families), else the whole model. A BatchNorm's input depends
    only on what runs before it, so re-estimating on this part alone gives the same statistics, without the
    decoder's cost."""
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, nn.Module) and len(_batchnorms(backbone)) == len(_batchnorms(model)):
        return backbone
    return model


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two modules hold the same parameters (names, shapes and values)."""
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    return pa.keys() == pb.keys() and all(pa[k].shape == pb[k].shape and torch.equal(pa[k], pb[k]) for k in pa)
