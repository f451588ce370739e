"""Theoretical receptive field: the region that can influence a unit at all, found by gradient support.

A float64 structural copy of the network carries signal on every path that could: convolutions
average with positive weights, BatchNorm is the identity, max-pools become average pools of the same
window. With a small positive input every activation stays positive (ReLUs pass everything), so the
support of a unit's gradient is exactly its theoretical receptive field, in image pixels or, with
``wrt``, in cells of an earlier tap's grid.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .taps import tap_features


def structural_copy(model: nn.Module) -> nn.Module:
    """The float64 copy described in the module docstring (the original is untouched)."""
    m = copy.deepcopy(model).double().eval()

    def replace(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, nn.MaxPool2d):
                setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                   ceil_mode=child.ceil_mode, count_include_pad=True))
            else:
                replace(child)

    replace(m)  # call_module nodes of fx graphs look their module up by name at run time
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            fan_in = mod.weight[0].numel()
            mod.weight.data.fill_(1.0 / fan_in)
            if mod.bias is not None:
                mod.bias.data.fill_(0.0)
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.reset_parameters()  # mean 0, var 1, weight 1, bias 0
            mod.eps = 0.0
        elif isinstance(mod, nn.Linear):
            mod.weight.data.fill_(1.0 / mod.in_features)
    return m


def support_extent(grad: torch.Tensor) -> tuple[int, int]:
    """(height, width) of the bounding box of the non-zero entries of an (N, C, H, W) gradient."""
    support = grad.abs().sum((0, 1)) > 0
    rows, cols = torch.nonzero(support.any(1)).flatten(), torch.nonzero(support.any(0)).flatten()
    return (int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)) if len(rows) else (0, 0)


def theoretical_rf(
    model: nn.Module,
    taps: Sequence[str],
    size: tuple[int, int],
    units: Mapping[str, tuple[int, int]] | None = None,
    wrt: Mapping[str, str] | None = None,
) -> dict[str, tuple[int, int]]:
    """(height, width) of the region that can influence each tap's unit: on the image, or on the
    grid of ``wrt[tap]`` where given (clipped by the border either way)."""
    taps = list(taps)
    wrt = dict(wrt or {})
    structural = structural_copy(model)
    features = tap_features(structural, list(dict.fromkeys(taps + list(wrt.values()))))
    # small positive input: every activation stays positive and below ReLU6's clamp
    x = torch.full((1, 3, *size), 1e-3, dtype=torch.float64, requires_grad=True)
    feats = features(x)
    out = {}
    for i, tap in enumerate(taps):
        f = feats[tap]
        u = (units or {}).get(tap, (f.shape[-2] // 2, f.shape[-1] // 2))
        target = feats[wrt[tap]] if tap in wrt else x
        (grad,) = torch.autograd.grad(f[:, :, u[0], u[1]].sum(), target, retain_graph=i < len(taps) - 1,
                                      allow_unused=True)
        out[tap] = support_extent(grad) if grad is not None else (0, 0)
    return out
