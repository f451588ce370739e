"""Trained-networks section: the trained set every "what it buys" analysis stands on (receptive fields,
Figure 8, probes), with each network's own val mIoU (which picked its weights) and test mIoU (which reports them), how
its training ended, and its learning curve.
``collect`` trains or loads the set (:func:`analysis.networks.trained_set`); ``write`` tabulates and draws."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from bench.environment import device_description

from ..networks import SETTINGS, NetworkSetting, TrainedNetwork, trained_set
from ..style import FAMILY_COLOURS, family_label, use_style
from ..verdicts import Interval, above, tally
from .files import Artifact, ScoreRow, Section, save_figure, save_table
from .probes import OWN_MIOU_GOAL, schedule_words

FOLDER = "networks"


def default_setting() -> NetworkSetting:
    return SETTINGS["gpu" if torch.cuda.is_available() else "cpu"]


def collect(setting: NetworkSetting | None = None, progress=print) -> tuple[NetworkSetting, list[TrainedNetwork]]:
    setting = setting or default_setting()
    return setting, trained_set(setting, say=progress)


def branch_shares(setting: NetworkSetting, nets: list[TrainedNetwork], max_images: int = 32) -> pd.DataFrame:
    """Every RCU's branch share (:func:`analysis.networks.claims.rcu_branch_shares`) in every trained network, on
    the first ``max_images`` val images of the setting's data."""
    from ..datasets.images import normalise
    from ..networks import load_data
    from ..networks.claims import rcu_branch_shares

    data = load_data(setting.data, setting.schedule.size, progress=None)
    val = normalise(data.val_images[:max_images])
    frames = [rcu_branch_shares(n.model, val).assign(family=n.record["family"], seed=n.record["seed"])
              for n in nets]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["rcu", "level", "branch_share", "family", "seed"])


def control_runs(setting: NetworkSetting, nets: list[TrainedNetwork], progress=print) -> dict:
    """The networks the two controls and Section 3.3's claim need beyond the set (analysis.networks.claims): LW on
    seeds n..2n-1 (A/A), LW with the harmful change and the original without RCUs on seeds 0..n-1, trained or
    loaded like the set."""
    from dataclasses import replace

    from ..networks.claims import HARMFUL_CHANGE, RF_WITHOUT_RCU

    n = setting.seeds
    lw = f"rf_lw:{setting.backbone}"
    second = trained_set(setting, variants=[lw], seeds=list(range(n, 2 * n)), say=progress)
    harmful = trained_set(replace(setting, decoder={**(setting.decoder or {}), **HARMFUL_CHANGE}), variants=[lw],
                          seeds=n, say=progress)
    without_rcu = trained_set(replace(setting, decoder={**(setting.decoder or {}), **RF_WITHOUT_RCU}),
                              variants=[f"rf:{setting.backbone}"], seeds=n, say=progress)
    first = {t.record["seed"]: t.reported_miou for t in nets if t.record["family"] == "rf_lw"}
    return {"first": first, "second": {t.record["seed"]: t.reported_miou for t in second},
            "harmful": {t.record["seed"]: t.reported_miou for t in harmful},
            "rf_without_rcu": {t.record["seed"]: t.reported_miou for t in without_rcu}}


def reported_words(nets: list[TrainedNetwork]) -> str:
    """What the compared mIoU is: test (held out; val picked the weights) or val (picked and reported)."""
    return "test mIoU" if all(n.test for n in nets) else "own val mIoU"


def control_rows(controls: dict) -> tuple[dict, list[dict]]:
    """The controls' verdicts (name -> Verdict) and their table rows."""
    from ..networks.claims import AA_RULE, HARMFUL_RULE, aa_control, harmful_control

    aa, aa_v = aa_control(list(controls["first"].values()), list(controls["second"].values()))
    hx, h_v, h_n = harmful_control(controls["first"], controls["harmful"])
    rows = [{"claim": "control: A/A (LW on two disjoint seed sets)", "effect": "difference of means (points)",
             "estimate": aa.estimate, "ci_low": aa.low, "ci_high": aa.high,
             "n_seeds": len(controls["first"]) + len(controls["second"]), "status": aa_v.outcome, "why": aa_v.why,
             "rule": AA_RULE},
            {"claim": "control: harmful change (LW on the coarsest level alone)", "effect": "LW - harmful (points)",
             "estimate": hx.estimate, "ci_low": hx.low, "ci_high": hx.high, "n_seeds": h_n, "status": h_v.outcome,
             "why": h_v.why, "rule": HARMFUL_RULE}]
    return {"A/A": aa_v, "harmful-change": h_v}, rows


