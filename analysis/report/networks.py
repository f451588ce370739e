"""Trained-networks section: the trained set every "what it buys" analysis stands on (receptive fields, Figure 8,
probes), each network's own val mIoU (which picked its weights) and test mIoU (which reports them), how its training
ended, its learning curve; whether the task leaves headroom; and, with several seeds, the accuracy claims decided by
the registered protocol (``analysis/protocol.toml``) behind its three controls.
``collect`` trains or loads the set (:func:`analysis.networks.trained_set`); ``write`` tabulates and draws."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from bench.environment import device_description

from ..networks import SETTINGS, NetworkSetting, TrainedNetwork, trained_set
from ..protocol import PROTOCOL
from ..style import FAMILY_COLOURS, family_label, use_style
from ..verdicts import INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, Interval, Verdict, tally, within
from .files import Artifact, ScoreRow, Section, save_figure, save_table
from .probes import schedule_words

FOLDER = "networks"


def default_setting() -> NetworkSetting:
    return SETTINGS["gpu" if torch.cuda.is_available() else "cpu"]


def collect(setting: NetworkSetting | None = None, progress=print) -> tuple[NetworkSetting, list[TrainedNetwork]]:
    setting = setting or default_setting()
    return setting, trained_set(setting, say=progress)


def scores_of(nets: list[TrainedNetwork]) -> dict[str, dict[int, torch.Tensor]]:
    """family -> seed -> the per-image confusion matrices on the reported split (what every claim resamples)."""
    out: dict[str, dict[int, torch.Tensor]] = {}
    for n in nets:
        out.setdefault(n.record["family"], {})[n.record["seed"]] = n.reported_per_image
    return out


def share_images(setting: NetworkSetting) -> torch.Tensor:
    """The normalised val images every RCU branch share is measured on (the records' shares at init too)."""
    from ..networks import load_data

    data = load_data(setting.data, setting.schedule.size, progress=None)
    return data.val_inputs[: int(PROTOCOL.claim("rcu_saturation")["images"])]


def growth_of(setting: NetworkSetting, nets: list[TrainedNetwork]) -> dict[str, dict[int, tuple]]:
    """family -> seed -> the growth of its live RCU branch share in training (families with RCUs only)."""
    from ..networks.claims import network_growth

    images = share_images(setting)
    out: dict[str, dict[int, tuple]] = {}
    for n in nets:
        if n.record.get("rcu_shares_at_init"):
            out.setdefault(n.record["family"], {})[n.record["seed"]] = network_growth(n, images)
    return out


def control_runs(setting: NetworkSetting, progress=print) -> dict[str, dict[int, torch.Tensor]]:
    """The networks the controls and Section 3.3 need beyond the set, trained or loaded like it: LW on seeds
    n..2n-1 (A/A), LW with the small harm (mislabelled training data) and with the gross harm (its coarsest level
    alone) on seeds 0..n-1, and the original without RCUs on seeds 0..n-1. Name -> seed -> per-image scores."""
    from ..networks.claims import HARMFUL_CHANGE, small_harm_schedule_changes

    n = setting.seeds
    lw = f"rf_lw:{setting.backbone}"
    harmed = replace(setting, schedule=replace(setting.schedule, **small_harm_schedule_changes()))
    runs = {"second": trained_set(setting, variants=[lw], seeds=list(range(n, 2 * n)), say=progress),
            "small_harm": trained_set(harmed, variants=[lw], seeds=n, say=progress),
            "gross_harm": trained_set(with_decoder(setting, HARMFUL_CHANGE), variants=[lw], seeds=n, say=progress),
            "rf_without_rcu": without_rcu_runs(setting, progress)}
    return {name: {t.record["seed"]: t.reported_per_image for t in nets} if isinstance(nets, list) else nets
            for name, nets in runs.items()}


def with_decoder(setting: NetworkSetting, changes: dict) -> NetworkSetting:
    return replace(setting, decoder={**(setting.decoder or {}), **changes})


def without_rcu_runs(setting: NetworkSetting, progress=print) -> dict[int, torch.Tensor]:
    """The original without RCUs on seeds 0..n-1 (Section 3.3's ablation): seed -> per-image scores."""
    from ..networks.claims import RF_WITHOUT_RCU

    nets = trained_set(with_decoder(setting, RF_WITHOUT_RCU), variants=[f"rf:{setting.backbone}"],
                       seeds=setting.seeds, say=progress)
    return {t.record["seed"]: t.reported_per_image for t in nets}


def data_name(setting: NetworkSetting) -> str:
    """The setting's data in two words for a row: the generated shapes, or the folder it names."""
    return "generated shapes" if not isinstance(setting.data, (str, Path)) else f"folder '{Path(setting.data).name}'"


def reported_words(nets: list[TrainedNetwork]) -> str:
    """What the compared mIoU is: test (held out; val picked the weights) or val (picked and reported)."""
    return "test mIoU" if all(n.test for n in nets) else "own val mIoU"


def effect_row(claim: str, effect_name: str, e, v: Verdict, rule: str, arms: str) -> dict:
    """One row of a claims table: the error ratio and the change in points with their intervals, the minimum
    detectable effect, the verdict and which networks it rests on."""
    x, p = e.log_ratio, e.points
    return {"claim": claim, "effect": effect_name, "ratio": math.exp(x.estimate), "ratio_low": math.exp(x.low),
            "ratio_high": math.exp(x.high), "points": p.estimate, "points_low": p.low, "points_high": p.high,
            "n_seeds": e.n_seeds, "detectable_ratio": e.detectable(), "status": v.outcome, "why": v.why,
            "networks": arms, "rule": rule}


def control_rows(scores: Mapping, controls: Mapping) -> tuple[dict[str, Verdict], list[dict]]:
    """The three controls' verdicts (name -> Verdict) and their table rows."""
    from ..networks.claims import aa_control, harm_control, rule_words

    n = len(controls["second"])
    aa, aa_v = aa_control(scores, controls["second"])
    small, small_v = harm_control("small_harm", scores, controls["small_harm"])
    gross, gross_v = harm_control("gross_harm", scores, controls["gross_harm"])
    noise = PROTOCOL.control("small_harm")["label_noise"]
    rows = [effect_row("control: A/A (LW against LW)", "LW seeds n..2n-1 / LW seeds 0..n-1", aa, aa_v,
                       rule_words("aa"), f"rf_lw seeds 0..{2 * n - 1} (seeds 0..{n - 1} are the claims' too)"),
            effect_row(f"control: small harm ({noise:.0%} of training regions mislabelled)", "harmed / LW", small,
                       small_v, rule_words("small_harm"), "rf_lw with mislabelled data; rf_lw (the claims' networks)"),
            effect_row("control: gross harm (LW on its coarsest level alone; sanity floor)", "harmed / LW", gross,
                       gross_v, rule_words("gross_harm"), "rf_lw refine_levels=1; rf_lw (the claims' networks)")]
    return {"A/A": aa_v, "small-harm": small_v, "gross-harm": gross_v}, rows


CONTROLS_ROW = ("Controls: the task tells decoders apart at the margin (ours, not a paper number)",
                "A/A equivalent; the small and the gross harm not equivalent")


def controls_row(gates: Mapping[str, Verdict], rows: list[dict], where: str, link: str, n_seeds: int) -> ScoreRow:
    """The scorecard's row for the three controls together (:func:`control_rows`): reproduced where all three read
    as the protocol requires (the gate every accuracy claim of the run stands behind), not reproduced where one reads
    the opposite, not testable here where one cannot be decided at this seed count, inconclusive otherwise."""
    outcomes = [v.outcome for v in gates.values()]
    status = (NOT_REPRODUCED if NOT_REPRODUCED in outcomes else NOT_TESTABLE if NOT_TESTABLE in outcomes else
              INCONCLUSIVE if INCONCLUSIVE in outcomes else REPRODUCED)
    ours = "; ".join(f"{name} x{r['ratio']:.3f} (x{r['ratio_low']:.3f} to x{r['ratio_high']:.3f})"
                     for name, r in zip(gates, rows, strict=True))
    why = "; ".join(f"{name}: {v.outcome} ({v.why})" for name, v in gates.items())
    rule = ("reproduced where the A/A control reads equivalent and both harms not equivalent, each by its own rule "
            f"(error ratios paired seed by seed, intervals over runs and images); {PROTOCOL.stamp}")
    return ScoreRow(CONTROLS_ROW[0], CONTROLS_ROW[1], f"{ours} over {n_seeds} seed(s)", where, status,
                    f"{why}; these gate this run's own claims (each run of the multiverse is gated by its own "
                    "controls)", rule, link, n_seeds)


def claim_rows(scores: Mapping, growth: Mapping | None, without_rcu: Mapping | None,
               gates: Mapping[str, Verdict] | None = None) -> tuple[list[dict], dict[str, tuple]]:
    """The accuracy claims' table rows and, per claim key, (effect words, verdict, seeds) for the scorecard.
    ``gates``: the controls' verdicts every claim stands behind (None: ungated, as where no control ran)."""
    from ..networks.claims import gated, lw_keeps_rf, rcu_matters, rule_words, saturation

    gate = (lambda v: gated(v, gates)) if gates is not None else (lambda v: v)  # noqa: E731
    rows, out = [], {}
    e, v = lw_keeps_rf(scores)
    v = gate(v)
    rows.append(effect_row(PROTOCOL.claim("lw_keeps_rf")["title"], "LW / RF", e, v, rule_words("lw_keeps_rf"),
                           "rf, rf_lw"))
    out["lw_keeps_rf"] = (f"LW / RF error ratio {e.ratio_words()}; LW - RF {e.points_words()}", v, e.n_seeds)
    if without_rcu:
        cells, matters = rcu_matters(scores, without_rcu)
        for (name, ce, cv), key in zip(cells, ("rcu_matter_in_rf", "rcu_idle_in_lw"), strict=True):
            cv = gate(cv)
            rows.append(effect_row(PROTOCOL.claim(key)["title"], name.split(": ")[1], ce, cv, rule_words(key),
                                   "rf, rf without RCUs" if key == "rcu_matter_in_rf" else "rf_lw_rcu, rf_lw"))
            out[key] = (f"{name.split(': ')[1]} {ce.ratio_words()} ({ce.points_words()})", cv, ce.n_seeds)
    if growth:
        intervals, cells, sat = saturation(growth)
        sat = gate(sat)
        for family, (noun, cv) in zip(intervals, cells, strict=True):
            x = intervals[family]
            rows.append({"claim": PROTOCOL.claim("rcu_saturation")["title"], "effect": f"branch share growth {noun}",
                         "ratio": math.exp(x.estimate), "ratio_low": math.exp(x.low), "ratio_high": math.exp(x.high),
                         "n_seeds": x.spread.runs if x.spread else len(growth.get(family, {})),
                         "status": gate(cv).outcome, "why": cv.why, "networks": family,
                         "rule": "growth of the mean live RCU branch share in training (after / at initialisation), "
                                 "interval over runs and images: LW with RCU wholly at or below x1 and RF wholly above "
                                 f"x1; {PROTOCOL.stamp}"})
        words = "; ".join(f"{family_label(f)} x{math.exp(x.estimate):.2f}" for f, x in intervals.items())
        out["rcu_saturation"] = (f"branch share growth in training {words}", sat,
                                 min(len(g) for g in growth.values()))
    return rows, out


def per_class_paired(scores: Mapping, classes: Sequence[str], reference: str = "rf", changed: str = "rf_lw"
                     ) -> pd.DataFrame:
    """Per class: ``changed`` minus ``reference`` IoU in points, paired seed by seed on the same images, with the
    interval over runs and images (the protocol's); a class with no labelled pixel in the reported split is said to
    be absent, never averaged as zero."""
    from ..metrics import iou_per_class
    from ..networks.claims import image_resamples
    from ..verdicts import seeds_and_images

    a, b = scores.get(reference, {}), scores.get(changed, {})
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return pd.DataFrame()
    n_images = len(a[seeds[0]])
    idx = image_resamples(n_images)
    present = a[seeds[0]].sum(0).sum(1) > 0  # labelled pixels per class (rows: the truth)
    whole = {s: (iou_per_class(a[s].sum(0)), iou_per_class(b[s].sum(0))) for s in seeds}
    drawn = {s: (iou_per_class(a[s][idx].sum(1)), iou_per_class(b[s][idx].sum(1))) for s in seeds}
    rows = []
    for c, name in enumerate(classes):
        row = {"class": name, "pixels": int(a[seeds[0]].sum(0)[c].sum()), "n_seeds": len(seeds)}
        if not bool(present[c]):
            rows.append({**row, "note": "absent from the reported split: no IoU, not averaged"})
            continue
        ref = [100 * float(whole[s][0][c]) for s in seeds]
        diff = [100 * float(whole[s][1][c] - whole[s][0][c]) for s in seeds]
        samples = torch.stack([100 * (drawn[s][1][:, c] - drawn[s][0][:, c]).nan_to_num(0.0) for s in seeds])
        x = seeds_and_images(diff, samples, PROTOCOL.level, n_images=n_images)
        rows.append({**row, f"{reference}_iou": sum(ref) / len(ref), f"{changed}_minus_{reference}": x.estimate,
                     "low": x.low, "high": x.high, "note": ""})
    return pd.DataFrame(rows)


def class_frequencies(data) -> pd.DataFrame:
    """Each class's share of the labelled training pixels and the majority-class baseline on the reported split."""
    from ..datasets.voc import IGNORE

    masks = data.train_masks
    labelled = masks[masks != IGNORE]
    counts = torch.bincount(labelled.flatten().long(), minlength=data.num_classes).double()
    return pd.DataFrame({"class": list(data.classes), "train_pixel_share": (counts / counts.sum()).tolist()})


def majority_baseline(per_image: torch.Tensor) -> float:
    """mIoU (fraction) of predicting the split's most frequent class everywhere, on the same images."""
    from ..metrics import iou_per_class

    cm = per_image.sum(0)
    truth = cm.sum(1)
    k = len(truth)
    majority = int(truth.argmax())
    predicted = torch.zeros_like(cm)
    predicted[:, majority] = truth
    return float(torch.nanmean(iou_per_class(predicted))) if k else math.nan


def convergence(nets: list[TrainedNetwork], setting: NetworkSetting) -> pd.DataFrame:
    """Per network: how its run ended (the step limit, a plateau, the time guard) and whether its curve is flat at
    the end: its last ``patience`` evaluations gained at most the protocol's ``flat_points`` over the best before."""
    rows = []
    for n in nets:
        r = n.record
        curve = [100 * h["val_miou"] for h in r["history"]]
        k = setting.schedule.patience
        gain = max(curve[-k:]) - max(curve[:-k]) if len(curve) > k else math.nan
        rows.append({"variant": r["variant"], "family": r["family"], "seed": r["seed"], "steps": r["steps"],
                     "stopped_by": {"max_steps": "step limit", "plateau": "plateau", "budget": "time guard"}.get(
                         r["stop_reason"], r["stop_reason"]), "late_gain": gain,
                     "flat": bool(gain <= PROTOCOL.flat_points) if gain == gain else False})
    return pd.DataFrame(rows)


def headroom(table: pd.DataFrame) -> tuple[Verdict, str]:
    """The task's headroom (the protocol's [task]): the reference family's lowest and highest seed within the band,
    no object class above the ceiling in any network."""
    task = PROTOCOL.task
    low, high = task["miou"]
    ref = table[table.family == task["reference"]]
    if not len(ref):
        return Verdict("not testable here", f"no {family_label(task['reference'])} network in the set"), ""
    values = 100 * ref.reported_miou
    miou_v = within(Interval(float(values.mean()), float(values.min()), float(values.max()), 1.0), low, high,
                    f"{family_label(task['reference'])} test mIoU (seeds' range)", ".1f")
    classes = [c for c in table.columns if c.startswith("iou ") and c != "iou background"]
    top = max(((100 * table[c].max(), c[4:]) for c in classes), default=(math.nan, ""))
    ceiling_ok = top[0] <= task["class_ceiling"]
    ceiling = Verdict(REPRODUCED if ceiling_ok else NOT_REPRODUCED,
                      f"highest object-class IoU {top[0]:.1f}% ({top[1]}): {'at or below' if ceiling_ok else 'above'} "
                      f"{task['class_ceiling']:g}%")
    t = tally([miou_v.outcome, ceiling.outcome], "headroom", "checks",
              [n for n, v in (("mIoU", miou_v), ("class ceiling", ceiling)) if v.outcome == NOT_REPRODUCED])
    return Verdict(t.outcome, f"{miou_v.why}; {ceiling.why}"), f"{values.min():.1f}-{values.max():.1f}%"


def write(setting: NetworkSetting, nets: list[TrainedNetwork], out: Path, name: str = FOLDER,
          growth: Mapping | None = None, controls: Mapping | None = None) -> Section:
    use_style()
    folder = out / name
    rows = [{"variant": n.record["variant"], "family": n.record["family"], "seed": n.record["seed"],
             "val_miou": n.record["val_miou"], "test_miou": n.test["miou"] if n.test else float("nan"),
             "reported_miou": n.reported_miou, "steps": n.record["steps"], "best_step": n.record["best_step"],
             "stop_reason": n.record["stop_reason"], "train_s": n.record["seconds"], "cached": n.cached,
             **{f"iou {c}": v for c, v in (n.test or n.record)["iou_per_class" if n.test else
                                                               "val_iou_per_class"].items()}} for n in nets]
    table = pd.DataFrame(rows)
    ends = convergence(nets, setting)
    table["late_gain"] = ends.late_gain.to_numpy()
    measure = reported_words(nets)
    split_note = (f"test mIoU: the kept weights on the held-out test split ({len_test(nets)} images; val picked the "
                  "weights, so its own score is optimistic); every comparison below uses it; iou <class>: per class "
                  "on test" if measure == "test mIoU" else
                  "no held-out test split: val picked the kept weights and reports them (optimistic); iou <class>: "
                  "per class on val")
    flat = int(ends.flat.sum())
    k = setting.schedule.patience
    at_limit = int((ends.stopped_by == "step limit").sum())
    flat_words = (f"{flat} of {len(ends)} networks flat at the end (under {PROTOCOL.flat_points:g} points gained over "
                  f"their last {k} evaluations); {at_limit} ended at the step limit")
    per_family = table.groupby("family", sort=False)["reported_miou"]
    words = "; ".join(f"{family_label(f)} {100 * v.min():.1f}-{100 * v.max():.1f}%" for f, v in per_family)
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
        f"stopped by: max_steps is the step limit (a fixed schedule: {PROTOCOL.stamp}); late gain: own val mIoU points "
        f"the last {k} evaluations gained over the best before them: {flat_words}."],
        floatfmt=".1f", display=shown,
        labels={"val_miou": "own val mIoU %", "test_miou": "test mIoU %", "stop_reason": "stopped by",
                "late_gain": "late gain (points)", "train_s": "train s", "cached": "from the cache",
                "best_step": "best step"})
    save_figure(curves_figure(nets, setting), folder / "learning_curves")
    artifacts = [Artifact(f"{name}/networks.md", "The trained set", f"{measure} per family and seed", inline=True),
                 Artifact(f"{name}/learning_curves.png", "Learning curves", "val mIoU against training step")]
    n_seeds = int(table.groupby("family")["seed"].nunique().min())
    data = nets[0].data
    where = f"'{setting.name}' set, {data.short() if data is not None else 'generated shapes'}, {setting.device}"
    room, room_words = headroom(table)
    task = PROTOCOL.task
    scores = [ScoreRow(f"Task headroom ({measure}, not a paper number)",
                       f"{family_label(task['reference'])} within {task['miou'][0]:g}-{task['miou'][1]:g}%, no object "
                       f"class above {task['class_ceiling']:g}% (ours)", words, where, room.outcome,
                       f"{room.why}; {flat_words}",
                       f"reproduced where every seed of {family_label(task['reference'])} lies within "
                       f"{task['miou'][0]:g}-{task['miou'][1]:g}% {measure} and no network scores an object class "
                       f"above {task['class_ceiling']:g}% IoU (a precondition of the benefit side: the task leaves "
                       f"room for a decoder to matter; {PROTOCOL.stamp})", f"{name}/networks.md", n_seeds)]
    claim_table: list[dict] = []
    scores_by = scores_of(nets)
    gates = None
    if controls is not None:
        gates, claim_table = control_rows(scores_by, controls)
        scores.append(controls_row(gates, claim_table, where, f"{name}/accuracy_claims.md", n_seeds))
    rows_, decided = claim_rows(scores_by, growth, (controls or {}).get("rf_without_rcu"), gates)
    claim_table = rows_ + claim_table
    scores += scorecard_rows(decided, where, f"{name}/accuracy_claims.md")
    notes = [f"Decided by {PROTOCOL.stamp} (analysis/protocol.toml): every effect is an error ratio, (100 - mIoU "
             "of the changed arm) / (100 - mIoU of the reference), paired seed by seed on the same test images; "
             "its interval covers the training runs and the images they share; points beside it.",
             "detectable ratio: the smallest error ratio the design detects with "
             f"{PROTOCOL.power:.0%} power at its seed count (where it exceeds a claim's bound and the interval "
             "is undecided, the claim is not testable here and says how many seeds it needs).",
             "Controls: A/A must read equivalent, the small and the gross harm not equivalent; a claim stands only "
             "where all three pass. The networks column says which networks each row rests on: LW's seeds "
             f"0..{n_seeds - 1} stand in 'LW keeps RF's accuracy', Section 3.3 and every control.",
             "RCU branch share growth: the mean over live RCUs (input positive on at least "
             f"{PROTOCOL.claim('rcu_saturation')['live_input']:.0%} of its elements) of ||branch(x)|| / (||x|| + "
             "||branch(x)||) after training over its value at initialisation, on the same val images."]
    save_table(pd.DataFrame(claim_table), folder / "accuracy_claims",
               "What the decoders buy in accuracy, over training runs", notes, floatfmt=".3f")
    paired = per_class_paired(scores_by, list(nets[0].record["classes"]))
    if len(paired):
        baseline = majority_baseline(nets[0].reported_per_image)
        freq = class_frequencies(data) if data is not None else pd.DataFrame(columns=["class", "train_pixel_share"])
        paired = paired.merge(freq, on="class", how="left")
        absent = [r["class"] for r in paired.to_dict("records") if r.get("note")]
        save_table(paired, folder / "per_class_paired", "LW - RefineNet per class, over training runs", [
            f"Per class: LW's IoU minus RefineNet's on the {'test' if nets[0].test else 'val'} split (points), seed by "
            f"seed on the same images, {PROTOCOL.level:.0%} interval over runs and images ({PROTOCOL.stamp}); "
            "rf_iou: RefineNet's IoU, mean over seeds; pixels: the class's labelled pixels in that split; "
            "train_pixel_share: its share of the labelled training pixels.",
            f"Majority-class baseline (the most frequent class everywhere) on the same split: {100 * baseline:.1f}% "
            "mIoU." + (f" Absent from the split (no pixel, so no IoU; not averaged as zero): {', '.join(absent)}."
                       if absent else "")], floatfmt=".2f")
        artifacts.append(Artifact(f"{name}/per_class_paired.md", "Per class: LW - RefineNet", "paired over seeds"))
    if growth:
        shares = pd.DataFrame([{"family": f, "seed": s, "share_at_init": g[3], "share_after": g[2],
                                "growth": math.exp(g[0]) if g[0] == g[0] else math.nan}
                               for f, by_seed in growth.items() for s, g in sorted(by_seed.items())])
        save_table(shares, folder / "rcu_share_growth", "Each network's mean live RCU branch share, at initialisation "
                   "and after training", notes[3:], floatfmt=".3f")
        artifacts.append(Artifact(f"{name}/rcu_share_growth.md", "RCU branch shares", "at init and after training"))
    artifacts.append(Artifact(f"{name}/accuracy_claims.md", "Accuracy claims", "LW vs RF, Section 3.3, "
                              "controls: error ratios over seeds", inline=True))
    text = (f"The networks every receptive-field and probe verdict stands on: {measure} per family (seeds' range) "
            f"{words}; task headroom: {room.outcome} ({room_words} for {family_label(task['reference'])}); "
            f"{flat_words}; trained on {data.describe() if data is not None else 'the generated shapes'} "
            f"({'from one shared pretrained backbone' if setting.pretrain is not None else 'from scratch'}), "
            "cached and reused by the ERF and probe sections.")
    runs = f", {n_seeds} seeds" if n_seeds > 1 else ""
    return Section(f"Trained networks, '{setting.name}' setting{runs}, on {device_description(setting.device)}",
                   artifacts, text, settings, scores, name)


