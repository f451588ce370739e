"""A trained set: every (variant, seed) network of a setting (:func:`trained_set`), checked once as a whole, then
each network looked up in the weights store, trained where it is not there (several at once on a CPU, each in its own
process: one per core) and loaded.

The flow is one way: the setting (:mod:`~analysis.networks.settings`), the data (:mod:`~analysis.networks.data`),
each variant's starting backbone (:mod:`~analysis.networks.pretrain`), then every network through
:func:`analysis.networks.train.train_or_load` (the store, the loop, evaluation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from bench import validation
from bench.errors import UsageTypeError
from bench.models.checkpoints import state_dict_file

from ..datasets.synthetic import SyntheticSpec
from . import train as train_module
from .data import load_data
from .pretrain import shared_backbones, starting_weights
from .recipe import Schedule
from .settings import NetworkSetting, network_setting, seed_list, variant_list
from .train import TrainedNetwork, train_all


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
    are kept, and the record and a note say so: :func:`analysis.networks.store.decoder_layers`). ``seeds``: a count
    (0..N-1) or the seeds themselves (non-empty; repeats trained once). ``backbone_weights``: a backbone checkpoint
    every variant starts from; None: the setting's shared pretrained backbone where it has one
    (:mod:`analysis.networks.pretrain`, one per backbone architecture, itself trained once and cached), else from
    scratch. ``data``: a VOC-layout folder instead of
    the setting's generated data (read once for all networks). Names that resolve to one architecture share one
    cached network (trained once). ``workers``: on a CPU, networks not yet cached are trained this many at a time,
    each in its own process (None: one per core, at most one per network; 1: in this process). Every CPU training
    runs on one thread (``loop.TRAIN_THREADS``: the weights do not depend on the machine's core count), so the
    cores are used by training several networks at once.

    A network the time guard stopped raises :class:`~analysis.networks.train.IncompleteTraining` once every other
    network is trained and cached (the incomplete ones are not).
    """
    chosen = network_setting(setting)
    device = validation.available_device("device", device or chosen.device)
    if workers is not None:
        workers = validation.integer("workers", workers, minimum=1)
    names = chosen.variants() if variants is None else variant_list(variants, say)
    seed_values = list(range(chosen.seeds)) if seeds is None else seed_list(seeds, say)
    run_schedule = schedule or chosen.schedule
    if not isinstance(run_schedule, Schedule):
        raise UsageTypeError(f"schedule must be a Schedule, got {type(run_schedule).__name__}")
    run_schedule.validate()
    backbone_weights = state_dict_file("backbone checkpoint", backbone_weights or chosen.backbone_weights)
    loaded = load_data(chosen.data if data is None else data, run_schedule.size, num_classes, progress=say,
                       cache=None if cache_dir is None else Path(cache_dir) / "synthetic-voc")  # under --cache too
    cache_dir = Path(cache_dir or train_module.CACHE)  # resolved here: spawned workers must write where we read
    # every argument is checked: from here on each network is looked up, trained or loaded, never checked again
    weights = starting_weights(chosen.pretrain, names, backbone_weights, loaded, run_schedule, device, cache_dir,
                               progress, say, only_cached)  # only_cached: no variant whose backbone is not held
    jobs = [(name, seed) for seed in seed_values for name in names]
    if say and not only_cached:
        say(f"  {len(jobs)} network{'s' if len(jobs) != 1 else ''} ({chosen.name} setting) on {loaded.describe()}")
    return train_all(jobs, loaded, run_schedule, device, chosen.decoder, cache_dir, weights, workers, progress, say,
                     only_cached)


def _pretrain_job(setting: NetworkSetting, cache_dir: Path) -> None:
    """A spawned process: the setting's data generated and its shared backbones pretrained (quietly)."""
    data = load_data(setting.data, setting.schedule.size, progress=None)
    shared_backbones(setting.pretrain, setting.variants(), data, setting.schedule, setting.device, cache_dir,
                     progress=False, say=None)


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
