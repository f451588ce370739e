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


POOL_KINDS = ("max", "separable")
"""CRP pool implementations: one k x k max-pool, or a k x 1 then a 1 x k max-pool (the same values)."""


def crp_pool(kind: str, kernel_size: int) -> nn.Module:
    """CRP's stride-1 'same' max-pool over a k x k window.

    ``"separable"`` takes the max over a k x 1 window, then over a 1 x k window: the max over the
    k x k window is the max of its rows' maxima, and the implicit padding is -inf for both, so the
    outputs are equal bit for bit, with 2k comparisons per output instead of k^2.
    """
    if kernel_size < 1 or kernel_size % 2 != 1:
        raise UsageError(f"crp_pool_kernel must be odd and >= 1 to keep the spatial size, got {kernel_size}")
    pad = kernel_size // 2
    if kind == "max":
        return nn.MaxPool2d(kernel_size=kernel_size, stride=1, padding=pad)
    if kind == "separable":
        return nn.Sequential(
            nn.MaxPool2d(kernel_size=(kernel_size, 1), stride=1, padding=(pad, 0)),
            nn.MaxPool2d(kernel_size=(1, kernel_size), stride=1, padding=(0, pad)),
        )
    raise UsageError(f"unknown crp_pool {kind!r}; valid: {', '.join(POOL_KINDS)}")


class ChainedResidualPooling(nn.Module):
    """CRP (Fig. 1c/f): a chain of max-pool (5x5 in the paper) + conv stages, each summed into the output."""

    def __init__(self, channels: int, stages: int, kernel_size: int, pool_kernel: int = 5, pool: str = "max") -> None:
        super().__init__()
        self.pool = crp_pool(pool, pool_kernel)
        self.convs = nn.ModuleList(conv(channels, channels, kernel_size) for _ in range(stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = x
        for stage_conv in self.convs:
            top = stage_conv(self.pool(top))
            x = x + top
        return x
