"""Named settings of the embedded default (both on the generated shapes data), and a trained set.

``cpu``: fits the CPU bench budget: MobileNet-v2 (torchvision's) under the three families with narrowed decoders
(48 channels, 96 at level 4: the families' kernels, blocks and CRP unchanged), images at 128 px, one seed.
``gpu``: the same backbone, the families' own widths, images at 256 px (the probes' size), three seeds. Any other
backbone is one argument away (``NetworkSetting.backbone``, ``--backbone``).
Both use the same generated data (400 train / 80 val images, objects of radius 20-34 px (small) and 56-110 px
(large) at 256 px: at the 128 px training side, most large objects span two to three level-4 cells of 32 px and
some cover most of the image) and start every network from one backbone pretrained once on that data under a
decoder none of the families has (:mod:`analysis.networks.pretrain`, as ImageNet pretraining is in the paper);
they differ in image size, step limit, evaluation spacing and budget.

Measured on the 2-core AMD EPYC (AVX2), 2026-12-04, seed 0, 450 steps, own val mIoU (RefineNet / LW with RCU /
LW): objects of radius 16-26 and 40-60 px from scratch (until 2026-12-04): level-4 probes at the all-background
floor (13-20% against 12.9%); the larger objects from scratch: 96.7 / 93.4 / 86.0% (LW still rising), level-4
probes of RefineNet 15-17% (against a 12.0% floor); the larger objects from the shared backbone (pretrained in
74 s to 76.5%): 97.3 / 96.3 / 96.4%, level-4 probes RefineNet 26-31%, LW with RCU 38-41%, LW 37-40%.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import validation
from bench.errors import UsageError, UsageTypeError
from bench.models import register_variant, variant_info

from ..datasets.synthetic import SyntheticSpec
from . import train as train_module
from .data import load_data
from .pretrain import Pretrain, pretrained_backbone
from .recipe import Schedule
from .train import IncompleteTraining, TrainedNetwork, cache_entry, check_device, is_cached, train_network

SET_VERSION = 2
"""The version of the named settings' data and starting point (not of the training code, so not in the cache key:
the data spec and the backbone checkpoint's digest are). 1: objects of radius 16-26 / 40-60 px, every network from
scratch; 2 (2026-12-04): radius 20-34 / 56-110 px and one shared pretrained backbone. The front page archives the
sections of an earlier set version (analysis.report.front_page.superseded)."""
SET_DESCRIPTION = "larger generated objects, one shared pretrained backbone"

CPU_DECODER = {"channels": 48, "top_channels": 96}
"""The CPU narrowing of every family's decoder (the probes and the ERF section use the same networks)."""
DATA = SyntheticSpec(n_train=400, n_val=80, n_test=160, small_radius=(20, 34), large_radius=(56, 110))


@dataclass(frozen=True)
class NetworkSetting:
    name: str
    schedule: Schedule
    seeds: int
    device: str
    decoder: dict | None = None  # DecoderSpec changes for every family (None: the families' own widths)
    backbone: str = "resnet18"
    families: tuple[str, ...] = ("rf", "rf_lw_rcu", "rf_lw")
    data: SyntheticSpec = field(default=DATA)
    pretrain: Pretrain | None = None  # a backbone pretrained once and shared by every network (None: from scratch)

    def variants(self) -> list[str]:
        return [f"{family}:{self.backbone}" for family in self.families]


