"""The probe study: train (or load) each decoder family, then probe its frozen features at every level.

Embedded default (no VOC and no trained weights can be downloaded here): the generated shapes
dataset (:mod:`analysis.datasets.synthetic`), a ResNet-18 backbone under each decoder family,
trained in two short stages: the backbone once under the light-weight decoder (standing in for
ImageNet pre-training, at half resolution to save time), then each family end to end from that
backbone. Then the probes on the frozen features before RCU, after RCU and after CRP of every level.
On a CPU the decoders are narrowed (64 channels, 128 at level 4; the families' kernels, blocks and
CRP are unchanged) and one network is trained per family; on a GPU the decoders keep the paper's
width and three seeds are trained. With ``voc_root`` and ``checkpoints`` the same code runs the
paper's setting (e.g. rf101 with the refinenet-pytorch VOC weights on VOC train/val).

Every number of the frame is a plain column (``miou``, ``miou_ci_low``, ...; fractions 0..1);
display labels are applied by the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from bench import validation
from bench.errors import DataError, MissingFileError, UsageError, UsageTypeError
from bench.models import FAMILIES, create_model, variant_info
from bench.stats import percentile_interval, resample_indices

from ..datasets.images import normalise
from ..datasets.synthetic import SyntheticSpec, synthetic_voc
from ..datasets.voc import IGNORE, VOCSegmentation, class_names, dataset_classes
from .heads import METRICS, ProbeSettings, cache_features, train_probes
from .metrics import confusion_matrix, mean_iou, multilabel_metrics, presence
from .training import TrainSettings, train_segmenter, zero_init_residual_branches

POINTS = ("before_rcu", "after_rcu", "after_crp")
"""Probe points inside a level, as in the paper's Table 4."""
LEVELS = ("level4", "level3", "level2", "level1")
CPU_DECODER = {"channels": 64, "top_channels": 128}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class ProbePlan:
    """What to probe and how the embedded default trains first.

    Learning rates: Adam moves every weight by about ``lr`` per step whatever its gradient, and the
    decoders have no normalisation before the ReLU after each summation. With larger rates the
    early push towards "background everywhere" drives those sums negative and the ReLUs die; the
    coarse levels then get no gradient and their features stay untrained (measured without warm-up:
    at lr 2e-3 the LW level-4 sum is 0.1% active after 20 steps; the RefineNet decoder, 3x3 convs with
    fan-in 4608, is dead after 10 steps at 5e-4 but stays alive at 1e-4). The report shows the
    active share of each level's summation ReLU.
    """

    backbone: str = "resnet18"
    families: tuple[str, ...] = ("rf", "rf_lw_rcu", "rf_lw")
    dataset: SyntheticSpec = SyntheticSpec()
    size: int = 256  # images and labels (H = W) for features and evaluation: level 4 is size/32 cells
    levels: tuple[str, ...] = LEVELS
    decoder: dict | None = None  # DecoderSpec changes for every family (None: the families' own widths)
    pretrain_size: int = 128  # stage 1 on images resized to this side (None: ``size``)
    pretrain: TrainSettings = TrainSettings(steps=150, batch_size=8, crop=None, lr=5e-4)
    finetune: TrainSettings = TrainSettings(steps=30, batch_size=8, crop=None, lr=1e-4)
    probe: ProbeSettings = ProbeSettings(epochs=20, n_boot=500)  # 10 epochs: 4-5 mIoU points lower; 40: no gain
    seeds: int = 1  # networks trained per family (their spread is reported beside the image intervals)
    voc_root: str | None = None  # a VOC-layout dataset instead of the generated one
    num_classes: int | None = None  # K; None: from classes.txt or the labels (see dataset_classes)
    checkpoints: dict[str, str] = field(default_factory=dict)  # variant name -> checkpoint: no training
    device: str = "cpu"

    @staticmethod
    def default() -> ProbePlan:
        """The embedded default for this machine: narrow decoders and 1 seed on a CPU; full width, 3 seeds
        on a GPU."""
        if torch.cuda.is_available():
            return ProbePlan(seeds=3, device="cuda")
        return ProbePlan(decoder=CPU_DECODER)

    @staticmethod
    def tiny() -> ProbePlan:
        """Seconds, for tests: a handful of images and steps."""
        return ProbePlan(dataset=SyntheticSpec(n_train=16, n_val=8, size=64, small_radius=(4, 6),
                                               large_radius=(10, 14)),
                         size=64, decoder=CPU_DECODER, pretrain_size=None,
                         pretrain=TrainSettings(steps=2, batch_size=4, crop=None),
                         finetune=TrainSettings(steps=1, batch_size=4, crop=None),
                         probe=ProbeSettings(epochs=2, n_boot=50))

    def variants(self) -> list[str]:
        return list(self.checkpoints) or [f"{f}:{self.backbone}" for f in self.families]

    def validate(self) -> None:
        """Every field checked before any data is read or any network trained."""
        validation.integer("size", self.size, minimum=validation.MIN_SIDE)
        if self.pretrain_size is not None:
            validation.integer("pretrain_size", self.pretrain_size, minimum=validation.MIN_SIDE)
        validation.integer("seeds", self.seeds, minimum=1)
        if self.num_classes is not None:
            validation.integer("num_classes", self.num_classes, minimum=2, maximum=255)
        for key, one, valid in (("families", "family", FAMILIES), ("levels", "level", LEVELS)):
            values = getattr(self, key)
            if isinstance(values, str):
                raise UsageTypeError(f"{key} must be a list of names, got the string {values!r}; write [{values!r}]")
            for value in values:
                validation.choice(one, value, valid)
            repeated = sorted({v for v in values if list(values).count(v) > 1})
            if repeated:
                raise UsageError(f"{key} names {', '.join(map(repr, repeated))} more than once; list each once")
        if not self.families and not self.checkpoints:
            raise UsageError("families must name at least one decoder family")
        for name in self.variants():
            variant_info(name)
        for path in self.checkpoints.values():
            if not Path(path).is_file():
                raise MissingFileError(f"checkpoint file not found: {path}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise UsageError(f"unknown device {self.device!r}; valid: cpu, cuda, cuda:N")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError("device 'cuda' requested but torch.cuda.is_available() is False on this machine")
        if self.voc_root is not None and not Path(self.voc_root).is_dir():
            raise MissingFileError(f"no VOC2012 segmentation data under {self.voc_root}: the folder does not exist")
        for key in ("pretrain", "finetune"):
            settings = getattr(self, key)
            validation.integer(f"{key} steps", settings.steps, minimum=0)
            validation.integer(f"{key} batch_size", settings.batch_size, minimum=1)
        validation.integer("probe epochs", self.probe.epochs, minimum=1)
        validation.integer("probe n_boot", self.probe.n_boot, minimum=0)


@dataclass
class ProbeRun:
    """One study: a row per (variant, seed, tap), the setting, trivial baselines, bootstrap samples."""

    frame: pd.DataFrame
    setting: str
    baselines: dict[str, float]  # metric -> score of a trivial predictor (fraction)
    boot: dict[tuple[str, int, str], dict[str, torch.Tensor]]  # (variant, seed, tap) -> metric -> (n_boot,)
    classes: tuple[str, ...]
    class_source: str
    plan: ProbePlan
    n_val: int | None = None  # val images: intervals are undefined with one, too narrow with a few


def trivial_baselines(val_masks: torch.Tensor, num_classes: int,
                      train_masks: torch.Tensor | None = None) -> dict[str, float]:
    """What 'learned nothing' scores on val, over the K classes of the data, for predictors fit on the
    training labels (on val's own labels where no training labels are given), whatever class 0 is:

    - ``miou``: the majority class (most labelled training pixels) everywhere; ``majority_class`` says which;
    - ``label_accuracy``: for each foreground class, the answer most training images give (present or not);
    - ``map``: random scores (the expected AP of random scores is the class's frequency among val images);
    - ``multilabel_informative``: 1.0 where some foreground class is present in some val images and absent
      from others, else 0.0: when every val image holds every class (or none), label accuracy and mAP say
      nothing about the features.
    """
    source = val_masks if train_masks is None else train_masks
    labelled = source[source != IGNORE].long()
    majority = int(torch.bincount(labelled, minlength=num_classes).argmax()) if labelled.numel() else 0
    cm = confusion_matrix(torch.full_like(val_masks, majority), val_masks, num_classes)
    targets = presence(val_masks, num_classes)
    usual = (presence(source, num_classes).double().mean(0) > 0.5).double()
    ml = multilabel_metrics(usual.expand(targets.shape), targets)
    prevalence = targets.double().mean(0)
    informative = bool(((prevalence > 0) & (prevalence < 1)).any())
    return {"miou": mean_iou(cm), "label_accuracy": ml["label_accuracy"],
            "map": float(prevalence[prevalence > 0].mean()) if (prevalence > 0).any() else float("nan"),
            "majority_class": float(majority), "multilabel_informative": float(informative)}


def check_labelled(masks: torch.Tensor, split: str, root: str | Path) -> None:
    """A split whose every pixel is 255 (ignore) cannot be trained or scored on: a DataError."""
    if not (masks != IGNORE).any():
        raise DataError(f"the {split} split of {root} has no labelled pixel (every mask pixel is {IGNORE}, ignore): "
                        "nothing to train or score on")


def checkpoint_classes(checkpoints: dict[str, str]) -> int | None:
    """K from the classifier of the given checkpoints (None without checkpoints); they must agree."""
    from bench.models.checkpoints import convert_state_dict, detect_layout, read_state_dict

    found = {}
    for name, path in checkpoints.items():
        state = read_state_dict(path)
        weight = convert_state_dict(state, detect_layout(state)).get("decoder.classifier.weight")
        if weight is not None:
            found[name] = int(weight.shape[0])
    if len(set(found.values())) > 1:
        raise DataError(f"the checkpoints disagree on the number of classes: {found}")
    return next(iter(found.values()), None)


def _data(plan: ProbePlan, progress):
    if plan.voc_root:
        root, setting = Path(plan.voc_root), f"VOC-layout data at {plan.voc_root}"
    else:
        root = synthetic_voc(plan.dataset, progress=progress)
        setting = (f"generated shapes ({plan.dataset.n_train} train / {plan.dataset.n_val} val images, "
                   f"{plan.dataset.size}px)")
    size = (plan.size, plan.size)
    names = class_names(root)
    from_checkpoint = None if plan.num_classes else checkpoint_classes(plan.checkpoints)
    given = plan.num_classes or from_checkpoint
    k = given or (len(names) if names else None)  # None: inferred from the labels below
    train = VOCSegmentation(root, "train", size, num_classes=k).load_all()
    val = VOCSegmentation(root, "val", size, num_classes=k).load_all()
    check_labelled(train[1], "train", root)
    check_labelled(val[1], "val", root)
    k, classes, source = dataset_classes(root, given, [train[1], val[1]])
    if from_checkpoint:
        source = "the checkpoints' classifier"
    return train, val, k, classes, source, setting + f"; K = {k} classes ({source}), 255 ignored"


def network_val_miou(logits: torch.Tensor, masks: torch.Tensor, num_classes: int, batch_size: int = 32) -> float:
    """The network's own mIoU from its cached logits (upsampled to the label size)."""
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for start in range(0, len(logits), batch_size):
        up = F.interpolate(logits[start : start + batch_size].float(), size=masks.shape[-2:], mode="bilinear",
                           align_corners=False)
        cm += confusion_matrix(up.max(1).indices, masks[start : start + batch_size], num_classes)
    return mean_iou(cm)


def _resize(images: torch.Tensor, masks: torch.Tensor, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = F.interpolate(images.float(), size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    y = F.interpolate(masks[:, None].float(), size=(side, side), mode="nearest")[:, 0]
    return x.round().clamp(0, 255).to(torch.uint8), y.to(torch.uint8)


def run_probes(plan: ProbePlan | None = None, progress: Callable[[str], None] | None = print) -> ProbeRun:
    """Train (unless checkpoints are given) and probe every family at every level; seeded."""
    plan = plan or ProbePlan.default()
    plan.validate()
    say = progress or (lambda msg: None)
    (xtr, ytr), (xva, yva), k, classes, source, setting = _data(plan, progress)
    base = trivial_baselines(yva, k, ytr)
    taps = [f"{lvl}.{p}" for lvl in plan.levels for p in POINTS]
    activity = [f"{lvl}.after_sum" for lvl in plan.levels]
    # one image: a bootstrap over it has no spread to show, so no interval at all (not a zero-width one)
    resamples = (resample_indices(len(yva), plan.probe.n_boot, plan.probe.seed)
                 if plan.probe.n_boot and len(yva) >= 2 else None)
    rows, boot = [], {}
    seeds = range(1 if plan.checkpoints else plan.seeds)
    for seed in seeds:
        backbone_state = None
        if not plan.checkpoints:
            side = plan.pretrain_size or plan.size
            say(f"  seed {seed}, stage 1: backbone {plan.backbone} under the LW decoder, {plan.pretrain.steps} "
                f"steps at {side}px")
            torch.manual_seed(seed)
            pre = zero_init_residual_branches(create_model(f"rf_lw:{plan.backbone}", num_classes=k,
                                                           decoder=plan.decoder))
            px, py = _resize(xtr, ytr, side) if side != plan.size else (xtr, ytr)
            settings = TrainSettings(**{**plan.pretrain.__dict__, "seed": seed})
            train_segmenter(pre, px, py, normalise, settings, progress, device=plan.device)
            backbone_state = pre.backbone.state_dict()
        for name in plan.variants():
            start = time.perf_counter()
            torch.manual_seed(seed)
            model = create_model(name, num_classes=k, checkpoint=plan.checkpoints.get(name),
                                 decoder=None if plan.checkpoints else plan.decoder)
            train_seconds = 0.0
            if backbone_state is not None:
                zero_init_residual_branches(model)
                model.backbone.load_state_dict(backbone_state)
                say(f"  seed {seed}, stage 2: {name}, {plan.finetune.steps} steps at {plan.size}px")
                settings = TrainSettings(**{**plan.finetune.__dict__, "seed": seed})
                train_seconds = train_segmenter(model, xtr, ytr, normalise, settings, progress,
                                                device=plan.device).seconds
            # one pass over val gives the probe features, the ReLU activity and the network's own mIoU
            val_feats = cache_features(model, xva, taps + activity + ["logits"], normalise=normalise,
                                       device=plan.device)
            network_miou = network_val_miou(val_feats.pop("logits"), yva, k)
            active = {t.split(".")[0]: float((val_feats.pop(t) > 0).float().mean()) for t in activity}
            say(f"  {name} (seed {seed}): network val mIoU {100 * network_miou:.1f}%; probing {len(taps)} taps")
            train_feats = cache_features(model, xtr, taps, normalise=normalise, device=plan.device)
            aliases = model.tap_aliases()
            n_boot = plan.probe.n_boot if resamples is not None else 0
            probe = ProbeSettings(**{**plan.probe.__dict__, "n_boot": n_boot})
            results = train_probes(train_feats, ytr, val_feats, yva, k, probe, plan.device, resamples)
            info = variant_info(name)
            for r in results:
                level, point = r.tap.split(".")
                same = aliases.get(r.tap, "")
                row = {"variant": name, "family": info.family, "seed": seed, "level": level, "tap": r.tap,
                       "point": point, "same_as": same.split(".")[1] if same.startswith(level) else ""}
                boot[(name, seed, r.tap)] = r.boot
                for metric in METRICS:
                    row[metric] = getattr(r, metric)
                    if r.boot:
                        row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = percentile_interval(r.boot[metric])
                row.update({
                    "subset_accuracy": r.subset_accuracy, "probe_train_miou": r.train_miou,
                    "network_val_miou": network_miou, "active_sum": active[level],
                    "train_s": train_seconds, "total_s": time.perf_counter() - start,
                })
                rows.append(row)
    return ProbeRun(pd.DataFrame(rows), setting, base, boot, classes, source, plan, len(yva))
