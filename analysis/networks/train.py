"""Train a network once and keep it: :func:`train_network` looks the network up in the weights store
(:mod:`analysis.networks.store`: the key, the lock, the files), trains it by its recipe
(:mod:`analysis.networks.recipe`) in the loop (:mod:`analysis.networks.loop`, evaluated by
:mod:`analysis.networks.evaluation`) where the store does not hold it, and writes it there whole.

The time guard (``Schedule.budget_min``) is a guard, not a stopping rule: a run it stops is *incomplete*
(``record["complete"]`` is False); it is never written to the store and :func:`train_network` raises
:class:`IncompleteTraining`.

``CACHE`` is the store's default folder (read at call time: the tests point it elsewhere).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from bench import validation
from bench.environment import environment, torch_threads
from bench.errors import DataError, UsageError, UsageTypeError
from bench.models import register_again, variant_info
from bench.models.checkpoints import state_dict_file
from bench.records import finite

from ..datasets.synthetic import SyntheticSpec
from . import loop, store
from .data import NetworkData, load_data
from .evaluation import held_out
from .loop import TRAIN_THREADS
from .recipe import Schedule
from .store import entry_lock, lock_path

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

        return evaluate_per_image(self.model, self.data.val_inputs, self.data.val_masks, self.data.num_classes,
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
    if num_classes is not None and num_classes != data.num_classes:
        raise UsageError(f"num_classes={num_classes} but the data have K = {data.num_classes} ({data.class_source})")
    return train_or_load(variant, data, schedule, seed, device, decoder, _cache(cache_dir), progress, say,
                         backbone_weights)


def train_or_load(variant: str, data: NetworkData, schedule: Schedule, seed: int, device: str, decoder: dict | None,
                  cache_dir: Path, progress: bool, say: Callable[[str], None] | None,
                  backbone_weights: str | None, only_cached: bool = False) -> TrainedNetwork | None:
    """:func:`train_network` on arguments already checked (a variant name, a checked schedule, the data loaded at
    its size, an available device, an existing backbone file): what a trained set, its worker processes and the
    shared backbone's pretraining call once their request is checked as a whole. ``only_cached``: None where the
    store does not hold the network (nothing is trained)."""
    if len(data.train_images) < 2 and not schedule.freeze_bn:
        raise DataError(f"the train split holds {len(data.train_images)} image: a batch of one has one value per "
                        "channel at the backbone's coarsest stage, where BatchNorm needs two; give at least 2 training "
                        "images")
    model, identity, key, folder, layers, record, why = find_entry(variant, data, schedule, seed, device, decoder,
                                                                   cache_dir, backbone_weights)
    label = f"{variant} seed {seed}"
    if say and layers["kept_over_setting"]:
        say(f"  {label}: {kept_over_setting_note(layers)}")
    if record is None and only_cached:
        return None
    if record is not None:
        model, named, alias = store.load(model, folder, record, variant, device)
        if say and alias:
            say(f"  {label}: {alias}")
        return TrainedNetwork(model, named, True, folder, alias, data)

    def waiting() -> None:
        if say:
            say(f"  {label}: another process is training this network ({lock_path(folder)} is held); waiting for it")

    with entry_lock(folder, waiting) as waited:
        if waited:  # the other holder has probably written it: reuse, never train it twice
            record, why_now = store.valid_cached(folder, identity)
            if record is not None:
                model, named, alias = store.load(model, folder, record, variant, device)
                note = "trained by another process while this one waited; its network is reused" + (
                    f"; {alias}" if alias else "")
                if say:
                    say(f"  {label}: {note}")
                return TrainedNetwork(model, named, True, folder, note, data)
            why = why_now
        resume = store.read_partial(folder)
        note = "" if why == "not cached" else f"retrained: {why}"
        if say and note:
            say(f"  {label}: {note}")
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


MAX_SEED = 2**63 - 1
"""The largest seed torch takes."""


def kept_over_setting_note(layers: dict) -> str:
    """Which of the variant's own decoder changes are kept over the setting's, in words, from
    :func:`analysis.networks.store.decoder_layers`'s record of them; '' where none differ."""
    kept = layers["kept_over_setting"]
    if not kept:
        return ""
    return "its own decoder changes kept over the setting's: " + ", ".join(
        f"{k}={v['variant']} (setting: {v['setting']})" for k, v in kept.items())


class Entry(NamedTuple):
    """A network's place in the weights store (:func:`find_entry`)."""

    model: nn.Module  # built and initialised, not trained
    identity: dict  # the record fields that decide the weights
    key: str
    folder: Path  # shared by every name of the same architecture
    layers: dict  # the decoder changes applied (:func:`analysis.networks.store.decoder_layers`)
    record: dict | None  # the valid record the store holds, or None
    why: str  # why the store's record is not valid ("not cached", a changed digest, ...)


def find_entry(variant: str, data: NetworkData, schedule: Schedule, seed: int, device: str, decoder: dict | None,
               cache_dir: Path, backbone_weights: str | None) -> Entry:
    """Where the store keeps this network and what it holds there: the one way :func:`train_or_load` and
    :func:`lookup` find a network."""
    model, identity, key, folder, layers = store.identity(variant, data, schedule, seed, device, decoder, cache_dir,
                                                          backbone_weights)
    return Entry(model, identity, key, folder, layers, *store.valid_cached(folder, identity))


def lookup(variant: str, data: NetworkData, schedule: Schedule, seed: int = 0, device: str = "cpu",
           decoder: dict | None = None, cache_dir: str | Path | None = None,
           backbone_weights: str | Path | None = None) -> tuple[Path, bool]:
    """This network's folder in the weights store (shared by every name of the same architecture), and whether
    :func:`train_network` would load it from there instead of training it."""
    entry = find_entry(variant, data, schedule, seed, device, decoder, _cache(cache_dir), backbone_weights)
    return entry.folder, entry.record is not None


