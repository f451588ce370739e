"""Image-level bootstrap confidence intervals for split-level metrics, paired across taps.

The val split is resampled by image (with replacement) ``n_boot`` times; every metric is computed
again on each resample from per-image statistics (no network or head runs again). All taps and
families use the *same* resamples (one seed), so the difference of two metrics is bootstrapped
paired, image by image: the interval of "after CRP minus before RCU" accounts for both probes
seeing the same images. Intervals are percentile intervals; they cover the variation due to the
choice of val images only, not that of training seeds.
"""

from __future__ import annotations

import torch

from ..metrics import batch_average_precision, iou_per_class


def bootstrap_miou(per_image_cm: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(n_boot,) mIoU of each resample; per_image_cm: (N, K, K) from ``per_image_confusion``."""
    cms = per_image_cm[indices].sum(1)  # (B, K, K)
    return torch.nanmean(iou_per_class(cms), dim=1).float()


def bootstrap_multilabel(scores: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor,
                         threshold: float = 0.5) -> dict[str, torch.Tensor]:
    """(n_boot,) label accuracy and mAP of each resample (definitions as in ``multilabel_metrics``)."""
    correct = ((scores >= threshold) == targets).double().mean(1)  # per image
    label_accuracy = correct[indices].mean(1).float()
    s, t = scores[indices], targets[indices]  # (B, N, C): every resample at once
    aps = torch.stack([batch_average_precision(s[..., c], t[..., c]) for c in range(t.shape[-1])], dim=1)
    return {"label_accuracy": label_accuracy, "map": torch.nanmean(aps.float(), dim=1)}
