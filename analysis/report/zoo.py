"""Zoo section: the complexity of every registered name (the "any backbone" zoo), run as a sweep.

The shipped spec ``bench/sweeps/specs/zoo.toml`` runs on submitit's local executor with 2 workers
into ``.cache/sweeps/zoo`` (a rerun reuses the records: counts do not change), and is merged and
drawn by the same code as ``python -m analysis sweep-report``.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.sweeps import SPECS, load_spec, merged_frame, run_sweep

from .files import Artifact, Section
from .sweep import annotate, write_sweep_report

FOLDER = "zoo"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "sweeps" / "zoo"


def build(out: Path, workers: int = 2, cache: Path = CACHE) -> Section:
    spec = load_spec(SPECS / "zoo.toml")
    start = time.perf_counter()
    status = run_sweep(spec, cache, executor="local", workers=workers)
    seconds = time.perf_counter() - start
    if status.failed or status.left:
        raise RuntimeError(f"zoo sweep incomplete: {status.line()}; " + "; ".join(status.crashed_jobs))
    frame = annotate(merged_frame(cache))
    write_sweep_report(frame, out / FOLDER, "Zoo", size=(512, 512))
    families = frame.groupby("family").variant.nunique()
    text = (f"{frame.variant.nunique()} names ({', '.join(f'{n} {f}' for f, n in families.items())}) at "
            f"{frame.height.nunique()} sizes, counted shape-only in a sweep of {status.total} configurations "
            f"({status.total - status.skipped} run now in {seconds:.0f} s with {workers} local "
            f"worker{'s' if workers > 1 else ''}, "
            f"{status.skipped} reused from {cache.name}).")
    artifacts = [
        Artifact(f"{FOLDER}/family_cost.png", "Decoder cost on every backbone",
                 "each family's FLOPs vs LW's; parameters vs FLOPs with Pareto fronts"),
        Artifact(f"{FOLDER}/family_cost.md", "Family cost per backbone (table)", "FLOPs at 512x512 and ratios"),
        Artifact(f"{FOLDER}/sweep.md", "Every zoo record", "params and four conventions, both sizes"),
    ]
    settings = ("bench/sweeps/specs/zoo.toml on submitit's local executor, 2 workers; shape-only counts, batch 1, "
                "21 classes; FLOPs = MACs + pooling windows (the paper's convention)")
    return Section("Zoo: every family on every backbone", artifacts, text, settings, [], FOLDER)
