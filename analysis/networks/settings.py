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
                          seeds=1, device="cpu", decoder=CPU_DECODER, backbone="mobilenet_v2"),
    # Not run yet (no GPU was lent): 9 networks, each capped at 0.45 min, so all of them fit 5 minutes on one
    # H100/H200-class GPU; the plateau rule is meant to end them before the cap. The cpu setting's optimizer and lr
    # (SGD 0.15), untested at these widths and this size.
    "gpu": NetworkSetting("gpu", Schedule(size=256, lr=0.15, max_steps=1500, eval_every=50, patience=4, min_delta=0.005,
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
    ``workers``: on a CPU, networks not yet cached are trained this many at a time, each in its own process
    (None: one per core, at most one per network; 1: in this process). Every CPU training runs on one thread
    (``train.TRAIN_THREADS``: the weights do not depend on the machine's core count), so the cores are used by
    training several networks at once.
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
                                progress, say)
            in_processes = todo
    nets = [train_network(name, loaded, run_schedule, seed, device, decoder=chosen.decoder, cache_dir=cache_dir,
                          progress=progress, say=say)
            for name, seed in jobs]
    for net, job in zip(nets, jobs, strict=True):
        if job in in_processes:
            net.cached = False  # trained by this call (in a worker process), loaded here from what it wrote
    return nets


def _train_one(job: tuple) -> str:
    """A worker process: train (or find cached) one network (on ``train.TRAIN_THREADS`` threads)."""
    name, seed, data, schedule, device, decoder, cache_dir, progress, registration = job
    if registration is not None:  # a name registered in the caller (register_variant): a spawned process has
        base, changes = registration  # only the built-ins until it registers the same variant itself
        register_variant(name, base, exist_ok=True, **changes)
    # each worker's own tqdm bar on the shared stderr (they take turns on the last line of a terminal)
    net = train_network(name, data, schedule, seed, device, decoder=decoder, cache_dir=cache_dir, progress=progress)
    r = net.record
    return (f"  {name} seed {seed}: own val mIoU {100 * r['val_miou']:.1f}% after {r['steps']} steps "
            f"({r['stop_reason']}, {r['seconds']:.0f} s)")


def _train_in_processes(todo, data, schedule, device, decoder, cache_dir, count, progress, say) -> None:
    """Train ``todo`` [(name, seed)] in ``count`` spawned processes (the cache is written whole by each, so the
    caller then loads every network from it). In the given order: put the slowest first."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    if say:
        say(f"  training {len(todo)} networks in {count} processes at once, {train_module.TRAIN_THREADS} thread(s) "
            "each")

    def registration(name: str) -> tuple[str, dict] | None:
        info = variant_info(name)
        return (info.base, dict(info.changes)) if info.base else None

    jobs = [(n, s, data, schedule, device, decoder, cache_dir, progress, registration(n)) for n, s in todo]
    with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_train_one, job) for job in jobs]
        with tqdm(total=len(futures), desc="networks trained", unit="net", file=sys.stderr,
                  disable=not progress) as bar:
            for future in as_completed(futures):
                line = future.result()
                bar.update(1)
                if say:
                    say(line)



