"""The probe study: take each decoder family's trained network, then probe its frozen features at every level.

Embedded default (no VOC and no trained weights can be downloaded here): the networks of the trained set
(:mod:`analysis.networks`): each family on MobileNet-v2, from one backbone pretrained on the generated shapes
(:mod:`analysis.networks.pretrain`), trained on that dataset to a plateau of its own val mIoU, cached, and shared
with every other analysis (receptive fields, Figure 8). On a CPU the "cpu" setting (decoders narrowed to 48
channels, 96 at level 4; 128 px; one seed), on a GPU the "gpu" setting (the families' own widths, 256 px, three
seeds). Then the probes on the frozen features before RCU, after RCU and after CRP of every level. With ``voc_root``
and ``checkpoints`` the same code runs the paper's setting (e.g. rf101 with the refinenet-pytorch VOC weights on VOC
train/val); with ``voc_root`` alone the families are trained on that folder.

Every number of the frame is a plain column (``miou``, ``miou_ci_low``, ...; fractions 0..1); display labels are
applied by the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from bench import validation
from bench.errors import DataError, MissingFileError, UsageError, UsageTypeError
from bench.models import FAMILIES, create_model, variant_info
from bench.stats import percentile_interval, resample_indices

from ..datasets.images import normalise
from ..datasets.synthetic import SyntheticSpec
from ..datasets.voc import IGNORE, VOCSegmentation, class_names, dataset_classes
from ..metrics import confusion_matrix, expected_random_ap, mean_iou, multilabel_metrics, presence
from ..networks import SETTINGS, NetworkSetting, Schedule, load_data, trained_set
from ..networks.settings import CPU_DECODER
from .heads import METRICS, ProbeSettings, cache_features, train_probes

POINTS = ("before_rcu", "after_rcu", "after_sum", "after_crp")
"""Probe points inside a level: the paper's Table 4 (before RCU, after RCU, after CRP) and CRP's own input, the
summation with the coarser level and its ReLU (at level 4, the ReLU alone), so that what CRP adds is measured from
its input and not mixed with what the top-down path brings (levels 3-1)."""
LEVELS = ("level4", "level3", "level2", "level1")
TINY_NETWORKS = NetworkSetting(
    "tiny", Schedule(size=64, max_steps=2, eval_every=1, patience=1, batch_size=4, warmup_steps=0), seeds=1,
    device="cpu", decoder=CPU_DECODER,
    data=SyntheticSpec(n_train=16, n_val=8, size=64, radius=(4, 14)))
"""Seconds, for tests: a handful of images and two training steps."""


def resized_schedule(schedule: Schedule, size: int) -> Schedule:
    """``schedule`` at another image side, its random crops scaled with it (the setting's 80 px crops of 128 px
    images become 40 px crops of 64 px ones: a crop larger than the image is no user's mistake)."""
    if schedule.crop is None or not isinstance(size, int) or isinstance(size, bool) or size < 1:
        return replace(schedule, size=size)  # a bad size is refused by Schedule.validate, naming --size
    crop = min(size, max(validation.MIN_SIDE, round(schedule.crop * size / schedule.size)))
    return replace(schedule, size=size, crop=crop)


@dataclass(frozen=True)
class ProbePlan:
    """What to probe, on which networks.

    ``networks`` says how the probed networks are trained (data, schedule, seeds, decoder widths);
    ``backbone``, ``families``, ``seeds``, ``size`` and ``device`` override it where given. The
    networks come from the trained-network cache: trained once, reused by every later analysis.
    With ``checkpoints`` nothing is trained: those weights are probed on ``voc_root``.
    """

    networks: NetworkSetting = SETTINGS["cpu"]
    backbone: str | None = None
    families: tuple[str, ...] | None = None
    size: int | None = None  # images and labels (H = W) for training, features and evaluation
    levels: tuple[str, ...] = LEVELS
    probe: ProbeSettings = ProbeSettings(epochs=20, n_boot=500)  # 10 epochs: 4-5 mIoU points lower; 40: no gain
    seeds: int | None = None  # networks per family (their spread is reported beside the image intervals)
    voc_root: str | None = None  # a VOC-layout dataset instead of the generated one
    num_classes: int | None = None  # K; None: from classes.txt or the labels (see dataset_classes)
    checkpoints: dict[str, str] = field(default_factory=dict)  # variant name -> checkpoint: no training
    device: str | None = None
    cache_dir: str | None = None  # the trained-network cache (None: the project's .cache/networks)
    budget_min: float | None = None  # minutes per network trained here (None: the setting's); a guard, not in the key

    @staticmethod
    def default() -> ProbePlan:
        """The embedded default for this machine: the "gpu" networks on a GPU, the "cpu" networks otherwise."""
        return ProbePlan(networks=SETTINGS["gpu" if torch.cuda.is_available() else "cpu"])

    @staticmethod
    def tiny() -> ProbePlan:
        """Seconds, for tests: a handful of images and steps."""
        return ProbePlan(networks=TINY_NETWORKS, probe=ProbeSettings(epochs=2, n_boot=50))

    def setting(self) -> NetworkSetting:
        """The networks' setting with this plan's overrides applied."""
        net = self.networks
        schedule = net.schedule if self.size is None else resized_schedule(net.schedule, self.size)
        if self.budget_min is not None:
            schedule = replace(schedule, budget_min=self.budget_min)
        return replace(net, schedule=schedule, backbone=self.backbone or net.backbone,
                       families=tuple(self.families) if self.families is not None else net.families,
                       seeds=self.seeds if self.seeds is not None else net.seeds, device=self.device or net.device)

    @property
    def image_size(self) -> int:
        return self.setting().schedule.size

    def variants(self) -> list[str]:
        return list(self.checkpoints) or self.setting().variants()

    def validate(self) -> None:
        """Every field checked before any data is read or any network trained."""
        net = self.setting()
        validation.integer("size", net.schedule.size, minimum=validation.MIN_SIDE, maximum=validation.MAX_SIDE)
        validation.integer("seeds", net.seeds, minimum=1)
        if self.num_classes is not None:
            validation.integer("num_classes", self.num_classes, minimum=2, maximum=255)
        for key, one, valid in (("families", "family", FAMILIES), ("levels", "level", LEVELS)):
            values = getattr(net if key == "families" else self, key)
            if isinstance(values, str):
                raise UsageTypeError(f"{key} must be a list of names, got the string {values!r}; write [{values!r}]")
            for value in values:
                validation.choice(one, value, valid)
            repeated = sorted({v for v in values if list(values).count(v) > 1})
            if repeated:
                raise UsageError(f"{key} names {', '.join(map(repr, repeated))} more than once; list each once")
        if not net.families and not self.checkpoints:
            raise UsageError("families must name at least one decoder family")
        for name in self.variants():
            variant_info(name)
        for path in self.checkpoints.values():
            if not Path(path).is_file():
                raise MissingFileError(f"checkpoint file not found: {path}")
        if self.checkpoints and self.voc_root is None:
            raise UsageError("given checkpoints are probed on a VOC-layout folder: name it (--voc-root DIR, "
                             "voc_root=...); to probe networks trained here on the generated shapes, leave the "
                             "checkpoints out")
        if not isinstance(net.device, str) or not (net.device == "cpu" or net.device.startswith("cuda")):
            raise UsageError(f"unknown device {net.device!r}; valid: cpu, cuda, cuda:N")
        if net.device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError("device 'cuda' requested but torch.cuda.is_available() is False on this machine")
        if self.voc_root is not None and not Path(self.voc_root).is_dir():
            raise MissingFileError(f"no VOC2012 segmentation data under {self.voc_root}: the folder does not exist")
        net.schedule.validate()
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
    - ``map``: random scores (the expected AP of a random order of the val images, per class with positives:
      :func:`analysis.metrics.expected_random_ap`, about the class's frequency among many images, more among few);
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
    n, positives = len(targets), [int(p) for p in targets.sum(0) if p > 0]
    random_ap = [expected_random_ap(n, m) for m in positives]
    return {"miou": mean_iou(cm), "label_accuracy": ml["label_accuracy"],
            "map": sum(random_ap) / len(random_ap) if random_ap else float("nan"),
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


def _checkpoint_data(plan: ProbePlan):
    """Train and val splits of ``voc_root`` at the plan's size, for probing given checkpoints."""
    root, setting = Path(plan.voc_root), f"VOC-layout data at {plan.voc_root}"
    size = (plan.image_size, plan.image_size)
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


def checkpoint_model(name: str, path: str | Path, num_classes: int):
    """``name`` with the weights of ``path``, in eval mode. A checkpoint this project trained (a ``model.pt`` of the
    network cache) is built as its record says (the setting's decoder widths and every other field), so it loads
    whatever the name's own widths are."""
    from ..networks import checkpoint_decoder

    changes, _ = checkpoint_decoder(name, path)
    return create_model(name, num_classes=num_classes, checkpoint=path, decoder=changes or None).eval()


def _networks(plan: ProbePlan, progress, say):
    """The plan's data and its trained networks: [(variant, seed, model, record, cached)], from the cache."""
    net = plan.setting()
    if plan.checkpoints:
        (xtr, ytr), (xva, yva), k, classes, source, setting = _checkpoint_data(plan)
        nets = [(name, 0, checkpoint_model(name, path, k), None, True) for name, path in plan.checkpoints.items()]
        return (xtr, ytr), (xva, yva), k, classes, source, setting, nets
    data = load_data(plan.voc_root or net.data, net.schedule.size, plan.num_classes, progress=progress,
                     cache=None if plan.cache_dir is None else Path(plan.cache_dir) / "synthetic-voc")
    check_labelled(data.train_masks, "train", plan.voc_root or "the generated data")
    check_labelled(data.val_masks, "val", plan.voc_root or "the generated data")
    # the one way to the trained set (the setting's shared pretrained backbone, one network per architecture)
    trained = trained_set(net, seeds=net.seeds, data=plan.voc_root, num_classes=plan.num_classes,
                          cache_dir=plan.cache_dir, progress=progress is not None, say=say)
    nets = [(t.record["variant"], t.record["seed"], t.model, t.record, t.cached) for t in trained]
    return ((data.train_images, data.train_masks), (data.val_images, data.val_masks), data.num_classes,
            data.classes, data.class_source, data.describe(), nets)


def network_val_miou(logits: torch.Tensor, masks: torch.Tensor, num_classes: int, batch_size: int = 32) -> float:
    """The network's own mIoU from its cached logits (upsampled to the label size)."""
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for start in range(0, len(logits), batch_size):
        up = F.interpolate(logits[start : start + batch_size].float(), size=masks.shape[-2:], mode="bilinear",
                           align_corners=False)
        cm += confusion_matrix(up.max(1).indices, masks[start : start + batch_size], num_classes)
    return mean_iou(cm)


def run_probes(plan: ProbePlan | None = None, progress: Callable[[str], None] | None = print) -> ProbeRun:
    """Probe every family at every level on its trained network (from the cache; trained there first when
    missing) or on the given checkpoints; seeded."""
    plan = plan or ProbePlan.default()
    plan.validate()
    say = progress or (lambda msg: None)
    device = plan.setting().device
    (xtr, ytr), (xva, yva), k, classes, source, setting, nets = _networks(plan, progress, say)
    base = trivial_baselines(yva, k, ytr)
    taps = [f"{lvl}.{p}" for lvl in plan.levels for p in POINTS]
    activity = [f"{lvl}.after_sum" for lvl in plan.levels]  # probe taps too: the ReLU's live share comes with them
    # one image: a bootstrap over it has no spread to show, so no interval at all (not a zero-width one)
    resamples = (resample_indices(len(yva), plan.probe.n_boot, plan.probe.seed)
                 if plan.probe.n_boot and len(yva) >= 2 else None)
    rows, boot = [], {}
    for name, seed, model, record, cached in nets:
        start = time.perf_counter()
        # one pass over val gives the probe features, the ReLU activity and the network's own mIoU
        val_feats = cache_features(model, xva, taps + ["logits"], normalise=normalise, device=device)
        network_miou = network_val_miou(val_feats.pop("logits"), yva, k)
        active = {t.split(".")[0]: float((val_feats[t] > 0).float().mean()) for t in activity}
        say(f"  {name} (seed {seed}): network val mIoU {100 * network_miou:.1f}%; probing {len(taps)} taps")
        train_feats = cache_features(model, xtr, taps, normalise=normalise, device=device)
        aliases = model.tap_aliases()
        n_boot = plan.probe.n_boot if resamples is not None else 0
        probe = ProbeSettings(**{**plan.probe.__dict__, "n_boot": n_boot})
        results = train_probes(train_feats, ytr, val_feats, yva, k, probe, device, resamples)
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
                "train_steps": record["steps"] if record else 0, "stop_reason": record["stop_reason"] if record else "",
                "train_s": record["seconds"] if record else 0.0, "cached": cached,
                "probe_s": time.perf_counter() - start,
            })
            rows.append(row)
    return ProbeRun(pd.DataFrame(rows), setting, base, boot, classes, source, plan, len(yva))
