"""Evaluation: a network's confusion matrix over a split, and its mIoU (per class and overall)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..datasets.images import normalise
from ..metrics import confusion_matrix, iou_per_class


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, num_classes: int, device: str = "cpu",
             mixed_precision: bool = False, batch_size: int = 32) -> torch.Tensor:
    """(K, K) confusion matrix of the model's predictions (logits upsampled to the labels) over a split."""
    was_training = model.training
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    autocast = mixed_precision and device.startswith("cuda")
    for start in range(0, len(images), batch_size):
        x = normalise(images[start : start + batch_size].to(device)).contiguous(memory_format=torch.channels_last)
        y = masks[start : start + batch_size]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = model(x)
        up = F.interpolate(logits.float(), size=y.shape[-2:], mode="bilinear", align_corners=False)
        cm += confusion_matrix(up.argmax(1).cpu(), y, num_classes)
    model.train(was_training)
    return cm


def miou(cm: torch.Tensor) -> tuple[float, list[float]]:
    iou = iou_per_class(cm)
    return float(torch.nanmean(iou)), [float(v) for v in iou]


def held_out(model: nn.Module, data, device: str = "cpu") -> dict | None:
    """The kept weights' scores on the data's held-out test split (None where it has none: val then reports):
    ``{"split", "images", "miou", "iou_per_class"}``."""
    if data.test_images is None:
        return None
    value, per_class = miou(evaluate(model, data.test_images, data.test_masks, data.num_classes, device))
    return {"split": "test", "images": len(data.test_images), "miou": value,
            "iou_per_class": dict(zip(data.classes, per_class, strict=True))}
