"""Train a network once and keep it: a checkpoint plus a JSON record, cached under a key.

The key is a hash of everything that decides the weights (the identity fields of the record): the
architecture (:func:`bench.ablations.architecture_hash` of the backbone and the fully resolved DecoderSpec,
the hash the ablation specs use, so two names for one network, e.g. an alias made by ``register_variant``,
share one cached network), the backbone's starting weights, K and the class names, the data's hash, the
recipe (the schedule, less its wall-clock budget, which never decides kept weights), the seed, and the
environment that trained it (the training code's version, torch's major.minor version, the device kind and
its hardware: the CPU's instruction set or the GPU's name, since both change the float order). A later call
with the same identity loads the checkpoint instead of training. A cached network is reused only when its
record parses, names the same identity, carries its own unchanged digest and the digest of the checkpoint
file next to it: an edited record, a swapped checkpoint or a half-written folder is retrained, never
silently reused. Each network's folder is written whole (a temporary folder, then renamed), 0755 with 0644
files under umask 022.

One lock per cache entry (``.locks/FOLDER.lock``, an ``flock``): a second process (or thread) asking for a
network that is being trained waits, then loads what the first one wrote, and says so.

The time budget is a guard, not a stopping rule: a run it stops is *incomplete* (``record["complete"]`` is
False); it is never written to the cache and :func:`train_network` raises :class:`IncompleteTraining`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench import validation
from bench.ablations.spec import architecture_hash
from bench.environment import environment, torch_threads
from bench.errors import DataError, UsageError, UsageTypeError
from bench.models import create_model, decoder_spec, variant_info
from bench.models.checkpoints import read_state_dict
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
IDENTITY = ("training_version", "architecture", "backbone", "layers", "backbone_weights", "num_classes", "classes",
            "data_hash", "size", "schedule", "seed", "torch", "device_kind", "hardware", "precision")
"""The record fields that decide the weights: their hash is the cache key. ``architecture`` is the ablation specs'
hash of ``backbone`` and ``layers`` (the fully resolved DecoderSpec without its ``family`` label); the variant's
name and family are not part of it, so every name of one network finds the same entry. ``schedule`` leaves out
``budget_min`` (the guard never decides kept weights)."""
NOT_IN_KEY = ("budget_min",)
"""Schedule fields that do not decide the weights of a complete run."""
LOCKS = ".locks"


class IncompleteTraining(RuntimeError):
    """Training was stopped by the wall-clock guard (``Schedule.budget_min``) before its plateau or step limit: the
    weights depend on the machine's speed and load, so they are neither cached nor returned as a result.
    ``records``: the incomplete networks' records (nothing written)."""

    def __init__(self, message: str, records: list[dict] | None = None):
        super().__init__(message)
        self.records = records or []

    def __reduce__(self):  # raised in worker processes: picklable with its records
        return (type(self), (str(self), self.records))


