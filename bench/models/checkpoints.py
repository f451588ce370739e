"""Checkpoints: the public reference layouts, read into this project's modules.

Three public layouts exist (key names as in the reference repositories):

``lw_resnet``  DrSleep/light-weight-refinenet ``models/resnet.py`` (rf_lw50/101/152)
``refinenet``  DrSleep/refinenet-pytorch ``models/resnet.py`` (rf101, original RefineNet)
``lw_mbv2``    DrSleep/light-weight-refinenet ``models/mobilenet.py`` (rf_lw_mbv2)

The reference ResNet is torchvision's ResNet with the same key names, so the
backbone part maps one to one; the decoder keys are renamed by the rules below.
The reference numbers its RefineNet stages from the coarsest (``g1``, ``outl1``,
``adapt_stage1``) to the finest; this project names levels by backbone stage,
so reference stage ``n`` is ``level{5-n}``.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import DataError, MissingFileError, UsageError, UsageTypeError

StateDict = dict[str, torch.Tensor]


class CheckpointError(DataError):
    """A checkpoint that does not fit the model: lists every offending key."""


def read_state_dict(source: str | Path | Mapping[str, torch.Tensor]) -> StateDict:
    """A flat state dict from a file or mapping; unwraps common containers and ``module.`` prefixes."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise MissingFileError(f"checkpoint file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch.load raises many kinds (pickle, zip, EOF, runtime): one message
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if len(reason) > 200 or reason.isdigit():
                reason = f"{type(err).__name__} ({textwrap.shorten(reason, 120, placeholder=' ...')})"
            raise CheckpointError(
                f"cannot read checkpoint {path}: {reason} (not a torch.save file, or truncated)"
            ) from None
    else:
        state = source
    for container in ("state_dict", "model", "segmenter"):
        if isinstance(state, Mapping) and container in state and isinstance(state[container], Mapping):
            state = state[container]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source!s:.80}: not a state dict of tensors")
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:  # a diverged training's weights: nothing measured on them means anything
        raise CheckpointError(f"{source!s:.80}: {len(broken)} of {len(state)} tensors hold NaN or infinite values "
                              f"(first: {broken[0]}): the weights of a diverged training")
    return {k.removeprefix("module."): v for k, v in state.items()}


def state_dict_file(name: str, path: str | Path | None) -> str | None:
    """A local state-dict file (None passes through), checked readable, as an absolute path; a missing or unreadable
    file is one line naming it."""
    if path is None:
        return None
    if not isinstance(path, (str, Path)):
        raise UsageTypeError(f"{name} must be a path to a state-dict file, got {path!r}")
    if not Path(path).is_file():
        raise UsageError(f"{name} {path}: " + ("is a folder, not a file" if Path(path).is_dir() else "no such file"))
    read_state_dict(path)  # a DataError naming the file when it is not a checkpoint
    return str(Path(path).resolve())


