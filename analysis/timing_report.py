"""Timing section of reports/: Table 2 runtimes, the abstract's FPS, roofline, sweeps, speed-accuracy.

Absolute times depend on the device; the paper's are from a GTX 1080Ti. The comparable figures are
the ratios RF/LW at each depth, shown next to the paper's. On a CPU-only machine the embedded
default takes a few passes per model (adaptive budget); on a GPU it takes 100 passes per model, as
the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch

from bench.paper import paper_values
from bench.timing import TimingRecord, TimingSettings, device_description, sweep, time_variants

from .reporting import REPORTS, Artifact, Section, figure_style, save_figure, save_table

COMMAND = "python -m analysis report timing"
TABLE2 = ["rf50", "rf101", "rf152", "rf_lw50", "rf_lw101", "rf_lw152"]
AT_512 = ["rf50", "rf101", "rf152", "rf_lw50", "rf_lw101", "rf_lw152", "rf_lw_mbv2", "rf_lw_nasnet"]


@dataclass(frozen=True)
class Plan:
    device: str
    base: TimingSettings
    sweep_variants: tuple[str, ...]
    sweep_sides: tuple[int, ...]
    sweep_batches: tuple[int, ...]
    table2_size: tuple[int, int] = (468, 625)  # Table 2: 625 wide, 468 high
    fps_size: tuple[int, int] = (512, 512)

    @staticmethod
    def tiny() -> Plan:
        """Seconds, for tests: tiny inputs, one pass each."""
        base = TimingSettings(device="cpu", runs=1, min_runs=1, budget_s=0.0)
        return Plan("cpu", base, ("rf_lw_mbv2",), (64, 96), (1, 2), table2_size=(64, 80), fps_size=(64, 64))

    @staticmethod
    def default() -> Plan:
        if torch.cuda.is_available():
            base = TimingSettings(device="cuda", runs=100, warmup=10, cudnn_benchmark=True)
            return Plan("cuda", base, ("rf50", "rf_lw50", "rf_lw_mbv2"), (256, 512, 768, 1024), (1, 2, 4, 8))
        # CPU: a few passes per configuration, seconds each (see bench.timing for the adaptive budget)
        base = TimingSettings(device="cpu", runs=20, min_runs=3, budget_s=3.0)
        return Plan("cpu", base, ("rf_lw50", "rf_lw_mbv2"), (256, 384, 512), (1, 2, 4))


def _frame(records: list[TimingRecord]) -> pd.DataFrame:
    return pd.DataFrame([r.flat() for r in records])


def _settings_text(base: TimingSettings, device_name: str) -> str:
    passes = f"{base.runs} passes after {base.warmup} warm-up" if base.device != "cpu" else (
        f"adaptive: >= {base.min_runs} passes, ~{base.budget_s:.0f} s per configuration, 1 warm-up")
    return (f"{device_name}; torch {torch.__version__}; fp32; batch 1; random input and random init; "
            f"{passes}; cudnn.benchmark={base.cudnn_benchmark}; threads {torch.get_num_threads()}")


def build(out: Path = REPORTS, plan: Plan | None = None) -> Section:
    figure_style()
    import matplotlib.pyplot as plt

    plan = plan or Plan.default()
    base = plan.base
    device_name = device_description(plan.device)
    settings_text = _settings_text(base, device_name)
    artifacts = []

    # Table 2: 625 wide x 468 high, default and inference mode
    t2_default = replace(base, height=plan.table2_size[0], width=plan.table2_size[1])
    t2_fast = replace(t2_default, fold_bn=True, channels_last=True)
    print(f"  Table 2 runtimes ({plan.table2_size[0]}x{plan.table2_size[1]}) ...", flush=True)
    records = time_variants(TABLE2, [t2_default, t2_fast])
    frame = _frame(records)
    paper_mean = paper_values("runtime_mean", "Table 2")
    paper_std = paper_values("runtime_std", "Table 2")
    rows = []
    for variant in TABLE2:
        d = frame[(frame.variant == variant) & (~frame.fold_bn)].iloc[0]
        f = frame[(frame.variant == variant) & (frame.fold_bn)].iloc[0]
        rows.append({
            "variant": variant,
            "paper ms (GTX 1080Ti)": f"{paper_mean[variant].value:.2f} ± {paper_std[variant].value:.2f}",
            "measured ms (default)": f"{d.mean_ms:.1f} ± {d.std_ms:.1f} (n={d.runs})",
            "measured ms (inference mode)": f"{f.mean_ms:.1f} ± {f.std_ms:.1f} (n={f.runs})",
            "measured / paper (default)": d.mean_ms / paper_mean[variant].value,
        })
    t2 = pd.DataFrame(rows)
    ratios = []
    for depth in ("50", "101", "152"):
        rf, lw = f"rf{depth}", f"rf_lw{depth}"
        paper_ratio = paper_mean[rf].value / paper_mean[lw].value
        row = {"depth": depth, "paper RF/LW": paper_ratio}
        for mode, fold in (("default", False), ("inference mode", True)):
            sel = frame[frame.fold_bn == fold].set_index("variant")
            row[f"measured RF/LW ({mode})"] = sel.loc[rf, "mean_ms"] / sel.loc[lw, "mean_ms"]
        row["diff (default - paper)"] = row["measured RF/LW (default)"] - paper_ratio
        ratios.append(row)
    ratio_frame = pd.DataFrame(ratios)
    notes = [
        f"Measured on: {settings_text}.",
        f"Input {plan.table2_size[1]} wide x {plan.table2_size[0]} high (Table 2: 625 x 468). "
        "Paper: mean ± std over 100 forward passes of random inputs on a "
        "GTX 1080Ti (CUDA 9.0, cuDNN 7.0). Absolute times are not comparable across devices: compare the ratios.",
        "Inference mode: BatchNorm folded into convs + channels_last memory format; outputs equal the default "
        "within fp32 rounding (tests/test_timing.py).",
    ]
    h, w = plan.table2_size
    save_table(t2, "table2_runtime", f"Table 2: forward-pass runtime at {w}x{h} (width x height)", notes, out)
    save_table(ratio_frame, "table2_speedup", "Table 2: speed-up of Light-Weight RefineNet over RefineNet (RF/LW)",
               notes[:2] + ["On CPU, CRP's 5x5 stride-1 max-pooling in NCHW dominates LW's default forward "
                            "(about 60% of LW-50's time at 256x256); channels_last removes most of it, which is "
                            "why the inference-mode ratios are larger."], out)
    save_table(frame.drop(columns=["settings"], errors="ignore"), "timing_table2_records",
               "Table 2 timing records (all settings)", notes[:1], out)
    artifacts += [
        Artifact("table2_runtime.md", "Table 2 replica (runtime)", "paper ms vs measured ms per model",
                 settings_text, COMMAND, inline=True),
        Artifact("table2_speedup.md", "Table 2 speed-up ratios", "RF/LW per depth: paper 2.77/2.22/1.94 vs measured",
                 settings_text, COMMAND, inline=True),
    ]

    # FPS at 512x512 (abstract) and the speed-accuracy figure
    print("  512x512 FPS ...", flush=True)
    fps_records = time_variants(AT_512, replace(base, height=plan.fps_size[0], width=plan.fps_size[1]))
    fps = _frame(fps_records)
    paper_fps = paper_values("fps", "Abstract")
    fps_rows = []
    for r in fps.itertuples():
        fps_rows.append({
            "variant": r.variant, "paper FPS (1080Ti)": paper_fps[r.variant].value if r.variant in paper_fps else "",
            "measured FPS": r.fps,
            "measured / paper": r.fps / paper_fps[r.variant].value if r.variant in paper_fps else "",
            "measured ms": r.mean_ms, "runs": r.runs, "MACs (G)": r.macs / 1e9,
            "achieved GFLOP/s": r.achieved_gflops, "peak GFLOP/s (matmul, same run)": r.peak_gflops,
            "fraction of peak": r.roofline_fraction,
        })
    fps_table = pd.DataFrame(fps_rows)
    save_table(fps_table, "fps_512", f"Frames per second at {plan.fps_size[0]}x{plan.fps_size[1]} (abstract: "
               "512x512) and roofline",
               [f"Measured on: {settings_text}.",
                "Achieved GFLOP/s = 2 x MACs / mean time (a multiply-accumulate is 2 FLOPs here, the hardware "
                "convention); peak = a 2048x2048 fp32 matmul timed in the same run.",
                "Paper FPS: 20 (RF-50), 55 (LW-50), 17 (RF-152), 32 (LW-152) on a GTX 1080Ti."], out)
    artifacts.append(Artifact("fps_512.md", "FPS at 512x512 and roofline", "paper FPS vs measured, GFLOP/s vs peak",
                              settings_text, COMMAND, inline=True))

    fig, ax = plt.subplots(figsize=(8, 4.2))
    order = fps_table.sort_values("fraction of peak")
    ax.barh(order["variant"], 100 * order["fraction of peak"], color="tab:blue")
    for y, (g, f) in enumerate(zip(order["achieved GFLOP/s"], order["fraction of peak"], strict=True)):
        ax.text(100 * f, y, f" {g:.0f} GFLOP/s", va="center", fontsize=8)
    ax.set_xlabel("achieved fraction of measured matmul peak (%)")
    ax.set_title(f"Roofline position at 512x512, fp32, batch 1\n{device_name}", fontsize=10)
    save_figure(fig, "roofline", out)
    artifacts.append(Artifact("roofline.png", "Roofline (figure)", "achieved GFLOP/s as a fraction of matmul peak",
                              settings_text, COMMAND))

    miou = {**paper_values("voc_val_miou"), **paper_values("voc_test_miou")}
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for r in fps.itertuples():
        if r.variant in miou:
            ax.scatter(r.mean_ms, miou[r.variant].value, s=30 + r.macs / 2e9, alpha=0.8)
            ax.annotate(r.variant, (r.mean_ms, miou[r.variant].value), textcoords="offset points", xytext=(5, 3),
                        fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"measured runtime at 512x512 (ms, log scale) on {device_name}")
    ax.set_ylabel("paper PASCAL VOC test mIoU (%)")
    ax.set_title("Speed vs accuracy: paper accuracy, our runtime (marker size ~ MACs)", fontsize=10)
    save_figure(fig, "speed_accuracy", out)
    artifacts.append(Artifact("speed_accuracy.png", "Speed vs accuracy", "paper VOC test mIoU vs measured runtime",
                              settings_text + "; mIoU from the paper (Table 3), not measured", COMMAND))

    # sweeps
    print("  sweeps ...", flush=True)
    smallest = plan.sweep_sides[0]
    sweep_records = sweep(plan.sweep_variants, base, sizes=[(s, s) for s in plan.sweep_sides])
    sweep_records += sweep(plan.sweep_variants, replace(base, height=smallest, width=smallest),
                           batches=[b for b in plan.sweep_batches if b > 1])
    sw = _frame(sweep_records)
    save_table(sw[["variant", "height", "width", "batch", "runs", "mean_ms", "std_ms", "median_ms", "ms_per_image",
                   "images_per_s", "macs", "achieved_gflops", "peak_memory_mb", "error"]],
               "timing_sweep", "Timing over input size and batch size",
               [f"Measured on: {settings_text}.", "A failed configuration (e.g. out of memory) is a row with its "
                "error; the sweep goes on."], out)
    ok = sw[sw.error == ""]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for variant, group in ok.groupby("variant", sort=False):
        ax.errorbar(group["macs"] / 1e9, group["mean_ms"], yerr=group["std_ms"], fmt="o-", ms=4, capsize=2,
                    label=variant)
        for r in group.itertuples():
            ax.annotate(f"{r.batch}x{r.height}", (r.macs / 1e9, r.mean_ms), textcoords="offset points",
                        xytext=(4, -10), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MACs per forward pass (G, conv+linear)")
    ax.set_ylabel("time per forward pass (ms, mean ± std)")
    ax.set_title(f"Time vs MACs over input and batch sizes (labels: batch x side)\n{device_name}, fp32",
                 fontsize=10)
    ax.legend()
    save_figure(fig, "timing_vs_macs", out)
    artifacts += [
        Artifact("timing_sweep.md", "Size and batch sweep (table)", "time, throughput, memory per configuration",
                 settings_text, COMMAND),
        Artifact("timing_vs_macs.png", "Time vs MACs (figure)", "how time follows MACs across sizes and batches",
                 settings_text, COMMAND),
    ]
    text = (
        f"Timed on {device_name}. The paper's runtimes are from a GTX 1080Ti; compare the RF/LW ratios, not the "
        "milliseconds. On a CPU-only machine the embedded default uses a few passes per model; on a GPU, "
        "100 passes per model with CUDA events."
    )
    return Section("Timing (Table 2 runtimes, FPS, roofline)", artifacts, text)
