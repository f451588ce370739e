"""Train a network once and keep it: a checkpoint plus a JSON record, cached under a key.

The key is a hash of everything that determines the weights (the identity fields of the record:
variant, the fully resolved decoder spec, K and the class names, the data's hash, the schedule, the
seed, the device kind and precision, and the training code's version). A later call with the same
identity loads the checkpoint instead of training. A cached network is reused only when its record
parses, names the same identity, carries its own unchanged digest and the digest of the checkpoint
file next to it: an edited record, a swapped checkpoint or a half-written folder is retrained,
never silently reused. Each network's folder is written whole (a temporary folder, then renamed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench import validation
from bench.environment import environment, torch_threads
from bench.errors import UsageError, UsageTypeError
from bench.models import create_model, variant_info
from bench.records import finite

from ..datasets.images import normalise
from ..datasets.synthetic import SyntheticSpec
from ..metrics import confusion_matrix, iou_per_class
from .data import NetworkData, load_data
from .schedule import Schedule, plateaued
from .training import train_segmenter, zero_init_residual_branches

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "networks"
TRAINING_VERSION = 2
"""Bump when the training code changes what weights a given identity gives: every cached network retrains.
2: one thread on a CPU (TRAIN_THREADS); SGD is the schedules' default optimizer (was AdamW)."""
TRAINING_METHOD = "SGD with Nesterov momentum, one thread per CPU training"
"""This version's method in a few words, for the reports (a section run on an earlier version is marked superseded)."""
TRAIN_THREADS = 1
"""A CPU trains on this many threads, whatever the machine has: the float order of a convolution, and so the exact
weights, depend on the thread count (a 1-thread worker and a 2-thread process trained RefineNet to weights with
different dead levels), while the cache key does not. Several networks train at once instead
(:func:`analysis.networks.trained_set`), one per core."""
CHECKPOINT = "model.pt"
RECORD = "record.json"
IDENTITY = ("training_version", "variant", "family", "backbone", "decoder", "num_classes", "classes", "data_hash",
            "size", "schedule", "seed", "device_kind", "precision")
"""The record fields that decide the weights: their hash is the cache key."""


@dataclass
class TrainedNetwork:
    model: nn.Module  # in eval mode, on the requested device, with the best weights
    record: dict  # see IDENTITY; plus key, steps, best_step, stop_reason, seconds, val_miou, history, ...
    cached: bool  # loaded from the cache (True) or trained by this call (False)
    path: Path  # the network's folder: model.pt + record.json


def check_device(device: str) -> str:
    if not isinstance(device, str) or not (device == "cpu" or device == "cuda" or
                                           (device.startswith("cuda:") and device[5:].isdigit())):
        raise UsageError(f"unknown device {device!r}; valid: cpu, cuda, cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} requested but torch.cuda.is_available() is False on this machine; "
                         "valid here: cpu")
    return device


def _digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(finite(data), sort_keys=True, allow_nan=False).encode()).hexdigest()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def _miou(cm: torch.Tensor) -> tuple[float, list[float]]:
    iou = iou_per_class(cm)
    return float(torch.nanmean(iou)), [float(v) for v in iou]


def _fit(model: nn.Module, data: NetworkData, schedule: Schedule, seed: int, device: str, label: str,
         progress: bool) -> dict:
    """Train to the plateau, max_steps or the budget; load the best evaluated weights; the run's facts."""
    from tqdm import tqdm

    if schedule.zero_init_residual:
        zero_init_residual_branches(model)
    history: list[dict] = []
    best = {"miou": -math.inf, "step": 0, "state": None, "cm": None}
    stop = {"reason": "max_steps"}
    start = time.perf_counter()
    bar = tqdm(total=schedule.max_steps, desc=label, unit="step", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)

    def check(step: int) -> bool:
        """Evaluate (every eval_every steps and at the last step); True ends the training."""
        over_budget = schedule.budget_min is not None and time.perf_counter() - start >= 60 * schedule.budget_min
        if step % schedule.eval_every and step < schedule.max_steps and not over_budget:
            return False
        cm = evaluate(model, data.val_images, data.val_masks, data.num_classes, device, schedule.mixed_precision)
        miou, _ = _miou(cm)
        history.append({"step": step, "val_miou": miou, "seconds": time.perf_counter() - start})
        if miou > best["miou"]:
            state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            best.update(miou=miou, step=step, state=state, cm=cm)
        bar.set_postfix(val_miou=f"{100 * miou:.1f}%", best=f"{100 * best['miou']:.1f}%")
        if plateaued([h["val_miou"] for h in history], schedule.patience, schedule.min_delta):
            stop["reason"] = "plateau"
            return True
        if over_budget:
            stop["reason"] = "budget"
            return True
        return False

    def after_step(step: int, loss: float) -> bool:
        bar.update(1)
        return check(step)

    try:
        train_segmenter(model, data.train_images, data.train_masks, normalise, schedule.train_settings(seed),
                        progress=None, device=device, after_step=after_step,
                        mixed_precision=schedule.mixed_precision)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    model.load_state_dict(best["state"])
    model.eval()
    miou, per_class = _miou(best["cm"])  # the kept weights' own evaluation (eval mode: the same as evaluating again)
    return {"steps": history[-1]["step"], "best_step": best["step"], "stop_reason": stop["reason"],
            "seconds": seconds, "val_miou": miou, "val_iou_per_class": dict(zip(data.classes, per_class, strict=True)),
            "history": history}