SETTINGS: dict[str, NetworkSetting] = {
    # Chosen by measurement on this project's 2-core AMD EPYCs (AVX2 until 2026-11-29; the SGD runs below on an
    # AVX-512 one), own val mIoU, one 1-thread process each (see README "trained set"). Until 2026-12-04 the
    # schedule was AdamW 2e-3 (ResNet-18 and MobileNet-v2 measured at many widths, crops and step counts; every
    # family passed 90% at 450 steps), but the original RefineNet, with no
    # normalisation in its decoder, came out of it with dead levels: the summation ReLU of level 4 positive on 0.0%
    # of val outputs by step 35-50 (5.7% at step 25, 48% at init), then level 2 or 3, whatever the dropout (0.5 or
    # 0), the zero-init of the residual branches (on or off) or a 100-step warm-up (dead by step 75). AdamW 5e-4
    # kept the levels alive (13-38% at step 150) but reached only 42% mIoU by then (2e-3: 74%); AdamW with the
    # decoder at a quarter of the backbone's lr left level 4 at 4.7%. SGD with Nesterov momentum 0.9 (the
    # reference implementations' optimizer), cosine over 450 steps, the same for every family:
    #   lr 0.05: rf 95.2% with every level 40-50% alive, but rf_lw 67.6%, rf_lw_rcu 71.9% (they learn slower);
    #   lr 0.1:  rf_lw 89.6% (93.5% over 600 steps), rf 96.5% over 600, rf_lw_rcu 95.6% over 600;
    #   lr 0.15: rf 96.7% (levels 43/22/13/13% alive), rf_lw_rcu 92.5% (40/45/38/66%), rf_lw 94.1% (39/45/41/64%);
    #   lr 0.2:  rf 93.4% (levels 3-1 down to 8-14% alive), rf_lw 89.7%.
    # Without the zero-init of the residual branches (SGD 0.15): rf_lw 88.8%, rf 96.2% with level 2 at 3% alive.
    # So lr 0.15 with the zero-init: every family passes 90% in 450 steps with every level alive. 450 steps took rf
    # 91 s, rf_lw_rcu 62 s, rf_lw 53 s (1-thread processes, two at a time, evaluations included). Evaluations every
    # 75 steps (6 per network): the plateau rule then needs 225 steps without gain. Decoder width 48 (96 at level
    # 4): at 32 (64) LW with RCU fell short under AdamW. The budget only guards a stalled or shared machine.
    "cpu": NetworkSetting("cpu", Schedule(size=128, crop=80, batch_size=12, lr=0.15, decay="cosine", max_steps=450,
                                          eval_every=75, patience=3, min_delta=0.005, budget_min=8.0),
                          seeds=1, device="cpu", decoder=CPU_DECODER, backbone="mobilenet_v2", pretrain=Pretrain()),
    # Not run yet (no GPU was lent): 9 networks, each capped at 0.45 min, so all of them fit 5 minutes on one
    # H100/H200-class GPU; the plateau rule is meant to end them before the cap. The cpu setting's optimizer and lr
    # (SGD 0.15), untested at these widths and this size.
    "gpu": NetworkSetting("gpu", Schedule(size=256, lr=0.15, max_steps=1500, eval_every=50, patience=4, min_delta=0.005,
                                          budget_min=0.45), seeds=3, device="cuda", backbone="mobilenet_v2",
                          pretrain=Pretrain(decoder={"crp_stages": 0})),
}


def network_setting(setting: str | NetworkSetting) -> NetworkSetting:
    if isinstance(setting, NetworkSetting):
        return setting
    if not isinstance(setting, str):
        raise UsageTypeError(f"setting must be a name ({', '.join(SETTINGS)}) or a NetworkSetting, got {setting!r}")
    return SETTINGS[validation.choice("setting", setting, SETTINGS)]


