"""Named settings of the embedded default, and a trained set (:func:`trained_set`).

A setting is data: one TOML file per named setting in ``named_settings/`` (``cpu``: the CPU bench budget;
``gpu``: the families' own widths at 256 px on a CUDA GPU), read and checked by :func:`load_setting` like an
ablation spec; a file of one's own takes the same keys (``--setting my-setting.toml``). How each value was chosen,
with what it measured, is in README.md ("How the named settings were chosen"), not here.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import validation
from bench.errors import DataError, MissingFileError, UsageError, UsageTypeError
from bench.models import register_again, variant_info
from bench.models.checkpoints import state_dict_file
from bench.models.decoder import changeable_fields

from ..datasets.synthetic import SyntheticSpec
from . import train as train_module
from .data import load_data
from .pretrain import TASKS as PRETRAIN_TASKS
from .pretrain import Pretrain, pretrained_backbone
from .recipe import Schedule
from .train import IncompleteTraining, TrainedNetwork, cache_entry, is_cached, train_network

SET_VERSION = 5
"""The version of the named settings' data and starting point (not of the training code, so not in the cache key:
the data spec and the backbone checkpoint's digest are). 1: objects of radius 16-26 / 40-60 px, every network from
scratch; 2 (2026-12-04): radius 20-34 / 56-110 px and one shared pretrained backbone; 3 (2026-12-05): the same
networks (the same keys), reported on a held-out test split instead of the val split that picked them; 4 (2026-12-05):
the 'cpu' set trained for 900 steps instead of 450 (from the same 450-step backbone), where every network ends on the
plateau rule (the schedule check: at 450 steps LW was 2.0 points short of its plateau); 5 (2026-12-06, protocol 1):
the version-3 scenes (an object's class by its shape and the ground around it, occlusion, clutter), a fixed schedule
(every run to its step limit), PyTorch's own init of the residual branches, lr 0.1. The front page archives the
sections of an earlier set version (analysis.report.front_page.superseded)."""
SET_DESCRIPTION = ("context-decided generated scenes with headroom (version 3), one shared pretrained backbone, a "
                   "fixed 900-step schedule, reported on a held-out test split")
DECODER_KEYS = tuple(changeable_fields())
MAX_SEEDS = 1000
"""The most seeds one call trains per variant (a count, or a list's length)."""

SETTINGS_DIR = Path(__file__).with_name("named_settings")
"""The named settings, one TOML file each (``cpu.toml``, ``gpu.toml``): data, checked like an ablation spec."""
SETTING_KEYS = ("description", "device", "seeds", "backbone", "families", "decoder", "schedule", "data", "pretrain")
DATA_KEYS = tuple(f for f in SyntheticSpec.__dataclass_fields__ if f != "version")
PRETRAIN_KEYS = tuple(Pretrain.__dataclass_fields__)


@dataclass(frozen=True)
class NetworkSetting:
    name: str
    schedule: Schedule
    seeds: int
    device: str
    decoder: dict | None = None  # DecoderSpec changes for every family (None: the families' own widths)
    backbone: str = "resnet18"
    families: tuple[str, ...] = ("rf", "rf_lw_rcu", "rf_lw")
    data: SyntheticSpec | str = field(default_factory=SyntheticSpec)  # the generated task, or a VOC-layout folder
    pretrain: Pretrain | None = None  # a backbone pretrained once and shared by every network (None: from scratch)
    description: str = ""
    backbone_weights: str | None = None  # a backbone state dict every network starts from, over ``pretrain``

    def variants(self) -> list[str]:
        return [f"{family}:{self.backbone}" for family in self.families]


def load_setting(path: str | Path) -> NetworkSetting:
    """Read and check a setting file (TOML, the keys of ``named_settings/cpu.toml``); its name is the file's stem.
    Every problem names the file and the key, with the valid choices."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"setting file not found: {path} (named settings: "
                               f"{', '.join(p.stem for p in sorted(SETTINGS_DIR.glob('*.toml')))})")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid TOML: {err}") from None
    try:
        return parse_setting(raw, path.stem)
    except (UsageError, UsageTypeError) as err:
        raise type(err)(f"{path}: {err}") from None


def parse_setting(raw: dict, name: str) -> NetworkSetting:
    """A :class:`NetworkSetting` from a setting file's tables, every key and value checked (nothing is read or
    trained)."""
    from bench.models.decoder import check_decoder_change

    validation.table("", raw, SETTING_KEYS)
    device = validation.device("device", raw.get("device", "cpu"))
    seeds = validation.integer("seeds", raw.get("seeds", 1), minimum=1, maximum=MAX_SEEDS)
    backbone = raw.get("backbone", "resnet18")
    families = raw.get("families", ["rf", "rf_lw_rcu", "rf_lw"])
    if not isinstance(families, list) or not families or not all(isinstance(f, str) for f in families):
        raise UsageTypeError(f"families must be a non-empty list of family names, got {families!r}")
    for family in families:
        variant_info(f"{family}:{backbone}")  # an unknown family or backbone names the valid ones
    decoder = {k: check_decoder_change(k, v) for k, v in validation.table("decoder", raw.get("decoder", {}),
                                                                         DECODER_KEYS).items()}
    fields = validation.table("schedule", raw.get("schedule", {}), tuple(Schedule.__dataclass_fields__))
    try:
        schedule = Schedule(**fields)
        schedule.validate()
    except (UsageError, UsageTypeError) as err:
        raise type(err)(f"schedule: {err}") from None
    data = _data_spec(validation.table("data", raw.get("data", {}), DATA_KEYS))
    pretrain = None
    if "pretrain" in raw:
        table = validation.table("pretrain", raw["pretrain"], PRETRAIN_KEYS)
        task = validation.choice("pretrain.task", table.get("task", "segmentation"), PRETRAIN_TASKS)
        if task == "classification" and ("decoder" in table or "zero_init_residual" in table):
            raise UsageError("pretrain.decoder and pretrain.zero_init_residual belong to task = \"segmentation\"; a "
                             "classification pretraining has no decoder")
        changes = {k: check_decoder_change(k, v, where="pretrain.decoder")
                   for k, v in validation.table("pretrain.decoder", table.get("decoder", {}), DECODER_KEYS).items()}
        seed = validation.integer("pretrain.seed", table.get("seed", 10_000), minimum=0,
                                  maximum=train_module.MAX_SEED)
        zero_init = validation.boolean("pretrain.zero_init_residual", table.get("zero_init_residual", True))
        steps = table.get("max_steps")
        if steps is not None:
            steps = validation.integer("pretrain.max_steps", steps, minimum=1)
        pretrain = Pretrain(task=task, decoder=changes if task == "segmentation" else {}, seed=seed,
                            zero_init_residual=zero_init, max_steps=steps)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise UsageTypeError(f"description must be a string, got {description!r}")
    return NetworkSetting(name, schedule, seeds, device, decoder or None, backbone, tuple(families), data, pretrain,
                          description)


def _data_spec(table: dict) -> SyntheticSpec:
    """The generated data's spec from a setting's [data] table (pixel ranges as [low, high] pairs, shares and the
    noise as numbers)."""
    values = {}
    for key, value in table.items():
        if isinstance(SyntheticSpec.__dataclass_fields__[key].default, tuple):
            if not (isinstance(value, list) and len(value) == 2):
                raise UsageTypeError(f"data.{key} must be a pair [low, high] of pixels, got {value!r}")
            low = validation.integer(f"data.{key}[0]", value[0], minimum=1)
            high = validation.integer(f"data.{key}[1]", value[1], minimum=low)
            values[key] = (low, high)
        elif isinstance(SyntheticSpec.__dataclass_fields__[key].default, float):
            values[key] = validation.number(f"data.{key}", value, minimum=0, maximum=None if key == "noise" else 1)
        else:
            minimum = {"n_train": 1, "n_val": 1, "size": validation.MIN_SIDE, "max_objects": 1}.get(key, 0)
            values[key] = validation.integer(f"data.{key}", value, minimum=minimum)
    return SyntheticSpec(**values)


SETTINGS: dict[str, NetworkSetting] = {p.stem: load_setting(p) for p in sorted(SETTINGS_DIR.glob("*.toml"))}
"""The named settings, read from ``named_settings/*.toml`` (how each was chosen: README.md)."""
CPU_DECODER = SETTINGS["cpu"].decoder
"""The CPU narrowing of every family's decoder (the probes and the ERF section use the same networks)."""
DATA = SETTINGS["cpu"].data


def network_setting(setting: str | Path | NetworkSetting) -> NetworkSetting:
    """A named setting (``cpu``, ``gpu``), a setting file (``*.toml``) or a NetworkSetting as it is."""
    if isinstance(setting, NetworkSetting):
        return setting
    if isinstance(setting, Path) or (isinstance(setting, str) and (setting.lower().endswith(".toml") or
                                                                    Path(setting).is_file())):
        return load_setting(setting)  # a setting file by its path, whatever its suffix's case (or none)
    if not isinstance(setting, str):
        raise UsageTypeError(f"setting must be a name ({', '.join(SETTINGS)}), a setting file (.toml) or a "
                             f"NetworkSetting, got {setting!r}")
    return SETTINGS[validation.choice("setting", setting, SETTINGS)]


def variant_list(variants: str | Sequence[str] | None, default: list[str],
                 say: Callable[[str], None] | None = None) -> list[str]:
    """The variants asked for: a string is one name (never its letters), a list must name at least one, a name
    given twice is trained once (with a note); every name checked."""
    if variants is None:
        return list(default)
    if isinstance(variants, str):
        names = [variants]
    elif isinstance(variants, (list, tuple)):
        names = list(variants)
    else:
        raise UsageTypeError(f"variants must be a variant name or a list of them, got {variants!r}")
    if not names:
        raise UsageError("variants is an empty list; name at least one variant (or None for the setting's)")
    for name in names:
        variant_info(name)
    unique = list(dict.fromkeys(names))
    if len(unique) < len(names) and say:
        twice = sorted({n for n in names if names.count(n) > 1})
        say(f"  note: {', '.join(twice)} named more than once; each is trained once")
    return unique


def seed_list(seeds: int | Sequence[int] | None, default: int, say: Callable[[str], None] | None = None) -> list[int]:
    """The seeds asked for: a count N (seeds 0..N-1, 1 <= N <= MAX_SEEDS) or a non-empty list of seeds; a seed given
    twice is trained once (with a note)."""
    if seeds is None:
        return list(range(default))
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return list(range(validation.integer("seeds", seeds, minimum=1, maximum=MAX_SEEDS)))
    if not isinstance(seeds, (list, tuple, range)):
        raise UsageTypeError(f"seeds must be a count (an integer >= 1) or a list of seeds, got {seeds!r}")
    chosen = [validation.integer("seed", s, minimum=0, maximum=train_module.MAX_SEED) for s in seeds]
    if not chosen:
        raise UsageError("seeds is an empty list; give a count >= 1 or at least one seed")
    unique = list(dict.fromkeys(chosen))
    if len(unique) > MAX_SEEDS:
        raise UsageError(f"{len(unique)} seeds asked for; at most {MAX_SEEDS} per call")
    if len(unique) < len(chosen) and say:
        twice = sorted({s for s in chosen if chosen.count(s) > 1})
        say(f"  note: seed(s) {', '.join(map(str, twice))} given more than once; each is trained once")
    return unique


def trained_set(
    setting: str | NetworkSetting = "cpu",
    variants: str | Sequence[str] | None = None,
    seeds: int | Sequence[int] | None = None,
    data: SyntheticSpec | str | Path | None = None,
    device: str | None = None,
    num_classes: int | None = None,
    schedule: Schedule | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    say: Callable[[str], None] | None = print,
    workers: int | None = None,
    backbone_weights: str | Path | None = None,
    only_cached: bool = False,
) -> list[TrainedNetwork]:
    """Every (variant, seed) network of a setting, trained where the cache does not hold it yet (``only_cached``:
    train nothing and return the networks the store holds, in the same order, possibly none).

    ``variants``: default the setting's three families on its backbone; a string is one name. The setting's
    decoder changes apply to every variant *under* the variant's own changes (a registered variant's own widths
    are kept, and the record and a note say so: :func:`analysis.networks.train.decoder_layers`). ``seeds``: a count
    (0..N-1) or the seeds themselves (non-empty; repeats trained once). ``backbone_weights``: a backbone checkpoint
    every variant starts from; None: the setting's shared pretrained backbone where it has one
    (:mod:`analysis.networks.pretrain`, one per backbone architecture, itself trained once and cached), else from
    scratch. ``data``: a VOC-layout folder instead of
    the setting's generated data (read once for all networks). Names that resolve to one architecture share one
    cached network (trained once). ``workers``: on a CPU, networks not yet cached are trained this many at a time,
    each in its own process (None: one per core, at most one per network; 1: in this process). Every CPU training
    runs on one thread (``train.TRAIN_THREADS``: the weights do not depend on the machine's core count), so the
    cores are used by training several networks at once.

    A network the time guard stopped raises :class:`~analysis.networks.train.IncompleteTraining` once every other
    network is trained and cached (the incomplete ones are not).
    """
    chosen = network_setting(setting)
    names = variant_list(variants, chosen.variants(), say)
    seed_values = seed_list(seeds, chosen.seeds, say)
    run_schedule = schedule or chosen.schedule
    if not isinstance(run_schedule, Schedule):
        raise UsageTypeError(f"schedule must be a Schedule, got {type(run_schedule).__name__}")
    run_schedule.validate()
    device = validation.available_device("device", device or chosen.device)
    backbone_weights = state_dict_file("backbone checkpoint", backbone_weights or chosen.backbone_weights)
    loaded = load_data(chosen.data if data is None else data, run_schedule.size, num_classes, progress=say,
                       cache=None if cache_dir is None else Path(cache_dir) / "synthetic-voc")  # under --cache too
    cache_dir = Path(cache_dir or train_module.CACHE)  # resolved here: spawned workers must write where we read
    weights = {name: backbone_weights for name in names}  # each variant's starting backbone
    if backbone_weights is None and chosen.pretrain is not None:  # one shared backbone per backbone architecture
        shared = shared_backbones(chosen, names, loaded, run_schedule, device, cache_dir, progress, say, only_cached)
        names = [n for n in names if shared[variant_info(n).backbone] is not None]  # only_cached: none pretrained
        weights = {name: shared[variant_info(name).backbone] for name in names}
    if only_cached:
        return [train_network(name, loaded, run_schedule, seed, device, decoder=chosen.decoder, cache_dir=cache_dir,
                              progress=False, say=None, backbone_weights=weights[name])
                for seed in seed_values for name in names
                if is_cached(name, loaded, run_schedule, seed, device, chosen.decoder, cache_dir, weights[name])]
    if say:
        n = len(names) * len(seed_values)
        say(f"  {n} network{'s' if n != 1 else ''} ({chosen.name} setting) on {loaded.describe()}")
    jobs = [(name, seed) for seed in seed_values for name in names]
    entries = {job: cache_entry(job[0], loaded, run_schedule, job[1], device, chosen.decoder, cache_dir,
                                weights[job[0]]) for job in jobs}
    first: dict[Path, tuple[str, int]] = {}  # one job per network: names of one architecture share it
    for job in jobs:
        first.setdefault(entries[job], job)
    in_processes: set[Path] = set()  # the entries the worker processes trained themselves
    incomplete: list[dict] = []
    if device == "cpu":
        todo = [job for entry, job in first.items()
                if not is_cached(job[0], loaded, run_schedule, job[1], device, chosen.decoder, cache_dir,
                                 weights[job[0]])]
        cores = os.cpu_count() or 1
        count = min(len(todo), cores) if workers is None else validation.integer("workers", workers, minimum=1)
        if count > 1 and len(todo) > 1:
            incomplete, trained_here = _train_in_processes(todo, loaded, run_schedule, device, chosen.decoder,
                                                           cache_dir, min(count, len(todo)), progress, say, weights)
            in_processes = {entries[job] for job in trained_here}
    stopped = {(r["variant"], r["seed"]) for r in incomplete}
    nets: list[TrainedNetwork] = []
    seen: set[Path] = set()
    for name, seed in jobs:
        entry = entries[(name, seed)]
        if first[entry] in stopped:
            continue
        try:
            net = train_network(name, loaded, run_schedule, seed, device, decoder=chosen.decoder,
                                cache_dir=cache_dir, progress=progress, say=say, backbone_weights=weights[name])
        except IncompleteTraining as err:
            incomplete += err.records
            stopped.add((name, seed))
            continue
        if entry in in_processes and entry not in seen:
            net.cached = False  # trained by this call's worker process, loaded here from what it wrote
        seen.add(entry)
        nets.append(net)
    if incomplete:
        raise IncompleteTraining(train_module.incomplete_message(incomplete), incomplete)
    return nets


def shared_backbones(setting: NetworkSetting, names: Sequence[str], data, schedule: Schedule, device: str,
                     cache_dir: Path, progress: bool = True, say: Callable[[str], None] | None = print,
                     only_cached: bool = False) -> dict[str, str | None]:
    """{backbone: the path of its shared pretrained checkpoint} for the backbones of ``names``, each pretrained
    once where the store does not hold it (``only_cached``: None for those)."""
    return {b: pretrained_backbone(setting.pretrain, b, data, schedule, device, cache_dir, progress, say, only_cached)
            for b in dict.fromkeys(variant_info(n).backbone for n in names)}


def _pretrain_job(setting: NetworkSetting, cache_dir: Path) -> None:
    """A spawned process: the setting's data generated and its shared backbones pretrained (quietly)."""
    data = load_data(setting.data, setting.schedule.size, progress=None)
    shared_backbones(setting, setting.variants(), data, setting.schedule, setting.device, cache_dir, progress=False,
                     say=None)


def pretrain_in_background(setting: str | NetworkSetting = "cpu", cache_dir: str | Path | None = None):
    """Start the setting's shared backbone pretraining in a spawned process and return it (a
    ``multiprocessing.Process``; None where the setting has no shared backbone or trains on a GPU).

    A CPU training runs on one thread, so while the backbone pretrains the other cores can do work that does not
    need it (the bench counts shapes meanwhile). Nothing else changes: the process trains the same store entry with
    the same code, and the entry's lock makes a later :func:`trained_set` wait for it rather than train it twice (or,
    where it has not taken the lock yet, train it itself while the process waits and then reuses it)."""
    import multiprocessing

    chosen = network_setting(setting)
    if chosen.pretrain is None or chosen.device != "cpu":
        return None
    cache_dir = Path(cache_dir or train_module.CACHE)
    process = multiprocessing.get_context("spawn").Process(target=_pretrain_job, args=(chosen, cache_dir),
                                                           name="pretrain-shared-backbone")
    process.start()
    return process


def _train_one(job: tuple) -> tuple[list[str], dict | None, bool]:
    """A worker process: train (or find cached) one network (on ``train.TRAIN_THREADS`` threads). Its notes (why
    it retrains, a wait for another process) and result line, the record of an incomplete run (or None), and whether
    this process trained it (False: another process had, and it was loaded)."""
    name, seed, data, schedule, device, decoder, cache_dir, progress, registration, backbone_weights = job
    register_again(registration)  # a spawned process knows only the built-in names until it registers the caller's
    notes: list[str] = []
    # each worker's own tqdm bar on the shared stderr (they take turns on the last line of a terminal)
    try:
        net = train_network(name, data, schedule, seed, device, decoder=decoder, cache_dir=cache_dir,
                            progress=progress, say=notes.append, backbone_weights=backbone_weights)
    except IncompleteTraining as err:
        return notes, err.records[0], False
    r = net.record
    return notes + [f"  {name} seed {seed}: own val mIoU {100 * r['val_miou']:.1f}% after {r['steps']} steps "
                    f"({r['stop_reason']}, {r['seconds']:.0f} s)"], None, not net.cached


def _train_in_processes(todo, data, schedule, device, decoder, cache_dir, count, progress, say,
                        weights: dict | None = None) -> tuple[list[dict], set[tuple[str, int]]]:
    """Train ``todo`` [(name, seed)] in ``count`` spawned processes (the cache is written whole by each, so the
    caller then loads every network from it). In the given order: put the slowest first. The records of the runs
    that did not complete (nothing cached for them), and the (name, seed) the workers trained themselves."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    if say:
        say(f"  training {len(todo)} networks in {count} processes at once, {train_module.TRAIN_THREADS} thread(s) "
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