def accuracy_rows(table: pd.DataFrame, shares: pd.DataFrame | None, name: str, where: str,
                  controls: dict | None = None, without_rcu: dict | None = None) -> tuple[list, pd.DataFrame]:
    """The accuracy claims' scorecard rows and their table (analysis.networks.claims); with ``controls``
    (:func:`control_runs`) the mIoU claims stand only where both controls pass. ``without_rcu``: seed -> reported
    mIoU of the original without RCUs (default: the controls' runs), for Section 3.3's "RCUs matter"."""
    from ..networks.claims import (
        ACCURACY_RULE,
        RCU_MATTERS_RULE,
        SATURATION_RULE,
        accuracy_verdict,
        gated,
        rcu_matters_verdict,
        saturation_verdict,
        shares_by_seed,
    )

    miou = {f: dict(zip(g.seed, g.reported_miou, strict=True)) for f, g in table.groupby("family")}
    measure = table.attrs.get("measure", "own val mIoU")
    acc, acc_v, acc_n = accuracy_verdict(miou)
    control_table: list[dict] = []
    if controls is not None:
        verdicts, control_table = control_rows(controls)
        acc_v = gated(acc_v, verdicts)
    rows = [{"claim": "LW keeps RF's accuracy (Tables 2-3)", "effect": f"LW - RF {measure} (points)",
             "estimate": acc.estimate, "ci_low": acc.low, "ci_high": acc.high, "n_seeds": acc_n,
             "status": acc_v.outcome, "why": acc_v.why, "rule": ACCURACY_RULE}]
    scores = [ScoreRow("Tables 2-3 (mIoU): LW keeps RF's accuracy", "LW within 0-0.9 points of RF (single scale)",
                       f"LW - RF {acc.words('.1f')} points over {acc_n} seed(s)", where, acc_v.outcome, acc_v.why,
                       ACCURACY_RULE, f"{name}/accuracy_claims.md", acc_n)]
    if without_rcu is None and controls is not None:
        without_rcu = controls.get("rf_without_rcu")
    if without_rcu:
        cells, matters_v = rcu_matters_verdict(miou, without_rcu)
        matters_v = gated(matters_v, verdicts) if controls is not None else matters_v
        for cell, x, v, n in cells:  # each cell gated like the claim: a task that cannot tell apart decides no cell
            v = gated(v, verdicts) if controls is not None else v
            rows.append({"claim": "RCUs matter in RF, not in LW (Section 3.3)", "effect": cell, "estimate": x.estimate,
                         "ci_low": x.low, "ci_high": x.high, "n_seeds": n, "status": v.outcome, "why": v.why,
                         "rule": RCU_MATTERS_RULE})
        n_cells = min(c[3] for c in cells)
        scores.append(ScoreRow("Section 3.3: RCUs matter in the original, not in LW",
                               "RF loses > 5% without RCUs; LW loses nothing",
                               "; ".join(f"{c[0].split(':')[1].strip()} {c[1].words('.1f')}" for c in cells), where,
                               matters_v.outcome, matters_v.why, RCU_MATTERS_RULE, f"{name}/accuracy_claims.md",
                               n_cells))
    if shares is not None and len(shares):
        per = shares_by_seed(shares)
        sat, sat_v, sat_n = saturation_verdict(per)
        rows.append({"claim": "RCUs saturate in LW, not in RF (Section 3.3)",
                     "effect": "mean RCU branch share, LW-with-RCU - RF", "estimate": sat.estimate, "ci_low": sat.low,
                     "ci_high": sat.high, "n_seeds": sat_n, "status": sat_v.outcome, "why": sat_v.why,
                     "rule": SATURATION_RULE})
        words = "; ".join(f"{family_label(f)} {sum(v.values()) / len(v):.3f}" for f, v in per.items())
        scores.append(ScoreRow("Section 3.3: RCUs saturate in LW (branch share)", "'almost completely saturated' in LW",
                               f"mean RCU branch share {words}", where, sat_v.outcome, sat_v.why, SATURATION_RULE,
                               f"{name}/accuracy_claims.md", sat_n))
    return scores, pd.DataFrame(rows + control_table)


