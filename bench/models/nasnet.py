"""NASNet-A Mobile (4 @ 1056), Zoph et al. 2018, as a classification network and backbone.

No maintained library ships it (torchvision and timm do not), so it is written
here from the published architecture: the NASNet-A normal and reduction cells
(paper Fig. 4), N=4 normal cells per stack, 44 filters in the first stack
(1056 = 24 x 44 at the end), two reduction stem cells after a 3x3 stride-2
conv with 32 filters, BatchNorm eps 1e-3. ImageNet model: 5.3M parameters and
564M multiply-adds at 224x224 (the tests check both).

A cell is a genotype: five pairwise combinations of operations on the two cell
inputs (``h`` = previous cell, ``p`` = the one before) or on earlier
combinations, then a concatenation. Difference from the TensorFlow release:
convolutions and pools pad symmetrically (PyTorch style) instead of TF "SAME"
padding; output sizes are identical, border values shift by half a pixel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3

# (op, input) pairs per combination; inputs: "h" current, "p" previous, "cK" combination K
NORMAL_CELL = (
    (("sep5", "h"), ("sep3", "p")),
    (("sep5", "p"), ("sep3", "p")),
    (("avg3", "h"), ("id", "p")),
    (("avg3", "p"), ("avg3", "p")),
    (("sep3", "h"), ("id", "h")),
)
NORMAL_CONCAT = ("p", "c0", "c1", "c2", "c3", "c4")

REDUCTION_CELL = (
    (("sep5", "h"), ("sep7", "p")),
    (("max3", "h"), ("sep7", "p")),
    (("avg3", "h"), ("sep5", "p")),
    (("avg3", "c0"), ("id", "c1")),
    (("sep3", "c0"), ("max3", "h")),
)
REDUCTION_CONCAT = ("c1", "c2", "c3", "c4")


class SepConvBranch(nn.Module):
    """relu, separable kxk (stride s), BN, relu, separable kxk, BN."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        c_in, c = in_channels, out_channels
        self.ops = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c_in, c_in, kernel_size, stride, pad, groups=c_in, bias=False),  # dw
            nn.Conv2d(c_in, c, 1, bias=False),  # pw
            nn.BatchNorm2d(c, eps=BN_EPS),
            nn.ReLU(),
            nn.Conv2d(c, c, kernel_size, 1, pad, groups=c, bias=False),  # dw
            nn.Conv2d(c, c, 1, bias=False),  # pw
            nn.BatchNorm2d(c, eps=BN_EPS),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops(x)


def make_op(name: str, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if name.startswith("sep"):
        return SepConvBranch(in_channels, out_channels, int(name[3:]), stride)
    if name == "avg3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if name == "max3":
        return nn.MaxPool2d(3, stride, 1)
    if name == "id":
        return nn.Identity()
    raise ValueError(f"unknown NASNet op {name!r}")


class ReluConvBN(nn.Sequential):
    """1x1 adjustment of a cell input: relu, 1x1 conv, BN."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.ReLU(), nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels, eps=BN_EPS)
        )


class FactorizedReduction(nn.Module):
    """Halve the resolution of the previous input: two 1x1 convs on pixel grids offset by one, concatenated."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(in_channels, out_channels // 2, 1, bias=False)
        self.conv_b = nn.Conv2d(in_channels, out_channels - out_channels // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        a = self.conv_a(x[:, :, ::2, ::2])
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        b = self.conv_b(shifted[:, :, ::2, ::2])
        return self.bn(torch.cat([a, b], dim=1))


class Cell(nn.Module):
    """A NASNet cell: adjust both inputs to ``filters`` channels, apply the genotype, concatenate."""

    def __init__(
        self,
        genotype: tuple,
        concat: tuple[str, ...],
        in_current: int,
        in_previous: int,
        filters: int,
        reduction: bool,
        previous_adjust: str,  # "conv", "factorized" (previous input at twice the resolution), "none" (stem 0)
    ) -> None:
        super().__init__()
        self.genotype = genotype
        self.concat = concat
        self.adjust_h = ReluConvBN(in_current, filters)
        if previous_adjust == "conv":
            self.adjust_p: nn.Module = ReluConvBN(in_previous, filters)
        elif previous_adjust == "factorized":
            self.adjust_p = FactorizedReduction(in_previous, filters)
        else:
            self.adjust_p = nn.Identity()
        p_channels = in_previous if previous_adjust == "none" else filters
        ops = []
        for pair in genotype:
            for op, source in pair:
                stride = 2 if reduction and source in ("h", "p") else 1
                c_in = p_channels if source == "p" else filters
                ops.append(make_op(op, c_in, filters, stride))
        self.ops = nn.ModuleList(ops)

    def forward(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        states = {"h": self.adjust_h(current), "p": self.adjust_p(previous)}
        ops = iter(self.ops)
        for k, ((_, src_a), (_, src_b)) in enumerate(self.genotype):
            states[f"c{k}"] = next(ops)(states[src_a]) + next(ops)(states[src_b])
        return torch.cat([states[name] for name in self.concat], dim=1)


class NASNetAMobile(nn.Module):
    """NASNet-A Mobile classification network; stage outputs at ``cell_stem_0`` (stride 4),
    ``cell_3`` (8), ``cell_9`` (16) and ``cell_15`` (32)."""

    def __init__(self, num_classes: int = 1000, stem_filters: int = 32, penultimate_filters: int = 1056,
                 cells_per_stack: int = 4) -> None:
        super().__init__()
        f = penultimate_filters // 24
        self.conv0 = nn.Sequential(
            nn.Conv2d(3, stem_filters, 3, 2, 0, bias=False),  # unpadded, as the release ("VALID")
            nn.BatchNorm2d(stem_filters, eps=BN_EPS),
        )
        # name -> (cell, output channels); inputs are always (last output, the one before)
        names, channels = [], [stem_filters, stem_filters]

        def add(name: str, genotype, concat, filters, reduction, previous_adjust):
            cell = Cell(genotype, concat, channels[-1], channels[-2], filters, reduction, previous_adjust)
            self.add_module(name, cell)
            names.append(name)
            channels.append(filters * len(concat))

        add("cell_stem_0", REDUCTION_CELL, REDUCTION_CONCAT, f // 4, True, "none")
        add("cell_stem_1", REDUCTION_CELL, REDUCTION_CONCAT, f // 2, True, "factorized")
        index = 0
        for stack, filters in enumerate((f, 2 * f, 4 * f)):
            if stack > 0:
                add(f"reduction_cell_{stack - 1}", REDUCTION_CELL, REDUCTION_CONCAT, filters, True, "conv")
                index += 2  # the reference numbering skips two indices per reduction
            for i in range(cells_per_stack):
                add(f"cell_{index}", NORMAL_CELL, NORMAL_CONCAT, filters, False, "factorized" if i == 0 else "conv")
                index += 1
        self.cell_names = tuple(names)
        self.out_channels = channels[-1]
        self.classifier = nn.Linear(channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv0(x)
        previous, current = x, x
        for name in self.cell_names:
            previous, current = current, getattr(self, name)(current, previous)
        pooled = F.adaptive_avg_pool2d(F.relu(current), 1).flatten(1)
        return self.classifier(F.dropout(pooled, 0.5, self.training))
