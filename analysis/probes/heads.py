"""Frozen-feature probes (paper Section 5.2, Table 4): heads trained on cached decoder features.

The network runs once per image, in eval mode without gradients, and the requested taps are kept
in an fp16 cache in memory; every head is then trained on that cache (never a forward of the
network per epoch), as DINOv2's linear evaluation does. Per tap, two heads:

- segmentation: BatchNorm + 1x1 conv to K classes (DINOv2's linear segmentation head), logits
  upsampled (bilinear) to the label size, cross-entropy ignoring 255 (for speed, the training loss
  uses labels subsampled by ``train_label_stride``; evaluation is at the full label size);
- multi-label: global average pooling, BatchNorm, linear, K-1 sigmoid outputs (no background), BCE.

Val metrics come with image-level bootstrap samples (``ProbeResult.boot``, the same resamples for
every tap: see :mod:`analysis.probes.bootstrap`), so intervals and paired tap differences need no
rerun. Everything is seeded: the same inputs give the same numbers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from bench.stats import resample_indices

from ..datasets.voc import IGNORE
from ..metrics import mean_iou, multilabel_metrics, per_image_confusion, presence
from .bootstrap import bootstrap_miou, bootstrap_multilabel

METRICS = ("miou", "label_accuracy", "map")
"""The probe scores, as column names of every probes frame (fractions 0..1 are reported x100)."""


def cache_features(
    model: nn.Module, images: torch.Tensor, taps: Sequence[str], batch_size: int = 32,
    normalise: Callable[[torch.Tensor], torch.Tensor] | None = None, device: str = "cpu",
) -> dict[str, torch.Tensor]:
    """One forward per image (in batches) -> {tap: fp16 (N, C, h, w) on the CPU}; aliased taps share storage."""
    aliases = model.tap_aliases() if hasattr(model, "tap_aliases") else {}
    model = copy.deepcopy(model).eval().to(device, memory_format=torch.channels_last)  # faster, same values
    unique = list(dict.fromkeys(aliases.get(t, t) for t in taps))
    chunks: dict[str, list[torch.Tensor]] = {t: [] for t in unique}
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device)
            x = normalise(x) if normalise is not None else x
            feats = model.forward_taps(x.contiguous(memory_format=torch.channels_last), unique)
            for t in unique:
                chunks[t].append(feats[t].half().contiguous().cpu())
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
        self.norm = nn.BatchNorm1d(channels)
        self.classifier = nn.Linear(channels, num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.norm(features.mean(dim=(2, 3))))


@dataclass
class ProbeResult:
    tap: str
    miou: float
    label_accuracy: float
    subset_accuracy: float
    map: float
    train_miou: float
    boot: dict[str, torch.Tensor] = field(default_factory=dict)  # (n_boot,) val samples per metric of METRICS


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
    device: str = "cpu",
    resamples: torch.Tensor | None = None,
) -> list[ProbeResult]:
    """Train a segmentation and a multi-label head per tap on cached features; evaluate on val.

    ``resamples``: bootstrap indices of the val images shared with other runs (paired intervals);
    drawn from ``settings`` when not given. Heads and features go to ``device`` one tap at a time.
    """
    results = []
    stride = settings.train_label_stride
    small_masks = train_masks[:, stride // 2 :: stride, stride // 2 :: stride].long()  # nearest subsampling
    size = tuple(small_masks.shape[-2:])
    train_presence = presence(train_masks, num_classes).float()
    val_presence = presence(val_masks, num_classes)
    if resamples is None and settings.n_boot:
        resamples = resample_indices(len(val_masks), settings.n_boot, settings.seed)
    done: dict[int, ProbeResult] = {}
    for tap, feats in train_features.items():
        if id(feats) in done:  # an aliased tap: the same tensor, the same result
            results.append(replace(done[id(feats)], tap=tap))
            continue
        torch.manual_seed(settings.seed)
        seg = SegmentationHead(feats.shape[1], num_classes).to(device)
        cls = MultiLabelHead(feats.shape[1], num_classes - 1).to(device)
        params = list(seg.parameters()) + list(cls.parameters())
        opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
        g = torch.Generator().manual_seed(settings.seed)
        seg.train(), cls.train()
        for _ in range(settings.epochs):
            for idx in torch.randperm(len(feats), generator=g).split(settings.batch_size):
                if len(idx) < 2:  # BatchNorm needs two samples in training mode
                    continue
                x = feats[idx].to(device).float()
                loss = F.cross_entropy(seg(x, size), small_masks[idx].to(device), ignore_index=IGNORE)
                loss = loss + F.binary_cross_entropy_with_logits(cls(x), train_presence[idx].to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
        seg.eval(), cls.eval()
        with torch.no_grad():
            # train mIoU on the subsampled training labels (what the loss saw); val at full label size
            train_cm = _per_image_confusion(seg, feats, small_masks, num_classes, settings.batch_size, device).sum(0)
            val_cms = _per_image_confusion(seg, val_features[tap], val_masks, num_classes, settings.batch_size, device)
            scores = torch.sigmoid(cls(val_features[tap].to(device).float())).cpu()
        ml = multilabel_metrics(scores, val_presence)
        boot = {}
        if resamples is not None:
            boot = {"miou": bootstrap_miou(val_cms, resamples), **bootstrap_multilabel(scores, val_presence, resamples)}
        result = ProbeResult(tap, mean_iou(val_cms.sum(0)), ml["label_accuracy"], ml["subset_accuracy"], ml["map"],
                             mean_iou(train_cm), boot)
        done[id(feats)] = result
        results.append(result)
    return results


def _per_image_confusion(head: SegmentationHead, feats: torch.Tensor, masks: torch.Tensor, num_classes: int,
                         batch_size: int, device: str) -> torch.Tensor:
    cms = []
    for start in range(0, len(feats), batch_size):
        logits = head(feats[start : start + batch_size].to(device).float(), tuple(masks.shape[-2:]))
        predicted = logits.max(1).indices.cpu()  # max(1) is several times faster than argmax(1) on NCHW
        cms.append(per_image_confusion(predicted, masks[start : start + batch_size], num_classes))
    return torch.cat(cms)
