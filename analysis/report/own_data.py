"""``python -m analysis report --data DIR``: the benefit side of the scorecard on a VOC-layout folder of one's own.

The same sections, rules, controls and intervals as the generated task's (the registered protocol decides every
row), on the user's images: the trained set with its three controls and the accuracy claims (with a per-class paired
table), receptive fields with Figures 3 and 8 on the folder's own val images, the probes and claim (c), the paper
path's accuracy, and the recipe multiverse, each on ``--seeds`` training runs per family. The report goes to its own
folder, ``reports/data/<folder name>-<data hash>/`` by default, with its own front page naming the data in every row
(its classes, split sizes, image size, which split picks and which reports); the cost sections do not depend on data
and are linked, not rerun.

Before anything trains, one block says what the run needs (networks and probe runs, how many the weights store
already holds) and how long it should take on this machine, from a measured step cost of each architecture (a few
timed training steps on the user's own images, not a constant); where one network's estimate exceeds the setting's
time guard, the run says so before it starts and names the ``--budget-min`` that would fit. ``--dry-run`` prints only
that block. A rerun resumes from the weights store.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bench import validation
from bench.errors import UsageError

from ..networks import NetworkSetting, load_data, network_setting
from ..networks.data import NetworkData
from .files import REPORTS

SECTIONS = ("networks", "erf", "probes", "path-accuracy", "multiverse")
"""The benefit sections a folder's report runs (the cost sections are the generated report's, linked)."""
DEFAULT_SECTIONS = ("networks", "probes")
TIMED_STEPS = 3
"""Training steps timed per architecture for the estimate (after one untimed step that warms the caches)."""


@dataclass
class DataRun:
    """A report on a folder: what it runs and where it writes."""

    folder: Path
    setting: NetworkSetting  # the named setting on the folder's data (its size and seeds applied)
    sections: tuple[str, ...]
    out: Path
    data: NetworkData
    backbone_weights: str | None = None
    recipes: list[str] | None = None  # the multiverse's recipes beside the base (None: all the protocol's)

    @property
    def name(self) -> str:
        return self.folder.resolve().name

    def data_words(self) -> str:
        """The data in one clause, for every row and table of the report."""
        d = self.data
        test = f"{len(d.test_images)} test" if d.test_images is not None else "no test split (val picks and reports)"
        return (f"folder '{self.name}' ({d.num_classes} classes, {len(d.train_images)} train / {len(d.val_images)} "
                f"val / {test} images, short side {d.size}px; val picks the weights, "
                f"{'test' if d.test_images is not None else 'val'} reports them)")


def prepare(folder: str | Path, sections: Sequence[str] | None = None, seeds: int | None = None,
            setting: str | None = None, size: int | None = None, out: str | Path | None = None,
            backbone_weights: str | None = None, say: Callable[[str], None] | None = print) -> DataRun:
    """Every argument checked and the folder read (nothing trained): what :func:`run` will do."""
    import torch

    from bench.models.checkpoints import state_dict_file

    from ..networks.data import check_source
    from ..probes.run import resized_schedule
    from ..protocol import PROTOCOL

    check_source(folder)
    chosen = list(sections or DEFAULT_SECTIONS)
    for name in chosen:
        validation.choice("section (with --data)", name, SECTIONS)
    base = network_setting(setting or ("gpu" if torch.cuda.is_available() else "cpu"))
    n = validation.integer("--seeds", seeds if seeds is not None else PROTOCOL.seeds, minimum=1, maximum=10)
    schedule = base.schedule
    if size is not None:
        schedule = resized_schedule(schedule, validation.integer("--size", size, minimum=validation.MIN_SIDE,
                                                                  maximum=validation.MAX_SIDE))
    schedule.validate()
    weights = state_dict_file("backbone checkpoint", backbone_weights)
    data = load_data(str(folder), schedule.size, progress=say)
    chosen_setting = replace(base, data=str(Path(folder).resolve()), schedule=schedule, seeds=n,
                             name=f"{base.name} on {Path(folder).resolve().name}", backbone_weights=weights)
    target = Path(out) if out is not None else REPORTS / "data" / f"{Path(folder).resolve().name}-{data.hash[:12]}"
    validation.writable_folder("--out", target)
    return DataRun(Path(folder), chosen_setting, tuple(dict.fromkeys(chosen)), target, data, weights)


# --- the plan -------------------------------------------------------------------------------------------------------
@dataclass
class Need:
    """Networks one part of the run needs: (variant, decoder changes, schedule changes, seeds)."""

    what: str
    variant: str
    decoder: dict
    schedule: dict
    seeds: list[int]
    pretrain: object = "setting"  # the setting's shared backbone, or a recipe's own (None: from scratch)


def needs(run: DataRun) -> list[Need]:
    """Every network the chosen sections train, group by group."""
    from ..networks.claims import HARMFUL_CHANGE, RF_WITHOUT_RCU, small_harm_schedule_changes
    from ..protocol import PROTOCOL
    from .multiverse import recipe_setting

    s = run.setting
    seeds = list(range(s.seeds))
    out = [Need(f"the set: {family}", f"{family}:{s.backbone}", {}, {}, seeds) for family in s.families]
    if {"networks", "multiverse"} & set(run.sections) and s.seeds >= 2:  # the multiverse's gates: the base's controls
        lw = f"rf_lw:{s.backbone}"
        out += [Need("control A/A: LW on seeds n..2n-1", lw, {}, {}, list(range(s.seeds, 2 * s.seeds))),
                Need("control: small harm", lw, {}, small_harm_schedule_changes(), seeds),
                Need("control: gross harm", lw, HARMFUL_CHANGE, {}, seeds),
                Need("Section 3.3: RF without RCUs", f"rf:{s.backbone}", RF_WITHOUT_RCU, {}, seeds)]
    if "path-accuracy" in run.sections:
        from .path_accuracy import paper_path_spec

        path = paper_path_spec(s.backbone).paths[0]
        for v in path.variants[1:-1]:
            if v.name.startswith(("rf:", "rf_lw:", "rf_lw_rcu:")):
                continue
            out.append(Need(f"path step: {v.name}", v.name, {}, {}, seeds))
    if "multiverse" in run.sections:
        for recipe in PROTOCOL.recipes():
            if run.recipes is not None and recipe.name not in run.recipes:
                continue
            r = recipe_setting(s, recipe)
            changes = {k: v for k, v in vars(r.schedule).items() if getattr(s.schedule, k) != v}
            for family in (*s.families, "rf without RCUs"):
                variant = f"rf:{s.backbone}" if family == "rf without RCUs" else f"{family}:{s.backbone}"
                decoder = RF_WITHOUT_RCU if family == "rf without RCUs" else {}
                out.append(Need(f"recipe {recipe.name}: {family}", variant, decoder, changes, seeds,
                                r.pretrain if r.pretrain != s.pretrain else "setting"))
    return out


def step_seconds(run: DataRun, variant: str, decoder: dict) -> float:
    """Seconds per training step of ``variant`` on this machine, measured: a few steps on the folder's own images at
    the setting's crop and batch, on the threads a training uses."""
    from bench.environment import torch_threads
    from bench.models import create_model

    from ..networks.loop import TRAIN_THREADS, train_segmenter, train_settings
    from ..networks.store import decoder_layers

    s = run.setting
    changes, _ = decoder_layers(variant, {**(s.decoder or {}), **decoder})
    model = create_model(variant, num_classes=run.data.num_classes, decoder=changes or None)
    settings = replace(train_settings(s.schedule, 0), steps=TIMED_STEPS + 1)
    marks: list[float] = []
    with torch_threads(TRAIN_THREADS if s.device == "cpu" else None):
        train_segmenter(model, run.data.train_inputs, run.data.train_masks, settings, progress=None,
                        device=s.device, after_step=lambda step, loss: marks.append(time.perf_counter()) and False)
    return (marks[-1] - marks[0]) / TIMED_STEPS