@dataclass
class TrainedNetwork:
    model: nn.Module  # in eval mode, on the requested device, with the best weights
    record: dict  # see IDENTITY; plus key, steps, best_step, stop_reason, seconds, val_miou, history, ...
    cached: bool  # loaded from the cache (True) or trained by this call (False)
    path: Path  # the network's folder: model.pt + record.json
    note: str = ""  # how it came to be here when that is worth saying (another name's network, a wait, a retrain)


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
        if over_budget and step < schedule.max_steps:  # at the step limit the run is complete whatever the clock
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
            "complete": stop["reason"] != "budget", "seconds": seconds, "val_miou": miou,
            "val_iou_per_class": dict(zip(data.classes, per_class, strict=True)),
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write(folder: Path, model: nn.Module, record: dict) -> dict:
    """The checkpoint and its record, written into a temporary folder and renamed into place; the record
    as written (with the two digests). The folder is 0777 and the files 0666 less the umask (as ``mkdir`` and a
    plain write make them: 0755 and 0644 under umask 022; ``mkdtemp`` alone would leave the folder 0700)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-"))
    stale = None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
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


def lock_path(folder: Path) -> Path:
    """The lock file of the cache entry ``folder``."""
    return folder.parent / LOCKS / f"{folder.name}.lock"


@contextlib.contextmanager
def entry_lock(folder: Path, waiting: Callable[[], None] | None = None) -> Iterator[bool]:
    """Hold the cache entry's lock (an exclusive ``flock``, released when the block ends or the process dies);
    yields whether it had to wait for another holder (``waiting()`` is called once before waiting)."""
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    waited = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waited = True
            if waiting is not None:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield waited
    finally:
        os.close(fd)  # releases the lock


def training_environment(device: str) -> dict:
    """What of the machine decides trained weights: torch's major.minor version, the device kind and its hardware
    (a CPU's instruction set as torch dispatches to it, or the GPU's name)."""
    kind = device.split(":")[0]
    if kind == "cuda":
        hardware = torch.cuda.get_device_name(torch.device(device))
    else:
        hardware = torch.backends.cpu.get_cpu_capability()
    return {"torch": ".".join(torch.__version__.split("+")[0].split(".")[:2]), "device_kind": kind,
            "hardware": hardware}


def decoder_layers(variant: str, setting: dict | None) -> tuple[dict, dict]:
    """The decoder changes to build ``variant`` with under a setting's changes (``setting``, e.g. the 'cpu'
    setting's narrowing) and what the record says about them.

    The setting's changes come first and the variant's own changes (``register_variant``, an ablation spec)
    on top: a variant's own widths are never replaced by the setting's. Where both set a field to different
    values, the variant's value is kept and ``kept_over_setting`` names it."""
    if setting is not None and not isinstance(setting, dict):
        raise UsageTypeError(f"decoder must be a dict of DecoderSpec fields, got {setting!r}")
    own = dict(variant_info(variant).changes)
    setting = dict(setting or {})
    kept = {k: {"setting": setting[k], "variant": v} for k, v in own.items() if k in setting and setting[k] != v}
    return {**setting, **own}, {"setting": setting, "variant": own, "kept_over_setting": kept}


def _alias_note(variant: str, record: dict) -> str:
    if record.get("variant") == variant:
        return ""
    return (f"the same network as {record.get('variant')} (architecture {record.get('architecture')}, "
            f"the same recipe, data and seed): its cached weights are reused")


