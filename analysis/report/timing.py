"""Timing section, one per device: Table 2 runtimes and paired speed-ups, FPS at 512, where the time
goes, a roofline, size/batch sweeps, speed vs accuracy.

Files go to ``reports/timing/<device>/`` (e.g. ``timing/nvidia-h200``), so a CPU run never
overwrites a GPU one. ``collect`` only calls the measuring functions of :mod:`bench` (timing,
paired speed-ups, profiles, roofs); ``write`` turns their records into tables and figures, and every
sentence it prints is computed from them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch

from bench.complexity import complexity
from bench.environment import describe, device_slug, environment
from bench.models import variant_info
from bench.profile import CATEGORIES, ProfileRecord, profile_frame, profile_variants
from bench.roofline import ABOVE_TOLERANCE, Roofs, math_mode, measure_roofs, roofline_points, roofs_record
from bench.speedup import EAGER_PAIRS, SpeedupRecord, paired_speedups
from bench.timing import TimingRecord, TimingSettings, sweep, time_variants

from ..paper import paper_values
from ..style import FAMILY_COLOURS, family_colour, family_label, nice_log_axis, spread, use_style, variant_marker
from ..verdicts import DISTURBANCE_RULE, Interval, spiked_pairs, timing_disturbance
from .files import Artifact, ScoreRow, Section, save_figure, save_table
from .scorecard import RATIO_RULE, ratio_verdicts

COMMAND = "python -m analysis report timing"
DEPTHS = (50, 101, 152)
TABLE2_PAIRS = [(f"rf{d}", f"rf_lw{d}") for d in DEPTHS]
FPS_PAIRS = [("rf50", "rf_lw50"), ("rf152", "rf_lw152")]  # the abstract's FPS figures
LIGHT = ("rf_lw_mbv2", "rf_lw_nasnet")
PROFILED = ("rf50", "rf_lw50")
RATIO_FORMAT = {False: ".2f", True: ".3f"}  # graph replays give intervals narrower than 0.01


@dataclass(frozen=True)
class TimingPlan:
    device: str
    base: TimingSettings  # the paper's mode: eager fp32 on CPU; on a GPU, graph replay (the network, not the host)
    fastest: TimingSettings  # the best this architecture does on the device
    quick: TimingSettings  # base mode with fewer passes: light backbones and sweeps
    table2_size: tuple[int, int] = (468, 625)  # Table 2: 625 wide, 468 high
    fps_size: tuple[int, int] = (512, 512)
    profile_size: tuple[int, int] = (512, 512)
    profile_runs: int = 5
    sweep_variants: tuple[str, ...] = ("rf_lw50", "rf_lw_mbv2")
    sweep_sides: tuple[int, ...] = (256, 384)
    sweep_batches: tuple[int, ...] = (1, 2, 4)
    sweep_batch_side: int = 256
    fps_pairs: tuple[tuple[str, str], ...] = tuple(FPS_PAIRS)  # paired at fps_size; with LIGHT, also the fastest mode
    precision: float | None = None  # CPU paired speed-ups: pairs until the CI is within this (relative), capped

    @staticmethod
    def default(device: str | None = None) -> TimingPlan:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device.startswith("cuda"):
            base = TimingSettings(device=device, runs=100, warmup=10, cudnn_benchmark=True, cuda_graph=True)
            fastest = replace(base, dtype="bf16", channels_last=True, fold_bn=True)
            return TimingPlan(device, base, fastest, base, sweep_variants=("rf50", "rf_lw50", "rf_lw_mbv2"),
                              sweep_sides=(256, 512, 768, 1024), sweep_batches=(1, 2, 4, 8, 16), sweep_batch_side=512)
        # CPU: seconds per pass, so few, interleaved passes (each pair: base then other, or other then base).
        # Paired speed-ups: at least 3 pairs, then on until the 95% CI is within +-10% of the ratio, at most 12
        # pairs or 40 s of timed passes per pair of models (an RF-152 + LW-152 pair at 468x625 takes ~4.5 s on a
        # 2-core AVX-512 EPYC): a quiet run stops at 3-4 pairs, a noisy one measures on instead of deciding on 3.
        # RF-152's FPS pair is left to the GPU plan (Table 2 still pairs RF-152 with LW-152).
        base = TimingSettings(device=device, runs=12, min_runs=3, budget_s=40.0)
        quick = replace(base, runs=3, min_runs=3, budget_s=0.0)
        fastest = replace(quick, channels_last=True, fold_bn=True, runs=2, min_runs=2)
        return TimingPlan(device, base, fastest, quick, profile_size=(256, 256), profile_runs=2,
                          fps_pairs=(("rf50", "rf_lw50"),), sweep_batches=(1, 2), precision=0.10)

    @staticmethod
    def tiny() -> TimingPlan:
        """Seconds, for tests: tiny inputs, one or two passes each."""
        base = TimingSettings(device="cpu", runs=2, min_runs=2, budget_s=0.0)
        fastest = replace(base, channels_last=True, fold_bn=True, runs=1, min_runs=1)
        return TimingPlan("cpu", base, fastest, base, table2_size=(64, 80), fps_size=(64, 64), profile_size=(64, 64),
                          profile_runs=1, sweep_variants=("rf_lw_mbv2",), sweep_sides=(64, 96), sweep_batches=(1, 2),
                          sweep_batch_side=64)


@dataclass
class TimingResults:
    plan: TimingPlan
    environment: dict
    table2: list[SpeedupRecord]  # paired, base mode, Table 2 size
    fps: list[SpeedupRecord]  # paired, base mode, 512x512
    light: list[TimingRecord]  # light backbones at 512x512, base mode
    fastest: list[TimingRecord]  # fastest mode at 512x512
    profiles: list[ProfileRecord]  # base and fastest mode
    roofs: list[Roofs]
    sweep: list[TimingRecord]
    macs: dict[tuple[str, int, int], int] = field(default_factory=dict)


def collect(plan: TimingPlan | None = None, progress=print) -> TimingResults:
    plan = plan or TimingPlan.default()
    base, fastest = plan.base, plan.fastest
    t2 = replace(base, height=plan.table2_size[0], width=plan.table2_size[1])
    at512 = replace(base, height=plan.fps_size[0], width=plan.fps_size[1])
    fast512 = replace(fastest, height=plan.fps_size[0], width=plan.fps_size[1])
    progress(f"  Table 2: paired RF/LW at {t2.height}x{t2.width}")
    table2 = paired_speedups(TABLE2_PAIRS, t2, progress=progress, precision=plan.precision)
    progress(f"  FPS at {at512.height}x{at512.width}: paired RF/LW, light backbones, fastest mode")
    fps = paired_speedups(list(plan.fps_pairs), replace(at512, min_runs=min(at512.min_runs, 3)), progress=progress,
                          precision=plan.precision)
    light = time_variants(LIGHT, replace(plan.quick, height=plan.fps_size[0], width=plan.fps_size[1]),
                          progress=progress)
    fast = time_variants([v for pair in plan.fps_pairs for v in pair] + list(LIGHT), fast512, progress=progress)
    progress("  where the time goes (torch.profiler)")
    prof_settings = [replace(s, height=plan.profile_size[0], width=plan.profile_size[1], cuda_graph=False)
                     for s in (base, fastest)]
    profiles = [r for s in prof_settings for r in profile_variants(PROFILED, s, runs=plan.profile_runs,
                                                                   progress=progress)]
    progress("  roofs (matmul, copy)")
    modes = list(dict.fromkeys(math_mode(s) for s in (base, fastest)))
    roofs = [measure_roofs(plan.device, mode) for mode in modes]
    progress("  size and batch sweep")
    side = plan.sweep_batch_side
    sweep_records = sweep(plan.sweep_variants, plan.quick, sizes=[(s, s) for s in plan.sweep_sides],
                          progress=progress)
    sweep_records += sweep(plan.sweep_variants, replace(plan.quick, height=side, width=side),
                           batches=[b for b in plan.sweep_batches if b > 1], progress=progress)
    names = {v for pair in TABLE2_PAIRS + list(plan.fps_pairs) for v in pair} | set(LIGHT)
    sizes = {plan.table2_size, plan.fps_size, plan.profile_size}
    macs = {(r.variant, r.height, r.width): r.macs for r in complexity(sorted(names), sorted(sizes))}
    return TimingResults(plan, environment(plan.device), table2, fps, light, fast, profiles, roofs, sweep_records,
                         macs)


NOISE_LABELS = {"log_ratio_sd": "pair spread", "spiked_pairs": "spiked pairs", "cpu_share": "CPU share",
                "stopped_by": "stopped by", "disturbed": "disturbed"}
NOISE_FORMATS = {"log_ratio_sd": ".3f", "cpu_share": ".0%"}
NOISE_NOTE = ("Noise seen: pair spread = standard deviation of the pairs' log time ratios; CPU share = median over "
              "passes of the process's CPU time / (wall time x threads) (under 100%: something else ran on our cores); "
              "spiked pairs: pairs with a pass over 1.3x its model's median; stopped by: 'precision' (the CI reached "
              "its target width), 'runs' or 'budget' (the caps); disturbed: why the run is not used for a verdict, "
              "empty where it is. Rule: " + DISTURBANCE_RULE + ".")


def noise_columns(r: SpeedupRecord) -> dict:
    """What the machine did during a paired measurement, and whether that disqualifies it."""
    return {"log_ratio_sd": r.log_ratio_sd, "spiked_pairs": spiked_pairs(r.base_samples_ms, r.other_samples_ms),
            "cpu_share": r.cpu_share, "stopped_by": r.stopped_by,
            "disturbed": timing_disturbance(r.base_samples_ms, r.other_samples_ms, r.cpu_share, r.steal_share)}


def faster_words(records: list[SpeedupRecord]) -> str:
    """Whether LW is faster at all (every interval above 1), beside the paper-factor verdict."""
    if any(r.error or math.isnan(r.ci_low) for r in records):
        return ""
    if all(r.ci_low > 1 for r in records):
        return "; LW faster in every pair (every interval above 1)"
    return "; LW not shown faster in every pair (an interval reaches 1)"


def _ci(r: SpeedupRecord) -> str:
    """'2.02 (1.98 to 2.06)'; three decimals where two would print the interval as one value."""
    d = 3 if r.ci_high - r.ci_low < 0.02 else 2
    return f"{r.ratio:.{d}f} ({r.ci_low:.{d}f} to {r.ci_high:.{d}f})"


def _mode_words(s: dict) -> str:
    parts = [s["dtype"]]
    if s.get("cuda_graph"):
        parts.append("CUDA-graph replay")
    elif s["device"].startswith("cuda"):
        parts.append("eager")
    if s.get("channels_last"):
        parts.append("channels_last")
    if s.get("fold_bn"):
        parts.append("BN folded")
    if s.get("compile"):
        parts.append("torch.compile")
    return ", ".join(parts)


def write(results: TimingResults, out: Path) -> Section:
    use_style()
    plan, env = results.plan, results.environment
    slug = env.get("slug") or device_slug(plan.device)  # from the record: results can be written elsewhere
    folder_name = f"timing/{slug}"
    folder = out / folder_name
    device = env["device_name"]
    base_words = _mode_words(asdict(plan.base))
    fast_words = _mode_words(asdict(plan.fastest))
    cpu = not plan.device.startswith("cuda")
    passes = (f"{plan.base.min_runs} interleaved pairs after {plan.base.warmup_passes} warm-up pass(es)"
              if cpu and plan.base.budget_s == 0 else
              "interleaved pairs: at least " f"{plan.base.min_runs}, then until " + (
                  f"the 95% CI is within +-{plan.precision:.0%} of the ratio, " if plan.precision else "") +
              f"~{plan.base.budget_s:.0f} s per pair of models or {plan.base.runs} pairs, after "
              f"{plan.base.warmup_passes} warm-up pass(es)") if cpu else (
        f"{plan.base.runs} timed passes per model after {plan.base.warmup_passes} warm-up passes (CUDA events)")
    quick = (f"; light backbones and sweeps: {plan.quick.min_runs} passes each" if cpu else "")
    settings = (f"{describe(env)}; batch 1; random input, random init; default mode: {base_words}; fastest mode: "
                f"{fast_words}; {passes}{quick}; medians; speed-up CIs: 95% t intervals on the log ratios of the "
                "pairs (percentile bootstrap beside them in the CSV)")
    artifacts: list[Artifact] = []
    paper_ms = paper_values("runtime_mean", "Table 2")
    paper_sd = paper_values("runtime_std", "Table 2")

    # --- Table 2: runtimes and paired speed-ups -------------------------------------------------
    rows, ratio_rows = [], []
    graph = any(r.mode == "graph" for r in results.table2 + results.fps)
    for r in results.table2:
        for name, median, samples, eager in ((r.base, r.base_median_ms, r.base_samples_ms, r.base_eager_ms),
                                             (r.other, r.other_median_ms, r.other_samples_ms, r.other_eager_ms)):
            rows.append({"variant": name, "paper_ms": paper_ms[name].value, "paper_sd_ms": paper_sd[name].value,
                         "median_ms": median, "p10_ms": _q(samples, 0.1), "p90_ms": _q(samples, 0.9),
                         "passes": len(samples), "mode": r.mode, "eager_ms": eager,
                         "launch_overhead": 1 - median / eager, "error": r.error})
        paper_ratio = paper_ms[r.base].value / paper_ms[r.other].value
        ratio_rows.append({"depth": variant_info(r.base).depth, "paper_rf_over_lw": paper_ratio, "measured": r.ratio,
                           "ci_low": r.ci_low, "ci_high": r.ci_high, "boot_low": r.boot_low,
                           "boot_high": r.boot_high, "pairs": r.pairs,
                           "diff": r.ratio - paper_ratio, "eager_ratio": r.base_eager_ms / r.other_eager_ms,
                           "mode": r.mode, **noise_columns(r), "error": r.error})
    runtime = pd.DataFrame(rows)
    ratios = pd.DataFrame(ratio_rows)
    t2_verdicts, t2_tally = ratio_verdicts([(f"depth {d}", Interval(r.ratio, r.ci_low, r.ci_high), why)
                                            for d, r, why in zip(DEPTHS, results.table2, ratios["disturbed"],
                                                                 strict=True)],
                                           list(ratios["paper_rf_over_lw"]))
    ratios["verdict"] = [v.outcome for v in t2_verdicts]
    if not graph:  # the eager columns exist only beside graph replays
        runtime = runtime.drop(columns=["eager_ms", "launch_overhead"])
        ratios = ratios.drop(columns=["eager_ratio"])
    ratio_fmt = {c: RATIO_FORMAT[graph] for c in ("measured", "ci_low", "ci_high", "boot_low", "boot_high")}
    size_words = f"{plan.table2_size[1]} wide x {plan.table2_size[0]} high"
    save_table(runtime, folder / "table2_runtime", f"Table 2: forward-pass time at {size_words}, {device}", [
        "Paper: mean ± std of 100 passes on a GTX 1080Ti (CUDA 9.0, cuDNN 7.0). Absolute times are not comparable "
        "across devices, so no measured/paper column: compare the ratios (table2_speedup.md).",
        "Measured: median and p10-p90 of the passes of the paired measurement."] + (
        [f"eager ms: median of {EAGER_PAIRS} eager passes of the same models after the replays; launch overhead = "
         "1 - replay / eager, the share of an eager pass the GPU waits for the host."] if graph else []),
        labels={"paper_ms": "paper ms (1080Ti)", "paper_sd_ms": "paper std", "median_ms": "median ms",
                "p10_ms": "p10", "p90_ms": "p90", "eager_ms": "eager ms", "launch_overhead": "launch overhead"},
        formats={"launch_overhead": ".0%"})
    save_table(ratios, folder / "table2_speedup", f"Table 2: how many times faster LW runs than RefineNet, {device}", [
        "Measured in one interleaved loop per depth (RF, LW, then LW, RF, ...; same input), ratio = geometric mean of "
        "the paired time ratios; 95% CI: t interval on the log ratios (with a handful of pairs a percentile bootstrap "
        "is too narrow; it is in the CSV as boot_low/boot_high) (bench.speedup).",
        "Paper ratios: the quotients of Table 2's mean runtimes on a GTX 1080Ti.", NOISE_NOTE,
        f"verdict: {RATIO_RULE}."] + (
        ["eager RF/LW: the quotient of the eager medians (not paired): the ratio an eager batch-1 timing would "
         "report, with the host's time in both."] if graph else []),
        labels={"paper_rf_over_lw": "paper RF/LW", "measured": "measured RF/LW", "ci_low": "95% CI low",
                "ci_high": "95% CI high", "eager_ratio": "eager RF/LW", **NOISE_LABELS},
        formats={**ratio_fmt, **NOISE_FORMATS})
    artifacts += [Artifact(f"{folder_name}/table2_speedup.md", "Table 2 speed-ups", "RF/LW per depth with 95% CI",
                           inline=True),
                  Artifact(f"{folder_name}/table2_runtime.md", "Table 2 runtimes", "median ms per model")]

    # --- FPS at 512 (the abstract) ----------------------------------------------------------------
    paper_fps = paper_values("fps", "Abstract")
    fast = {r.variant: r for r in results.fastest}
    fps_rows, fps_ratios = [], []
    for r in results.fps:
        for name, median, eager in ((r.base, r.base_median_ms, r.base_eager_ms),
                                    (r.other, r.other_median_ms, r.other_eager_ms)):
            fps_rows.append(_fps_row(name, 1e3 / median, r.mode, paper_fps, fast, results.macs, plan.fps_size,
                                     1e3 / eager))
        p = paper_fps[r.other].value / paper_fps[r.base].value
        fps_ratios.append({"pair": f"{r.other} / {r.base}", "paper_fps_ratio": p, "measured": r.ratio,
                           "ci_low": r.ci_low, "ci_high": r.ci_high, "pairs": r.pairs, "diff": r.ratio - p,
                           **noise_columns(r)})
    for r in results.light:
        fps_rows.append(_fps_row(r.variant, r.fps, r.mode, paper_fps, fast, results.macs, plan.fps_size,
                                 r.settings["batch"] * 1e3 / r.eager_median_ms))
    fps_table = pd.DataFrame(fps_rows)
    if fps_table["eager_fps"].isna().all():
        fps_table = fps_table.drop(columns=["eager_fps"])
    slower = fps_table[fps_table["fastest_fps"] < fps_table["fps"]]
    fps_ratio = pd.DataFrame(fps_ratios)
    fps_verdicts, fps_tally = ratio_verdicts([(pair, Interval(r.ratio, r.ci_low, r.ci_high), why) for pair, r, why in
                                              zip(fps_ratio["pair"], results.fps, fps_ratio["disturbed"], strict=True)],
                                             list(fps_ratio["paper_fps_ratio"]), cells="pairs of models")
    fps_ratio["verdict"] = [v.outcome for v in fps_verdicts]
    h, w = plan.fps_size
    best = fps_table.loc[fps_table["fastest_fps"].idxmax()] if fps_table["fastest_fps"].notna().any() else None
    save_table(fps_table, folder / "fps_512", f"Images per second at {h}x{w}, batch 1, {device}", [
        "FPS = images per second = batch / median time (here batch 1). Paper: a GTX 1080Ti; compare the LW/RF "
        "ratios (fps_ratio_512.md), not the absolute numbers.",
        f"Default mode: {base_words}. Fastest mode: {fast_words}."] + (
        ["FPS (eager): the default mode's forward run eagerly, in the same measurement."]
        if "eager_fps" in fps_table else []),
        labels={"paper_fps": "paper FPS (1080Ti)", "fps": "FPS (default)", "fastest_fps": "FPS (fastest)",
                "eager_fps": "FPS (eager)", "gmacs": "MACs (G)", "achieved_gflops": "GFLOP/s (default)"},
        formats={"fps": ".2f", "fastest_fps": ".2f", "eager_fps": ".2f"})
    save_table(fps_ratio, folder / "fps_ratio_512", f"How many times more images per second LW gives, {h}x{w}", [
        "Paired measurement as Table 2's (same loop, same statistic); the paper's ratios from its abstract "
        "(55/20 and 32/17 FPS).", NOISE_NOTE, f"verdict: {RATIO_RULE.replace('per depth', 'per pair')}."],
        labels={"paper_fps_ratio": "paper LW/RF FPS", "measured": "measured LW/RF", "ci_low": "95% CI low",
                "ci_high": "95% CI high", **NOISE_LABELS},
        formats={**{c: RATIO_FORMAT[graph] for c in ("measured", "ci_low", "ci_high")}, **NOISE_FORMATS})
    artifacts += [Artifact(f"{folder_name}/fps_ratio_512.md", "FPS ratios at 512", "LW/RF images per second, paired",
                           inline=True),
                  Artifact(f"{folder_name}/fps_512.md", "FPS at 512", "images/s per model, default and fastest mode")]

    # --- where the time goes --------------------------------------------------------------------
    prof = profile_frame(results.profiles)
    prof_rows = []
    for r in results.profiles:
        if r.error:
            continue
        row = {"variant": r.variant, "mode": _mode_words(r.settings), "wall_ms": r.wall_ms, "busy_ms": r.busy_ms,
               **{c: r.category_ms[c] for c in CATEGORIES}, "explained": r.explained, "idle_share": r.idle_share}
        prof_rows.append(row)
    prof_table = pd.DataFrame(prof_rows)
    if cpu and len(prof_table):
        prof_table = prof_table.drop(columns=["busy_ms", "idle_share"])
    why = why_sentence(results) if len(prof_table) else "No profile."
    ph, pw = plan.profile_size
    save_table(prof_table, folder / "profile", f"Where the time goes: ms per pass by operator category, {ph}x{pw}", [
        ("CUDA: device (kernel) time per category, profiled eager passes; kernel ms = all kernels of a pass (what a "
         "graph replay costs); eager pass ms = wall time of an unprofiled eager pass (CUDA events); GPU idle = "
         "1 - kernel / eager pass, the share of an eager pass the GPU waits for the host. "
         if not cpu else "CPU: self CPU time per category against the wall time of the profiled passes. ") +
        "explained = the named categories' share of the total (the rest is 'other').", why],
        labels={"wall_ms": "pass ms" if cpu else "eager pass ms", "busy_ms": "kernel ms", "explained": "explained",
                "idle_share": "GPU idle"},
        formats={"explained": ".0%", "idle_share": ".0%"})
    if len(prof):
        save_figure(profile_figure(prof_table, why, device, plan.profile_size), folder / "profile")
        artifacts.append(Artifact(f"{folder_name}/profile.png", "Where the time goes (figure)",
                                  "ms per pass by operator category, RF-50 vs LW-50, default and fastest mode"))
    artifacts.append(Artifact(f"{folder_name}/profile.md", "Where the time goes (table)", why, inline=True))

    # --- roofline ----------------------------------------------------------------------------------
    roofs = {r.mode: r for r in results.roofs}
    points = []
    base_mode = math_mode(plan.base, env)
    for r in results.fps:
        for name, median in ((r.base, r.base_median_ms), (r.other, r.other_median_ms)):
            points.append(roofline_points(name, replace(plan.base, height=h, width=w), roofs[base_mode], median)
                          .assign(mode=base_mode))
    for r in results.profiles:
        if not r.error:
            s = TimingSettings(**r.settings)
            mode = math_mode(s, r.environment)
            points.append(roofline_points(r.variant, s, roofs[mode], r.wall_ms, r)
                          .query("category != 'all'").assign(mode=mode, size=f"{s.height}x{s.width}"))
    points = pd.concat(points, ignore_index=True) if points else pd.DataFrame()
    roof_table = pd.DataFrame([roofs_record(r) for r in results.roofs])
    above = int(points["above_roof"].sum()) if len(points) else 0
    save_table(roof_table, folder / "roofs", f"Measured roofs, {device}", [
        "compute: the faster of a square matmul of side matmul_n and a large 3x3 convolution in the math mode "
        "(matmul_gflops, conv_gflops); memory: a device copy (read + write bytes). ridge = compute / memory, in "
        "FLOP per byte."])
    save_table(points, folder / "roofline", f"Roofline: achieved vs attainable GFLOP/s, {device}", [
        "FLOPs = 2 x MACs + one per other op; bytes = every input, weight and output once per op x element size "
        "(shape-only count, a lower bound on traffic, so the attainable value is an upper bound).",
        f"{above} point(s) more than {ABOVE_TOLERANCE:.0%} above their roof" + (
            " (likely operands that stayed in cache between ops, which a roof from a large device copy does not "
            "see)." if above else "."),
        f"{int((points['fraction_of_roof'] > 1).sum()) if len(points) else 0} point(s) above 100%."],
        formats={"fraction_of_roof": ".0%"})
    if len(points):
        save_figure(roofline_figure(points, roofs, device, (plan.fps_size, plan.profile_size)), folder / "roofline")
        artifacts.append(Artifact(f"{folder_name}/roofline.png", "Roofline (figure)",
                                  "achieved GFLOP/s vs arithmetic intensity, measured roofs"))

    # --- sweeps and speed vs accuracy ----------------------------------------------------------
    sw = pd.DataFrame([r.flat() for r in results.sweep])
    sw_cols = ["variant", "height", "width", "batch", "mode", "runs", "median_ms", "p10_ms", "p90_ms", "ms_per_image",
               "fps", "eager_median_ms", "launch_overhead", "macs", "achieved_gflops", "peak_memory_mb", "error"]
    sw = sw[[c for c in sw_cols if c in sw.columns]]
    for column in ("peak_memory_mb", "eager_median_ms", "launch_overhead"):  # CUDA-only columns
        if column in sw and (cpu or sw[column].isna().all()):
            sw = sw.drop(columns=[column])
    batches = sorted(sw["batch"].unique())
    save_table(sw, folder / "timing_sweep", f"Timing over input size and batch size, {device}", [
        f"Rows at batch {batches[0]} vary the input side; rows at batch {', '.join(map(str, batches[1:]))} are at "
        f"{plan.sweep_batch_side}x{plan.sweep_batch_side}. fps = images per second. A failed configuration is a row "
        "with its error; the sweep goes on."] + (
        ["eager ms: the same forward run eagerly in the same record; launch overhead = 1 - replay / eager. "
         "peak MB: memory allocated by one pass after warm-up."] if "launch_overhead" in sw else []),
        labels={"fps": "images/s", "macs": "GMACs", "eager_median_ms": "eager ms", "launch_overhead": "launch overhead",
                "peak_memory_mb": "peak MB", "achieved_gflops": "GFLOP/s"},
        display=sw.assign(macs=sw["macs"] / 1e9), formats={"launch_overhead": ".0%"})
    save_figure(sweep_figure(sw, device), folder / "timing_vs_macs")
    save_figure(speed_accuracy_figure(fps_table, device, plan.fps_size), folder / "speed_accuracy")
    records = pd.DataFrame([{k: v for k, v in r.flat().items()} for r in results.table2 + results.fps])
    save_table(records, folder / "paired_records", "Every paired measurement with its settings", [])
    artifacts += [Artifact(f"{folder_name}/timing_vs_macs.png", "Time vs MACs", "size and batch sweep"),
                  Artifact(f"{folder_name}/speed_accuracy.png", "Speed vs accuracy",
                           "paper VOC test mIoU vs measured time per image"),
                  Artifact(f"{folder_name}/timing_sweep.md", "Size and batch sweep (table)", "per configuration")]

    # --- words and scores ----------------------------------------------------------------------
    rank = 2.0 if not cpu else 1.0  # a GPU's graph replays are the strongest timing evidence
    scores = [
        ScoreRow("Table 2 (runtimes, RF/LW)", "/".join(f"{p:.2f}" for p in ratios["paper_rf_over_lw"]),
                 "; ".join(_ci(r) for r in results.table2), f"{device}, {base_words}", t2_tally.outcome,
                 t2_tally.why + faster_words(results.table2), RATIO_RULE, f"{folder_name}/table2_speedup.md", rank),
        ScoreRow("Abstract FPS (LW/RF at 512)", "/".join(f"{p:.2f}" for p in fps_ratio["paper_fps_ratio"]),
                 "; ".join(_ci(r) for r in results.fps), f"{device}, {base_words}", fps_tally.outcome,
                 fps_tally.why + faster_words(results.fps),
                 "as Table 2's ratios, per pair of models (absolute FPS depend on the device)",
                 f"{folder_name}/fps_ratio_512.md", rank),
    ]
    limit = limit_sentence(results, points)
    text = (f"Timed on {device}. LW runs {', '.join(f'{r.ratio:.2f}x' for r in results.table2)} faster than "
            f"RefineNet at depths {', '.join(map(str, DEPTHS))} ({size_words}; paper "
            f"{', '.join(f'{p:.2f}x' for p in ratios['paper_rf_over_lw'])} on a GTX 1080Ti). {why}")
    if best is not None:
        text += f" Fastest mode ({fast_words}): {best['variant']} at {best['fastest_fps']:.1f} images/s at {h}x{w}."
    if len(slower):
        text += (" It is slower than the default mode for " + ", ".join(
            f"{r.variant} ({r.fastest_fps:.0f} vs {r.fps:.0f} images/s)" for r in slower.itertuples()) + ".")
    text += f" {limit}"
    return Section(f"Timing on {device}", artifacts, text, settings, scores, folder_name)


def _q(samples: list[float], q: float) -> float:
    from bench.stats import percentile

    return percentile(samples, q) if samples else math.nan


def _fps_row(name, fps, mode, paper_fps, fast, macs, size, eager_fps) -> dict:
    f = fast.get(name)
    m = macs.get((name, *size), 0)
    return {"variant": name, "paper_fps": paper_fps[name].value if name in paper_fps else math.nan, "fps": fps,
            "fastest_fps": f.fps if f is not None and not f.error else math.nan, "eager_fps": eager_fps,
            "mode": mode, "gmacs": m / 1e9, "achieved_gflops": 2 * m * fps / 1e9}


def why_sentence(results: TimingResults) -> str:
    """Why LW-50 is only so much faster than RF-50 with many times fewer MACs: computed from the profiles."""
    wanted = replace(results.plan.base, height=results.plan.profile_size[0], width=results.plan.profile_size[1],
                     cuda_graph=False).resolved()
    base = {r.variant: r for r in results.profiles if not r.error and r.settings == asdict(wanted)}
    if not {"rf50", "rf_lw50"} <= set(base):
        return "No profile of RF-50 and LW-50."
    rf, lw = base["rf50"], base["rf_lw50"]
    h, w = results.plan.profile_size
    mac_ratio = results.macs[("rf50", h, w)] / results.macs[("rf_lw50", h, w)]
    total = (lambda r: r.busy_ms) if results.plan.device.startswith("cuda") else (lambda r: r.wall_ms)
    conv_ratio = rf.category_ms["convolution"] / max(lw.category_ms["convolution"], 1e-9)
    lw_top = max((c for c in CATEGORIES if c != "convolution"), key=lambda c: lw.category_ms[c])
    share = lw.category_ms[lw_top] / total(lw)
    idle = "" if math.isnan(lw.idle_share) else f" The GPU idles {lw.idle_share:.0%} of LW-50's eager pass."
    return (f"RF-50 has {mac_ratio:.1f}x LW-50's MACs but takes {total(rf) / total(lw):.1f}x its time at {h}x{w}: "
            f"convolution time falls {conv_ratio:.1f}x, while {lw_top} takes {share:.0%} of LW-50's pass "
            f"({lw.category_ms[lw_top]:.1f} ms; {rf.category_ms[lw_top]:.1f} ms in RF-50), time the MAC count "
            f"does not see.{idle}")


def limit_sentence(results: TimingResults, points: pd.DataFrame) -> str:
    """What limits LW-50 in the fastest mode: its largest operator categories and where its convolutions sit
    against the measured compute roof."""
    s = replace(results.plan.fastest, height=results.plan.profile_size[0], width=results.plan.profile_size[1],
                cuda_graph=False)
    prof = [r for r in results.profiles if r.variant == "rf_lw50" and r.settings == asdict(s.resolved())
            and not r.error]
    if not prof:
        return ""
    r = prof[0]
    total = r.busy_ms if results.plan.device.startswith("cuda") else r.wall_ms
    top = sorted(CATEGORIES, key=lambda c: -r.category_ms[c])[:2]
    words = ", ".join(f"{r.category_ms[c] / total:.0%} {c}" for c in top)
    mode = math_mode(s, r.environment)
    conv = points[(points.variant == "rf_lw50") & (points.category == "convolution") & (points["mode"] == mode)]
    roof = (f"; its convolutions reach {conv.iloc[0].fraction_of_roof:.0%} of the attainable rate "
            f"({conv.iloc[0].achieved_gflops:.0f} GFLOP/s, {conv.iloc[0].bound}-bound)") if len(conv) else ""
    idle = "" if math.isnan(r.idle_share) else f"; the GPU idles {r.idle_share:.0%} of an eager pass"
    op, op_ms = next(iter(r.top_ops.items()), ("", 0.0))
    longest = f"; the longest op is {op} ({op_ms / total:.0%})" if op else ""
    return f"What limits LW-50 in the fastest mode ({s.height}x{s.width}): {words} of the pass{longest}{roof}{idle}."


def profile_figure(table: pd.DataFrame, why: str, device: str, size: tuple[int, int]):
    import matplotlib.pyplot as plt
    import seaborn as sns

    colours = dict(zip(CATEGORIES, sns.color_palette("muted", len(CATEGORIES)), strict=True))
    labels = [f"{r.variant}\n{r.mode}" for r in table.itertuples()]
    fig, ax = plt.subplots(figsize=(9, 0.9 * len(table) + 1.8))
    left = pd.Series(0.0, index=table.index)
    for c in CATEGORIES:
        ax.barh(range(len(table)), table[c], left=left, color=colours[c], label=c, edgecolor="white", lw=0.5)
        left += table[c]
    gpu = "busy_ms" in table
    for i, (total, wall) in enumerate(zip(left, table["wall_ms"], strict=True)):
        words = f"{total:.1f} ms of kernels\n  (eager pass {wall:.1f} ms)" if gpu else f"{wall:.1f} ms/pass"
        ax.text(total, i, f"  {words}", va="center", fontsize=8)
    ax.set_yticks(range(len(table)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, left.max() * (1.4 if gpu else 1.25))
    ax.set_xlabel("ms per forward pass (self " + ("device" if "busy_ms" in table else "CPU")
                  + " time per operator category)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, title="category")
    ax.set_title(f"Where the time goes, {size[0]}x{size[1]}, batch 1, {device}", fontsize=10)
    fig.text(0.01, -0.02, "\n".join(_wrap(why, 130)), fontsize=8, va="top")
    return fig


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


def roofline_figure(points: pd.DataFrame, roofs: dict[str, Roofs], device: str,
                    sizes: tuple[tuple[int, int], tuple[int, int]]):
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    lo, hi = max(points["intensity"].min() / 4, 1e-2), points["intensity"].max() * 8
    xs = np.logspace(np.log10(lo), np.log10(hi), 200)
    for (mode, roof), ls in zip(roofs.items(), ("-", "--", ":"), strict=False):
        ax.plot(xs, [roof.attainable(x) for x in xs], color="0.2", ls=ls, lw=1.3,
                label=f"roof, {mode}: {roof.compute_gflops:.0f} GFLOP/s, {roof.memory_gbs:.0f} GB/s")
    cats = [c for c in CATEGORIES if c in set(points["category"])]
    markers = dict(zip(["all", *cats], ["o", "s", "^", "v", "D", "P", "X", "*"], strict=False))
    palette = dict(zip(cats, sns.color_palette("muted", len(cats)), strict=False))
    for r in points.itertuples():
        colour = family_colour(r.variant) if r.category == "all" else palette[r.category]
        ax.scatter(r.intensity, r.achieved_gflops, marker=markers.get(r.category, "o"),
                   s=46 if r.category == "all" else 26, color=colour, edgecolor="k", lw=0.4, zorder=3)
        if r.category == "all":
            ax.annotate(r.variant, (r.intensity, r.achieved_gflops), xytext=(5, -3), textcoords="offset points",
                        fontsize=7)
    from matplotlib.lines import Line2D

    handles, _ = ax.get_legend_handles_labels()
    whole = {variant_info(v).family for v in points.query("category == 'all'").variant}
    handles += [Line2D([], [], marker="o", ls="none", color=c, label=f"whole pass, {family_label(f)}")
                for f, c in FAMILY_COLOURS.items() if f in whole]
    handles += [Line2D([], [], marker=markers[c], ls="none", color=palette[c], label=f"{c} (profiled RF-50, LW-50)")
                for c in cats]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte, shape-only count)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title(f"Roofline on {device}, batch 1: whole passes at {sizes[0][0]}x{sizes[0][1]}, op categories at "
                 f"{sizes[1][0]}x{sizes[1][1]} (roofs measured in the same run)", fontsize=10)
    return fig


def sweep_figure(sw: pd.DataFrame, device: str):
    import matplotlib.pyplot as plt

    ok = sw[sw.error == ""] if "error" in sw else sw
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    batch1 = ok[ok.batch == 1].sort_values("height")
    batched = ok[ok.height == ok[ok.batch > 1].height.min()] if (ok.batch > 1).any() else ok.iloc[:0]
    for variant, g in batch1.groupby("variant", sort=False):
        axes[0].plot(g["macs"] / 1e9, g["median_ms"], "-", marker=variant_marker(variant), color=family_colour(variant),
                     label=variant)
        for r in g.itertuples():
            axes[0].annotate(f"{r.height}px", (r.macs / 1e9, r.median_ms), xytext=(4, -10), textcoords="offset points",
                             fontsize=7)
    for variant, g in batched.groupby("variant", sort=False):
        g = g.sort_values("batch")
        axes[1].plot(g["batch"], g["ms_per_image"], "-", marker=variant_marker(variant), color=family_colour(variant),
                     label=variant)
    if len(batch1):
        nice_log_axis(axes[0], "x", batch1["macs"] / 1e9)
        nice_log_axis(axes[0], "y", batch1["median_ms"])
    axes[0].set_xlabel("MACs per pass (G), batch 1: growing input side")
    axes[0].set_ylabel("median ms per pass")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xticks(sorted(batched["batch"].unique()), [str(b) for b in sorted(batched["batch"].unique())])
    axes[1].set_xlabel("batch size (fixed input side)")
    axes[1].set_ylabel("ms per image")
    axes[1].set_ylim(0, max(batched["ms_per_image"].max() * 1.1, 1e-9) if len(batched) else 1)
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(f"Time vs work: input size at batch 1 (left), batch size (right), {device}", fontsize=10)
    fig.tight_layout()
    return fig


def speed_accuracy_figure(fps_table: pd.DataFrame, device: str, size: tuple[int, int]):
    import matplotlib.pyplot as plt
    miou = {**paper_values("voc_val_miou"), **paper_values("voc_test_miou")}
    fig, ax = plt.subplots(figsize=(8, 5))
    rows = [r for r in fps_table.itertuples() if r.variant in miou]
    sizes = {r.variant: r.gmacs for r in rows}
    label_y = spread([miou[r.variant].value for r in rows], 0.45)
    for r, y in zip(rows, label_y, strict=True):
        ms = 1e3 / r.fps
        ax.scatter(ms, miou[r.variant].value, s=20 + 3 * r.gmacs, color=family_colour(r.variant),
                   marker=variant_marker(r.variant), edgecolor="k", lw=0.5, alpha=0.85, zorder=3)
        ax.annotate(r.variant, (ms, miou[r.variant].value), xytext=(ms * 1.12, y), textcoords="data",
                    fontsize=8, va="center", arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5})
    for g in (10, 50, 100):
        ax.scatter([], [], s=20 + 3 * g, color="0.7", edgecolor="k", lw=0.5, label=f"{g} GMACs")
    times = [1e3 / r.fps for r in rows] or [1.0]
    nice_log_axis(ax, "x", [min(times) / 1.2, max(times) * 1.6])
    ax.set_xlabel(f"measured ms per image at {size[0]}x{size[1]}, batch 1, {device} (log)")
    ax.set_ylabel("paper PASCAL VOC mIoU (%) (test; val where no test)")
    lo = min(miou[v].value for v in sizes) if sizes else 70
    ax.set_ylim(lo - 2, max((miou[v].value for v in sizes), default=85) + 2.5)
    ax.legend(title="marker area ~ MACs", fontsize=8, loc="lower right", labelspacing=1.4)
    ax.set_title("Speed vs accuracy: the paper's mIoU against this device's time", fontsize=10)
    return fig


def build(out: Path, plan: TimingPlan | None = None) -> Section:
    return write(collect(plan), out)


def rejudge(entry: dict, out: Path) -> dict | None:
    """A timing section decided by earlier rules, decided again by the current ones from its recorded tables
    (``table2_speedup.csv``, ``fps_ratio_512.csv``): the measurements are unchanged, only the rule is new. None where
    the tables are missing. Runs without per-pass samples in their tables (all before the noise columns) cannot be
    checked for disturbance; a GPU's graph replays are not disturbed by other processes the way a CPU's passes are."""
    from ..verdicts import VERDICT_VERSION

    folder = out / (entry.get("folder") or "")
    paths = [folder / "table2_speedup.csv", folder / "fps_ratio_512.csv"]
    if not entry.get("folder") or not all(p.exists() for p in paths):
        return None
    t2, fps = (pd.read_csv(p) for p in paths)
    rank = 1.0 if str(entry.get("environment", {}).get("device", "cpu")).startswith("cpu") else 2.0
    judged = {}
    for name, table, names, cells in (
            ("Table 2 (runtimes, RF/LW)", t2, [f"depth {d}" for d in t2.get("depth", [])], "depths"),
            ("Abstract FPS (LW/RF at 512)", fps, list(fps.get("pair", [])), "pairs of models")):
        paper = table["paper_rf_over_lw" if "paper_rf_over_lw" in table else "paper_fps_ratio"]
        disturbed = table["disturbed"].fillna("") if "disturbed" in table else [""] * len(table)
        _, verdict = ratio_verdicts([(n, Interval(r, lo, hi), d) for n, r, lo, hi, d in
                                     zip(names, table.measured, table.ci_low, table.ci_high, disturbed, strict=True)],
                                    list(paper), cells=cells)
        faster = ("; LW faster in every pair (every interval above 1)" if (table.ci_low > 1).all() else
                  "; LW not shown faster in every pair (an interval reaches 1)")
        judged[name] = (verdict, faster)
    scores = []
    for s in entry.get("scores", []):
        if s.get("artifact") in judged:
            verdict, faster = judged[s["artifact"]]
            rule = RATIO_RULE if s["artifact"].startswith("Table 2") else (
                "as Table 2's ratios, per pair of models (absolute FPS depend on the device)")
            s = {**s, "status": verdict.outcome, "rule": rule, "rank": rank,
                 "reason": f"{verdict.why}{faster} (re-decided by the current rules from the run's recorded tables)"}
        scores.append(s)
    return {**entry, "scores": scores, "verdict_version": VERDICT_VERSION,
            "rejudged": f"verdicts re-decided from the recorded tables by verdict version {VERDICT_VERSION}"}