def plan(run: DataRun, measure: bool = True) -> dict:
    """What the run needs, what the store holds, and the estimated time (seconds; NaN unmeasured)."""
    from ..networks.pretrain import shared_backbones
    from ..networks.train import CACHE, lookup

    s = run.setting
    backbone = (run.backbone_weights or
                (shared_backbones(s.pretrain, s.variants()[:1], run.data, s.schedule, s.device, Path(CACHE),
                                  progress=False, say=None, only_cached=True).get(s.backbone)
                 if s.pretrain is not None else None))
    rows, costs = [], {}
    for need in needs(run):
        schedule = replace(s.schedule, **need.schedule)
        held = 0
        if need.pretrain == "setting" and (backbone is not None or s.pretrain is None):
            held = sum(lookup(need.variant, run.data, schedule, seed, s.device, {**(s.decoder or {}), **need.decoder},
                              None, backbone)[1] for seed in need.seeds)
        key = (need.variant, json.dumps(need.decoder, sort_keys=True))
        if measure and key not in costs:
            costs[key] = step_seconds(run, need.variant, need.decoder)
        per_network = costs.get(key, math.nan) * schedule.max_steps * 1.1  # + its evaluations, about a tenth
        rows.append({"what": need.what, "variant": need.variant, "networks": len(need.seeds), "held": held,
                     "to_train": len(need.seeds) - held, "minutes_each": per_network / 60})
    cores = max(1, os.cpu_count() or 1)
    total = sum(r["to_train"] * r["minutes_each"] for r in rows) / cores
    pretrain = 0.0 if backbone is not None or s.pretrain is None else \
        (costs.get((f"rf_lw:{s.backbone}", "{}"), math.nan) * s.pretrain.schedule(s.schedule).max_steps * 1.1 / 60)
    return {"rows": rows, "minutes": total + pretrain, "pretrain_minutes": pretrain, "cores": cores,
            "guard": s.schedule.budget_min, "probe_runs": len(s.families) * s.seeds if "probes" in run.sections else 0}


