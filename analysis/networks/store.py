"""The weights store: each trained network is a folder holding its checkpoint and a JSON record, under a key.

The key is a hash of everything that decides the weights (the identity fields of the record): the
architecture (:func:`bench.ablations.architecture_hash` of the backbone and the fully resolved DecoderSpec,
the hash the ablation specs use, so two names for one network, e.g. an alias made by ``register_variant``,
share one cached network), the backbone's starting weights, K and the class names, the data's hash, the
recipe (the schedule, less its wall-clock guard, which never decides kept weights), the seed, and the
environment that trained it (the training code's version, torch's major.minor version, the device kind and
its hardware: the CPU's instruction set or the GPU's name, since both change the float order). A cached
network is reused only when its record parses, names the same identity, carries its own unchanged digest
and the digest of the checkpoint file next to it: an edited record, a swapped checkpoint or a half-written
folder is retrained, never silently reused. Each network's folder is written whole (a temporary folder,
then renamed), 0755 with 0644 files under umask 022.

One lock per cache entry (``.locks/FOLDER.lock``, an ``flock``): :func:`analysis.networks.train_network`
holds it while it trains, so a second process (or thread) asking for the same network waits, then loads
what the first one wrote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from bench.ablations.spec import architecture_fields, architecture_hash
from bench.errors import DataError, UsageTypeError
from bench.models import create_model, decoder_spec, variant_info
from bench.records import finite

from .data import NetworkData
from .recipe import Schedule

TRAINING_VERSION = 3
"""Bump when the training code changes what weights a given identity gives: every cached network retrains.
2: one thread on a CPU (TRAIN_THREADS); SGD is the schedules' default optimizer (was AdamW). 3: the step limit ends a
run as the step limit (the plateau rule only past ``plateau_from``); records carry the RCU branch shares at
initialisation."""
TRAINING_METHOD = "SGD with Nesterov momentum, one thread per CPU training, the RCU shares at init recorded"
"""This version's method in a few words, for the reports (a section run on an earlier version is marked superseded)."""

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


def _digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(finite(data), sort_keys=True, allow_nan=False).encode()).hexdigest()


def entry_key(identity: dict) -> str:
    """The store key of an identity: the first 16 hex digits of its digest."""
    return _digest(identity)[:16]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def valid_cached(folder: Path, identity: dict) -> tuple[dict | None, str]:
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


def write(folder: Path, model: nn.Module, record: dict) -> dict:
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


PARTIAL = ".partial"


def load(model: nn.Module, folder: Path, record: dict, variant: str, device: str) -> tuple[nn.Module, dict, str]:
    """``model`` with the weights kept in ``folder`` (a valid entry, whose record :func:`valid_cached` gave), on
    ``device``, in eval mode; the record as seen under the name asked for (:func:`as_named`); and a note where that
    name is not the one it was trained under (:func:`alias_note`; '' where it is)."""
    model.load_state_dict(torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True))
    return model.to(device).eval(), as_named(record, variant), alias_note(variant, record)


def partial_path(folder: Path) -> Path:
    """Where the progress of a run the time guard stopped is kept (beside the store's entries, never one of them)."""
    return folder.parent / PARTIAL / f"{folder.name}.pt"


def write_partial(folder: Path, partial: dict) -> None:
    """A stopped run's progress, written whole (temp file, then renamed)."""
    path = partial_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(partial, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_partial(folder: Path) -> dict | None:
    """The kept progress of this network's stopped run, or None (an unreadable file is dropped: the run restarts)."""
    path = partial_path(folder)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a torn or foreign file: never continue from it
        path.unlink(missing_ok=True)
        return None


def drop_partial(folder: Path) -> None:
    partial_path(folder).unlink(missing_ok=True)


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


def alias_note(variant: str, record: dict) -> str:
    if record.get("variant") == variant:
        return ""
    return (f"the same network as {record.get('variant')} (architecture {record.get('architecture')}, "
            f"the same recipe, data and seed): its cached weights are reused")


def as_named(record: dict, variant: str) -> dict:
    """A cached record as seen under the name asked for: ``variant`` is that name, ``trained_as`` the name it was
    trained under where they differ (the file on disk is unchanged)."""
    if record.get("variant") == variant:
        return record
    return {**record, "variant": variant, "family": variant_info(variant).family, "trained_as": record.get("variant")}


def identity(variant: str, data: NetworkData, schedule: Schedule, seed: int, device: str, decoder: dict | None,
              cache_dir: str | Path, backbone_weights: str | Path | None = None
              ) -> tuple[nn.Module, dict, str, Path, dict]:
    """The freshly initialised model (seeded), the identity that decides its trained weights, its key, its folder
    under ``cache_dir`` and the decoder layers (:func:`decoder_layers`)."""
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
        "backbone": info.backbone, "layers": architecture_fields(spec),
        "backbone_weights": None if backbone_weights is None else _file_digest(Path(backbone_weights)),
        "num_classes": data.num_classes, "classes": list(data.classes), "data_hash": data.hash, "size": data.size,
        "schedule": recipe, "seed": seed, **env,
        "precision": "bf16 autocast" if schedule.mixed_precision and env["device_kind"] == "cuda" else "fp32",
    }
    key = entry_key(identity)
    name = f"{info.backbone}-{identity['architecture']}-seed{seed}-{key}"
    return model, identity, key, Path(cache_dir) / name, layers


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
    other checkpoint. A record of another backbone than ``variant``'s, or of another family unless the architecture
    is ``variant``'s own (``paper.5`` for ``rf_lw50``), is a DataError naming the name to give."""
    record = record_beside(checkpoint)
    if record is None:
        return None, None
    info = variant_info(variant)
    trained = record.get("decoder") or {}
    same = record.get("architecture") == architecture_hash(info.backbone, decoder_spec(variant))
    if record.get("backbone") != info.backbone or (trained.get("family") != info.family and not same):
        raise DataError(f"{checkpoint} was trained as {record.get('variant')} ({trained.get('family')} on "
                        f"{record.get('backbone')}, says {Path(checkpoint).parent / RECORD}), not as {variant} "
                        f"({info.family} on {info.backbone}); name it {record.get('variant')}={checkpoint}")
    own = dataclasses.asdict(decoder_spec(variant))
    changes = {k: v for k, v in trained.items() if k != "family" and own.get(k) != v}
    return changes, record
