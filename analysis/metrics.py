"""Segmentation and multi-label metrics, exactly as the reports define them.

mIoU: from one confusion matrix accumulated over the whole split (pixels labelled 255 ignored);
IoU_c = TP / (TP + FP + FN); a class absent from both prediction and label (TP + FP + FN = 0) is
excluded from the mean, not counted as 1.

Multi-label (no background): ``label_accuracy`` = correct (image, class) decisions / (images x
classes), the paper's likely "accuracy"; it is high even for an empty prediction when labels are
sparse, so ``subset_accuracy`` (all classes of an image right) and ``mAP`` (mean over classes with
at least one positive of the average precision of the scores) are reported too.
"""

from __future__ import annotations

import torch

from bench.errors import DataError

from .datasets.voc import IGNORE


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore: int = IGNORE) -> torch.Tensor:
    """(K, K) int64 counts over all pixels of any shape, rows = true class, columns = predicted class."""
    return per_image_confusion(pred.reshape(1, -1), target.reshape(1, -1), num_classes, ignore)[0]


def per_image_confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                        ignore: int = IGNORE) -> torch.Tensor:
    """(N, K, K) int64: one confusion matrix per image of (N, H, W) predictions and labels.

    Their sum over images is :func:`confusion_matrix` of the whole split; keeping them apart lets
    the split be resampled by image (bootstrap) without running anything again.
    """
    n, k = len(target), num_classes
    keep = target != ignore
    image = torch.arange(n).view(n, *([1] * (target.dim() - 1))).expand_as(target)[keep]
    t, p = target[keep].long(), pred[keep].long()
    if t.numel() and (t.max() >= k or t.min() < 0):
        raise DataError(f"label values outside 0..{k - 1} (and {ignore}): {t.unique().tolist()}")
    return torch.bincount((image * k + t) * k + p, minlength=n * k * k).view(n, k, k)


def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """IoU per class; NaN where the class is absent from both prediction and label. ``cm``: (K, K), or (B, K, K)
    for a (B, K) result."""
    tp = cm.diagonal(dim1=-2, dim2=-1).double()
    denom = cm.sum(-2).double() + cm.sum(-1).double() - tp
    return torch.where(denom > 0, tp / denom.clamp_min(1), torch.full_like(tp, float("nan")))


def mean_iou(cm: torch.Tensor) -> float:
    return float(torch.nanmean(iou_per_class(cm)))


def presence(masks: torch.Tensor, num_classes: int, ignore: int = IGNORE) -> torch.Tensor:
    """(N, K-1) bool: which foreground classes (1..K-1) appear in each mask."""
    out = torch.zeros(len(masks), num_classes - 1, dtype=torch.bool)
    for c in range(1, num_classes):
        out[:, c - 1] = (masks == c).flatten(1).any(1)
    return out


def average_precision(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """AP of one class: mean precision at the rank of each positive (scores sorted descending)."""
    return float(batch_average_precision(scores[None], positives[None])[0])


def batch_average_precision(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """:func:`average_precision` of each row of (B, N) scores and positives at once: (B,) float64, NaN for a row
    without positives."""
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    hits = positives.gather(1, order).double()
    precision_at = hits.cumsum(1) / torch.arange(1, hits.shape[1] + 1, dtype=torch.float64)
    found = hits.sum(1)
    return torch.where(found > 0, (precision_at * hits).sum(1) / found.clamp_min(1), float("nan"))


def expected_random_ap(n: int, m: int) -> float:
    """The expected :func:`average_precision` of scores in random order over ``n`` items of which ``m`` are
    positive: ((m - 1) / (n - 1) * (n - H_n) + H_n) / n, H_n the n-th harmonic number (Bestgen 2015). It is the
    positives' share m / n only for large n: 2 items, 1 positive give 0.75, not 0.5. NaN without positives."""
    if m <= 0 or n <= 0:
        return float("nan")
    harmonic = sum(1.0 / k for k in range(1, n + 1))
    return ((m - 1) / (n - 1) * (n - harmonic) + harmonic) / n if n > 1 else 1.0


def multilabel_metrics(scores: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5) -> dict[str, float]:
    """scores: (N, C) probabilities; targets: (N, C) bool."""
    decided = scores >= threshold
    correct = decided == targets
    aps = torch.tensor([average_precision(scores[:, c], targets[:, c]) for c in range(targets.shape[1])])
    return {
        "label_accuracy": float(correct.double().mean()),
        "subset_accuracy": float(correct.all(1).double().mean()),
        "map": float(torch.nanmean(aps)),
    }
