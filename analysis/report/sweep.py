"""A sweep's merged records as tables and figures (``python -m analysis sweep-report`` and the zoo section).

Complexity records: FLOPs and parameters of every family on every backbone, what each decoder family
costs on top of the light-weight one, and the parameters/FLOPs Pareto front per family. Timing
records: time against MACs per family and the speed/complexity Pareto front.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.models import variant_info

from ..style import FAMILY_COLOURS, family_label, use_style
from .files import save_figure, save_table


def annotate(frame: pd.DataFrame, column: str = "variant") -> pd.DataFrame:
    """Family and backbone of each row's variant, from the registry."""
    out = frame.copy()
    infos = {v: variant_info(v) for v in out[column].dropna().unique()}
    out["family"] = out[column].map(lambda v: infos[v].family if v in infos else "")
    out["backbone"] = out[column].map(lambda v: infos[v].backbone if v in infos else "")
    return out


def pareto(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The rows no other row beats on both ``x`` and ``y`` (lower is better), sorted by ``x``."""
    ordered = frame.sort_values([x, y])
    front, best = [], float("inf")
    for _, row in ordered.iterrows():
        if row[y] < best:
            front.append(row)
            best = row[y]
    return pd.DataFrame(front)


def write_sweep_report(frame: pd.DataFrame, out: Path, title: str, size: tuple[int, int] | None = None,
                       say=print) -> list[Path]:
    """Tables and figures of a merged sweep frame under ``out``; returns the files written. ``family_cost``: the
    built-in families' successful counts at ``size`` (default: the smallest size with one)."""
    use_style()
    written = []
    frame = annotate(frame) if "variant" in frame and "family" not in frame else frame
    csv, md = save_table(frame, out / "sweep", f"{title}: every record", [
        "One row per configuration (a failed one: its error). Counts: shape-only; times: see each row's settings."])
    written += [csv, md]
    comp = frame[frame.get("kind", pd.Series(dtype=str)) == "complexity"] if "kind" in frame else frame.iloc[:0]
    if len(comp):
        written += family_cost_files(comp[comp.error == ""], out, size, say)
    timed = frame[frame.get("kind", pd.Series(dtype=str)) == "time"] if "kind" in frame else frame.iloc[:0]
    if len(timed) and "median_ms" in timed:
        written.append(save_figure(timing_figure(timed[timed.error == ""]), out / "time_vs_macs"))
    return written


def family_cost_files(comp: pd.DataFrame, out: Path, size: tuple[int, int] | None, say=print) -> list[Path]:
    """``family_cost`` (table and figure) from the successful complexity rows ``comp``: the built-in families at
    ``size`` (default: the smallest size with a built-in count); nothing, said in one line, where there is none."""
    builtin = comp[comp["variant"].map(lambda v: not variant_info(v).base)]
    if not len(builtin):
        say("family_cost: not drawn, the sweep counted no built-in decoder family (only registered variants, which "
            "are in the table of every record)")
        return []
    sizes = sorted({(int(h), int(w)) for h, w in zip(builtin.height, builtin.width, strict=True)})
    h, w = size or sizes[0]
    at = builtin[(builtin.height == h) & (builtin.width == w)]
    others = [f"{a}x{b}" for a, b in sizes if (a, b) != (h, w)]
    if not len(at):
        say(f"family_cost: not drawn, no built-in decoder family was counted at {h}x{w} (counted at "
            f"{', '.join(others)})")
        return []
    overhead = family_cost(at)
    ratios = "" if "rf_over_lw" not in overhead else f" (median {overhead['rf_over_lw'].median():.1f}x for RefineNet)"
    chosen = "" if size else ", the smallest size measured"
    note = (f"{len(overhead)} backbones at {h}x{w}" + (f"{chosen} (the other sizes, {', '.join(others)}, are in the "
            "table of every record)" if others else "") + "; the built-in decoder families only (a registered "
            "variant is in the table of every record); '-': the family was not measured on that backbone.")
    if any(c.endswith("_over_lw") for c in overhead):
        note += f" *_over_lw: the family's FLOPs over Light-Weight RefineNet's on the same backbone{ratios}."
    # one decimal for whole GFLOPs; small inputs (0.036 G) keep three significant digits
    formats = {c: ".1f" if overhead[c].min() >= 1 else ".3g" for c in overhead.columns if c.endswith("gflops")}
    written = list(save_table(overhead, out / "family_cost",
                              f"Each decoder family on every backbone, FLOPs at {h}x{w} (G, MACs + pooling)", [note],
                              formats=formats))
    written.append(save_figure(complexity_figure(at, overhead, h, w), out / "family_cost"))
    return written


def family_cost(at: pd.DataFrame) -> pd.DataFrame:
    """FLOPs (G) of every family per backbone, and each family's over LW's where both were measured, from the
    built-in rows ``at`` (a registered variant is not its family: it never stands in for the built-in network)."""
    wide = at.pivot_table(index="backbone", columns="family", values="paper_flops", aggfunc="first") / 1e9
    overhead = pd.DataFrame({"backbone": wide.index, **{f"{f}_gflops": wide[f].values for f in wide.columns}})
    if "rf_lw" in wide:
        for f in wide.columns:
            if f != "rf_lw":
                overhead[f"{f}_over_lw"] = (wide[f] / wide["rf_lw"]).values
    return overhead.sort_values(f"{wide.columns[0]}_gflops" if "rf_lw" not in wide else "rf_lw_gflops")


def complexity_figure(at: pd.DataFrame, cost: pd.DataFrame, h: int, w: int):
    """Left: every family's FLOPs against LW's on the same backbone (``cost``: :func:`family_cost` of ``at``).
    Right: params vs FLOPs with each family's Pareto front."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    # fixed margins: an automatic layout gives up (and warns) on a panel of long backbone labels
    fig.subplots_adjust(left=0.14, right=0.98, bottom=0.11, top=0.92, wspace=0.22)
    cost = cost.set_index("backbone")
    wide = cost[[c for c in cost if c.endswith("_gflops")]].rename(columns=lambda c: c[:-len("_gflops")])
    if "rf_lw" in wide:
        left_panel(axes[0], wide, h, w)
    else:  # nothing to compare against: say so where the panel would be
        axes[0].text(0.5, 0.5, "no Light-Weight RefineNet (rf_lw) rows in this sweep:\nno per-backbone comparison",
                     ha="center", va="center", transform=axes[0].transAxes, fontsize=9, color="0.3")
        axes[0].set_axis_off()
    for f, g in at.groupby("family"):
        x, y = g["params"] / 1e6, g["paper_flops"] / 1e9
        axes[1].scatter(x, y, s=10, color=FAMILY_COLOURS[f], alpha=0.35)
        front = pareto(pd.DataFrame({"p": x, "f": y, "v": g["variant"]}), "p", "f")
        axes[1].plot(front["p"], front["f"], "-o", ms=4, color=FAMILY_COLOURS[f], label=f"{family_label(f)} front")
        for r in front.itertuples():
            if r.p == front["p"].iloc[-1] or r.f == front["f"].min():
                axes[1].annotate(variant_info(r.v).backbone, (r.p, r.f), xytext=(4, 2), textcoords="offset points",
                                 fontsize=7)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    for axis in (axes[1].xaxis, axes[1].yaxis):  # a label per decade: minor labels crowd an axis of few points
        axis.set_minor_formatter(NullFormatter())
    classes = "/".join(str(int(k)) for k in sorted(set(at.num_classes))) if "num_classes" in at else "?"
    axes[1].set_xlabel(f"parameters (M, {classes} classes)")
    axes[1].set_ylabel(f"FLOPs (G) at {h}x{w}")
    axes[1].set_title("Parameters vs FLOPs, every family:backbone; lines: each family's Pareto front", fontsize=10)
    axes[1].legend(fontsize=8, loc="upper left")
    return fig


def left_panel(ax, wide: pd.DataFrame, h: int, w: int) -> None:
    """Every family's FLOPs against LW's on the same backbone (G), with 1x/2x/4x/8x guides."""
    import numpy as np

    lo, hi = np.nanmin(wide.values) * 0.8, np.nanmax(wide.values) * 1.25
    for f in wide.columns:
        ax.scatter(wide["rf_lw"], wide[f], s=14, color=FAMILY_COLOURS[f], label=family_label(f), alpha=0.8)
    xs = np.array([lo, hi])
    for k in (1, 2, 4, 8):
        ax.plot(xs, k * xs, color="0.6", lw=0.7, ls=":")
        ax.text(hi / k / 1.05 if k > 1 else hi / 1.1, hi / 1.05, f"{k}x", fontsize=7, color="0.4", ha="right")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(f"Light-Weight RefineNet FLOPs (G) at {h}x{w}")
    ax.set_ylabel("this family's FLOPs on the same backbone (G)")
    ax.set_title(f"Decoder cost on {wide['rf_lw'].notna().sum()} backbones (dotted: 1x, 2x, 4x, 8x LW)",
                 fontsize=10)
    ax.legend(fontsize=8)


def timing_figure(timed: pd.DataFrame):
    """Median time against MACs per family, with the speed/complexity Pareto front."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for f, g in timed.groupby("family"):
        ax.scatter(g["macs"] / 1e9, g["median_ms"], s=14, color=FAMILY_COLOURS.get(f, "0.5"), label=family_label(f))
    front = pareto(timed.assign(g=timed["macs"] / 1e9), "g", "median_ms")
    ax.plot(front["g"], front["median_ms"], "k--", lw=1, label="Pareto front (fewer MACs, less time)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MACs per pass (G)")
    ax.set_ylabel("median ms per pass")
    devices = ", ".join(sorted(set(timed.get("device_name", pd.Series(["?"])).astype(str))))
    ax.set_title(f"Time vs MACs across the sweep ({devices})", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def report_sweep(folder: str | Path, report: str | Path | None = None, say=print) -> list[Path]:
    """``python -m analysis sweep-report DIR``: a sweep's records merged into one table and figures."""
    from bench.errors import UsageError
    from bench.sweeps import merged_frame, read_records

    if Path(folder).exists() and not Path(folder).is_dir():
        raise UsageError(f"{folder} is a file, not a sweep folder (the --out folder of `python -m bench sweep`)")
    if not Path(folder).is_dir():
        raise UsageError(f"sweep folder not found: {folder} (the --out folder of `python -m bench sweep`)")
    out = Path(report or Path(folder) / "report")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--report {out} is an existing file, not a folder")
    from bench.validation import writable_folder

    writable_folder("--report", out, make=False)
    frame = merged_frame(folder)
    if not len(frame):
        raise UsageError(f"no sweep records under {folder}/records")
    register_recorded_names(folder, read_records(folder))
    frame = _drop_undrawable(frame, say)
    return write_sweep_report(frame, out, title=f"Sweep {folder}", say=say)


def register_recorded_names(folder: str | Path, records: list[dict]) -> None:
    """Register the names the sweep's process registered (``register_variant``), from its records. One name
    registered two ways across runs into one folder would be two networks under one name: refused, naming the
    records of each definition."""
    import json

    from bench.errors import DataError
    from bench.sweeps.jobs import register_names

    definitions: dict[str, dict[str, list[str]]] = {}
    for record in records:
        for entry in record["config"].get("registered", []):
            key = json.dumps({"base": entry["base"], "changes": entry["changes"]}, sort_keys=True)
            definitions.setdefault(entry["name"], {}).setdefault(key, []).append(record["id"])
    for name, ways in definitions.items():
        if len(ways) > 1:
            listed = "; ".join(f"{json.loads(k)['base']} with {json.loads(k)['changes']} in record(s) "
                               + ", ".join(f"{Path(folder) / 'records' / i}.json" for i in ids[:3])
                               + (" ..." if len(ids) > 3 else "") for k, ids in ways.items())
            raise DataError(f"the records under {folder} register {name!r} in {len(ways)} ways ({listed}): one name "
                            "for two networks; delete the records of the one you do not mean, or sweep it under "
                            "another name")
    register_names([r["config"] for r in records])


def _drop_undrawable(frame: pd.DataFrame, say=print) -> pd.DataFrame:
    """Where every configuration of a kind failed there is nothing to draw for it: say so and list the errors;
    the table of every record (errors included) is still written."""
    for kind, value in (("time", "median_ms"), ("complexity", "paper_flops")):
        rows = frame[frame["kind"] == kind] if "kind" in frame else frame.iloc[:0]
        if len(rows) and not (rows["error"] == "").any():
            say(f"nothing to draw for '{kind}': all {len(rows)} of its configurations failed; the table lists them:")
            for error, n in rows["error"].value_counts().items():
                say(f"  {n} x {error}")
            if kind == "time":
                frame = frame.drop(columns=[value], errors="ignore")  # the time figure is drawn only from this column
            else:
                frame = frame.assign(kind=frame["kind"].replace({"complexity": "complexity (failed)"}))
    return frame
