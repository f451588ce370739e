"""Independent functional re-statements of the public reference networks, for tests.

These read a state dict in the *reference* key layout and compute the forward
pass with plain ``torch.nn.functional`` calls, following the reference
repositories' code (DrSleep/light-weight-refinenet ``models/resnet.py`` and
``models/mobilenet.py``; DrSleep/refinenet-pytorch ``models/resnet.py``,
``utils/layer_factory.py``) step by step. They share no code with ``bench``, so
agreement with ``bench`` models loaded from the same weights checks both the
key mapping and the architecture. Eval mode only (dropout off, BN running stats).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision

StateDict = dict[str, torch.Tensor]

RESNET_LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
MBV2_CONFIG = [  # t, c, n, s
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)
]


def _conv(x, sd, p, stride=1, groups=1):
    w = sd[p + ".weight"]
    return F.conv2d(x, w, sd.get(p + ".bias"), stride, w.shape[-1] // 2, groups=groups)


def _bn(x, sd, p):
    return F.batch_norm(
        x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"], False, 0.0, 1e-5
    )


def _up(x, like):
    return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=True)


def _crp(x, sd, p, stages=4):
    top = x
    for i in range(1, stages + 1):
        top = _conv(F.max_pool2d(top, 5, 1, 2), sd, f"{p}.{i}_outvar_dimred")
        x = top + x
    return x


def _rcu(x, sd, p, blocks):
    for i in range(1, blocks + 1):
        residual = x
        x = _conv(F.relu(x), sd, f"{p}.{i}_conv")
        x = _conv(F.relu(x), sd, f"{p}.{i}_conv_relu_varout_dimred")
        x = x + residual
    return x


def resnet_features(x, sd, depth):
    x = F.relu(_bn(_conv(x, sd, "conv1", stride=2), sd, "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    outs = []
    for li, blocks in enumerate(RESNET_LAYERS[depth], 1):
        for b in range(blocks):
            p = f"layer{li}.{b}"
            stride = 2 if (b == 0 and li > 1) else 1
            out = F.relu(_bn(_conv(x, sd, p + ".conv1"), sd, p + ".bn1"))
            out = F.relu(_bn(_conv(out, sd, p + ".conv2", stride=stride), sd, p + ".bn2"))
            out = _bn(_conv(out, sd, p + ".conv3"), sd, p + ".bn3")
            if b == 0:
                x = _bn(_conv(x, sd, p + ".downsample.0", stride=stride), sd, p + ".downsample.1")
            x = F.relu(out + x)
        outs.append(x)
    return outs


def refinenet_resnet_forward(x: torch.Tensor, sd: StateDict, depth: int, original: bool) -> torch.Tensor:
    """ResNetLW (original=False) or RefineNet (original=True) of the reference repos."""
    l1, l2, l3, l4 = resnet_features(x, sd, depth)

    def rcu(t, p, n):
        return _rcu(t, sd, p + ".0", n) if original else t

    x4 = _conv(l4, sd, "p_ims1d2_outl1_dimred")
    x4 = F.relu(rcu(x4, "adapt_stage1_b", 2))
    x4 = _crp(x4, sd, "mflow_conv_g1_pool.0")
    x4 = rcu(x4, "mflow_conv_g1_b", 3)
    prev = _up(_conv(x4, sd, "mflow_conv_g1_b3_joint_varout_dimred"), l3)
    for stage, lateral, finer in ((2, l3, l2), (3, l2, l1), (4, l1, None)):
        xs = _conv(lateral, sd, f"p_ims1d2_outl{stage}_dimred")
        xs = rcu(xs, f"adapt_stage{stage}_b", 2)
        xs = _conv(xs, sd, f"adapt_stage{stage}_b2_joint_varout_dimred")
        xs = F.relu(xs + prev)
        xs = _crp(xs, sd, f"mflow_conv_g{stage}_pool.0")
        xs = rcu(xs, f"mflow_conv_g{stage}_b", 3)
        if finer is not None:
            prev = _up(_conv(xs, sd, f"mflow_conv_g{stage}_b3_joint_varout_dimred"), finer)
    return _conv(xs, sd, "clf_conv")


def mbv2_forward(x: torch.Tensor, sd: StateDict) -> torch.Tensor:
    """MBv2 (Light-Weight RefineNet on MobileNet-v2) of light-weight-refinenet."""

    def cbr(t, p, stride=1, groups=1, act=True):
        t = _bn(_conv(t, sd, p + ".0", stride, groups), sd, p + ".1")
        return F.relu6(t) if act else t

    x = cbr(x, "layer1", stride=2)
    inp, outs = 32, {}
    for li, (t, c, n, s) in enumerate(MBV2_CONFIG, 2):
        for i in range(n):
            p, stride = f"layer{li}.{i}.output", (s if i == 0 else 1)
            out = cbr(x, p + ".0")
            out = cbr(out, p + ".1", stride, groups=inp * t)
            out = cbr(out, p + ".2", act=False)
            x = out + x if (inp == c and stride == 1) else out
            inp = c
        outs[li] = x
    l3, l4, l5, l6, l7, l8 = (outs[i] for i in range(3, 9))
    l7 = F.relu6(_conv(l8, sd, "conv8") + _conv(l7, sd, "conv7"))
    l7 = _up(_conv(_crp(l7, sd, "crp4.0"), sd, "conv_adapt4"), l6)
    l5 = F.relu6(_conv(l5, sd, "conv5") + _conv(l6, sd, "conv6") + l7)
    l5 = _up(_conv(_crp(l5, sd, "crp3.0"), sd, "conv_adapt3"), l4)
    l4 = F.relu6(l5 + _conv(l4, sd, "conv4"))
    l4 = _up(_conv(_crp(l4, sd, "crp2.0"), sd, "conv_adapt2"), l3)
    l3 = F.relu6(_conv(l3, sd, "conv3") + l4)
    return _conv(_crp(l3, sd, "crp1.0"), sd, "segm")


# --- reference-layout state dicts with random values -------------------------------------------


def _randomise(shapes: dict[str, tuple[int, ...]], seed: int) -> StateDict:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in shapes.items():
        if k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        elif k.endswith(("running_mean", "bias")) or (k.endswith("weight") and len(shape) == 1):
            sd[k] = torch.randn(shape, generator=g) * 0.1 + (1.0 if k.endswith("weight") else 0.0)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod()))
            sd[k] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    return sd


def reference_resnet_state_dict(depth: int, original: bool, num_classes: int = 21, seed: int = 0) -> StateDict:
    """Keys and shapes of the reference ResNetLW / RefineNet, written out from the reference code."""
    backbone = getattr(torchvision.models, f"resnet{depth}")(weights=None).state_dict()
    shapes = {k: tuple(v.shape) for k, v in backbone.items() if not k.startswith("fc.") and "num_batches" not in k}
    k = 3 if original else 1
    in_ch = {1: 2048, 2: 1024, 3: 512, 4: 256}
    for s in (1, 2, 3, 4):
        width = 512 if s == 1 else 256
        shapes[f"p_ims1d2_outl{s}_dimred.weight"] = (width, in_ch[s], k, k)
        if s > 1:
            shapes[f"adapt_stage{s}_b2_joint_varout_dimred.weight"] = (width, width, k, k)
        for i in range(1, 5):
            shapes[f"mflow_conv_g{s}_pool.0.{i}_outvar_dimred.weight"] = (width, width, k, k)
        if s < 4:
            shapes[f"mflow_conv_g{s}_b3_joint_varout_dimred.weight"] = (256, width, k, k)
        if original:
            for name, blocks in ((f"adapt_stage{s}_b", 2), (f"mflow_conv_g{s}_b", 3)):
                for i in range(1, blocks + 1):
                    shapes[f"{name}.0.{i}_conv.weight"] = (width, width, 3, 3)
                    shapes[f"{name}.0.{i}_conv.bias"] = (width,)
                    shapes[f"{name}.0.{i}_conv_relu_varout_dimred.weight"] = (width, width, 3, 3)
    shapes["clf_conv.weight"] = (num_classes, 256, 3, 3)
    shapes["clf_conv.bias"] = (num_classes,)
    return _randomise(shapes, seed)


def reference_mbv2_state_dict(num_classes: int = 21, seed: int = 0) -> StateDict:
    shapes: dict[str, tuple[int, ...]] = {}

    def cbr(p, cin, cout, k, groups=1):
        shapes[p + ".0.weight"] = (cout, cin // groups, k, k)
        for s in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{p}.1.{s}"] = (cout,)

    cbr("layer1", 3, 32, 3)
    inp = 32
    for li, (t, c, n, _s) in enumerate(MBV2_CONFIG, 2):
        for i in range(n):
            p, hid = f"layer{li}.{i}.output", inp * t
            cbr(p + ".0", inp, hid, 1)
            cbr(p + ".1", hid, hid, 3, groups=hid)
            cbr(p + ".2", hid, c, 1)
            inp = c
    for name, cin in (("conv8", 320), ("conv7", 160), ("conv6", 96), ("conv5", 64), ("conv4", 32), ("conv3", 24)):
        shapes[name + ".weight"] = (256, cin, 1, 1)
    for j in range(1, 5):
        for i in range(1, 5):
            shapes[f"crp{j}.0.{i}_outvar_dimred.weight"] = (256, 256, 1, 1)
    for j in (2, 3, 4):
        shapes[f"conv_adapt{j}.weight"] = (256, 256, 1, 1)
    shapes["segm.weight"] = (num_classes, 256, 3, 3)
    shapes["segm.bias"] = (num_classes,)
    return _randomise(shapes, seed)