MAX_SEEDS = 1000
"""The most seeds one call trains per variant (a count, or a list's length)."""


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
    device = check_device(device or chosen.device)
    backbone_weights = train_module.check_backbone_weights(backbone_weights)
    loaded = load_data(chosen.data if data is None else data, run_schedule.size, num_classes,
                       progress=say)
    cache_dir = Path(cache_dir or train_module.CACHE)  # resolved here: spawned workers must write where we read
    weights = {name: backbone_weights for name in names}  # each variant's starting backbone
    if backbone_weights is None and chosen.pretrain is not None:  # one shared backbone per backbone architecture
        shared = {b: pretrained_backbone(chosen.pretrain, b, loaded, run_schedule, device, cache_dir, progress, say,
                                         only_cached)
                  for b in dict.fromkeys(variant_info(n).backbone for n in names)}
        names = [n for n in names if shared[variant_info(n).backbone] is not None]  # only_cached: none pretrained
        weights = {name: shared[variant_info(name).backbone] for name in names}
    if only_cached:
        return [train_network(name, loaded, run_schedule, seed, device, decoder=chosen.decoder, cache_dir=cache_dir,
                              progress=False, say=None, backbone_weights=weights[name])
                for seed in seed_values for name in names
                if is_cached(name, loaded, run_schedule, seed, device, chosen.decoder, cache_dir, weights[name])]
    if say:
        say(f"  {len(names) * len(seed_values)} networks ({chosen.name} setting) on {loaded.describe()}")
    jobs = [(name, seed) for seed in seed_values for name in names]
    entries = {job: cache_entry(job[0], loaded, run_schedule, job[1], device, chosen.decoder, cache_dir,
                                weights[job[0]]) for job in jobs}
    first: dict[Path, tuple[str, int]] = {}  # one job per network: names of one architecture share it
    for job in jobs:
        first.setdefault(entries[job], job)
    in_processes: set[Path] = set()
    incomplete: list[dict] = []
    if device == "cpu":
        todo = [job for entry, job in first.items()
                if not is_cached(job[0], loaded, run_schedule, job[1], device, chosen.decoder, cache_dir,
                                 weights[job[0]])]
        cores = os.cpu_count() or 1
        count = min(len(todo), cores) if workers is None else validation.integer("workers", workers, minimum=1)
        if count > 1 and len(todo) > 1:
            incomplete = _train_in_processes(todo, loaded, run_schedule, device, chosen.decoder, cache_dir,
                                             min(count, len(todo)), progress, say, weights)
            in_processes = {entries[job] for job in todo}
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
            net.cached = False  # trained by this call (in a worker process), loaded here from what it wrote
        seen.add(entry)
        nets.append(net)
    if incomplete:
        raise IncompleteTraining(train_module.incomplete_message(incomplete), incomplete)
    return nets


def _train_one(job: tuple) -> tuple[list[str], dict | None]:
    """A worker process: train (or find cached) one network (on ``train.TRAIN_THREADS`` threads). Its notes (why
    it retrains, a wait for another process) and result line, and the record of an incomplete run (or None)."""
    name, seed, data, schedule, device, decoder, cache_dir, progress, registration, backbone_weights = job
    if registration is not None:  # a name registered in the caller (register_variant): a spawned process has
        base, changes = registration  # only the built-ins until it registers the same variant itself
        register_variant(name, base, exist_ok=True, **changes)
    notes: list[str] = []
    # each worker's own tqdm bar on the shared stderr (they take turns on the last line of a terminal)
    try:
        net = train_network(name, data, schedule, seed, device, decoder=decoder, cache_dir=cache_dir,
                            progress=progress, say=notes.append, backbone_weights=backbone_weights)
    except IncompleteTraining as err:
        return notes, err.records[0]
    r = net.record
    return notes + [f"  {name} seed {seed}: own val mIoU {100 * r['val_miou']:.1f}% after {r['steps']} steps "
                    f"({r['stop_reason']}, {r['seconds']:.0f} s)"], None


def _train_in_processes(todo, data, schedule, device, decoder, cache_dir, count, progress, say,
                        weights: dict | None = None) -> list[dict]:
    """Train ``todo`` [(name, seed)] in ``count`` spawned processes (the cache is written whole by each, so the
    caller then loads every network from it). In the given order: put the slowest first. The records of the runs
    the time guard stopped (nothing cached for them)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    if say:
        say(f"  training {len(todo)} networks in {count} processes at once, {train_module.TRAIN_THREADS} thread(s) "
            "each")

    def registration(name: str) -> tuple[str, dict] | None:
        info = variant_info(name)
        return (info.base, dict(info.changes)) if info.base else None

    jobs = [(n, s, data, schedule, device, decoder, cache_dir, progress, registration(n), (weights or {}).get(n))
            for n, s in todo]
    incomplete = []
    with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_train_one, job) for job in jobs]
        with tqdm(total=len(futures), desc="networks trained", unit="net", file=sys.stderr,
                  disable=not progress) as bar:
            for future in as_completed(futures):
                lines, stopped = future.result()
                bar.update(1)
                if stopped is not None:
                    incomplete.append(stopped)
                if say:
                    for line in lines:
                        say(line)
    return incomplete