def _preview(keys: Iterable[str], limit: int = 12) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    ignore_missing: tuple[str, ...] = (),
    source: str = "checkpoint",
) -> None:
    """Raise :class:`CheckpointError` naming every missing, unexpected and mis-shaped key."""
    expected = model.state_dict()
    # num_batches_tracked buffers are absent from checkpoints of old PyTorch versions: optional
    missing = [
        k
        for k in expected
        if k not in state and not k.startswith(ignore_missing) and not k.endswith("num_batches_tracked")
    ]
    unexpected = [k for k in state if k not in expected and not k.startswith(ignore_missing)]
    wrong = [
        f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_preview(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_preview(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} key(s) with the wrong shape: {_preview(wrong)}")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}:\n  " + "\n  ".join(problems))


# --- reference layouts -------------------------------------------------------------------------

_RCU_CONV = {"conv": "conv1", "conv_relu_varout_dimred": "conv2"}


def _resnet_rule(key: str) -> str | None:
    """Map one key of the refinenet / lw_resnet layouts to this project's name."""
    if re.match(r"(conv1|bn1|layer[1-4])\.", key):
        return f"backbone.body.{key}"
    if key.startswith("clf_conv."):
        return "decoder.classifier." + key.removeprefix("clf_conv.")
    m = re.match(r"p_ims1d2_outl(\d)_dimred\.(.+)", key)
    if m:
        return f"decoder.level{5 - int(m[1])}.dimred.0.{m[2]}"
    m = re.match(r"adapt_stage(\d)_b2_joint_varout_dimred\.(.+)", key)
    if m:
        return f"decoder.level{5 - int(m[1])}.adapt.{m[2]}"
    m = re.match(r"mflow_conv_g(\d)_b3_joint_varout_dimred\.(.+)", key)
    if m:
        return f"decoder.level{5 - int(m[1])}.out_conv.{m[2]}"
    m = re.match(r"mflow_conv_g(\d)_pool\.0\.(\d)_outvar_dimred\.(.+)", key)
    if m:
        return f"decoder.level{5 - int(m[1])}.crp.convs.{int(m[2]) - 1}.{m[3]}"
    m = re.match(r"(adapt_stage|mflow_conv_g)(\d)_b\.0\.(\d)_(conv|conv_relu_varout_dimred)\.(.+)", key)
    if m:
        chain = "rcu_in" if m[1] == "adapt_stage" else "rcu_out"
        return f"decoder.level{5 - int(m[2])}.{chain}.{int(m[3]) - 1}.{_RCU_CONV[m[4]]}.{m[5]}"
    return None


# reference MobileNet-v2 layer -> first torchvision features index
_MBV2_LAYER_START = {2: 1, 3: 2, 4: 4, 5: 7, 6: 11, 7: 14, 8: 17}
# reference sub-module (output.j.m) -> torchvision InvertedResidual.conv index
_MBV2_SUB = {
    ("0", "0"): "0.0", ("0", "1"): "0.1",  # pw conv, BN
    ("1", "0"): "1.0", ("1", "1"): "1.1",  # dw conv, BN
    ("2", "0"): "2", ("2", "1"): "3",  # pw-linear conv, BN
}
# reference decoder convs -> (level, dimred index); level inputs are ordered as the backbone taps
_MBV2_DIMRED = {"conv8": (4, 1), "conv7": (4, 0), "conv6": (3, 1), "conv5": (3, 0), "conv4": (2, 0), "conv3": (1, 0)}


def _mbv2_rule(key: str) -> str | None:
    m = re.match(r"layer1\.([01])\.(.+)", key)
    if m:
        return f"backbone.body.features.0.{m[1]}.{m[2]}"
    m = re.match(r"layer(\d)\.(\d+)\.output\.(\d)\.(\d)\.(.+)", key)
    if m:
        index = _MBV2_LAYER_START[int(m[1])] + int(m[2])
        return f"backbone.body.features.{index}.conv.{_MBV2_SUB[(m[3], m[4])]}.{m[5]}"
    m = re.match(r"(conv\d)\.(.+)", key)
    if m and m[1] in _MBV2_DIMRED:
        level, i = _MBV2_DIMRED[m[1]]
        return f"decoder.level{level}.dimred.{i}.{m[2]}"
    m = re.match(r"crp(\d)\.0\.(\d)_outvar_dimred\.(.+)", key)
    if m:
        return f"decoder.level{m[1]}.crp.convs.{int(m[2]) - 1}.{m[3]}"
    m = re.match(r"conv_adapt(\d)\.(.+)", key)
    if m:
        return f"decoder.level{m[1]}.out_conv.{m[2]}"
    if key.startswith("segm."):
        return "decoder.classifier." + key.removeprefix("segm.")
    return None


LAYOUT_RULES = {"refinenet": _resnet_rule, "lw_resnet": _resnet_rule, "lw_mbv2": _mbv2_rule}
LAYOUTS = ("native", *LAYOUT_RULES)


def detect_layout(state: Mapping[str, torch.Tensor]) -> str:
    if any(k.startswith("decoder.") for k in state):
        return "native"
    if "p_ims1d2_outl1_dimred.weight" in state:
        return "refinenet" if any(k.startswith("adapt_stage1_b.") for k in state) else "lw_resnet"
    if "segm.weight" in state or "conv8.weight" in state:
        return "lw_mbv2"
    raise CheckpointError(
        "cannot tell the checkpoint's layout: none of its keys look like this project's "
        f"('decoder.*') or a reference layout ({', '.join(LAYOUT_RULES)}); first keys: {_preview(state, 6)}"
    )


def convert_state_dict(state: Mapping[str, torch.Tensor], layout: str) -> StateDict:
    """Rename a reference-layout state dict to this project's keys; unknown keys are reported."""
    if layout == "native":
        return dict(state)
    if layout not in LAYOUT_RULES:
        raise UsageError(f"unknown checkpoint layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    rule = LAYOUT_RULES[layout]
    out, unknown = {}, []
    for key, value in state.items():
        if key.endswith("num_batches_tracked") and rule(key) is None:
            continue
        new = rule(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise CheckpointError(f"{len(unknown)} key(s) not in the {layout!r} layout: {_preview(unknown)}")
    return out


def load_checkpoint(model: nn.Module, source: str | Path | Mapping[str, torch.Tensor], layout: str = "auto") -> str:
    """Load a checkpoint (this project's or a reference layout) into ``model``; returns the layout used.

    Every key must match: a missing, unexpected or mis-shaped key raises a
    :class:`CheckpointError` that lists them all (``num_batches_tracked``
    buffers, absent from old PyTorch checkpoints, may be missing).
    """
    state = read_state_dict(source)
    if layout == "auto":
        layout = detect_layout(state)
    state = convert_state_dict(state, layout)
    name = source if isinstance(source, (str, Path)) else f"{layout} state dict"
    check_state_dict(model, state, source=f"{name} ({layout} layout)")
    model.load_state_dict(state, strict=False)  # check_state_dict above is the strict check
    return layout