CLAIM_ROWS = {
    "lw_keeps_rf": ("Tables 2-3 (mIoU): LW keeps RF's accuracy",
                    "LW within x{on_par:.3f} of RF's error (the paper's largest gap)"),
    "rcu_matter_in_rf": ("Section 3.3: the original loses accuracy without its RCUs",
                         "more than 5 points lost: error x{drop:.3f} at RF-101's VOC accuracy"),
    "rcu_idle_in_lw": ("Section 3.3: LW loses nothing without its RCUs", "no loss"),
    "rcu_saturation": ("Section 3.3: RCUs saturate in LW, not in RF", "'almost completely saturated' in LW"),
}


def scorecard_rows(decided: Mapping[str, tuple], where: str, link: str, rank_bonus: float = 0.0,
                   suffix: str = "") -> list[ScoreRow]:
    """One scorecard row per decided claim (:func:`claim_rows`' second value)."""
    from ..networks.claims import rule_words

    out = []
    for key, (words, v, n) in decided.items():
        artifact, paper = CLAIM_ROWS[key]
        rule = rule_words(key) if key != "rcu_saturation" else (
            "growth of the mean live RCU branch share in training (after / at initialisation), interval over runs and "
            f"images: LW with RCU wholly at or below x1 and RF wholly above x1 (both halves); {PROTOCOL.stamp}")
        out.append(ScoreRow(artifact, paper.format(on_par=PROTOCOL.margin("on_par"), drop=PROTOCOL.margin("drop")),
                            f"{words} over {n} seed(s){suffix}", where, v.outcome, v.why, rule, link, n + rank_bonus))
    return out


