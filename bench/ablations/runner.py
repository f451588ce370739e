"""Running an ablation study on the sweep runner: one record per (variant, size) count and per paired timing.

The configurations come from :meth:`AblationSpec.configurations` and go through
:func:`bench.sweeps.runner.run_sweep` unchanged (resumable, submitit: local, slurm or debug). Each
configuration carries the registration of every name it uses (base, changes, resolved DecoderSpec and its
hash), so a worker process registers them before measuring, and every record stores the fully resolved
decoder. Counting is :func:`bench.complexity.complexity`; timing is :func:`bench.speedup.paired_speedup`,
each variant against its reference (its path predecessor, else its base).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .. import validation
from ..sweeps.runner import SweepStatus, run_sweep
from .spec import MEASURES, AblationSpec


def run_ablation(
    spec: AblationSpec,
    out: str | Path,
    measure: tuple[str, ...] | None = None,
    executor: str = "local",
    workers: int = 1,
    progress: Callable[[str], None] | None = print,
    **sweep_options,
) -> SweepStatus:
    """Measure every variant of ``spec`` (``measure`` overrides the spec's list) into ``out/records``."""
    if measure is not None:
        measure = tuple(validation.choice("measure", m, MEASURES) for m in measure)
        spec = replace(spec, measure=measure)
    return run_sweep(spec, out, executor=executor, workers=workers, progress=progress, **sweep_options)


def variant_rows(spec: AblationSpec) -> list[dict]:
    """What ``--print`` shows: every resolved variant with its base, changes, hash and parameter count."""
    from ..models import meta_model
    from .spec import _progress

    rows = []
    for v in _progress(list(spec.variants), "counting parameters", at_least=50):  # about 0.1 s each on ResNet-50
        params = sum(p.numel() for p in meta_model(v.name, spec.num_classes).parameters())
        rows.append({"name": v.name, "group": v.group, "base": v.base,
                     "changes": ", ".join(f"{k}={val}" for k, val in v.changes) or "-",
                     "hash": v.hash, "params_m": params / 1e6, "timed_against": v.reference})
    return rows