def _valid_cached(folder: Path, identity: dict) -> tuple[dict | None, str]:
    """(the record, "") when the folder holds this identity's untouched network, else (None, why not)."""
    record_path, checkpoint_path = folder / RECORD, folder / CHECKPOINT
    if not record_path.is_file() or not checkpoint_path.is_file():
        return None, "not cached"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, f"{record_path} is not readable JSON"
    if not isinstance(record, dict) or record.get("record_sha256") != _digest(
            {k: v for k, v in record.items() if k != "record_sha256"}):
        return None, f"{record_path} was edited (its digest does not match)"
    if {k: record.get(k) for k in IDENTITY} != finite(identity):
        return None, f"{record_path} is for another identity"
    if record.get("checkpoint_sha256") != _file_digest(checkpoint_path):
        return None, f"{checkpoint_path} is not the checkpoint its record describes"
    return record, ""


def _write(folder: Path, model: nn.Module, record: dict) -> dict:
    """The checkpoint and its record, written into a temporary folder and renamed into place; the record
    as written (with the two digests)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-"))
    stale = None
    try:
        torch.save(model.state_dict(), tmp / CHECKPOINT)
        record = {**record, "checkpoint_sha256": _file_digest(tmp / CHECKPOINT)}
        record["record_sha256"] = _digest(record)
        record = finite(record)
        (tmp / RECORD).write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
        if folder.exists():  # a mismatching network under this key: moved aside, removed once replaced
            stale = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.stale-"))
            folder.rename(stale / "old")
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)
    return record


def train_network(
    variant: str,
    data: NetworkData | SyntheticSpec | str | Path | None = None,
    schedule: Schedule | None = None,
    seed: int = 0,
    device: str = "cpu",
    num_classes: int | None = None,
    decoder: dict | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
) -> TrainedNetwork:
    """The trained ``variant`` (any registered name or ``family:backbone``), from the cache when it is there.

    ``data``: loaded :class:`NetworkData` (shared by several calls), a generated spec, a VOC-layout
    folder, or None (the generated default), read at ``schedule.size``. ``decoder``: DecoderSpec
    changes (e.g. ``{"channels": 64}``). ``progress``: a tqdm bar on stderr; ``say``: one-line notes
    (why a cached network is retrained).
    """
    variant_info(variant)
    schedule = Schedule() if schedule is None else schedule
    if not isinstance(schedule, Schedule):
        raise UsageTypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    schedule.validate()
    validation.integer("seed", seed, minimum=0)
    check_device(device)
    if not isinstance(data, NetworkData):
        data = load_data(data, schedule.size, num_classes)
    elif data.size != schedule.size:
        raise UsageError(f"the data were loaded at {data.size}px but the schedule trains at {schedule.size}px")
    if num_classes is not None and num_classes != data.num_classes:
        raise UsageError(f"num_classes={num_classes} but the data have K = {data.num_classes} ({data.class_source})")
    model, identity, key, folder = _identity(variant, data, schedule, seed, device, decoder, cache_dir)
    record, why = _valid_cached(folder, identity)
    if record is not None:
        model.load_state_dict(torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True))
        return TrainedNetwork(model.to(device).eval(), record, True, folder)
    if say and why != "not cached":
        say(f"  retraining {variant} seed {seed}: {why}")
    with torch_threads(TRAIN_THREADS if device == "cpu" else None):
        result = _fit(model, data, schedule, seed, device, f"{variant} seed {seed}", progress)
        threads = torch.get_num_threads()
    record = {**identity, "key": key, "data": data.source, "class_source": data.class_source,
              **result, "device": device, "environment": environment(device), "threads": threads,
              "trained_at": datetime.now(UTC).isoformat(timespec="seconds")}
    return TrainedNetwork(model, _write(folder, model, record), False, folder)


def is_cached(variant: str, data: NetworkData, schedule: Schedule, seed: int = 0, device: str = "cpu",
              decoder: dict | None = None, cache_dir: str | Path | None = None) -> bool:
    """Whether :func:`train_network` would load this network instead of training it."""
    _, identity, _, folder = _identity(variant, data, schedule, seed, device, decoder, cache_dir)
    return _valid_cached(folder, identity)[0] is not None


def _identity(variant: str, data: NetworkData, schedule: Schedule, seed: int, device: str, decoder: dict | None,
              cache_dir: str | Path | None) -> tuple[nn.Module, dict, str, Path]:
    """The freshly initialised model, the identity that decides its trained weights, its key and cache folder."""
    torch.manual_seed(seed)  # the initial weights
    model = create_model(variant, num_classes=data.num_classes, decoder=decoder)
    info = variant_info(variant)
    device_kind = device.split(":")[0]
    identity = {
        "training_version": TRAINING_VERSION, "variant": variant, "family": info.family, "backbone": info.backbone,
        "decoder": dataclasses.asdict(model.spec), "num_classes": data.num_classes, "classes": list(data.classes),
        "data_hash": data.hash, "size": data.size, "schedule": dataclasses.asdict(schedule), "seed": seed,
        "device_kind": device_kind,
        "precision": "bf16 autocast" if schedule.mixed_precision and device_kind == "cuda" else "fp32",
    }
    key = _digest(identity)[:16]
    return model, identity, key, Path(cache_dir or CACHE) / f"{variant.replace(':', '-')}-seed{seed}-{key}"