def _as_named(record: dict, variant: str) -> dict:
    """A cached record as seen under the name asked for: ``variant`` is that name, ``trained_as`` the name it was
    trained under where they differ (the file on disk is unchanged)."""
    if record.get("variant") == variant:
        return record
    return {**record, "variant": variant, "family": variant_info(variant).family, "trained_as": record.get("variant")}


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
    backbone_weights: str | Path | None = None,
) -> TrainedNetwork:
    """The trained ``variant`` (any registered name or ``family:backbone``), from the cache when it is there.

    ``data``: loaded :class:`NetworkData` (shared by several calls), a generated spec, a VOC-layout
    folder, or None (the generated default), read at ``schedule.size``. ``decoder``: DecoderSpec changes
    applied *under* the variant's own changes (a setting's narrowing, e.g. ``{"channels": 64}``; see
    :func:`decoder_layers`). ``backbone_weights``: a local state dict of the backbone's classification network
    to start from (its SHA-256 is part of the key). ``progress``: a tqdm bar on stderr; ``say``: one-line notes
    (why a cached network is retrained, another name's network reused, a wait for another process).

    A run stopped by ``schedule.budget_min`` raises :class:`IncompleteTraining` (nothing cached).
    """
    variant_info(variant)
    schedule = Schedule() if schedule is None else schedule
    if not isinstance(schedule, Schedule):
        raise UsageTypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    schedule.validate()
    validation.integer("seed", seed, minimum=0, maximum=MAX_SEED)
    check_device(device)
    backbone_weights = check_backbone_weights(backbone_weights)
    if not isinstance(data, NetworkData):
        data = load_data(data, schedule.size, num_classes)
    elif data.size != schedule.size:
        raise UsageError(f"the data were loaded at {data.size}px but the schedule trains at {schedule.size}px")
    if num_classes is not None and num_classes != data.num_classes:
        raise UsageError(f"num_classes={num_classes} but the data have K = {data.num_classes} ({data.class_source})")
    model, identity, key, folder, layers = _identity(variant, data, schedule, seed, device, decoder, cache_dir,
                                                     backbone_weights)
    label = f"{variant} seed {seed}"
    if say and layers["kept_over_setting"]:
        kept = ", ".join(f"{k}={v['variant']} (setting: {v['setting']})"
                         for k, v in layers["kept_over_setting"].items())
        say(f"  {label}: its own decoder changes kept over the setting's: {kept}")
    record, why = _valid_cached(folder, identity)
    if record is not None:
        return _loaded(model, folder, record, variant, device, _alias_note(variant, record), say, label)

    def waiting() -> None:
        if say:
            say(f"  {label}: another process is training this network ({lock_path(folder)} is held); waiting for it")

    with entry_lock(folder, waiting) as waited:
        if waited:  # the other holder has probably written it: reuse, never train it twice
            record, why_now = _valid_cached(folder, identity)
            if record is not None:
                note = "trained by another process while this one waited; its network is reused"
                alias = _alias_note(variant, record)
                return _loaded(model, folder, record, variant, device, note + (f"; {alias}" if alias else ""), say,
                               label)
            why = why_now
        note = "" if why == "not cached" else f"retrained: {why}"
        if say and note:
            say(f"  {label}: {note}")
        with torch_threads(TRAIN_THREADS if device == "cpu" else None):
            result = _fit(model, data, schedule, seed, device, label, progress)
            threads = torch.get_num_threads()
        record = {**identity, "key": key, "variant": variant, "family": variant_info(variant).family,
                  "decoder": dataclasses.asdict(model.spec), "decoder_changes": layers, "data": data.source,
                  "class_source": data.class_source, **result, "budget_min": schedule.budget_min, "device": device,
                  "environment": environment(device), "threads": threads,
                  "trained_at": datetime.now(UTC).isoformat(timespec="seconds")}
        if not record["complete"]:
            raise IncompleteTraining(incomplete_message([record]), [finite(record)])
        return TrainedNetwork(model, _write(folder, model, record), False, folder, note)


def incomplete_message(records: list[dict]) -> str:
    """One line for networks the wall-clock guard stopped."""
    what = "; ".join(f"{r['variant']} seed {r['seed']} at step {r['steps']} of {r['schedule']['max_steps']}"
                     for r in records)
    budget = records[0].get("budget_min")
    return (f"stopped by the {budget:g}-minute time guard before a plateau or the step limit: {what}; such a network "
            "depends on the machine's speed and load, so it is incomplete: not cached and not compared. Rerun on a "
            "less loaded machine or with a larger --budget-min")


def _loaded(model: nn.Module, folder: Path, record: dict, variant: str, device: str, note: str,
            say: Callable[[str], None] | None, label: str) -> TrainedNetwork:
    model.load_state_dict(torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True))
    if say and note:
        say(f"  {label}: {note}")
    return TrainedNetwork(model.to(device).eval(), _as_named(record, variant), True, folder, note)


MAX_SEED = 2**63 - 1
"""The largest seed torch takes."""


def check_backbone_weights(path: str | Path | None) -> str | None:
    """A local state-dict file of a backbone's classification network (None: from scratch), as an absolute path;
    a missing or unreadable file is one line."""
    if path is None:
        return None
    if not isinstance(path, (str, Path)):
        raise UsageTypeError(f"backbone_weights must be a path to a state-dict file, got {path!r}")
    if not Path(path).is_file():
        raise UsageError(f"backbone checkpoint {path}: "
                         + ("is a folder, not a file" if Path(path).is_dir() else "no such file"))
    read_state_dict(path)  # a DataError naming the file when it is not a checkpoint
    return str(Path(path).resolve())


def is_cached(variant: str, data: NetworkData, schedule: Schedule, seed: int = 0, device: str = "cpu",
              decoder: dict | None = None, cache_dir: str | Path | None = None,
              backbone_weights: str | Path | None = None) -> bool:
    """Whether :func:`train_network` would load this network instead of training it."""
    return _valid_cached(cache_entry(variant, data, schedule, seed, device, decoder, cache_dir, backbone_weights),
                         _identity(variant, data, schedule, seed, device, decoder, cache_dir, backbone_weights)[1])[0] \
        is not None