def write(setting: NetworkSetting, nets: list[TrainedNetwork], out: Path, name: str = FOLDER,
          shares: pd.DataFrame | None = None, controls: dict | None = None) -> Section:
    use_style()
    folder = out / name
    rows = [{"variant": n.record["variant"], "family": n.record["family"], "seed": n.record["seed"],
             "val_miou": n.record["val_miou"], "test_miou": n.test["miou"] if n.test else float("nan"),
             "reported_miou": n.reported_miou, "steps": n.record["steps"], "best_step": n.record["best_step"],
             "stop_reason": n.record["stop_reason"], "last_gain": last_gain(n.record), "train_s": n.record["seconds"],
             "cached": n.cached,
             **{f"iou {c}": v for c, v in (n.test or n.record)["iou_per_class" if n.test else
                                                               "val_iou_per_class"].items()}} for n in nets]
    table = pd.DataFrame(rows)
    measure = reported_words(nets)
    table.attrs["measure"] = measure
    split_note = (f"test mIoU: the kept weights on the held-out test split ({len_test(nets)} images; val picked the "
                  "weights, so its own score is optimistic); every comparison below uses it; iou <class>: per class "
                  "on test" if measure == "test mIoU" else
                  "no held-out test split: val picked the kept weights and reports them (optimistic); iou <class>: "
                  "per class on val")
    flat = 100 * setting.schedule.min_delta
    on_plateau = int((table.last_gain < flat).sum())
    plateau_words = (f"{on_plateau} of {len(table)} networks gained under {flat:g} points over their last "
                     f"{setting.schedule.eval_every} steps")
    per_family = table.groupby("family", sort=False)["reported_miou"].min()
    short = [f for f, v in per_family.items() if v < OWN_MIOU_GOAL]
    words = "; ".join(f"{family_label(f)} {100 * v:.1f}%" for f, v in per_family.items())
    settings = schedule_words(setting) + f"; {nets[0].record['data']['kind']} data, {setting.schedule.size}px"
    shown = table.assign(family=table.family.map(family_label),
                         **{c: 100 * table[c] for c in table.columns
                            if c in ("val_miou", "test_miou") or c.startswith("iou ")}).drop(columns="reported_miou")
    if measure != "test mIoU":
        shown = shown.drop(columns="test_miou")
    save_table(table, folder / "networks", f"The trained set: each network's {measure}", [
        f"Setting: {settings}.",
        "own val mIoU: the kept (best evaluated) weights on the whole val split, one confusion matrix, 255 ignored. "
        f"{split_note}. train s: wall seconds of the training, evaluations included (0 work when loaded "
        "from the cache: the seconds are those of the original training).",
        f"Goal: every family >= {100 * OWN_MIOU_GOAL:.0f}% (features near the task's ceiling, so that differences "
        "between families are not differences in how far each got).",
        f"last gain: own val mIoU points gained over the last {setting.schedule.eval_every} steps (the last two "
        f"evaluations); under {flat:g} (the plateau rule's min_delta) the curve is flat at its end: {plateau_words}. "
        "A run stopped by max_steps under a cosine schedule flattens because its learning rate reaches 0, so a flat "
        "end there is not the plateau rule's proof of convergence."], floatfmt=".1f", display=shown,
        labels={"val_miou": "own val mIoU %", "test_miou": "test mIoU %", "stop_reason": "stopped by",
                "last_gain": "last gain (points)",
                "train_s": "train s",
                "cached": "from the cache", "best_step": "best step"})
    save_figure(curves_figure(nets, setting), folder / "learning_curves")
    artifacts = [Artifact(f"{name}/networks.md", "The trained set", f"{measure} per family and seed", inline=True),
                 Artifact(f"{name}/learning_curves.png", "Learning curves", "val mIoU against training step")]
    goal = tally([above(Interval.exact(100 * v), 100 * OWN_MIOU_GOAL, family_label(f), ".1f", strict=False).outcome
                  for f, v in per_family.items()], "goal", "families", [family_label(f) for f in short])
    n_seeds = int(table.groupby("family")["seed"].nunique().min())
    scores = [ScoreRow(f"Trained set ({measure}, not a paper number)", f"goal >= {100 * OWN_MIOU_GOAL:.0f}% "
                       "(ours)", words, f"'{setting.name}' set, generated shapes, {setting.device}", goal.outcome,
                       f"{goal.why}; {plateau_words}",
                       f"reproduced where every family's lowest seed reaches {100 * OWN_MIOU_GOAL:.0f}% {measure} "
                       "(a precondition of the benefit side, not a paper claim)", f"{name}/networks.md",
                       n_seeds)]
    where = f"'{setting.name}' set, generated shapes, {setting.device}"
    claim_rows, claims = accuracy_rows(table, shares, name, where, controls)
    scores += claim_rows
    notes = ["Seeds are the unit of evidence: each interval is a t interval over per-seed values (the same seed for "
             "both families: common random numbers); with one seed there is none, and the verdict is inconclusive.",
             "Controls (with 2 or more seeds): the A/A control and the harmful-change control decide whether "
             "this task can tell architectures apart; where one fails, the mIoU claim is not testable here. The "
             "harmful change refines the coarsest level alone (logits at stride 32, as FCN-32s): harmful by "
             "construction wherever objects or boundaries are finer than 32 px.",
             "Branch share of an RCU: ||branch(x)|| / (||x|| + ||branch(x)||) per val image (0: the RCU passes its "
             "input unchanged); the recipe zero-inits the last conv of every residual branch, so a share near 0 after "
             "training can be the init rather than the architecture: the init-check section (with --seeds) "
             "retrains the set under a standard init and compares."]
    save_table(claims, folder / "accuracy_claims", "What the decoders buy in accuracy, over training runs",
               notes, floatfmt=".3f")
    if shares is not None and len(shares):
        save_table(shares, folder / "rcu_branch_shares", "Each RCU's branch share in each trained network",
                   notes[1:], floatfmt=".3f")
        artifacts.append(Artifact(f"{name}/rcu_branch_shares.md", "RCU branch shares", "per RCU, family and seed"))
    artifacts.append(Artifact(f"{name}/accuracy_claims.md", "Accuracy claims", "LW vs RF mIoU and RCU saturation, "
                              "over seeds", inline=True))
    text = (f"The networks every receptive-field and probe verdict stands on: {measure} (lowest seed per family) "
            f"{words} ({plateau_words}); trained on the generated shapes "
            f"({'from one shared pretrained backbone' if setting.pretrain is not None else 'from scratch'}), "
            "cached and reused by the ERF and probe "
            "sections.")
    runs = f", {n_seeds} seeds" if n_seeds > 1 else ""
    return Section(f"Trained networks, '{setting.name}' setting{runs}, on {device_description(setting.device)}",
                   artifacts, text, settings, scores, name)