def train_all(jobs: list[tuple[str, int]], data: NetworkData, schedule: Schedule, device: str, decoder: dict | None,
              cache_dir: Path, weights: dict[str, str | None], workers: int | None, progress: bool,
              say: Callable[[str], None] | None, only_cached: bool = False) -> list[TrainedNetwork]:
    """Every (variant, seed) network of ``jobs`` in their order, on arguments already checked
    (:func:`analysis.networks.sets.trained_set` checks them), each starting from ``weights[variant]`` (a variant
    ``weights`` leaves out has no starting backbone yet and is not returned): loaded where the store holds it, else
    trained and kept. Names of one architecture share one network, trained once. On a CPU the networks not yet held
    train ``workers`` at a time (None: one per core), each in its own process (:func:`train_in_processes`).
    ``only_cached``: train nothing; the networks the store holds (possibly none).

    A network the time guard stopped raises :class:`IncompleteTraining` once every other network is trained and
    kept (the incomplete ones are not)."""
    found = {job: lookup(job[0], data, schedule, job[1], device, decoder, cache_dir, weights[job[0]])
             if job[0] in weights else (None, False) for job in jobs}  # (store folder, held)
    if only_cached:
        jobs, progress, say = [job for job in jobs if found[job][1]], False, None
    first: dict[Path, tuple[str, int]] = {}  # one job per network: names of one architecture share it
    for job in jobs:
        first.setdefault(found[job][0], job)
    todo = [job for job in first.values() if not found[job][1]]
    count = min(len(todo), os.cpu_count() or 1) if workers is None else min(workers, len(todo))
    incomplete: list[dict] = []
    in_processes: set[Path] = set()  # the entries the worker processes trained themselves
    if device == "cpu" and count > 1:
        incomplete, trained_here = train_in_processes(todo, data, schedule, device, decoder, cache_dir, count,
                                                      progress, say, weights)
        in_processes = {found[job][0] for job in trained_here}
    stopped = {(r["variant"], r["seed"]) for r in incomplete}
    nets: list[TrainedNetwork] = []
    seen: set[Path] = set()
    for name, seed in jobs:
        entry = found[(name, seed)][0]
        if first[entry] in stopped:
            continue
        try:
            net = train_or_load(name, data, schedule, seed, device, decoder, cache_dir, progress, say, weights[name])
        except IncompleteTraining as err:
            incomplete += err.records
            stopped.add((name, seed))
            continue
        if entry in in_processes and entry not in seen:
            net.cached = False  # trained by this call's worker process, loaded here from what it wrote
        seen.add(entry)
        nets.append(net)
    if incomplete:
        raise IncompleteTraining(incomplete_message(incomplete), incomplete)
    return nets


def _train_one(job: tuple) -> tuple[list[str], dict | None, bool]:
    """A worker process: train (or find cached) one network (on ``loop.TRAIN_THREADS`` threads). Its notes (why
    it retrains, a wait for another process) and result line, the record of an incomplete run (or None), and whether
    this process trained it (False: another process had, and it was loaded)."""
    name, seed, data, schedule, device, decoder, cache_dir, progress, registration, backbone_weights = job
    register_again(registration)  # a spawned process knows only the built-in names until it registers the caller's
    notes: list[str] = []
    # each worker's own tqdm bar on the shared stderr (they take turns on the last line of a terminal)
    try:
        net = train_or_load(name, data, schedule, seed, device, decoder, cache_dir, progress, notes.append,
                            backbone_weights)
    except IncompleteTraining as err:
        return notes, err.records[0], False
    r = net.record
    return notes + [f"  {name} seed {seed}: own val mIoU {100 * r['val_miou']:.1f}% after {r['steps']} steps "
                    f"({r['stop_reason']}, {r['seconds']:.0f} s)"], None, not net.cached


def train_in_processes(todo, data, schedule, device, decoder, cache_dir, count, progress, say,
                        weights: dict | None = None) -> tuple[list[dict], set[tuple[str, int]]]:
    """Train ``todo`` [(name, seed)] in ``count`` spawned processes (the cache is written whole by each, so the
    caller then loads every network from it). In the given order: put the slowest first. The records of the runs
    that did not complete (nothing cached for them), and the (name, seed) the workers trained themselves."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    if say:
        say(f"  training {len(todo)} networks in {count} processes at once, {TRAIN_THREADS} thread(s) "
            "each")

    jobs = [(n, s, data, schedule, device, decoder, cache_dir, progress, variant_info(n).registration(),
             (weights or {}).get(n))
            for n, s in todo]
    incomplete, trained = [], set()
    with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_train_one, job): (job[0], job[1]) for job in jobs}
        try:
            with tqdm(total=len(futures), desc="networks trained", unit="net", file=sys.stderr,
                      disable=not progress) as bar:
                for future in as_completed(futures):
                    lines, stopped, here = future.result()
                    bar.update(1)
                    if stopped is not None:
                        incomplete.append(stopped)
                    if here:
                        trained.add(futures[future])
                    if say:
                        for line in lines:
                            say(line)
        except BaseException:  # an interrupt (or SIGTERM, raised as one): stop every worker now, not after its run
            stop_workers(pool)
            raise
    return incomplete, trained


def stop_workers(pool) -> None:
    """Cancel what a process pool has not started and terminate the workers it runs (each network's store entry is
    written whole or not at all, so nothing half-written stays)."""
    for future in list(getattr(pool, "_pending_work_items", {}).values()):
        future.future.cancel()
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
