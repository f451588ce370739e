"""Frozen-feature probes before RCU, after RCU and after CRP (paper Section 5.2, Table 4).

The network runs once per image, in eval mode without gradients, and the requested taps are kept
in an fp16 cache in memory; every head is then trained on that cache (never a forward of the
network per epoch). Per tap, two heads:

- segmentation: BatchNorm + 1x1 conv to K classes, logits upsampled (bilinear) to the label size,
  cross-entropy ignoring 255 (for speed, the training loss uses labels subsampled by
  ``train_label_stride``; evaluation is at the full label size);
- multi-label: global average pooling, linear, K-1 sigmoid outputs (no background), BCE.

Val metrics come with image-level bootstrap samples (``ProbeResult.boot``, same resamples for every
tap: see ``analysis.bootstrap``), so intervals and paired tap differences need no rerun.
Everything is seeded: the same inputs give the same numbers.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .bootstrap import bootstrap_miou, bootstrap_multilabel, resample_indices
from .metrics import mean_iou, multilabel_metrics, per_image_confusion, presence
from .voc import IGNORE

PROBE_TAPS = ("level4.before_rcu", "level4.after_rcu", "level4.after_crp")
METRICS = {"mIoU %": "miou", "label accuracy %": "label_accuracy", "mAP %": "mAP"}  # column -> ProbeResult field
FAMILY_LABEL = {"rf": "RefineNet", "rf_lw_rcu": "LW with RCU", "rf_lw": "LW"}
TAP_LABELS = {"level4.before_rcu": "before RCU", "level4.after_rcu": "after RCU", "level4.after_crp": "after CRP"}


def cache_features(
    model: nn.Module, images: torch.Tensor, taps: Sequence[str] = PROBE_TAPS, batch_size: int = 32,
    normalise=None,
) -> dict[str, torch.Tensor]:
    """One forward per image (in batches) -> {tap: fp16 (N, C, h, w)}; aliased taps share storage."""
    aliases = model.tap_aliases() if hasattr(model, "tap_aliases") else {}
    model = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)  # faster on CPU, same values
    unique = list(dict.fromkeys(aliases.get(t, t) for t in taps))
    chunks: dict[str, list[torch.Tensor]] = {t: [] for t in unique}
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size]
            x = normalise(x) if normalise is not None else x
            feats = model.forward_taps(x.contiguous(memory_format=torch.channels_last), unique)
            for t in unique:
                chunks[t].append(feats[t].half().contiguous())
    cached = {t: torch.cat(chunks[t]) for t in unique}
    return {t: cached[aliases.get(t, t)] for t in taps}


class SegmentationHead(nn.Module):
    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        logits = self.classifier(self.norm(features))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class MultiLabelHead(nn.Module):
    def __init__(self, channels: int, num_labels: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(channels, num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features.mean(dim=(2, 3)))


@dataclass
class ProbeResult:
    tap: str
    miou: float
    label_accuracy: float
    subset_accuracy: float
    mAP: float
    train_miou: float
    boot: dict[str, torch.Tensor] = field(default_factory=dict)  # (n_boot,) val samples: miou, label_accuracy, mAP


@dataclass(frozen=True)
class ProbeSettings:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 1e-4
    train_label_stride: int = 4  # training loss on labels subsampled (nearest) by this; evaluation at full size
    n_boot: int = 1000  # bootstrap resamples of the val images (0: none)
    seed: int = 0


def train_probes(
    train_features: dict[str, torch.Tensor],
    train_masks: torch.Tensor,
    val_features: dict[str, torch.Tensor],
    val_masks: torch.Tensor,
    num_classes: int,
    settings: ProbeSettings = ProbeSettings(),
) -> list[ProbeResult]:
    """Train a segmentation and a multi-label head per tap on cached features; evaluate on val."""
    results = []
    stride = settings.train_label_stride
    small_masks = train_masks[:, stride // 2 :: stride, stride // 2 :: stride]  # nearest subsampling
    size = tuple(small_masks.shape[-2:])
    train_presence = presence(train_masks, num_classes).float()
    val_presence = presence(val_masks, num_classes)
    resamples = resample_indices(len(val_masks), settings.n_boot, settings.seed) if settings.n_boot else None
    for tap, feats in train_features.items():
        torch.manual_seed(settings.seed)
        seg = SegmentationHead(feats.shape[1], num_classes)
        cls = MultiLabelHead(feats.shape[1], num_classes - 1)
        params = list(seg.parameters()) + list(cls.parameters())
        opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
        g = torch.Generator().manual_seed(settings.seed)
        for _ in range(settings.epochs):
            seg.train()
            for idx in torch.randperm(len(feats), generator=g).split(settings.batch_size):
                x = feats[idx].float()
                loss = F.cross_entropy(seg(x, size), small_masks[idx].long(), ignore_index=IGNORE)
                loss = loss + F.binary_cross_entropy_with_logits(cls(x), train_presence[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        seg.eval()
        with torch.no_grad():
            train_cm = _per_image_confusion(seg, feats, train_masks, num_classes, settings.batch_size).sum(0)
            val_cms = _per_image_confusion(seg, val_features[tap], val_masks, num_classes, settings.batch_size)
            scores = torch.sigmoid(cls(val_features[tap].float()))
        ml = multilabel_metrics(scores, val_presence)
        boot = {}
        if resamples is not None:
            boot = {"miou": bootstrap_miou(val_cms, resamples), **bootstrap_multilabel(scores, val_presence, resamples)}
        results.append(ProbeResult(tap, mean_iou(val_cms.sum(0)), ml["label_accuracy"], ml["subset_accuracy"],
                                   ml["mAP"], mean_iou(train_cm), boot))
    return results


def _per_image_confusion(head: SegmentationHead, feats: torch.Tensor, masks: torch.Tensor, num_classes: int,
                         batch_size: int) -> torch.Tensor:
    cms = []
    for start in range(0, len(feats), batch_size):
        logits = head(feats[start : start + batch_size].float(), tuple(masks.shape[-2:]))
        cms.append(per_image_confusion(logits.argmax(1), masks[start : start + batch_size], num_classes))
    return torch.cat(cms)
