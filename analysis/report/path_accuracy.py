"""Paper-path accuracy section (``--seeds N`` only): what each change of RefineNet -> Light-Weight RefineNet costs
in accuracy, over training runs.

The paper's path (``bench/ablations/specs/paper-path.toml``, whose steps the cost-side ablation section measures on
ResNet-50) is trained here on the trained set's own backbone and setting: every variant of the path on seeds
0..N-1, each from the setting's shared pretrained backbone (:func:`analysis.networks.trained_set`; the path's start
and end are the set's RefineNet and LW, and its fourth variant is LW with RCU, so those are the very networks of the
networks section). Per step: the change in mIoU (held-out test split) and its error ratio, paired seed by seed
(:mod:`analysis.networks.spec_accuracy`). The steps the paper calls harmless are claims, and so is the whole path
(start to end, the same margin), gated like the networks section's accuracy claims by its three controls (a task
that cannot tell architectures apart at the margin decides no step).
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pandas as pd

from bench.ablations import SPECS, AblationSpec
from bench.ablations.spec import parse_ablation
from bench.environment import device_description

from ..networks import NetworkSetting
from ..networks.claims import gated
from ..networks.spec_accuracy import (
    EFFECT_RULE,
    PATH_CLAIM_RULE,
    WHOLE_PATH_RULE,
    claim_tally,
    cut_words,
    path_accuracy,
    spec_runs,
)
from ..verdicts import REPRODUCED, Verdict
from .files import Artifact, ScoreRow, Section, save_figure, save_table

FOLDER = "path-accuracy"
PAPER_PATH = SPECS / "paper-path.toml"


def paper_path_spec(backbone: str, spec_file: Path = PAPER_PATH) -> AblationSpec:
    """The shipped paper path's steps from ``rf:BACKBONE`` to ``rf_lw:BACKBONE`` (checked to end there)."""
    raw = tomllib.loads(Path(spec_file).read_text())
    path = dict(raw["paths"]["paper"])
    path.update(start=f"rf:{backbone}", end=f"rf_lw:{backbone}")
    return parse_ablation({"paths": {"paper": path}}, source=f"{Path(spec_file).name} on {backbone}")


def collect(setting: NetworkSetting, say=print) -> tuple[AblationSpec, pd.DataFrame, dict[str, Verdict] | None]:
    """The path spec, one row per (path variant, seed) (trained where the store does not hold it), and the verdicts
    of the networks section's controls (trained or loaded the same way; None with one seed)."""
    from ..networks import trained_set
    from .networks import control_rows, control_runs, scores_of

    spec = paper_path_spec(setting.backbone)
    path = spec.paths[0]
    runs = spec_runs(spec, [v.name for v in path.variants], setting, setting.seeds, say=say)
    gate = None
    if setting.seeds >= 2:
        gate = control_rows(scores_of(trained_set(setting, say=say)), control_runs(setting, progress=say))[0]
    return spec, runs, gate


def _ci(estimate, low, high, fmt: str = ".1f", sign: bool = False) -> str:
    if estimate != estimate:
        return "-"
    f = ("+" if sign else "") + fmt
    if low != low:
        return f"{estimate:{f}} (one run)"
    return f"{estimate:{f}} [{low:{f}}, {high:{f}}]"


