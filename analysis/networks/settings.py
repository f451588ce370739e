"""Named settings of the embedded default (both on the generated shapes data), and a trained set.

``cpu``: fits the CPU bench budget: MobileNet-v2 (torchvision's, from scratch) under the three families with
narrowed decoders (48 channels, 96 at level 4: the families' kernels, blocks and CRP unchanged), images at
128 px, one seed. ``gpu``: the same backbone, the families' own widths, images at 256 px (the probes' size),
three seeds. Any other backbone is one argument away (``NetworkSetting.backbone``, ``--backbone``).
Both use the same generated data (400 train / 80 val images) and the same schedule rules for every
family; they differ in image size, step limit, evaluation spacing and budget.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench import validation
from bench.errors import UsageTypeError
from bench.models import register_variant, variant_info

from ..datasets.synthetic import SyntheticSpec
from . import train as train_module
from .data import load_data
from .schedule import Schedule
from .train import TrainedNetwork, check_device, is_cached, train_network

CPU_DECODER = {"channels": 48, "top_channels": 96}
"""The CPU narrowing of every family's decoder (the probes and the ERF section use the same networks)."""
DATA = SyntheticSpec(n_train=400, n_val=80)


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

    def variants(self) -> list[str]:
        return [f"{family}:{self.backbone}" for family in self.families]


SETTINGS: dict[str, NetworkSetting] = {
    # Chosen by measurement on this project's 2-core AMD EPYC (AVX2), own val mIoU, one 1-thread process each (see
    # README "trained set"). ResNet-18 (the earlier backbone) at batch 8 of 96px crops, 2e-3 + cosine over 450:
    # rf 96.5%, rf_lw_rcu 90.6%, rf_lw 90.3%, but 0.38 s per LW step, 0.69 s per RF step (80% of LW's step is the
    # backbone), 432 s for the three in two processes. MobileNet-v2 at the same schedule: 0.15 s per LW step
    # (RF 0.47 s: its 3x3 decoder dominates), rf_lw 93.9% and rf 96.7% after 450, but rf_lw_rcu 89.1% (89.6% at
    # lr 3e-3). Batch 12 of 80px crops (about the same pixels per step) at 2e-3 + cosine: rf_lw_rcu 94.4% after 450
    # (89.6% with the decay over 400), rf_lw 92.7% and rf 96.6% with the decay over 400; rf_lw with the decay over
    # 350 (batch 8 of 96px): 83.7%. So 450 steps: LW needs them, RefineNet passes 92% by 225.
    # Decoder width (CPU_DECODER, the same for every family), batch 12 of 80px, 450 steps: at 64 channels (128 at
    # level 4) rf 97.0%, rf_lw_rcu 94.4%, rf_lw 93.4% (bench run, 325 s for the three); at 32 (64) rf 96.9% in 159 s
    # (about half its 64-channel time: RefineNet's 3x3 decoder is its cost) but rf_lw_rcu 89.2%; at 48 (96)
    # rf_lw_rcu 94.6%, rf_lw 92.9%: the narrowest width measured at which every family passes 90%.
    # lr 3e-3 does not buy a shorter schedule: over 350 steps rf_lw 90.5%, rf_lw_rcu 94.0%, rf 92.4% (4e-3: rf_lw
    # 90.3%); over 400, rf_lw 90.9%. Evaluations every 75 steps (6 per network; an RF evaluation of the 80 val
    # images takes 2.1 s in a 1-thread worker, LW's 1.0 s): the plateau rule then needs 225 steps without gain.
    # The budget only guards a stalled or shared machine (RefineNet needs about 3 min in a 1-thread worker here).
    "cpu": NetworkSetting("cpu", Schedule(size=128, crop=80, batch_size=12, lr=2e-3, decay="cosine", max_steps=450,
                                          eval_every=75, patience=3, min_delta=0.005, budget_min=8.0),
                          seeds=1, device="cpu", decoder=CPU_DECODER, backbone="mobilenet_v2"),
    # Not run here (no GPU was lent): 9 networks, each capped at 0.45 min, so all of them fit 5 minutes on one
    # H100/H200-class GPU; the plateau rule is meant to end them before the cap.
    "gpu": NetworkSetting("gpu", Schedule(size=256, max_steps=1500, eval_every=50, patience=4, min_delta=0.005,
                                          budget_min=0.45), seeds=3, device="cuda", backbone="mobilenet_v2"),
}


def network_setting(setting: str | NetworkSetting) -> NetworkSetting:
    if isinstance(setting, NetworkSetting):
        return setting
    if not isinstance(setting, str):
        raise UsageTypeError(f"setting must be a name ({', '.join(SETTINGS)}) or a NetworkSetting, got {setting!r}")
    return SETTINGS[validation.choice("setting", setting, SETTINGS)]


