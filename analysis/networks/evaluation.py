"""Evaluation: a network's confusion matrices over a split (per image, so the split can be resampled by image
without running the network again), and its mIoU (per class and overall). A split comes as the networks' inputs
(normalised: :attr:`~analysis.networks.data.NetworkData.val_inputs` and its kin)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import iou_per_class, per_image_confusion


@torch.no_grad()
def evaluate_per_image(model: nn.Module, inputs: torch.Tensor, masks: torch.Tensor, num_classes: int,
                       device: str = "cpu", mixed_precision: bool = False, batch_size: int = 32) -> torch.Tensor:
    """(N, K, K) confusion matrices of the model's predictions (logits upsampled to the labels), one per image of
    ``inputs`` (normalised images)."""
    modes = {m: m.training for m in model.modules()}  # restored one by one: frozen BatchNorm stays frozen
    model.eval()
    cms = []
    autocast = mixed_precision and device.startswith("cuda")
    for start in range(0, len(inputs), batch_size):
        x = inputs[start : start + batch_size].to(device).contiguous(memory_format=torch.channels_last)
        y = masks[start : start + batch_size]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = model(x)
        up = F.interpolate(logits.float(), size=y.shape[-2:], mode="bilinear", align_corners=False)
        cms.append(per_image_confusion(up.argmax(1).cpu(), y, num_classes))
    for module, training in modes.items():
        module.training = training
    return torch.cat(cms) if cms else torch.zeros(0, num_classes, num_classes, dtype=torch.long)


def evaluate(model: nn.Module, inputs: torch.Tensor, masks: torch.Tensor, num_classes: int, device: str = "cpu",
             mixed_precision: bool = False, batch_size: int = 32) -> torch.Tensor:
    """(K, K) confusion matrix of the model's predictions over a split (``inputs``: normalised images)."""
    return evaluate_per_image(model, inputs, masks, num_classes, device, mixed_precision, batch_size).sum(0)


def miou(cm: torch.Tensor) -> tuple[float, list[float]]:
    iou = iou_per_class(cm)
    return float(torch.nanmean(iou)), [float(v) for v in iou]


def held_out(model: nn.Module, data, device: str = "cpu") -> dict | None:
    """The kept weights' scores on the data's held-out test split (None where it has none: val then reports):
    ``{"split", "images", "miou", "iou_per_class", "per_image"}`` (``per_image``: the (N, K, K) confusion matrices)."""
    if data.test_images is None:
        return None
    per_image = evaluate_per_image(model, data.test_inputs, data.test_masks, data.num_classes, device)
    value, per_class = miou(per_image.sum(0))
    return {"split": "test", "images": len(data.test_images), "miou": value,
            "iou_per_class": dict(zip(data.classes, per_class, strict=True)), "per_image": per_image}