def path_display(frame: pd.DataFrame) -> pd.DataFrame:
    """The Markdown view of :func:`analysis.networks.spec_accuracy.path_accuracy`'s frame: intervals in one column."""
    def column(name: str) -> pd.Series:
        return frame[name].fillna("") if name in frame else pd.Series([""] * len(frame))

    def paired(r, key: str) -> str:  # a change over fewer seeds than the variant's own: say on how many
        if not r.step:
            return "-"
        words = _ci(getattr(r, key), getattr(r, f"{key}_low"), getattr(r, f"{key}_high"), sign=True)
        seeds = getattr(r, f"{key}_seeds", r.n_seeds)
        return words + (f" ({int(seeds)} paired seeds)" if seeds == seeds and seeds != r.n_seeds and words != "-"
                         else "")

    display = pd.DataFrame({
        "step": frame.step, "change": frame.change, "variant": frame.variant, "seeds": frame.n_seeds,
        "mIoU % [95% CI]": [_ci(r.miou, r.miou_low, r.miou_high) for r in frame.itertuples()],
        "Δ vs previous [95% CI]": [paired(r, "delta") for r in frame.itertuples()],
        "error ratio [95% CI]": [_ci(r.ratio, r.ratio_low, r.ratio_high, ".3f") if r.step and "ratio" in frame
                                 else "-" for r in frame.itertuples()],
        "effect": column("effect"),
        "Δ from start [95% CI]": [paired(r, "from_start") for r in frame.itertuples()],
        "paper says harmless": column("paper"), "status": column("status")})
    if "shapley" in frame:
        display["Shapley Δ mIoU [95% CI]"] = [_ci(r.shapley, r.shapley_low, r.shapley_high, sign=True) if r.step
                                             else "-" for r in frame.itertuples()]
    return display


def split_words(runs: pd.DataFrame) -> str:
    """What the runs' mIoU is: on the held-out test split, or on the val split that also picked the weights."""
    if len(runs) and (runs.split == "test").all():
        return "mIoU: the kept (best on val) weights on the held-out test split"
    return "mIoU: the kept (best evaluated) weights on the val split that picked them (no held-out test split)"


