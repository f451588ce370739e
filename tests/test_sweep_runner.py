"""run_sweep's own decisions, with every job run in this process by a recording executor: complexity jobs run
before any timing job; on SLURM one array per phase, the timing array with one GPU per job (0 for complexity);
locally one slot per GPU for CUDA timing, each pinned to its own GPU, and one slot for CPU timing.

The jobs are real (shape-only counts; CUDA timing configurations fail at once on a machine without CUDA and
become error rows), so the records are the sweep's own."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import bench.sweeps.runner as runner
from bench.sweeps import merged_frame, parse_spec, run_sweep

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the timing jobs must fail fast (no CUDA here)")


class Done:
    def __init__(self, job_id: str, value) -> None:
        self.job_id, self.value = job_id, value

    def done(self) -> bool:
        return True

    def result(self):
        return self.value


class Recorder:
    """Stands in for make_executor: every executor it makes logs what it was made with and what it ran."""

    def __init__(self, run: bool = True) -> None:
        self.executors: list[dict] = []
        self.ran: list[tuple[int, list[str]]] = []  # (executor index, kinds of the batch's configurations)
        self.run = run

    def __call__(self, kind: str, folder: Path, gpus: int = 0, visible_gpu: int | None = None, **kwargs):
        index = len(self.executors)
        self.executors.append({"kind": kind, "gpus": gpus, "visible_gpu": visible_gpu})
        recorder = self

        class Executor:
            def submit(self, fn, batch, out):
                recorder.ran.append((index, [c["kind"] for c in batch]))
                return Done(f"{index}.{len(recorder.ran)}", fn(batch, out) if recorder.run else None)

            def map_array(self, fn, batches, outs):
                return [self.submit(fn, b, o) for b, o in zip(batches, outs, strict=True)]

        return Executor()


def spec(device: str, measure=("complexity", "time"), chunk: int = 1):
    return parse_spec({"measure": list(measure), "variants": ["rf_lw_mbv2", "rf_lw:resnet18"], "sizes": ["64x64"],
                       "device": device, "chunk": chunk, "timing": {"runs": 2, "min_runs": 2} if device == "cpu" else
                       {"runs": 2}})


def test_slurm_one_array_per_phase_complexity_first_and_one_gpu_per_timing_job(tmp_path, monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(runner, "make_executor", recorder)
    monkeypatch.setattr(runner, "slurm_available", lambda: True)  # the recorder stands in for the cluster
    status = run_sweep(spec("cuda"), tmp_path, executor="slurm", slurm_partition="gpu", progress=None, poll_s=0)
    assert recorder.executors == [{"kind": "slurm", "gpus": 0, "visible_gpu": None},
                                  {"kind": "slurm", "gpus": 1, "visible_gpu": None}]
    assert recorder.ran == [(0, ["complexity"]), (0, ["complexity"]), (1, ["time"]), (1, ["time"])]
    assert (status.done, status.failed, status.left) == (2, 2, 0)  # no CUDA here: the timing rows are errors
    merged = merged_frame(tmp_path)
    assert (merged[merged.kind == "time"].error.str.contains("torch.cuda.is_available")).all()


def test_slurm_gpus_per_job_goes_to_the_timing_array_only(tmp_path, monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(runner, "make_executor", recorder)
    monkeypatch.setattr(runner, "slurm_available", lambda: True)
    run_sweep(spec("cuda"), tmp_path, executor="slurm", slurm_gpus_per_job=2, progress=None, poll_s=0)
    assert [e["gpus"] for e in recorder.executors] == [0, 2]


def test_local_cuda_timing_gets_one_slot_per_gpu_each_pinned(tmp_path, monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(runner, "make_executor", recorder)
    run_sweep(spec("cuda"), tmp_path, executor="local", workers=3, gpus=2, progress=None, poll_s=0)
    complexity_slots = [e for e in recorder.executors if e["visible_gpu"] is None]
    timing_slots = [i for i, e in enumerate(recorder.executors) if e["visible_gpu"] is not None]
    assert len(complexity_slots) == 3  # complexity: all workers
    assert [recorder.executors[i]["visible_gpu"] for i in timing_slots] == [0, 1]  # min(workers, GPUs), one each
    kinds = [k for _, batch in recorder.ran for k in batch]
    assert kinds == ["complexity", "complexity", "time", "time"]  # phase by phase
    assert all(i in timing_slots for i, batch in recorder.ran if batch == ["time"])


def test_local_cpu_timing_runs_one_job_at_a_time(tmp_path, monkeypatch):
    recorder = Recorder(run=False)  # the slots are what is checked: no CPU timing is run here
    monkeypatch.setattr(runner, "make_executor", recorder)
    run_sweep(spec("cpu", measure=("time",)), tmp_path, executor="local", workers=4, progress=None, poll_s=0)
    assert recorder.executors == [{"kind": "local", "gpus": 0, "visible_gpu": None}]
    assert [batch for _, batch in recorder.ran] == [["time"], ["time"]]