def duration(minutes: float) -> str:
    if minutes != minutes:
        return "not measured"
    return f"{60 * minutes:.0f} s" if minutes < 1 else f"{minutes:.1f} min" if minutes < 10 else f"{minutes:.0f} min"


def plan_words(run: DataRun, p: dict) -> list[str]:
    """The plan as lines for the terminal."""
    lines = [f"plan: {', '.join(run.sections)} on {run.data_words()}, '{run.setting.name}' setting, "
             f"{run.setting.seeds} seed(s), into {run.out}"]
    for r in p["rows"]:
        lines.append(f"  {r['what']:<44} {r['networks']:>2} network(s), {r['held']} in the weights store, about "
                     f"{duration(r['minutes_each'])} each")
    trains = sum(r["to_train"] for r in p["rows"])
    lines.append(f"  {trains} network(s) to train"
                 + (f" after the shared backbone's pretraining (about {duration(p['pretrain_minutes'])})"
                    if p["pretrain_minutes"] else "")
                 + f", {p['probe_runs']} probe run(s); about {duration(p['minutes'])} on {p['cores']} core(s) "
                 "(estimated from steps timed here on your images)")
    slowest = max((r["minutes_each"] for r in p["rows"] if r["to_train"]), default=0.0)
    if p["guard"] and slowest > p["guard"]:
        lines.append(f"  warning: one network needs about {slowest:.0f} min, over the setting's {p['guard']:g}-minute "
                     f"time guard, which would stop it as incomplete: pass --budget-min {math.ceil(slowest * 1.5)}")
    return lines


# --- the run ---------------------------------------------------------------------------------------------------------
def run(data_run: DataRun, say: Callable[[str], None] = print) -> dict[str, str]:
    """Every chosen section on the folder, into ``data_run.out``, with its own manifest and front page."""
    from bench.environment import environment

    from ..protocol import PROTOCOL
    from ..verdicts import VERDICT_VERSION
    from . import manifest_lock
    from .front_page import write_pages

    out, setting = data_run.out, data_run.setting
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    status = {}
    for i, name in enumerate(data_run.sections, 1):
        say(f"[{i}/{len(data_run.sections)}] {name} on {data_run.name} ...")
        start = time.perf_counter()
        entry = {"section": name, "title": name, "environment": environment(setting.device),
                 "verdict_version": VERDICT_VERSION, "protocol": {"version": PROTOCOL.version,
                                                                  "sha256": PROTOCOL.sha256}}
        from ..networks.settings import SET_VERSION
        from ..networks.store import TRAINING_VERSION

        entry.update(training_version=TRAINING_VERSION, set_version=SET_VERSION)
        section = _section(name, data_run)
        entry.update(title=section.title, text=section.text, settings=section.settings, folder=section.folder,
                     artifacts=[vars(a) for a in section.artifacts], scores=[vars(s) for s in section.scores],
                     seconds=time.perf_counter() - start, finished=time.strftime("%Y-%m-%d %H:%M"),
                     data=data_run.data_words())
        manifest[name] = entry
        status[name] = "ok"
        say(f"[{i}/{len(data_run.sections)}] {name}: ok ({entry['seconds']:.0f} s)")
    from bench.records import to_json

    from .files import write_atomic

    with manifest_lock(out):
        write_atomic(manifest_path, to_json(manifest, indent=2) + "\n")
        write_pages(manifest, out, intro=intro(data_run), title=f"rfbench on '{data_run.name}'")
    return status