def common_notes(frame: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """The notes every path-accuracy table carries (what the mIoU, Δ, the effect and the claim are)."""
    shapley = (f"here on {len(frame.attrs.get('shapley_seeds', []))} seed(s)." if "shapley" in frame
               else "not all trained here.")
    return [f"{split_words(runs)}; points. Δ: paired seed by seed (the same seed: the same data order and crops), "
            f"95% t interval over the seeds; Δ from start: the same against the path's start{cut_words(frame)}.",
            EFFECT_RULE + ".",
            PATH_CLAIM_RULE + ".",
            WHOLE_PATH_RULE + ".",
            "Shapley values of mIoU need all 2^n subsets of the path's changes trained on the same seeds "
            f"(`python -m analysis train --spec SPEC` trains them all); {shapley}"]


def gate_frame(frame: pd.DataFrame, gate: dict[str, Verdict]) -> pd.DataFrame:
    """Every step's claim status gated by the controls (:func:`analysis.networks.claims.gated`): a task that cannot
    tell architectures apart decides no step."""
    if "status" not in frame or all(v.outcome == REPRODUCED for v in gate.values()):
        return frame
    frame = frame.copy()
    frame["status"] = [gated(Verdict(s, w), gate).outcome if s else "" for s, w in
                       zip(frame.status.fillna(""), frame.why.fillna(""), strict=True)]
    return frame


def write(setting: NetworkSetting, spec: AblationSpec, runs: pd.DataFrame, gate: dict[str, Verdict] | None,
          out: Path, name: str) -> Section:
    from ..style import use_style
    from .probes import schedule_words

    use_style()
    folder = out / name
    path = spec.paths[0]
    gate = gate or {}
    measured = path_accuracy(path, runs)
    frame = gate_frame(measured, gate)
    n_seeds = int(frame.n_seeds.min())
    from .networks import data_name

    settings = schedule_words(setting) + f"; {data_name(setting)}, {setting.schedule.size}px"
    control_words = ("; ".join(f"{k} control {v.outcome}" for k, v in gate.items()) if gate
                     else "no controls (one seed)")
    notes = [
        f"The paper's path ({PAPER_PATH.name}) on the trained set's backbone ({setting.backbone}), every variant "
        f"trained on seeds 0..{n_seeds - 1} from the shared pretrained backbone: {settings}. The cost side of the "
        "same steps (params, FLOPs, time, on ResNet-50) is ablation/paper_path.md.", *common_notes(frame, runs),
        f"Gate: the networks section's controls ({control_words}); where one does not pass, every step's status is "
        "'not testable here' (the measured Δ stays in the table)."]
    save_table(frame, folder / "paper_path_accuracy", f"What each change of RF -> LW costs in accuracy "
               f"({setting.backbone}, {n_seeds} seeds)", notes, display=path_display(frame))
    save_figure(path_figure(frame, runs, f"'{setting.name}' setting, {setting.backbone}"),
                folder / "paper_path_accuracy")
    outcome, why, n_claims = claim_tally(measured)  # the measured steps' words; the gate then decides
    if n_claims:  # the controls' gate, as on the networks section's claims
        verdict = gated(Verdict(outcome, why), gate)
        outcome, why = verdict.outcome, verdict.why
    steps = frame[frame.step > 0]
    ours = "; ".join(f"{r.change} {_ci(r.delta, r.delta_low, r.delta_high, sign=True)}"
                     for r in steps.itertuples() if getattr(r, "paper", ""))
    where = f"'{setting.name}' set, {data_name(setting)}, {setting.device}, {setting.backbone}"
    scores = [ScoreRow("Sections 3.1-3.3: the path's 1x1 / bottleneck / no-RCU steps keep accuracy",
                       "no performance drop", f"Δ mIoU per step (points): {ours}", where, outcome, why,
                       PATH_CLAIM_RULE + "; over the steps: the verdict module's tally",
                       f"{name}/paper_path_accuracy.md", n_seeds)]
    whole = measured.attrs.get("whole")
    if whole:
        whole_v = gated(Verdict(whole["status"], whole["why"]), gate) if gate else Verdict(whole["status"],
                                                                                         whole["why"])
        scores.append(ScoreRow("Sections 3.1-3.3: the whole path (RefineNet -> LW) keeps accuracy",
                               "no performance drop", f"end / start error ratio {whole['ratio_words']}; "
                               f"{whole['points_words']} over {whole['n_seeds']} seed(s)", where, whole_v.outcome,
                               whole_v.why, WHOLE_PATH_RULE, f"{name}/paper_path_accuracy.md", whole["n_seeds"]))
    end = frame.iloc[-1]
    biggest = steps.loc[steps.delta.abs().idxmax()] if len(steps) and steps.delta.notna().any() else None
    measure = "test mIoU" if (runs.split == "test").all() else "own val mIoU"
    text = (f"RefineNet -> LW on {setting.backbone}, {n_seeds} seeds: {measure} {frame.miou.iloc[0]:.1f} -> "
            f"{end.miou:.1f}% (Δ {_ci(end.from_start, end.from_start_low, end.from_start_high, sign=True)} points)"
            + (f"; the largest step is '{biggest.change}' "
               f"({_ci(biggest.delta, biggest.delta_low, biggest.delta_high, sign=True)})" if biggest is not None
               else "") + f". Harmless steps: {outcome}.")
    artifacts = [Artifact(f"{name}/paper_path_accuracy.md", "Paper path: accuracy per step",
                          f"{measure} and paired Δ per step, over seeds", inline=True),
                 Artifact(f"{name}/paper_path_accuracy.png", "Paper path: accuracy per step (figure)",
                          "each seed's mIoU along the path")]
    return Section(f"Paper path accuracy, '{setting.name}' setting, {n_seeds} seeds, on "
                   f"{device_description(setting.device)}", artifacts, text, settings, scores, name)


def write_spec_accuracy(spec: AblationSpec, runs: pd.DataFrame, out: Path, where: str) -> list[Path]:
    """``python -m analysis ablation-report SPEC DIR --accuracy``: every trained variant's mIoU over its seeds
    (``variants_accuracy``) and every path's per-step accuracy (``path_NAME_accuracy``, table and figure), from the
    networks the store holds (``runs``); no controls are run here, so no step is gated."""
    from ..networks.spec_accuracy import variant_accuracy
    from ..style import use_style

    use_style()
    written: list[Path] = []
    acc = variant_accuracy(runs)
    hashes = {v.name: v.hash for v in spec.variants}
    acc.insert(1, "hash", acc.variant.map(hashes))
    display = acc.assign(**{"mIoU % [95% CI]": [_ci(r.miou, r.miou_low, r.miou_high) for r in acc.itertuples()]})
    display = display[["variant", "hash", "n_seeds", "mIoU % [95% CI]", "seeds_miou"]]
    missing = [v.name for v in spec.variants if v.name not in set(acc.variant)]
    notes = [f"Trained networks of the spec's variants found in the weights store ({where}); nothing was trained "
             f"for this report. {split_words(runs)}; 95% t interval over the seeds (none with one seed)"
             f"{cut_words(acc)}.",
             "Not trained (no network in the store): " + (", ".join(missing[:20]) + (" ..." if len(missing) > 20
                                                                                     else "") if missing else "none")]
    written += save_table(acc, out / "variants_accuracy", f"mIoU of the trained variants, {len(acc)} of "
                          f"{len(spec.variants)}", notes, display=display)
    for path in spec.paths:
        names = [v.name for v in path.variants]
        if not set(names) & set(acc.variant):
            continue
        frame = path_accuracy(path, runs)
        stem = out / f"path_{path.name}_accuracy"
        written += save_table(frame, stem, f"Path {path.name!r}: what each change costs in accuracy",
                              [f"Networks from the weights store ({where}); no controls were run for this report "
                               "(the networks section's A/A and harmful-change controls say whether a task can tell "
                               "architectures apart), so no step's status is gated.", *common_notes(frame, runs)],
                              display=path_display(frame))
        written.append(save_figure(path_figure(frame, runs, where), stem))
    return written


def path_figure(frame: pd.DataFrame, runs: pd.DataFrame, where: str):
    """Each seed's reported mIoU along the path (thin lines: one seed, so a step's paired change is the slope of
    each line), the mean with its 95% interval over the seeds, and the step's effect under its label."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    order = {v: i for i, v in enumerate(frame.variant)}
    for seed, g in runs[runs.variant.isin(order)].groupby("seed"):
        g = g.assign(x=g.variant.map(order)).sort_values("x")
        ax.plot(g.x, 100 * g.miou, color="0.6", lw=0.8, marker=".", ms=4, zorder=1,
                label="one seed" if seed == runs.seed.min() else None)
    low = (frame.miou - frame.miou_low).fillna(0)
    high = (frame.miou_high - frame.miou).fillna(0)
    ax.errorbar(frame.step, frame.miou, yerr=[low, high], color="#0173b2", marker="o", capsize=3, lw=1.6, zorder=2,
                label="mean, 95% CI over seeds")
    labels = [f"start ({frame.variant.iloc[0]})"] + [f"{r.step}. {r.change}\n({r.effect})" for r in frame.itertuples()
                                                     if r.step]
    ax.set_xticks(list(frame.step), labels, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("test mIoU %" if len(runs) and (runs.split == "test").all() else "own val mIoU %")
    ax.legend(fontsize=8, loc="lower left")
    end = frame.attrs.get("end", frame.variant.iloc[-1])
    ax.set_title(f"{frame.variant.iloc[0]} -> {end} one change at a time ({where}, {int(frame.n_seeds.min())} seeds): "
                 "accuracy", fontsize=9)
    fig.tight_layout()
    return fig


def build(out: Path, setting: NetworkSetting, name: str = FOLDER) -> Section:
    spec, runs, gate = collect(setting)
    return write(setting, spec, runs, gate, out, name)


def seeded(out: Path, setting: NetworkSetting, seeds: int, slug: str) -> Section:
    return build(out, replace(setting, seeds=seeds), name=f"{FOLDER}/{slug}-{seeds}-seeds")

