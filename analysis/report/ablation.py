"""Ablation section: which change buys what, along the paper's path RF-50 -> LW-50, and CRP's pool axis.

``collect`` runs the shipped study ``bench/ablations/specs/paper-path.toml`` on the sweep runner (counts
are cached in ``.cache/ablations/paper-path``; times are measured afresh in each build) and counts every
subset of the path's changes shape-only for the Shapley values; ``write`` only tabulates and draws.
``python -m analysis ablation-report SPEC DIR`` draws the same tables and figures for one's own study from
the records of ``python -m bench ablate SPEC --out DIR``.

Conventions: FLOPs are the paper's (MACs + pooling window ops, ``bench.complexity.paper_convention``): a
5x5 max-pool is 25 ops per output, the separable 5x1 + 1x5 pool 10. Time: every distinct architecture
among the subsets of the path's changes is timed in interleaved pairs against the path's end
(``bench.speedup``), so Shapley values of CPU time exist too (``bench.ablations.attribution``).
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from bench.ablations import SPECS, AblationSpec, load_ablation, run_ablation
from bench.ablations.attribution import LogRatio, path_deltas, reverse_deltas, shapley_values, timed_attribution
from bench.ablations.spec import MEASURES, Path_, architecture_hash
from bench.errors import DataError, UsageError
from bench.sweeps import merged_frame, read_records
from bench.sweeps.spec import config_id

from .files import Artifact, Section, save_figure, save_table

FOLDER = "ablation"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "ablations" / "paper-path"
POOL_PAIR = ("rf_lw50", "lw50_separable_pool")


ERF_SIDE = 256  # canvases for the path's decoder-grid ERF (8x8 cells at level 4 of a ResNet)
ERF_CANVASES = 4
ERF_BOOT = 200
ERF_SIZE_WORDS = f"{ERF_SIDE}x{ERF_SIDE} px (a ResNet's level 4 is 8x8 cells there, level 1 64x64)"
ERF_THREADS = 1
"""The path's ERF runs on this many CPU threads whatever the machine has: its gradients' float order, and so the
interpolated 90% sides' last digits (about 4e-4 of a side), depend on the thread count, as a training's weights do
(``analysis.networks.loop.TRAIN_THREADS``). One thread also leaves the other core to the background pretraining
(``analysis.report.run``), where two threads beside it took 39 s against 29 s on one."""


@dataclass
class AblationData:
    steps: pd.DataFrame  # one row per path variant (step 0 = start)
    pool: pd.DataFrame  # the pool-implementation axis: counts, paired time, equality
    size: tuple[int, int]
    path: str
    timing_note: str
    num_classes: int = 21
    axes: pd.DataFrame | None = None  # grids: each axis's effect with the others held
    end: str | None = None  # the path's declared end variant
    erf: pd.DataFrame | None = None  # per path variant and level: the whole level's decoder-grid ERF at random init
    paths: list[tuple[Path_, pd.DataFrame]] = field(default_factory=list)  # every path: (path, its steps frame)
    variants: pd.DataFrame | None = None  # every variant of the spec at every size: counts, paired speed-up
    ignored: list[str] = field(default_factory=list)  # what the records folder held that the report left out, why


def path_frame(path: Path_, counts: pd.DataFrame, times: pd.DataFrame, hashes: dict[str, str]) -> pd.DataFrame:
    """Per step: its change, params and FLOPs, path / reverse / Shapley deltas of each (from the counts of every
    measured subset of the path's changes), and the same for time: each subset paired against the path's end
    (:func:`bench.ablations.attribution.timed_attribution`)."""
    n = len(path.steps)
    names = path.subset_names()
    by_name = counts.set_index("variant")  # the spec's own records only (select_records): one per name and size
    missing = [name for name in dict.fromkeys(names.values()) if name not in by_name.index]
    if missing:
        raise DataError(f"path {path.name!r}: no counts for {', '.join(missing)} (see select_records)")
    exact = len(names) == 2**n
    rows = []
    attribution = {}
    for metric in ("params", "paper_flops"):
        v = {s: float(by_name.loc[name, metric]) for s, name in names.items()}
        attribution[metric] = (path_deltas(n, v), reverse_deltas(n, v),
                               shapley_values(n, v) if exact else [math.nan] * n)
    timed = _time_attribution(path, times, hashes)
    for v in path.variants:
        rec = by_name.loc[v.name]
        row = {"step": v.step, "variant": v.name, "change": v.label, "hash": v.hash, "params": int(rec.params),
               "paper_flops": int(rec.paper_flops)}
        if timed:
            row["median_ms"] = timed["subset_ms"][frozenset(range(v.step))]
        if v.step:
            i = v.step - 1
            for metric in ("params", "paper_flops"):
                fwd, rev, shap = (a[i] for a in attribution[metric])
                row.update({f"{metric}_delta": fwd, f"{metric}_reverse_delta": rev, f"{metric}_shapley": shap})
            if timed:
                row.update(speedup=timed["path_speedup"][i], speedup_low=timed["path_speedup_low"][i],
                           speedup_high=timed["path_speedup_high"][i])
                row["time_effect"] = step_time_effect(row["speedup"], row["speedup_low"], row["speedup_high"])
                for key in ("path_ms", "reverse_ms", "shapley_ms"):
                    if key in timed:
                        row.update({f"time_{key}": timed[key][i], f"time_{key}_low": timed[f"{key}_low"][i],
                                    f"time_{key}_high": timed[f"{key}_high"][i]})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if timed:
        frame["chained_ms"] = frame["median_ms"]
        frame.attrs["pairs"] = timed["pairs"]
    return frame


TIME_EFFECT_RULE = ("time effect of a step: 'faster' where the whole 95% interval of its speed-up (time before / "
                    "after) is above 1, 'slower' where wholly below 1, 'inconclusive' where it contains 1 (the step "
                    "cannot be told apart from no change on this machine), 'no interval' where a subset it uses was "
                    "timed by one pair (analysis.verdicts.above)")


def step_time_effect(speedup: float, low: float, high: float) -> str:
    """Does a step buy time? ``TIME_EFFECT_RULE``, decided by the verdict module's one-sided rule."""
    from ..verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Interval, above

    if low != low or high != high:
        return "no interval"
    if low == high == speedup == 1.0:
        return "none (equal networks)"
    outcome = above(Interval(speedup, low, high), 1.0).outcome
    return {REPRODUCED: "faster", NOT_REPRODUCED: "slower", INCONCLUSIVE: "inconclusive"}[outcome]


def _time_attribution(path: Path_, times: pd.DataFrame, hashes: dict[str, str]) -> dict | None:
    """timed_attribution over the path's subsets, from the speed-up records against the path's end (None: the
    path was not timed). ``hashes``: each name's inference hash. Subsets with equal eval-mode networks share one
    record; one equal to the end is the end (ratio 1 exactly)."""
    end = path.variants[-1].name
    rows = times[times.base == end].set_index("other")  # the spec's own records, one size: one row per name
    timed_by_hash = {hashes[name]: name for name in reversed(rows.index.tolist()) if name in hashes}
    ratios = {}
    for s, name in path.subset_names().items():
        if hashes[name] == hashes[end]:
            ratios[s] = LogRatio(0.0, 0.0, 0)
        elif hashes[name] in timed_by_hash:
            r = rows.loc[timed_by_hash[hashes[name]]]
            ratios[s] = LogRatio.from_interval(float(r.ratio), float(r.ci_low), float(r.ci_high), int(r.pairs),
                                               source=hashes[name])
        else:
            return None
    reference_ms = float(rows.base_median_ms.median())
    # the reference's own uncertainty: the spread of its medians over the pair-sets that measured it
    logs = [math.log(v) for v in rows.base_median_ms if v > 0]
    reference_se = statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else 0.0
    result = timed_attribution(len(path.steps), ratios, reference_ms, reference_log_se=reference_se)
    result["pairs"] = (int(rows.pairs.min()), int(rows.pairs.max()))
    return result


def path_erf(path: Path_, side: int = ERF_SIDE, n_canvas: int = ERF_CANVASES, n_boot: int = ERF_BOOT,
             progress=print) -> pd.DataFrame:
    """Per path variant and decoder level: the decoder-grid ERF of the whole level (level output w.r.t. its input,
    centre unit; :func:`analysis.erf.decoder_grid_erf`) at random initialisation, with its theoretical extent.

    Random init (seed 0, BatchNorm re-estimated on the canvases): what the wiring alone gives, where the
    theoretical field decides much of it; what the path's steps cost in accuracy on trained networks is the
    seeded section path-accuracy (analysis.report.path_accuracy).
    Canvases: generated shapes at ``side`` px, the same for every variant (paired resamples).
    Runs on :data:`ERF_THREADS` CPU threads.
    """
    from bench.environment import torch_threads

    from ..datasets.images import normalise
    from ..datasets.synthetic import SyntheticSpec, synthetic_voc
    from ..datasets.voc import VOCSegmentation

    root = synthetic_voc(SyntheticSpec(n_train=1, n_val=n_canvas, size=side, seed=7), progress=progress)
    canvases = normalise(VOCSegmentation(root, "val", (side, side)).load_all()[0])
    with torch_threads(ERF_THREADS):
        return _path_erf(path, canvases, n_canvas, n_boot, progress)


def _path_erf(path: Path_, canvases, n_canvas: int, n_boot: int, progress) -> pd.DataFrame:
    import torch

    from bench import create_model

    from ..erf import decoder_grid_erf
    from ..erf.conditioning import batchnorm_scope, recalibrate_batchnorm, same_weights

    rows, grids = [], {}
    calibrated: list[tuple[torch.nn.Module, dict]] = []  # (BatchNorm scope, its re-estimated state)
    for v in path.variants:
        if v.inference_hash in grids:  # e.g. a dropout step: the same eval-mode network, weights and canvases
            grid = grids[v.inference_hash]
        else:
            if progress:
                progress(f"  decoder-grid ERF at random init: step {v.step} ({v.name}), {n_canvas} canvases at "
                         f"{canvases.shape[-1]}px")
            torch.manual_seed(0)
            model = create_model(v.name)
            scope = batchnorm_scope(model)
            known = next((state for part, state in calibrated if same_weights(part, scope)), None)
            if known is None:
                recalibrate_batchnorm(model, canvases, batch_size=n_canvas)
                calibrated.append((scope, {k: t.clone() for k, t in scope.state_dict().items()}))
            else:  # the same weights before every BatchNorm (the path's changes are decoder-only) and the same
                scope.load_state_dict(known)  # canvases: the same statistics, re-estimated once
            grid = grids[v.inference_hash] = decoder_grid_erf(model.eval(), canvases, n_boot=n_boot,
                                                              blocks=["whole level"]).frame
        for _, r in grid.iterrows():
            rows.append({"step": v.step, "variant": v.name, "change": v.label, "level": r.level,
                         "grid": f"{r.grid_h}x{r.grid_w}", "r50_cells": r.r50_cells,
                         "r90_cells": r.r90_cells, "r90_ci_low": r.r90_cells_ci_low, "r90_ci_high": r.r90_cells_ci_high,
                         "side90_cells": r.side90_cells, "side90_ci_low": r.side90_cells_ci_low,
                         "side90_ci_high": r.side90_cells_ci_high, "theoretical_cells": r.theoretical_cells,
                         "clipped": bool(r.clipped),
                         "n_images": int(r.n_images)})
    return pd.DataFrame(rows)


def pool_frame(counts: pd.DataFrame, times: pd.DataFrame) -> pd.DataFrame:
    """The square vs separable CRP pool on LW-50: counts, paired time, and whether the logits are equal."""
    import torch

    from bench import create_model

    torch.manual_seed(0)
    square = create_model(POOL_PAIR[0]).eval()
    separable = create_model(POOL_PAIR[1]).eval()
    separable.load_state_dict(square.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        equal = torch.equal(square(x), separable(x))
    rows = []
    for name in POOL_PAIR:
        rec = counts[counts.variant == name].iloc[0]
        row = {"variant": name, "crp_pool": "max" if name == POOL_PAIR[0] else "separable",
               "params": int(rec.params), "macs": int(rec.macs), "paper_flops": int(rec.paper_flops),
               "logits_equal": equal}
        t = times[(times.base == POOL_PAIR[0]) & (times.other == name)]
        if len(t):
            t = t.iloc[0]
            row.update(speedup=t.ratio, speedup_low=t.ci_low, speedup_high=t.ci_high, pairs=int(t.pairs),
                       median_ms=t.other_median_ms, base_median_ms=t.base_median_ms)
        rows.append(row)
    return pd.DataFrame(rows)


def axis_effects(spec: AblationSpec, counts: pd.DataFrame) -> pd.DataFrame:
    """For each grid and axis: the change in params and FLOPs from one value of the axis to the next, over every
    pair of points whose DecoderSpecs differ in that axis only (the grid's base counts as a point)."""
    rows = []
    by_name = counts.set_index("variant")
    for group in dict.fromkeys(v.group for v in spec.variants if v.group.startswith("grid ")):
        points = [v for v in spec.variants if v.group == group]
        axes = list(dict.fromkeys(k for v in points for k in dict(v.changes) if k not in dict(points[0].changes)
                                  or len({dict(p.changes).get(k) for p in points}) > 1))
        base = spec.variant(points[0].base)
        named = [(v.name, v.decoder) for v in points] + [(base.name, base.decoder)]
        named = [(n, d) for n, d in named if n in by_name.index]
        for axis in axes:
            values = sorted({getattr(d, axis) for _, d in named}, key=str)
            for a, b in zip(values, values[1:], strict=False):
                deltas = []
                for n1, d1 in named:
                    for n2, d2 in named:
                        if getattr(d1, axis) == a and d1.with_changes(**{axis: b}) == d2 and n1 != n2:
                            deltas.append((by_name.loc[n2, "params"] - by_name.loc[n1, "params"],
                                           by_name.loc[n2, "paper_flops"] - by_name.loc[n1, "paper_flops"]))
                if deltas:
                    frame = pd.DataFrame(deltas, columns=["params", "flops"])
                    rows.append({"grid": group.removeprefix("grid "), "axis": axis, "from": a, "to": b,
                                 "pairs": len(deltas), "params_delta_mean": frame.params.mean(),
                                 "flops_delta_mean": frame.flops.mean(), "flops_delta_min": frame.flops.min(),
                                 "flops_delta_max": frame.flops.max()})
    return pd.DataFrame(rows)


def _name_hashes(config: dict) -> dict[str, str]:
    """Each variant name a configuration uses -> the architecture hash it stood for when the configuration was
    made: from its stored registrations, else (a built-in name) from this process's registry."""
    from bench.models import decoder_spec, variant_info

    stored = {r["name"]: r.get("hash", "?") for r in config.get("registered", [])}
    out = {}
    for key in ("variant", "base", "other"):
        name = config.get(key)
        if not isinstance(name, str):
            continue
        if name in stored:
            out[name] = stored[name]
            continue
        try:  # a registered name is stored with every configuration that uses it, but for a timing reference left
            # out of a subset of the spec's variants (timed_variants): then it is this process's (the spec's) one
            info = variant_info(name)
            out[name] = architecture_hash(info.backbone, decoder_spec(name))
        except (UsageError, TypeError):
            out[name] = "?"
    return out


def record_key(config: dict) -> str:
    """A configuration's identity for the report: everything measured (kind, names, sizes, batch, classes, timing)
    with each name's architecture hash in place of how it was registered. Two configurations with one key measure
    the same thing; a spec edit that changes what a name builds changes the key."""
    plain = {k: v for k, v in config.items() if k != "registered"}
    return config_id({**plain, "hashes": _name_hashes(config)})


def select_records(spec: AblationSpec, folders: list[Path]) -> tuple[pd.DataFrame, list[str]]:
    """The rows of exactly the records of ``spec`` (matched by :func:`record_key`), failed ones left out, and a
    line for each kind of record left out: another spec's (or an earlier version of this one's), failed, or a
    second record of one configuration."""
    wanted = {record_key(c) for c in spec.configurations(MEASURES)}
    keep, foreign, failed, repeated, seen = set(), [], [], [], set()
    for folder in folders:
        for record in read_records(folder):
            key = record_key(record["config"])
            config = record["config"]
            names = config.get("variant") or f"{config.get('other')} vs {config.get('base')}"
            what = f"{config.get('kind')} {names} at {config.get('height')}x{config.get('width')}"
            if key not in wanted:
                foreign.append(what)
            elif record.get("error"):
                failed.append(f"{what}: {record['error']}")
            elif key in seen:
                repeated.append(what)
            else:
                seen.add(key)
                keep.add(record["id"])
    ignored = []
    if foreign:
        ignored.append(f"{len(foreign)} record(s) not of this spec (another spec's, or measured before an edit "
                       f"changed what a name builds, its sizes or its settings): {_few(foreign)}")
    if failed:
        ignored.append(f"{len(failed)} failed record(s) (rerun `python -m bench ablate SPEC --out DIR "
                       f"--retry-failed`): {_few(failed)}")
    if repeated:
        ignored.append(f"{len(repeated)} second record(s) of one configuration (the first is used): {_few(repeated)}")
    frames_ = [merged_frame(f) for f in folders]
    merged = pd.concat([f for f in frames_ if len(f)], ignore_index=True) if any(len(f) for f in frames_) \
        else pd.DataFrame(columns=["record", "kind", "error"])
    return merged[merged.record.isin(keep)].reset_index(drop=True), ignored


def _few(items: list[str], n: int = 3) -> str:
    return "; ".join(items[:n]) + (f"; ... ({len(items) - n} more)" if len(items) > n else "")


def _missing_counts(spec: AblationSpec, counts: pd.DataFrame, folders: list[Path]) -> None:
    """Every variant of the spec needs its counts at every size: a DataError naming what is missing."""
    have = set(zip(counts.variant, counts.height, counts.width, strict=True)) if len(counts) else set()
    missing = [f"{v.name} at {h}x{w}" for v in spec.variants for h, w in spec.sizes if (v.name, h, w) not in have]
    if missing:
        where = ", ".join(str(f) for f in folders)
        raise DataError(f"{where} holds no counts for {len(missing)} of the {len(spec.variants) * len(spec.sizes)} "
                        f"(variant, size) pairs of {spec.source}: {_few(missing)}; run `python -m bench ablate "
                        f"{spec.source} --out DIR` (it measures what is missing; a spec edited since its last run "
                        "needs this)")


def frames(spec: AblationSpec, records: Path, timing_records: Path | None = None,
           say=print) -> AblationData:
    """The report's tables from a study's records (counts and times may live in two folders): exactly the records
    of ``spec`` (:func:`select_records`); every path at the spec's first size, every variant at every size.
    ``say`` tells which records were left out (None: silent; they are in ``AblationData.ignored`` too)."""
    folders = [Path(records)] + ([Path(timing_records)] if timing_records and timing_records != records else [])
    merged, ignored = select_records(spec, folders)
    for line in ignored:
        if say:
            say(f"ablation report: left out {line}")
    ok = merged[merged.error == ""] if len(merged) else merged
    counts = ok[ok.kind == "complexity"] if len(ok) else ok
    _missing_counts(spec, counts, folders)
    times = ok[ok.kind == "speedup"] if len(ok) else ok
    if not len(times):
        times = pd.DataFrame(columns=["base", "other", "ratio", "ci_low", "ci_high", "pairs", "other_median_ms",
                                      "base_median_ms", "height", "width"])
    size = spec.sizes[0]
    counts0 = counts[(counts.height == size[0]) & (counts.width == size[1])]
    times0 = times[(times.height == size[0]) & (times.width == size[1])]
    hashes = {v.name: v.inference_hash for v in spec.variants}
    paths = [(path, path_frame(path, counts0, times0, hashes)) for path in spec.paths]
    names = set(counts0.variant)
    pool = pool_frame(counts0, times0) if set(POOL_PAIR) <= names else pd.DataFrame()
    row = times.iloc[0] if len(times) else None
    note = "not timed"
    if row is not None:
        threads = row.get("threads")
        note = (f"{row.get('device_name', row.get('device', '?'))}, fp32, batch {spec.batch}, {size[0]}x{size[1]}, "
                f"{spec.mode} mode, torch {row.get('torch', '?')}, "
                f"{int(threads) if threads == threads and threads is not None else '?'} threads")
    first = paths[0] if paths else (None, pd.DataFrame())
    return AblationData(first[1], pool, size, first[0].name if first[0] else "", note, spec.num_classes,
                        axis_effects(spec, counts0), first[0].end if first[0] else None, paths=paths,
                        variants=variant_frame(spec, counts, times), ignored=ignored)


def variant_frame(spec: AblationSpec, counts: pd.DataFrame, times: pd.DataFrame) -> pd.DataFrame:
    """Every variant of the spec at every size: its group, base, changes, hash, counts, and its paired speed-up
    against its reference where it was timed."""
    rows = []
    for v in spec.variants:
        for h, w in spec.sizes:
            rec = counts[(counts.variant == v.name) & (counts.height == h) & (counts.width == w)].iloc[0]
            row = {"variant": v.name, "group": v.group, "base": v.base,
                   "changes": ", ".join(f"{k}={val}" for k, val in v.changes) or "-", "hash": v.hash,
                   "height": h, "width": w, "params": int(rec.params), "macs": int(rec.macs),
                   "paper_flops": int(rec.paper_flops), "reference": v.reference}
            t = times[(times.other == v.name) & (times.base == v.reference) & (times.height == h)
                      & (times.width == w)]
            if len(t):
                t = t.iloc[0]
                row.update(speedup=float(t.ratio), speedup_low=float(t.ci_low), speedup_high=float(t.ci_high),
                           pairs=int(t.pairs))
            rows.append(row)
    return pd.DataFrame(rows)


def timed_variants(spec: AblationSpec) -> tuple:
    """What the section times: every eval-mode network among the paths' subsets once (subsets equal to another, or
    to the end, as inference networks are not timed again: dropout alone makes no difference there) and the pool
    pair."""
    out, seen = [], set()
    for v in spec.variants:
        if v.name in POOL_PAIR:
            out.append(v)
        elif v.group.startswith("path") and v.inference_hash not in seen:
            seen.add(v.inference_hash)
            out.append(v)
    return tuple(out)


def collect(spec_file: Path = SPECS / "paper-path.toml", cache: Path = CACHE, workers: int = 2,
            timings_done: Callable[[], None] | None = None) -> AblationData:
    """The path's counts (cached), its timed subsets (measured afresh, alone on the machine), then its ERF at random
    init (not timed: ``timings_done`` is called before it, so that other work may start beside it)."""
    spec = load_ablation(spec_file)
    status = run_ablation(spec, cache, measure=("complexity",), executor="local", workers=workers)
    if status.failed or status.left:
        raise RuntimeError(f"ablation counts incomplete: {status.line()}; " + "; ".join(status.crashed_jobs))
    timed = replace(spec, variants=timed_variants(spec))
    with tempfile.TemporaryDirectory() as tmp:
        status = run_ablation(timed, tmp, measure=("time",), executor="local", workers=1)
        if status.failed or status.left:
            raise RuntimeError(f"ablation timing incomplete: {status.line()}; " + "; ".join(status.crashed_jobs))
        data = frames(spec, cache, Path(tmp))
    if timings_done is not None:
        timings_done()
    data.erf = path_erf(spec.paths[0])
    return data


# --- write: tables and figures only ----------------------------------------------------------------


def _interval(r, low, high) -> str:
    if not isinstance(r, float) or r != r:
        return "-"
    return f"{r:.2f}x [{low:.2f}, {high:.2f}]"


def _erf_sentence(erf: pd.DataFrame) -> str:
    """The finest level (the largest grid, the one least clipped) from the path's start to its end, in words."""
    sizes = erf.grid.str.split("x").str[0].astype(int)
    finest = erf[sizes == sizes.max()]
    first, last = finest.iloc[0], finest.iloc[-1]
    clip = " (clipped by the grid)" if finest.clipped.any() else ""
    return (f"Decoder-grid ERF at random init, {first.level} (whole level): r90 {first.r90_cells:.0f} -> "
            f"{last.r90_cells:.0f} cells (90% side {first.side90_cells:.1f} -> {last.side90_cells:.1f} cells) from "
            f"start to end while the theoretical field goes {first.theoretical_cells} -> {last.theoretical_cells} "
            f"cells{clip}.")


def _ms(row, key: str) -> str:
    value = row.get(key, math.nan)
    if not isinstance(value, float) or value != value:
        return "-"
    return f"{value:+.0f} [{row.get(f'{key}_low'):+.0f}, {row.get(f'{key}_high'):+.0f}]"


def _pairs(steps: pd.DataFrame) -> str:
    low, high = steps.attrs.get("pairs", (0, 0))
    return f"{low} pairs each" if low == high else f"{low}-{high} pairs each"


def write(data: AblationData, out: Path) -> list[Path]:
    """Every path (its table and waterfall: the first path's as ``paper_path.*``, every other's as
    ``path_NAME.*``), the CRP pool pair, the ERF along the first path, the grid axes, and every variant."""
    from ..style import use_style

    use_style()
    paths = data.paths or ([(None, data.steps)] if len(data.steps) else [])
    written: list[Path] = []
    for i, (path, steps) in enumerate(paths):
        name, end = (path.name, path.end) if path is not None else (data.path, data.end)
        written += _write_path(steps, name, end, data, out, "paper_path" if i == 0 else f"path_{name}")
    h, w = data.size
    title = ""
    if paths:
        first = paths[0][1]
        title = f"{first.variant.iloc[0]} -> {(paths[0][0].end if paths[0][0] else data.end) or first.variant.iloc[-1]}"
    written += _write_rest(data, out, title)
    return written


def _write_path(steps: pd.DataFrame, name: str, end: str | None, data: AblationData, out: Path,
                stem: str) -> list[Path]:
    """One path's table (per step: counts, deltas, Shapley values, time) and its waterfall."""
    s = steps.copy()
    h, w = data.size
    display = pd.DataFrame({
        "step": s.step, "change": s.change,
        "params (M)": s.params / 1e6, "Δ params (M)": s.get("params_delta", math.nan) / 1e6,
        "Shapley params (M)": s.get("params_shapley", math.nan) / 1e6,
        "FLOPs (G)": s.paper_flops / 1e9, "Δ FLOPs (G)": s.get("paper_flops_delta", math.nan) / 1e9,
        "reverse-order Δ FLOPs (G)": s.get("paper_flops_reverse_delta", math.nan) / 1e9,
        "Shapley FLOPs (G)": s.get("paper_flops_shapley", math.nan) / 1e9,
        "CPU speed-up vs previous [95% CI]": [_interval(r.get("speedup", math.nan), r.get("speedup_low"),
                                                        r.get("speedup_high")) for _, r in s.iterrows()],
        "time effect": s.get("time_effect", ""),
        "CPU ms": s.get("median_ms", math.nan),
        "Δ CPU ms [95% CI]": [_ms(r, "time_path_ms") for _, r in s.iterrows()],
        "reverse-order Δ CPU ms [95% CI]": [_ms(r, "time_reverse_ms") for _, r in s.iterrows()],
        "Shapley CPU ms [95% CI]": [_ms(r, "time_shapley_ms") for _, r in s.iterrows()],
    })
    title = f"{s.variant.iloc[0]} -> {end or s.variant.iloc[-1]}"
    timed = s.attrs.get("pairs", (0, 0))[1] > 0
    time_note = (f"CPU time ({data.timing_note}): every subset of the path's changes (each distinct eval-mode network "
                 f"once) timed in interleaved pairs against the path's end, {_pairs(s)}; subsets that differ only in "
                 "dropout share one timing (dropout is the identity in eval mode: its time change is 0 by "
                 "construction); a subset's ms = the end's median / its paired ratio. Speed-up vs previous = the "
                 "ratio of two such times; Δ, reverse-order Δ and Shapley as for the counts. Intervals: 95%, a "
                 "parametric bootstrap drawing each subset's log ratio from its own t interval (independent pair-sets) "
                 "and the end's time from the spread of its medians over those pair-sets; a subset timed by one pair "
                 "has no interval, and nor has any step that uses it (never a fixed value)." if timed else
                 "CPU time: not timed (the study measured counts only; `python -m bench ablate SPEC --measure "
                 "complexity,time` times it).")
    notes = [f"Path {name!r}: one change per step from {title}; counts shape-only at {h}x{w}, batch 1, "
             f"{data.num_classes} classes. FLOPs = MACs + pooling window ops (the paper's convention).",
             "Δ: the change of this step on the path; reverse-order Δ: the same change applied last-first from the "
             "start; Shapley: its average marginal change over all orders (all 2^n subsets counted); Shapley values "
             "sum to the total change.",
             time_note] + ([TIME_EFFECT_RULE + "."] if timed else [])
    written = list(save_table(s, out / stem, f"Which change buys what: {title} at {h}x{w}", notes,
                              display=display))
    written.append(waterfall(s, out / f"{stem}_waterfall", (h, w), title))
    return written


def _write_rest(data: AblationData, out: Path, title: str) -> list[Path]:
    """The pool pair, the first path's ERF, the grid axes, and the table of every variant."""
    h, w = data.size
    written: list[Path] = []
    if len(data.pool):
        p = data.pool
        pool_display = pd.DataFrame({
            "CRP pool": p.crp_pool, "params (M)": p.params / 1e6, "MACs (G)": p.macs / 1e9,
            "FLOPs (G, paper convention)": p.paper_flops / 1e9,
            "CPU speed-up vs 5x5 max-pool [95% CI]": [
                _interval(*(r.get(k, math.nan) for k in ("speedup", "speedup_low", "speedup_high")))
                for _, r in p.iterrows()],
            "logits equal (torch.equal, 64x64)": p.logits_equal})
        written += save_table(p, out / "crp_pool", f"CRP pool implementation on LW-50 at {h}x{w}", [
            "separable: a 5x1 max-pool then a 1x5 one (-inf padding): the same values as the 5x5 max-pool, 10 "
            "comparisons per output instead of 25 (counted so in the FLOPs column).",
            f"Speed-up: paired against LW-50 with the 5x5 pool ({data.timing_note}). Never used in the tables compared "
            "with the paper."], display=pool_display)
    if data.erf is not None and len(data.erf):
        e = data.erf
        erf_display = pd.DataFrame({
            "step": e.step, "change": e.change, "level": e.level, "grid (cells)": e.grid,
            "r50 (cells)": e.r50_cells, "r90 (cells) [95% CI]": [
                f"{r.r90_cells:.1f} [{r.r90_ci_low:.1f}, {r.r90_ci_high:.1f}]" for _, r in e.iterrows()],
            "90% side (cells) [95% CI]": [
                f"{r.side90_cells:.2f} [{r.side90_ci_low:.2f}, {r.side90_ci_high:.2f}]" for _, r in e.iterrows()],
            "theoretical (cells)": e.theoretical_cells, "clipped by the grid": e.clipped})
        n_img = int(e.n_images.iloc[0])
        written += save_table(e, out / "paper_path_erf", f"Decoder-grid ERF of each level along {title}, random init", [
            "Whole level: the level's output (centre unit) w.r.t. its input, radius in cells holding 50% / 90% of the "
            "gradient mass (analysis.erf.decoder_grid); theoretical: the extent the wiring allows; clipped: the "
            "theoretical field is larger than the grid.",
            f"Random initialisation (seed 0, BatchNorm re-estimated on the canvases), {n_img} generated canvases of "
            f"{ERF_SIZE_WORDS}, on {ERF_THREADS} CPU thread(s); 95% CI from {ERF_BOOT} resamples of those images (the "
            "same resamples for every step; a step that changes only dropout repeats its predecessor's row: the same "
            "eval-mode network). "
            f"Radii are whole cells, so with {n_img} images their interval is often one value; the 90% side is "
            "interpolated between whole squares (analysis.erf.gradient.mass_side) and shows changes within a cell. "
            + _erf_sentence(e) + " What each step costs in accuracy, on trained networks over seeds: "
            "path-accuracy/<device>-N-seeds/paper_path_accuracy.md (`nox -s seeds`)."],
            display=erf_display)
    if data.axes is not None and len(data.axes):
        a = data.axes
        axes_display = pd.DataFrame({
            "grid": a.grid, "axis": a.axis, "from": a["from"].astype(str), "to": a["to"].astype(str),
            "pairs": a.pairs, "Δ params (M)": a.params_delta_mean / 1e6,
            "Δ FLOPs (G), mean": a.flops_delta_mean / 1e9, "min": a.flops_delta_min / 1e9,
            "max": a.flops_delta_max / 1e9})
        written += save_table(a, out / "grid_axes", f"Each grid axis's effect with the others held, {h}x{w}", [
            "Per axis, from one value to the next: the change over every pair of grid points equal on all other axes "
            "(the grid's base included as a point); FLOPs = MACs + pooling window ops."], display=axes_display)
    if data.variants is not None and len(data.variants):
        written += _write_variants(data, out)
    return written


def _write_variants(data: AblationData, out: Path) -> list[Path]:
    v = data.variants
    speedup = [_interval(*(r.get(k, math.nan) for k in ("speedup", "speedup_low", "speedup_high")))
               for _, r in v.iterrows()]
    display = pd.DataFrame({
        "variant": v.variant, "group": v.group, "base": v.base, "changes": v.changes, "hash": v.hash,
        "size": [f"{r.height}x{r.width}" for _, r in v.iterrows()], "params (M)": v.params / 1e6,
        "MACs (G)": v.macs / 1e9, "FLOPs (G)": v.paper_flops / 1e9,
        "CPU speed-up vs its reference [95% CI]": speedup, "reference": v.reference})
    notes = ["Every variant the spec resolves to ([variants], every grid point, every path variant and the subsets "
             "its attribution measures, and the bases they change), at every size, shape-only counts; FLOPs = MACs + "
             "pooling window ops. hash: the architecture (backbone and every DecoderSpec field); the report reads "
             "exactly the records whose configuration matches, by these hashes.",
             f"Speed-up: paired against the variant's reference (a path's end for its variants; else its base), "
             f"{data.timing_note}; '-' where not timed."]
    if data.ignored:
        notes.append("Records left out: " + " | ".join(data.ignored))
    return list(save_table(v, out / "variants", f"Every variant of the study, {len(v)} (variant, size) rows",
                           notes, display=display))


def waterfall(steps: pd.DataFrame, path: Path, size: tuple[int, int], title: str) -> Path:
    """One panel per metric: the start's bar, one floating bar per step (its change), the end's bar."""
    import matplotlib.pyplot as plt

    metrics = [("params", 1e6, "parameters (M)"), ("paper_flops", 1e9, f"FLOPs (G, {size[0]}x{size[1]})")]
    if "chained_ms" in steps and steps.chained_ms.notna().all():
        metrics.append(("chained_ms", 1.0, "CPU time (ms, paired against the end)"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 4.2), squeeze=False)
    labels = ["start"] + [f"{i}. {c}" for i, c in zip(steps.step.iloc[1:], steps.change.iloc[1:], strict=True)]
    for ax, (col, scale, axis_title) in zip(axes[0], metrics, strict=True):
        values = (steps[col] / scale).tolist()
        x = range(len(values) + 1)
        ax.bar(0, values[0], color="0.55")
        for i in range(1, len(values)):
            d = values[i] - values[i - 1]
            ax.bar(i, d, bottom=values[i - 1], color="#029e73" if d < 0 else "#d55e00")
            if col == "chained_ms":
                r = steps.speedup.iloc[i]
                text = f"{r:.2f}x\n[{steps.speedup_low.iloc[i]:.2f},{steps.speedup_high.iloc[i]:.2f}]"
                if "time_shapley_ms" in steps:
                    text += f"\nSh {steps.time_shapley_ms.iloc[i]:+.0f}"
            else:
                shap = steps[f"{col}_shapley"].iloc[i] / scale
                text = f"{d:+.1f}\nSh {shap:+.1f}"
            ax.text(i, max(values[i], values[i - 1]), text, ha="center", va="bottom", fontsize=6.5)
        ax.bar(len(values), values[-1], color="0.3")
        ax.set_xticks(list(x), labels + ["end"], rotation=60, ha="right", fontsize=7)
        ax.set_title(axis_title, fontsize=9)
        ax.set_ylim(0, max(values) * 1.3)
    fig.suptitle(f"{title}, one change per step (green: less; Sh: Shapley value over all orders)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def build(out: Path, timings_done: Callable[[], None] | None = None) -> Section:
    start = time.perf_counter()
    data = collect(timings_done=timings_done)
    write(data, out / FOLDER)
    seconds = time.perf_counter() - start
    s = data.steps
    flops = s.paper_flops_shapley.iloc[1:] / 1e9
    top = s.change.iloc[1 + int(flops.values.argmin())]
    text = (f"RF-50 -> LW-50 at {data.size[0]}x{data.size[1]}: FLOPs {s.paper_flops.iloc[0] / 1e9:.1f} G -> "
            f"{s.paper_flops.iloc[-1] / 1e9:.1f} G; the largest share by Shapley value is '{top}' "
            f"({flops.min():+.1f} G).")
    if len(data.pool) and "speedup" in data.pool:
        sep = data.pool.iloc[1]
        text += (f" Separable CRP pool: logits equal {bool(sep.logits_equal)}, CPU speed-up "
                 f"{_interval(sep.speedup, sep.speedup_low, sep.speedup_high)}.")
    if "time_shapley_ms" in s:
        ms = s.time_shapley_ms.iloc[1:]
        i = 1 + int(ms.values.argmin())
        text += (f" CPU time {s.median_ms.iloc[0]:.0f} -> {s.median_ms.iloc[-1]:.0f} ms; the largest share by Shapley "
                 f"value is '{s.change.iloc[i]}' ({ms.min():+.0f} ms, 95% CI {s.time_shapley_ms_low.iloc[i]:+.0f} to "
                 f"{s.time_shapley_ms_high.iloc[i]:+.0f}).")
    if data.erf is not None and len(data.erf):
        text += " " + _erf_sentence(data.erf)
    text += f" Built in {seconds:.0f} s."
    artifacts = [
        Artifact(f"{FOLDER}/paper_path_waterfall.png", "Which change buys what (waterfall)",
                 "params, FLOPs and CPU time per step of RF-50 -> LW-50"),
        Artifact(f"{FOLDER}/paper_path.md", "Paper path with Shapley attribution",
                 "per-step, reverse and Shapley deltas of params, FLOPs and CPU time"),
        Artifact(f"{FOLDER}/paper_path_erf.md", "Decoder ERF along the paper path",
                 "whole-level decoder-grid ERF per step, random init, with the theoretical field"),
        Artifact(f"{FOLDER}/crp_pool.md", "CRP pool implementation", "5x5 vs separable max-pool: equal, and its time"),
    ]
    settings = f"bench/ablations/specs/paper-path.toml; {data.timing_note}; counts shape-only"
    return Section("Ablation: which change buys what", artifacts, text, settings, [], FOLDER)


def report(spec_file: str | Path, records: str | Path, out: str | Path, say=print) -> list[Path]:
    """``python -m analysis ablation-report SPEC DIR``: every path (table and waterfall), every variant and grid
    (tables) of one's own study, from exactly the records of that spec under DIR (``say`` names those left out).
    A problem with the spec, the records or ``out`` is an InputError, and nothing is written then."""
    spec = load_ablation(spec_file)
    records, out = Path(records), Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--report {out} is an existing file, not a folder; name a folder for the report (it is "
                         "made if missing)")
    if not (records / "records").is_dir() or not read_records(records):
        raise UsageError(f"no ablation records under {records}/records (run python -m bench ablate SPEC --out DIR)")
    from bench.validation import writable_folder

    writable_folder("--report", out, make=False)
    try:
        data = frames(spec, records, say=say)
    except DataError as err:
        stale = out.is_dir() and any(out.iterdir())
        raise DataError(f"{err}{f'; the report in {out} is from an earlier run and was not updated' if stale else ''}"
                        ) from None
    return write(data, out)