def intro(data_run: DataRun) -> str:
    up = os.path.relpath(REPORTS, data_run.out)
    return (f"The benefit side of the scorecard on **{data_run.data_words()}**, regenerated by `python -m analysis "
            f"report --data {data_run.folder}`. The same rules, controls and intervals as the generated task's; the "
            f"cost side (Tables 1-3, timing, the zoo) does not depend on data and is on the [main scorecard]"
            f"({up}/README.md).")


def _section(name: str, data_run: DataRun):
    setting = data_run.setting
    if name == "networks":
        from .networks import build

        return build(data_run.out, setting, name="networks")
    if name == "erf":
        from .erf import ERFPlan
        from .erf import build as erf_build

        return erf_build(data_run.out, replace(ERFPlan.default(), networks=setting, seeds=setting.seeds), name="erf")
    if name == "probes":
        from ..probes import ProbePlan
        from .probes import build

        plan = replace(ProbePlan.default(), networks=setting, voc_root=str(data_run.folder), seeds=setting.seeds)
        return build(data_run.out, plan, name="probes")
    if name == "path-accuracy":
        from .path_accuracy import build

        return build(data_run.out, setting, name="path-accuracy")
    from .multiverse import FOLDER, collect, write
    from .networks import control_rows, control_runs

    data = collect(setting, data_run.recipes)
    gates, _ = control_rows(data["base"]["scores"], control_runs(setting))
    return write(setting, setting.seeds, data, gates, data_run.out, FOLDER)


def train_as_jobs_first(data_run: DataRun, executor: str, say: Callable[[str], None]) -> list[str]:
    """Every network the run needs, as jobs on the sweeps' executors (one job per network, the shared backbone
    first); the sections then load them from the weights store. The failed jobs, one line each."""
    from ..networks.jobs import train_as_jobs

    s, failed = data_run.setting, []
    for need in needs(data_run):
        if need.pretrain != "setting":
            continue  # a recipe's own backbone: the multiverse section trains it
        chosen = replace(s, decoder={**(s.decoder or {}), **need.decoder},
                         schedule=replace(s.schedule, **need.schedule))
        failed += train_as_jobs(chosen, [need.variant], need.seeds, executor, say=say).failed
    return failed


def main(args, say: Callable[[str], None] = print) -> int:
    """The CLI's ``report --data``: prepare, plan (and stop there with ``--dry-run``), run."""
    if args.backbone_checkpoint is not None and args.backbone_weights is not None:
        raise UsageError("--backbone-checkpoint and --backbone-weights both name a starting backbone; give one")
    checkpoint = args.backbone_checkpoint
    if args.backbone_weights is not None:
        from ..networks.pretrain import torchvision_weights
        from ..networks.train import CACHE

        checkpoint = torchvision_weights(network_setting(args.setting or "cpu").backbone, args.backbone_weights, CACHE)
    data_run = prepare(args.data, args.sections or None, args.seeds, args.setting, args.size, args.out, checkpoint,
                       say=say)
    if args.recipes is not None:
        from .multiverse import checked_recipes

        if "multiverse" not in data_run.sections:
            raise UsageError("--recipes is for the multiverse section: add multiverse to the sections")
        data_run = replace(data_run, recipes=checked_recipes(args.recipes))
    p = plan(data_run)
    for line in plan_words(data_run, p):
        say(line)
    if args.dry_run:
        return 0
    if args.executor is not None:
        failed = train_as_jobs_first(data_run, args.executor, say)
        if failed:  # not the user's input: jobs that died (exit 1); a rerun resumes them
            say(f"python -m analysis report --data: {len(failed)} job(s) ended without their network, each named "
                "above (a rerun submits only these)")
            return 1
    status = run(data_run, say)
    say(f"wrote {data_run.out / 'README.md'}")
    return 0 if all(v == "ok" for v in status.values()) else 1