def trained_set(
    setting: str | NetworkSetting = "cpu",
    variants: Sequence[str] | None = None,
    seeds: int | Sequence[int] | None = None,
    data: SyntheticSpec | str | Path | None = None,
    device: str | None = None,
    num_classes: int | None = None,
    schedule: Schedule | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    say: Callable[[str], None] | None = print,
    workers: int | None = None,
) -> list[TrainedNetwork]:
    """Every (variant, seed) network of a setting, trained where the cache does not hold it yet.

    ``variants``: default the setting's three families on its backbone (with the setting's decoder
    changes; explicit variants get them too). ``seeds``: a count (0..N-1) or the seeds themselves.
    ``data``: a VOC-layout folder instead of the setting's generated data (read once for all networks).
    ``workers``: on a CPU, networks not yet cached are trained this many at a time, each in its own process with
    an equal share of the cores (None: one per core, at most one per network; 1: in this process). Small
    networks use a core each better than they share two: on a 2-core machine two processes train the set in
    about 0.8x the time of one.
    """
    chosen = network_setting(setting)
    names = list(variants) if variants is not None else chosen.variants()
    if isinstance(names, str) or not names:
        raise UsageTypeError(f"variants must be a non-empty list of variant names, got {variants!r}")
    for name in names:
        variant_info(name)
    if seeds is None:
        seed_list = list(range(chosen.seeds))
    elif isinstance(seeds, int) and not isinstance(seeds, bool):
        seed_list = list(range(validation.integer("seeds", seeds, minimum=1)))
    else:
        seed_list = [validation.integer("seed", s, minimum=0) for s in seeds]
    run_schedule = schedule or chosen.schedule
    run_schedule.validate()
    device = check_device(device or chosen.device)
    loaded = load_data(chosen.data if data is None else data, run_schedule.size, num_classes,
                       progress=say)
    if say:
        say(f"  {len(names) * len(seed_list)} networks ({chosen.name} setting) on {loaded.describe()}")
    jobs = [(name, seed) for seed in seed_list for name in names]
    cache_dir = Path(cache_dir or train_module.CACHE)  # resolved here: spawned workers must write where we read
    in_processes: list[tuple[str, int]] = []
    if device == "cpu":
        todo = [(n, s) for n, s in jobs
                if not is_cached(n, loaded, run_schedule, s, device, chosen.decoder, cache_dir)]
        cores = os.cpu_count() or 1
        count = min(len(todo), cores) if workers is None else validation.integer("workers", workers, minimum=1)
        if count > 1 and len(todo) > 1:
            _train_in_processes(todo, loaded, run_schedule, device, chosen.decoder, cache_dir, min(count, len(todo)),
                                max(1, cores // min(count, len(todo))), progress, say)
            in_processes = todo
    nets = [train_network(name, loaded, run_schedule, seed, device, decoder=chosen.decoder, cache_dir=cache_dir,
                          progress=progress, say=say)
            for name, seed in jobs]
    for net, job in zip(nets, jobs, strict=True):
        if job in in_processes:
            net.cached = False  # trained by this call (in a worker process), loaded here from what it wrote
    return nets


def _train_one(job: tuple) -> str:
    """A worker process: train (or find cached) one network with its share of the cores."""
    name, seed, data, schedule, device, decoder, cache_dir, threads, progress, registration = job
    if registration is not None:  # a name registered in the caller (register_variant): a spawned process has
        base, changes = registration  # only the built-ins until it registers the same variant itself
        register_variant(name, base, exist_ok=True, **changes)
    torch.set_num_threads(threads)
    # each worker's own tqdm bar on the shared stderr (they take turns on the last line of a terminal)
    net = train_network(name, data, schedule, seed, device, decoder=decoder, cache_dir=cache_dir, progress=progress)
    r = net.record
    return (f"  {name} seed {seed}: own val mIoU {100 * r['val_miou']:.1f}% after {r['steps']} steps "
            f"({r['stop_reason']}, {r['seconds']:.0f} s)")


def _train_in_processes(todo, data, schedule, device, decoder, cache_dir, count, threads, progress, say) -> None:
    """Train ``todo`` [(name, seed)] in ``count`` spawned processes (the cache is written whole by each, so the
    caller then loads every network from it). In the given order: put the slowest first."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    if say:
        say(f"  training {len(todo)} networks in {count} processes at once, {threads} thread(s) each")

    def registration(name: str) -> tuple[str, dict] | None:
        info = variant_info(name)
        return (info.base, dict(info.changes)) if info.base else None

    jobs = [(n, s, data, schedule, device, decoder, cache_dir, threads, progress, registration(n)) for n, s in todo]
    with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_train_one, job) for job in jobs]
        with tqdm(total=len(futures), desc="networks trained", unit="net", file=sys.stderr,
                  disable=not progress) as bar:
            for future in as_completed(futures):
                line = future.result()
                bar.update(1)
                if say:
                    say(line)