def len_test(nets: list[TrainedNetwork]) -> int:
    return next((n.test["images"] for n in nets if n.test), 0)


def last_gain(record: dict) -> float:
    """Own val mIoU points gained between the last two evaluations of a training run (NaN with one)."""
    history = record["history"]
    return 100 * (history[-1]["val_miou"] - history[-2]["val_miou"]) if len(history) >= 2 else float("nan")


def curves_figure(nets: list[TrainedNetwork], setting: NetworkSetting):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for n in nets:
        steps = [h["step"] for h in n.record["history"]]
        miou = [100 * h["val_miou"] for h in n.record["history"]]
        ax.plot(steps, miou, marker="o", ms=3, color=FAMILY_COLOURS[n.record["family"]],
                label=f"{family_label(n.record['family'])} (seed {n.record['seed']})")
    ax.axhline(100 * OWN_MIOU_GOAL, color="0.4", ls=":", lw=1)
    ax.set_xlabel("training step")
    ax.set_ylabel("own val mIoU %")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="lower right")
    start = "shared pretrained backbone" if setting.pretrain is not None else "from scratch"
    ax.set_title(f"Learning curves of the '{setting.name}' trained set ({setting.backbone}, {start}, "
                 f"{setting.schedule.size}px, {setting.device}); dotted: the {100 * OWN_MIOU_GOAL:.0f}% goal",
                 fontsize=9)
    fig.tight_layout()
    return fig


def build(out: Path, setting: NetworkSetting | None = None, name: str = FOLDER) -> Section:
    setting, nets = collect(setting)
    controls = control_runs(setting, nets) if setting.seeds >= 2 else None
    return write(setting, nets, out, name, branch_shares(setting, nets), controls)
