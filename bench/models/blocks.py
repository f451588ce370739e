"""The building blocks of the RefineNet decoders (paper Figure 1 (b)-(g)).

Each block is a small module; which blocks a decoder uses, and with which
kernel sizes, is decided by its :class:`~bench.models.decoder.DecoderSpec`.
None of them uses in-place operations, so a tensor handed out as a tap is
never overwritten later in the forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError


def conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = False) -> nn.Conv2d:
    """Stride-1 convolution with 'same' padding (odd kernels only)."""
    if kernel_size % 2 != 1:
        raise UsageError(f"kernel_size must be odd to keep the spatial size, got {kernel_size}")
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class ResidualConvUnit(nn.Module):
    """Original RCU (Fig. 1b): two pre-activated 3x3 convolutions plus identity.

    As in the reference implementation (refinenet-pytorch), the first
    convolution has a bias and the second has none.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv(channels, channels, 3, bias=True)
        self.conv2 = conv(channels, channels, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(x))
        out = self.conv2(F.relu(out))
        return out + x


class BottleneckRCU(nn.Module):
    """Light-weight RCU (Fig. 1e): a pre-activated bottleneck plus identity.

    1x1 (C -> C/2), 3x3 (C/2 -> C/2), 1x1 (C/2 -> C), no biases. No public
    code exists for this block; the C/2 width is the one that reproduces the
    paper's Table 1 for RefineNet-101-LW-WITH-RCU (54M parameters, 76B MACs at
    512x512), see docs in README.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = channels // 2
        self.conv1 = conv(channels, mid, 1)  # pw reduce
        self.conv2 = conv(mid, mid, 3)  # 3x3
        self.conv3 = conv(mid, channels, 1)  # pw expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(x))
        out = self.conv2(F.relu(out))
        out = self.conv3(F.relu(out))
        return out + x


RCU_KINDS: dict[str, type[nn.Module]] = {
    "standard": ResidualConvUnit,
    "bottleneck": BottleneckRCU,
}


def rcu_chain(kind: str, channels: int, count: int) -> nn.Sequential:
    """``count`` RCUs of ``kind`` in a row; an empty Sequential is the identity."""
    if count == 0 or kind == "none":
        return nn.Sequential()
    if kind not in RCU_KINDS:
        raise UsageError(f"unknown RCU kind {kind!r}; valid: 'none', {', '.join(map(repr, RCU_KINDS))}")
    return nn.Sequential(*(RCU_KINDS[kind](channels) for _ in range(count)))


class ChainedResidualPooling(nn.Module):
    """CRP (Fig. 1c/f): a chain of 5x5 max-pool + conv stages, each summed into the output."""

    def __init__(self, channels: int, stages: int, kernel_size: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size=5, stride=1, padding=2)
        self.convs = nn.ModuleList(conv(channels, channels, kernel_size) for _ in range(stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = x
        for stage_conv in self.convs:
            top = stage_conv(self.pool(top))
            x = x + top
        return x