def len_test(nets: list[TrainedNetwork]) -> int:
    return next((n.test["images"] for n in nets if n.test), 0)


def curves_figure(nets: list[TrainedNetwork], setting: NetworkSetting):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for n in nets:
        steps = [h["step"] for h in n.record["history"]]
        miou = [100 * h["val_miou"] for h in n.record["history"]]
        ax.plot(steps, miou, marker="o", ms=3, color=FAMILY_COLOURS[n.record["family"]],
                label=f"{family_label(n.record['family'])} (seed {n.record['seed']})")
    low, high = PROTOCOL.task["miou"]
    ax.axhspan(low, high, color="0.9", zorder=0)
    ax.set_xlabel("training step")
    ax.set_ylabel("own val mIoU %")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="lower right")
    start = "shared pretrained backbone" if setting.pretrain is not None else "from scratch"
    ax.set_title(f"Learning curves of the '{setting.name}' trained set ({setting.backbone}, {start}, "
                 f"{setting.schedule.size}px, {setting.device}); shaded: the task's headroom band for "
                 f"{family_label(PROTOCOL.task['reference'])}", fontsize=9)
    fig.tight_layout()
    return fig


def build(out: Path, setting: NetworkSetting | None = None, name: str = FOLDER) -> Section:
    setting, nets = collect(setting)
    controls = control_runs(setting) if setting.seeds >= 2 else None
    return write(setting, nets, out, name, growth_of(setting, nets), controls)
