"""Running a sweep on submitit: local subprocesses, a SLURM cluster, or in-process for debugging.

The configurations without a record are cut into jobs of at most ``spec.chunk`` (dealt round-robin,
so slow and fast configurations mix) and submitted:

- ``local`` (submitit's LocalExecutor, real subprocesses): at most ``workers`` jobs at a time.
  Complexity jobs run in parallel; timing jobs never share a device: on a CPU machine one at a time
  (unless the spec says ``timing_parallel = true``), on a GPU machine one per GPU, pinned with
  CUDA_VISIBLE_DEVICES. Complexity jobs finish before timing jobs start, so nothing else runs
  beside a timing job.
- ``slurm``: every job submitted as an array; the scheduler's allocation gives each timing job its
  own GPUs (``--slurm-gpus-per-job``, default 1 for timing jobs, 0 otherwise).
- ``debug``: submitit's DebugExecutor, in this process (for tests and debugging).

A rerun skips configurations whose record exists (``retry_failed`` reruns the failed ones), so a
sweep killed half-way, preempted or with a crashed job is resumed by running it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import validation
from ..errors import UsageError
from ..models import variant_info
from .jobs import record_path, run_configs, subjects
from .merge import read_records
from .spec import TIMING_KINDS, SweepSpec, config_id

EXECUTORS = ("local", "slurm", "debug")
MAX_TIMEOUT_MIN = 7 * 24 * 60  # a week: past any cluster's time limit


@dataclass
class SweepStatus:
    total: int
    done: int = 0
    failed: int = 0
    running: int = 0
    skipped: int = 0  # already done before this run
    crashed_jobs: list[str] = field(default_factory=list)  # jobs that ended without finishing their configurations

    @property
    def left(self) -> int:
        return self.total - self.done - self.failed - self.running

    def line(self) -> str:
        return (f"done {self.done} / running {self.running} / failed {self.failed} / left {self.left} "
                f"(of {self.total}; {self.skipped} done before)")


def deal(configs: list[dict], chunk: int) -> list[list[dict]]:
    """Into ceil(n / chunk) jobs, round-robin by backbone: the configurations of one variant (or pair) stay in
    one job, so it builds that model once for all its sizes, the variants of one backbone share its probed
    stages, and slow and fast backbones mix across jobs."""
    n = max(1, -(-len(configs) // chunk))
    by_backbone: dict[tuple, list[dict]] = {}  # one backbone's variants together: its stages are probed once per job
    for group in subjects(configs):
        name = group[0].get("variant") or group[0].get("base")
        by_backbone.setdefault((group[0]["kind"], variant_info(name).backbone), []).extend(group)
    jobs: list[list[dict]] = [[] for _ in range(n)]
    for i, group in enumerate(by_backbone.values()):
        jobs[i % n].extend(group)
    return [j for j in jobs if j]


def make_executor(kind: str, folder: Path, gpus: int = 0, visible_gpu: int | None = None,
                  timeout_min: float = 60, slurm_partition: str | None = None, slurm_array_parallelism: int = 32,
                  slurm_extra: dict | None = None):
    """A submitit executor for one kind of job."""
    import submitit

    if kind == "debug":
        return submitit.DebugExecutor(folder=folder)
    if kind == "local":
        executor = submitit.LocalExecutor(folder=folder)
        params = {"timeout_min": timeout_min}
        if visible_gpu is not None:
            params.update(gpus_per_node=1, visible_gpus=(visible_gpu,))
        executor.update_parameters(**params)
        return executor
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params = {"timeout_min": timeout_min, "slurm_array_parallelism": slurm_array_parallelism,
              "gpus_per_node": gpus, "tasks_per_node": 1, "cpus_per_task": 8 if gpus else 2}
    if slurm_partition:
        params["slurm_partition"] = slurm_partition
    executor.update_parameters(**params, **(slurm_extra or {}))
    return executor


def _count(status: SweepStatus, out: Path, ids: set[str]) -> None:
    records = [r for r in read_records(out) if r["id"] in ids]
    status.done = sum(1 for r in records if not r["error"])
    status.failed = len(records) - status.done


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    executor: str = "local",
    workers: int = 1,
    timeout_min: float = 60,
    slurm_partition: str | None = None,
    slurm_gpus_per_job: int | None = None,
    retry_failed: bool = False,
    gpus: int | None = None,
    progress: Callable[[str], None] | None = print,
    poll_s: float = 0.5,
) -> SweepStatus:
    """Run every configuration of ``spec`` that has no record in ``out`` (see the module docstring)."""
    validation.choice("executor", executor, EXECUTORS)
    validation.integer("workers", workers, minimum=1, maximum=validation.MAX_THREADS)
    validation.number("timeout_min", timeout_min, minimum=0.1, maximum=MAX_TIMEOUT_MIN)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"the sweep folder {out} is an existing file, not a folder; name a folder for the records "
                         "(it is made if missing; a rerun skips what it holds)")
    if executor == "slurm" and not slurm_available():
        raise UsageError("executor 'slurm' needs a SLURM cluster, but this machine has none (no srun on PATH, "
                         "which is how submitit tells); run it on a SLURM login node, or use --executor local")
    validation.writable_folder("the sweep folder", out, make=False)
    say = progress or (lambda msg: None)
    for note in spec.notes:
        say(f"note: {note}")
    configs = spec.configurations()
    ids = {config_id(c) for c in configs}
    if retry_failed:
        for r in read_records(out):
            if r["id"] in ids and r["error"]:
                record_path(out, r["config"]).unlink()
    todo = [c for c in configs if not record_path(out, c).exists()]
    status = SweepStatus(total=len(configs), skipped=len(configs) - len(todo))
    _count(status, out, ids)
    say(f"sweep: {len(configs)} configurations, {len(todo)} to run ({executor} executor)")
    phases = [[c for c in todo if c["kind"] not in TIMING_KINDS], [c for c in todo if c["kind"] in TIMING_KINDS]]
    logs = out / "logs"
    for phase, timing in zip(phases, (False, True), strict=True):
        if not phase:
            continue
        cuda = timing and any(c.get("device", "cpu").startswith("cuda") for c in phase)
        if executor == "slurm":
            per_job = (slurm_gpus_per_job if slurm_gpus_per_job is not None else 1) if cuda else 0
            ex = make_executor("slurm", logs, gpus=per_job, timeout_min=timeout_min, slurm_partition=slurm_partition)
            jobs = ex.map_array(run_configs, deal(phase, spec.chunk), [str(out)] * len(deal(phase, spec.chunk)))
            _wait(jobs, status, out, ids, say, poll_s)
            continue
        if cuda:
            n_gpus = gpus if gpus is not None else _visible_gpus()
            slots = max(1, min(workers, n_gpus))
        elif timing and not spec.timing_parallel:
            slots = 1  # timing on the CPU: one job at a time, nothing beside it
        else:
            slots = workers
        batches = deal(phase, spec.chunk)
        executors = [make_executor(executor, logs, visible_gpu=i if cuda else None, timeout_min=timeout_min)
                     for i in range(slots)]
        _run_in_slots(batches, executors, status, out, ids, say, poll_s)
    _count(status, out, ids)
    status.running = 0
    say(status.line())
    return status


def slurm_available() -> bool:
    """Whether jobs can be submitted to SLURM here: submitit's own test (srun on PATH)."""
    import submitit

    return submitit.SlurmExecutor.affinity() > 0


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def _run_in_slots(batches: list[list[dict]], executors: list, status: SweepStatus, out: Path, ids: set[str],
                  say: Callable[[str], None], poll_s: float) -> None:
    """Keep every slot busy with one job until the batches are done."""
    queue = list(batches)
    running: dict[int, tuple[object, list[dict]]] = {}
    last, said = "", 0.0
    while queue or running:
        for slot, ex in enumerate(executors):
            if slot not in running and queue:
                batch = queue.pop(0)
                running[slot] = (ex.submit(run_configs, batch, str(out)), batch)
                if type(ex).__name__ == "DebugExecutor":
                    running[slot][0].result()  # runs here, now
        for slot, (job, batch) in list(running.items()):
            if job.done():
                _finish(job, batch, status, out)
                del running[slot]
        _count(status, out, ids)
        status.running = sum(not record_path(out, c).exists() for _, batch in running.values() for c in batch)
        if status.line() != last and (time.monotonic() - said > 5 or not (queue or running)):
            last, said = status.line(), time.monotonic()
            say(last)
        if running:
            time.sleep(poll_s)


