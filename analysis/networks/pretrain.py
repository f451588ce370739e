"""One backbone pretrained once on the setting's own training data and shared by every decoder (the role ImageNet
pretraining plays in the paper): every network of a set, every control and every ablation variant then starts
from the same backbone weights, so what differs between two networks of one seed is their decoder.

The backbone is pretrained under a decoder that is none of the three families': LW without CRP (1x1 convolutions
and the summation only, ``Pretrain.decoder``), so that no family's decoder shaped the features the others start
from, and the backbone itself must carry the context that a 1x1 decoder cannot gather. It is, though, the decoder
of the harmful-change control (``analysis.networks.claims.HARMFUL_CHANGE``): that control's network gets a backbone
shaped for a decoder like its own (re-initialised, other seed), which can only shrink the loss the control has to
show; the networks section's notes say so. It is an ordinary trained
network (the weights store keys and keeps it), seeded apart from the compared networks (``Pretrain.seed``); its
backbone is written beside it as ``backbone.pt`` (a state dict of the backbone's classification network, the format
``--backbone-checkpoint`` takes), whose SHA-256 is then part of every network's key.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .data import NetworkData
from .recipe import Schedule

BACKBONE_FILE = "backbone.pt"


@dataclass(frozen=True)
class Pretrain:
    """How a setting's shared backbone is pretrained: the decoder changes (on ``rf_lw``) and the seed."""

    decoder: dict = field(default_factory=lambda: {"channels": 48, "top_channels": 96, "crp_stages": 0})
    seed: int = 10_000  # apart from the compared networks' seeds (0, 1, 2, ...)
    zero_init_residual: bool = True  # the pretraining's own decoder init, whatever the compared networks' (so that
    # two sets that differ only in their decoders' init, e.g. the init check, start from one and the same backbone)

    def describe(self, backbone: str) -> str:
        others = {k: v for k, v in self.decoder.items() if k not in ("channels", "top_channels", "crp_stages")}
        if self.decoder.get("crp_stages") == 0 and not others:
            decoder = "without CRP (1x1 convolutions only)"
        else:  # words derived from the changes themselves, never a fixed description
            decoder = "with " + ", ".join(f"{k}={v}" for k, v in self.decoder.items())
        return (f"backbone pretrained once on the same training split under rf_lw:{backbone} {decoder}, "
                f"seed {self.seed}, the same schedule, and shared by every network")


def backbone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The backbone of a RefineNet as a state dict of its classification network (the keys a backbone
    checkpoint has)."""
    prefix = "backbone.body."
    state = {k[len(prefix):]: v.detach().cpu().clone() for k, v in model.state_dict().items() if k.startswith(prefix)}
    if not state:
        raise RuntimeError(f"no '{prefix}*' weights in {type(model).__name__}: not a RefineNet of this project")
    return state


def pretrained_backbone(pretrain: Pretrain, backbone: str, data: NetworkData, schedule: Schedule, device: str,
                        cache_dir: Path, progress: bool = True, say=print, only_cached: bool = False) -> str | None:
    """The path of the shared backbone checkpoint, pretraining it first where the weights store does not hold it
    (``only_cached``: never train; None where the store does not hold it)."""
    from .train import is_cached, train_network

    if only_cached and not is_cached(f"rf_lw:{backbone}", data,
                                     replace(schedule, zero_init_residual=pretrain.zero_init_residual),
                                     pretrain.seed, device, dict(pretrain.decoder), cache_dir):
        return None

    schedule = replace(schedule, zero_init_residual=pretrain.zero_init_residual)
    net = train_network(f"rf_lw:{backbone}", data, schedule, pretrain.seed, device, decoder=dict(pretrain.decoder),
                        cache_dir=cache_dir, progress=progress, say=say)
    path = net.path / BACKBONE_FILE
    if not path.is_file():  # written whole: a temp file in the same folder, then renamed
        fd, tmp = tempfile.mkstemp(dir=net.path, prefix=".backbone-", suffix=".pt")
        os.close(fd)
        try:
            torch.save(backbone_state(net.model), tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    if say and not net.cached:
        r = net.record
        say(f"  shared backbone pretrained: {pretrain.describe(backbone)}; own val mIoU "
            f"{100 * r['val_miou']:.1f}% after {r['steps']} steps ({r['seconds']:.0f} s)")
    return str(path)