def cache_entry(variant: str, data: NetworkData, schedule: Schedule, seed: int = 0, device: str = "cpu",
                decoder: dict | None = None, cache_dir: str | Path | None = None,
                backbone_weights: str | Path | None = None) -> Path:
    """The cache folder of this network (shared by every name of the same architecture)."""
    return _identity(variant, data, schedule, seed, device, decoder, cache_dir, backbone_weights)[3]


def _identity(variant: str, data: NetworkData, schedule: Schedule, seed: int, device: str, decoder: dict | None,
              cache_dir: str | Path | None, backbone_weights: str | Path | None = None
              ) -> tuple[nn.Module, dict, str, Path, dict]:
    """The freshly initialised model, the identity that decides its trained weights, its key, cache folder and
    the decoder layers (:func:`decoder_layers`)."""
    changes, layers = decoder_layers(variant, decoder)
    torch.manual_seed(seed)  # the initial weights
    model = create_model(variant, num_classes=data.num_classes, decoder=changes or None,
                         backbone_weights=backbone_weights)
    info = variant_info(variant)
    env = training_environment(device)
    spec = model.spec
    recipe = {k: v for k, v in dataclasses.asdict(schedule).items() if k not in NOT_IN_KEY}
    identity = {
        "training_version": TRAINING_VERSION, "architecture": architecture_hash(info.backbone, spec),
        "backbone": info.backbone, "layers": {k: v for k, v in dataclasses.asdict(spec).items() if k != "family"},
        "backbone_weights": None if backbone_weights is None else _file_digest(Path(backbone_weights)),
        "num_classes": data.num_classes, "classes": list(data.classes), "data_hash": data.hash, "size": data.size,
        "schedule": recipe, "seed": seed, **env,
        "precision": "bf16 autocast" if schedule.mixed_precision and env["device_kind"] == "cuda" else "fp32",
    }
    key = _digest(identity)[:16]
    name = f"{info.backbone}-{identity['architecture']}-seed{seed}-{key}"
    return model, identity, key, Path(cache_dir or CACHE) / name, layers


def record_beside(checkpoint: str | Path) -> dict | None:
    """The record this project wrote beside a cached ``model.pt`` (None where there is none). A record that is
    there but edited, or that describes another checkpoint, is a DataError naming the file."""
    path = Path(checkpoint)
    record_path = path.parent / RECORD
    if path.name != CHECKPOINT or not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise DataError(f"{record_path} (beside the checkpoint {path}) is not readable JSON") from None
    if not isinstance(record, dict) or "record_sha256" not in record:
        return None  # not one of ours
    if record.get("record_sha256") != _digest({k: v for k, v in record.items() if k != "record_sha256"}):
        raise DataError(f"{record_path} was edited (its digest does not match): it cannot say how to build {path}")
    if record.get("checkpoint_sha256") != _file_digest(path):
        raise DataError(f"{path} is not the checkpoint {record_path} describes (its SHA-256 differs)")
    return record


def checkpoint_decoder(variant: str, checkpoint: str | Path) -> tuple[dict | None, dict | None]:
    """(decoder changes, record) to build ``variant`` for a checkpoint this project trained: the record beside
    ``model.pt`` says how the network was built (its decoder widths and every other field). (None, None) for any
    other checkpoint. A record of another backbone or family than ``variant``'s is a DataError."""
    record = record_beside(checkpoint)
    if record is None:
        return None, None
    info = variant_info(variant)
    trained = record.get("decoder") or {}
    if record.get("backbone") != info.backbone or trained.get("family") != info.family:
        raise DataError(f"{checkpoint} was trained as {record.get('variant')} ({trained.get('family')} on "
                        f"{record.get('backbone')}, says {Path(checkpoint).parent / RECORD}), not as {variant} "
                        f"({info.family} on {info.backbone}); name it {record.get('variant')}={checkpoint}")
    own = dataclasses.asdict(decoder_spec(variant))
    changes = {k: v for k, v in trained.items() if k != "family" and own.get(k) != v}
    return changes, record