def job_error(err: BaseException) -> str:
    """One line for a job that raised: the job's own exception (the last line of the traceback submitit wraps in a
    FailedJobError) and the job's error log, else the error's first line."""
    text = str(err).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    if "Traceback (most recent call last):" in text:
        trace = text.split("Traceback (most recent call last):")[-1].split("\n-----")[0]
        cause = [line for line in trace.splitlines() if line.strip() and not line.startswith(" ")]
        logs = [line.strip()[2:] for line in lines if line.strip().startswith("- ") and line.endswith(".err")]
        if cause:
            return cause[-1].strip()[:400] + (f" (log: {logs[0]})" if logs else "")
    first = lines[0] if lines else ""
    return f"{type(err).__name__}: {first[:400]}"


def _finish(job, batch: list[dict], status: SweepStatus, out: Path) -> None:
    try:
        job.result()
    except Exception as err:  # the job died (killed, timed out, crashed): its unfinished configurations stay "left"
        missing = [config_id(c) for c in batch if not record_path(out, c).exists()]
        status.crashed_jobs.append(f"job {job.job_id}: {job_error(err)} "
                                   f"({len(missing)} configuration(s) left; rerun to resume)")


def _wait(jobs: list, status: SweepStatus, out: Path, ids: set[str], say, poll_s: float) -> None:
    last = ""
    pending = list(jobs)
    while pending:
        for job in list(pending):
            if job.done():
                _finish(job, [], status, out)
                pending.remove(job)
        _count(status, out, ids)
        status.running = 0
        line = f"{len(pending)} job(s) queued or running; " + status.line()
        if line != last:
            say(line)
            last = line
        if pending:
            time.sleep(max(poll_s, 5.0))
