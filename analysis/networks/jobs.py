"""Training as jobs on the sweeps' executors: one job per network, so a set, its controls or every subset of an
ablation spec's path on many seeds trains on a SLURM cluster as easily as the timing sweeps run there.

``python -m analysis train ... --executor local|slurm|debug`` (:func:`train_as_jobs`):

1. the shared pretrained backbone, where the setting has one and the weights store does not hold it yet: one job
   per backbone architecture, waited for (every network's key holds its digest);
2. every network the store does not hold yet: one job each (names of one architecture: one job), each calling
   :func:`analysis.networks.trained_set` for its one (variant, seed) on one thread, which writes its store entry
   whole under the entry's lock.

Executors are the sweeps' (:func:`bench.sweeps.runner.make_executor`, submitit): ``local`` runs real subprocesses,
at most ``workers`` at a time; ``slurm`` submits one array (a GPU per job where the device is CUDA); ``debug`` runs
each job in this process (submitit's DebugExecutor: a failed job opens pdb). A job that dies leaves nothing in the
store, so running the same command again resumes: only what is still missing is submitted. Job logs go to
``<cache>/.jobs/<time>/``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import validation
from bench.errors import UsageError
from bench.models import register_again, variant_info
from bench.models.checkpoints import state_dict_file
from bench.sweeps.runner import job_error

from ..datasets.synthetic import SyntheticSpec
from . import train as train_module
from .recipe import Schedule
from .store import decoder_layers

EXECUTORS = ("local", "slurm", "debug")


@dataclass
class JobsOutcome:
    submitted: int = 0  # networks (and pretrainings) submitted as jobs
    already_cached: int = 0  # networks the store held before
    failed: list[str] = field(default_factory=list)  # one line per job that ended without its network
    trained: set[tuple[str, int]] = field(default_factory=set)  # (variant, seed) of the networks jobs trained


def train_job(job: dict) -> str:
    """One job: register its name where needed, then train (or find) its one network, or the shared backbone when
    ``job["pretrain"]``. Returns one line (the job's result)."""
    from .sets import trained_set
    from .settings import network_setting

    def say(line: str) -> None:  # stderr: the job's log (or, run in this process, never the caller's --json stdout)
        print(line, file=sys.stderr)

    register_again(job["registration"])
    setting = network_setting(job["setting"])
    if job["pretrain"]:
        from .data import load_data
        from .pretrain import pretrained_backbone

        data = load_data(setting.data if job["data"] is None else job["data"], job["schedule"].size,
                         job["num_classes"], progress=say, cache=Path(job["cache_dir"]) / "synthetic-voc")
        path = pretrained_backbone(setting.pretrain, variant_info(job["variant"]).backbone, data, job["schedule"],
                                   job["device"], Path(job["cache_dir"]), progress=False, say=say)
        return f"shared backbone for {job['variant']}: {path}"
    (net,) = trained_set(setting, [job["variant"]], [job["seed"]], data=job["data"], device=job["device"],
                         num_classes=job["num_classes"], schedule=job["schedule"], cache_dir=job["cache_dir"],
                         progress=False, say=say, workers=1, backbone_weights=job["backbone_weights"])
    return (f"{job['variant']} seed {job['seed']}: own val mIoU {100 * net.record['val_miou']:.1f}% after "
            f"{net.record['steps']} steps ({net.record['stop_reason']}, {'cached' if net.cached else 'trained'})")


def train_as_jobs(setting, variants: Sequence[str] | None, seeds: int | Sequence[int] | None, executor: str,
                  workers: int = 2, timeout_min: float = 60, slurm_partition: str | None = None,
                  data: SyntheticSpec | str | Path | None = None, device: str | None = None,
                  num_classes: int | None = None, schedule: Schedule | None = None,
                  cache_dir: str | Path | None = None, backbone_weights: str | Path | None = None,
                  say: Callable[[str], None] = print, poll_s: float = 2.0) -> JobsOutcome:
    """Train what the weights store does not hold of ``setting``'s ``variants`` x ``seeds`` as jobs on
    ``executor`` (see the module docstring); the arguments are :func:`~analysis.networks.trained_set`'s."""
    from bench.sweeps.runner import slurm_available

    from .data import load_data
    from .pretrain import pretrained_backbone
    from .settings import network_setting, seed_list, variant_list

    validation.choice("--executor", executor, EXECUTORS)
    validation.integer("--workers", workers, minimum=1)
    if executor == "slurm" and not slurm_available():
        raise UsageError("executor 'slurm' needs a SLURM cluster, but this machine has none (no srun on PATH, which "
                         "is how submitit tells); run it on a SLURM login node, or use --executor local")
    chosen = network_setting(setting)
    names = chosen.variants() if variants is None else variant_list(variants, say)
    seed_values = list(range(chosen.seeds)) if seeds is None else seed_list(seeds, say)
    run_schedule = schedule or chosen.schedule
    run_schedule.validate()
    device = validation.available_device("device", device or chosen.device)
    backbone_weights = state_dict_file("backbone checkpoint", backbone_weights or chosen.backbone_weights)
    cache_dir = Path(cache_dir or train_module.CACHE).resolve()  # jobs on other machines write where we read
    loaded = load_data(chosen.data if data is None else data, run_schedule.size, num_classes, progress=say,
                       cache=cache_dir / "synthetic-voc")
    data = str(Path(data).resolve()) if isinstance(data, (str, Path)) else data
    base = {"setting": chosen, "data": data, "schedule": run_schedule, "device": device, "num_classes": num_classes,
            "cache_dir": str(cache_dir), "backbone_weights": backbone_weights, "pretrain": False}
    logs = cache_dir / ".jobs" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    outcome = JobsOutcome()
    weights = {name: backbone_weights for name in names}
    if backbone_weights is None and chosen.pretrain is not None:
        backbones = {variant_info(n).backbone: n for n in reversed(names)}  # one name per backbone architecture
        missing = [n for b, n in backbones.items()
                   if pretrained_backbone(chosen.pretrain, b, loaded, run_schedule, device, cache_dir, False, None,
                                          only_cached=True) is None]
        if missing:
            say(f"  phase 1: {len(missing)} shared backbone(s) to pretrain ({executor} executor)")
            _run([{**base, "variant": n, "seed": -1, "registration": variant_info(n).registration(), "pretrain": True}
                  for n in missing], executor, workers, timeout_min, slurm_partition, device, logs, outcome, say,
                 poll_s)
            outcome.submitted += len(missing)
        shared = {b: pretrained_backbone(chosen.pretrain, b, loaded, run_schedule, device, cache_dir, False, None,
                                         only_cached=True) for b in backbones}
        if any(path is None for path in shared.values()):
            return outcome  # its job failed (in outcome.failed): no network can start from it
        weights = {n: shared[variant_info(n).backbone] for n in names}
    first: dict[Path, tuple[str, int]] = {}  # one job per network: names of one architecture share it
    held: dict[Path, bool] = {}
    for seed in seed_values:
        for name in names:
            entry, held[entry] = train_module.lookup(name, loaded, run_schedule, seed, device, chosen.decoder,
                                                     cache_dir, weights[name])
            first.setdefault(entry, (name, seed))
    todo = [job for entry, job in first.items() if not held[entry]]
    outcome.already_cached = len(first) - len(todo)
    for name in dict.fromkeys(n for n, _ in todo):  # said here, not only in the job's log
        note = train_module.kept_over_setting_note(decoder_layers(name, chosen.decoder)[1])
        if note:
            say(f"  {name}: {note}")
    say(f"  {len(todo)} network(s) to train as jobs ({executor} executor), {outcome.already_cached} already in the "
        f"weights store; logs in {logs}")
    _run([{**base, "variant": n, "seed": s, "registration": variant_info(n).registration()} for n, s in todo],
         executor, workers, timeout_min, slurm_partition, device, logs, outcome, say, poll_s)
    outcome.submitted += len(todo)
    return outcome


def _run(jobs: list[dict], executor: str, workers: int, timeout_min: float, slurm_partition: str | None,
         device: str, logs: Path, outcome: JobsOutcome, say: Callable[[str], None], poll_s: float) -> None:
    """Submit ``jobs`` and wait for them all; a job that raised is one line in ``outcome.failed``."""
    from bench.sweeps.runner import make_executor

    if not jobs:
        return
    gpus = 1 if device.startswith("cuda") else 0
    if executor == "slurm":
        ex = make_executor("slurm", logs, gpus=gpus, timeout_min=timeout_min, slurm_partition=slurm_partition)
        with ex.batch():
            submitted = [(ex.submit(train_job, job), job) for job in jobs]
        for job, spec in submitted:
            _collect(job, spec, outcome, say)
        return
    ex = make_executor(executor, logs, timeout_min=timeout_min)
    queue, running = list(jobs), []
    try:
        while queue or running:
            while queue and len(running) < workers:
                spec = queue.pop(0)
                if executor == "debug":  # runs here, now, when its result is asked for
                    _collect(ex.submit(train_job, spec), spec, outcome, say)
                    continue
                running.append((ex.submit(train_job, spec), spec))
            for item in [r for r in running if r[0].done()]:
                running.remove(item)
                _collect(*item, outcome, say)
            if running:
                time.sleep(poll_s)
    except BaseException:  # an interrupt or SIGTERM: the jobs this call started stop with it, none is orphaned
        for job, _ in running:
            job.cancel(check=False)
        raise


def _collect(job, spec: dict, outcome: JobsOutcome, say: Callable[[str], None]) -> None:
    what = f"{spec['variant']}" + (" (shared backbone)" if spec["pretrain"] else f" seed {spec['seed']}")
    try:
        say(f"  job {job.job_id}: {job.result()}")
        if not spec["pretrain"]:
            outcome.trained.add((spec["variant"], spec["seed"]))
    except Exception as err:  # the job died or raised: nothing of it is in the store, a rerun resumes it
        from submitit.core.utils import FailedJobError, UncompletedJobError

        ended = isinstance(err, UncompletedJobError) and not isinstance(err, FailedJobError)  # no result, no error
        cause = (f"ended without a result: killed, or over its --timeout-min; its log: {Path(job.paths.stderr)}"
                 if ended else job_error(err))
        outcome.failed.append(f"{what}: job {job.job_id} {cause}")
        print(f"  FAILED: {outcome.failed[-1]}", file=sys.stderr)
