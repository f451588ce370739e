"""Train a network once and keep it: :func:`train_network` looks the network up in the weights store
(:mod:`analysis.networks.store`: the key, the lock, the files), trains it by its recipe
(:mod:`analysis.networks.recipe`) in the loop (:mod:`analysis.networks.loop`, evaluated by
:mod:`analysis.networks.evaluation`) where the store does not hold it, and writes it there whole.

The time guard (``Schedule.budget_min``) is a guard, not a stopping rule: a run it stops is *incomplete*
(``record["complete"]`` is False); it is never written to the store and :func:`train_network` raises
:class:`IncompleteTraining`.

``CACHE`` is the store's default folder (read at call time: the tests point it elsewhere). The names this module
had before the split (``evaluate``, ``TRAINING_VERSION``, ``IDENTITY``, ``TRAIN_THREADS``, ...) still import from it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn

from bench import validation
from bench.environment import environment, torch_threads
from bench.errors import DataError, UsageError, UsageTypeError
from bench.models import variant_info
from bench.models.checkpoints import state_dict_file
from bench.records import finite

from ..datasets.synthetic import SyntheticSpec
from . import loop, store
from .data import NetworkData, load_data
from .evaluation import evaluate, held_out
from .loop import TRAIN_THREADS
from .recipe import Schedule
from .store import (
    CHECKPOINT,
    IDENTITY,
    LOCKS,
    NOT_IN_KEY,
    RECORD,
    TRAINING_METHOD,
    TRAINING_VERSION,
    checkpoint_decoder,
    decoder_layers,
    entry_lock,
    lock_path,
    record_beside,
    training_environment,
)

__all__ = ["CACHE", "CHECKPOINT", "IDENTITY", "LOCKS", "MAX_SEED", "NOT_IN_KEY", "RECORD", "TRAINING_METHOD",
           "TRAINING_VERSION", "TRAIN_THREADS", "IncompleteTraining", "TrainedNetwork", "cache_entry",
           "checkpoint_decoder", "decoder_layers", "entry_lock",
           "evaluate", "incomplete_message", "is_cached", "lock_path", "record_beside", "train_network",
           "training_environment"]

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "networks"


def _cache(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir or CACHE)


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
    data: NetworkData | None = field(default=None, repr=False, compare=False)  # what it was trained on

    @functools.cached_property
    def test(self) -> dict | None:
        """Its scores on the data's held-out split (:func:`evaluation.held_out`), evaluated on first use; None where
        the data have none (val then reports)."""
        if self.data is None:
            return None
        return held_out(self.model, self.data, str(next(self.model.parameters()).device))

    @property
    def reported_miou(self) -> float:
        """The mIoU a comparison uses: on the held-out test split where the data have one, else on val (which then
        picked the weights and reports them, as ``reported_split`` says)."""
        return self.test["miou"] if self.test else self.record["val_miou"]

    @property
    def reported_split(self) -> str:
        return "test" if self.test else "val"

    @functools.cached_property
    def reported_per_image(self) -> torch.Tensor:
        """(N, K, K): the kept weights' confusion matrix on each image of the reported split (test, else val), what
        every comparison resamples by image."""
        if self.test:
            return self.test["per_image"]
        from .evaluation import evaluate_per_image

        return evaluate_per_image(self.model, self.data.val_images, self.data.val_masks, self.data.num_classes,
                                  str(next(self.model.parameters()).device))


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

    A run stopped by ``schedule.budget_min`` raises :class:`IncompleteTraining` (nothing cached); its progress is
    kept beside the store (:func:`analysis.networks.store.partial_path`), and the next call for the same network
    continues it from there, to the very weights an uninterrupted run gives.
    """
    variant_info(variant)
    schedule = Schedule() if schedule is None else schedule
    if not isinstance(schedule, Schedule):
        raise UsageTypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    schedule.validate()
    validation.integer("seed", seed, minimum=0, maximum=MAX_SEED)
    validation.available_device("device", device)
    backbone_weights = state_dict_file("backbone checkpoint", backbone_weights)
    if not isinstance(data, NetworkData):
        data = load_data(data, schedule.size, num_classes)
    elif data.size != schedule.size:
        raise UsageError(f"the data were loaded at {data.size}px but the schedule trains at {schedule.size}px")
    if len(data.train_images) < 2 and not schedule.freeze_bn:
        raise DataError(f"the train split holds {len(data.train_images)} image: a batch of one has one value per "
                        "channel at the backbone's coarsest stage, where BatchNorm needs two; give at least 2 training "
                        "images")
    if num_classes is not None and num_classes != data.num_classes:
        raise UsageError(f"num_classes={num_classes} but the data have K = {data.num_classes} ({data.class_source})")
    model, identity, key, folder, layers = store.identity(variant, data, schedule, seed, device, decoder,
                                                          _cache(cache_dir), backbone_weights)
    label = f"{variant} seed {seed}"
    if say and layers["kept_over_setting"]:
        say(f"  {label}: {kept_over_setting_note(variant, decoder)}")
    record, why = store.valid_cached(folder, identity)
    if record is not None:
        return _loaded(model, folder, record, variant, device, store.alias_note(variant, record), say, label, data)

    def waiting() -> None:
        if say:
            say(f"  {label}: another process is training this network ({lock_path(folder)} is held); waiting for it")

    with entry_lock(folder, waiting) as waited:
        if waited:  # the other holder has probably written it: reuse, never train it twice
            record, why_now = store.valid_cached(folder, identity)
            if record is not None:
                note = "trained by another process while this one waited; its network is reused"
                alias = store.alias_note(variant, record)
                return _loaded(model, folder, record, variant, device, note + (f"; {alias}" if alias else ""), say,
                               label, data)
            why = why_now
        note = "" if why == "not cached" else f"retrained: {why}"
        if say and note:
            say(f"  {label}: {note}")
        resume = store.read_partial(folder)
        if say and resume is not None:
            say(f"  {label}: continues a run the time guard stopped at step {resume['train']['step']}")
        with torch_threads(TRAIN_THREADS if device == "cpu" else None):
            result = loop.fit(model, data, schedule, seed, device, label, progress, resume)
            threads = torch.get_num_threads()
        partial = result.pop("partial", None)
        record = {**identity, "key": key, "variant": variant, "family": variant_info(variant).family,
                  "decoder": dataclasses.asdict(model.spec), "decoder_changes": layers, "data": data.source,
                  "class_source": data.class_source, **result, "budget_min": schedule.budget_min, "device": device,
                  "environment": environment(device), "threads": threads,
                  "trained_at": datetime.now(UTC).isoformat(timespec="seconds")}
        if not record["complete"]:
            if partial is not None:  # the guard's stop: kept, so that a rerun with a larger guard continues it
                store.write_partial(folder, partial)
            raise IncompleteTraining(incomplete_message([record]), [finite(record)])
        written = store.write(folder, model, record)
        store.drop_partial(folder)
        return TrainedNetwork(model, written, False, folder, note, data)


