"""How much each RCU changes its input: the branch share, per image, and whether its input is live.

An RCU computes x + branch(x), where the branch starts with a ReLU of x. Its *branch share* on an image is
||branch(x)|| / (||x|| + ||branch(x)||): 0 where the RCU passes its input unchanged, near 1 where the branch
dominates. Where x is dead (no positive element: the ReLU passes nothing), the branch is its convolutions' biases
alone and the share says nothing about the RCU (RefineNet's RCU has a bias, the bottleneck RCU none, so a dead input
drives one to 1 and the other to 0): such an RCU is not *live* on that image (``input_positive`` below the protocol's
``live_input``) and the saturation claim leaves it out.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from bench.models.blocks import BottleneckRCU, ResidualConvUnit

COLUMNS = ["rcu", "level", "image", "branch_share", "input_positive"]


@torch.no_grad()
def rcu_branch_shares(model: nn.Module, images: torch.Tensor, batch_size: int = 16) -> pd.DataFrame:
    """One row per (RCU, image) of ``model`` on normalised ``images`` (eval mode): the RCU's name and level, the
    image's index, its branch share and the share of its input's elements that are positive."""
    rcus = {name: m for name, m in model.named_modules() if isinstance(m, (ResidualConvUnit, BottleneckRCU))}
    rows: list[dict] = []
    offset = {"start": 0}

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0].float().flatten(1)
            branch = (output.float().flatten(1) - x).norm(dim=1)
            share = branch / (x.norm(dim=1) + branch).clamp_min(1e-12)
            positive = (x > 0).float().mean(1)
            level = next((p for p in name.split(".") if p.startswith("level")), "")
            rows.extend({"rcu": name, "level": level, "image": offset["start"] + i, "branch_share": float(s),
                         "input_positive": float(p)} for i, (s, p) in enumerate(zip(share, positive, strict=True)))
        return record

    modes = {m: m.training for m in model.modules()}
    model.eval()
    device = next(model.parameters()).device
    hooks = [m.register_forward_hook(hook(name)) for name, m in rcus.items()]
    try:
        for start in range(0, len(images), batch_size):
            offset["start"] = start
            model(images[start : start + batch_size].to(device))
    finally:
        for h in hooks:
            h.remove()
        for module, training in modes.items():
            module.training = training
    return pd.DataFrame(rows, columns=COLUMNS)