def incomplete_message(records: list[dict]) -> str:
    """One line for networks that did not complete: stopped by the wall-clock guard, or diverged."""
    lines = []
    diverged = [r for r in records if r.get("stop_reason") == "diverged"]
    stopped = [r for r in records if r.get("stop_reason") != "diverged"]
    where = lambda rs: "; ".join(f"{r['variant']} seed {r['seed']} at step {r['steps']} of "  # noqa: E731
                                 f"{r['schedule']['max_steps']}" for r in rs)
    if diverged:
        lines.append(f"diverged (a non-finite loss): {where(diverged)}; such a network is a failure, never cached. "
                     f"Lower the learning rate (lr {diverged[0]['schedule']['lr']:g}) or the gradient clip")
    if stopped:
        budget = stopped[0].get("budget_min")
        lines.append(f"stopped by the {budget:g}-minute time guard before a plateau or the step limit: "
                     f"{where(stopped)}; such a network is incomplete: not cached and not compared, but its progress "
                     "is kept: rerun with a larger --budget-min (or on a less loaded machine) to continue it")
    return " | ".join(lines)


def _loaded(model: nn.Module, folder: Path, record: dict, variant: str, device: str, note: str,
            say: Callable[[str], None] | None, label: str, data: NetworkData) -> TrainedNetwork:
    model.load_state_dict(torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True))
    if say and note:
        say(f"  {label}: {note}")
    return TrainedNetwork(model.to(device).eval(), store.as_named(record, variant), True, folder, note, data)


MAX_SEED = 2**63 - 1
"""The largest seed torch takes."""


def kept_over_setting_note(variant: str, decoder: dict | None) -> str:
    """Which of the variant's own decoder changes are kept over the setting's (``decoder``), in words; '' where
    none differ (see :func:`analysis.networks.store.decoder_layers`)."""
    kept = store.decoder_layers(variant, decoder)[1]["kept_over_setting"]
    if not kept:
        return ""
    return "its own decoder changes kept over the setting's: " + ", ".join(
        f"{k}={v['variant']} (setting: {v['setting']})" for k, v in kept.items())


def is_cached(variant: str, data: NetworkData, schedule: Schedule, seed: int = 0, device: str = "cpu",
              decoder: dict | None = None, cache_dir: str | Path | None = None,
              backbone_weights: str | Path | None = None) -> bool:
    """Whether :func:`train_network` would load this network instead of training it."""
    _, identity, _, folder, _ = store.identity(variant, data, schedule, seed, device, decoder, _cache(cache_dir),
                                               backbone_weights)
    return store.valid_cached(folder, identity)[0] is not None


def cache_entry(variant: str, data: NetworkData, schedule: Schedule, seed: int = 0, device: str = "cpu",
                decoder: dict | None = None, cache_dir: str | Path | None = None,
                backbone_weights: str | Path | None = None) -> Path:
    """The cache folder of this network (shared by every name of the same architecture)."""
    return store.identity(variant, data, schedule, seed, device, decoder, _cache(cache_dir), backbone_weights)[3]
