"""``python -m analysis``: regenerate reports/, or run the probes on your own data and weights.

    python -m analysis report [SECTION ...]
    python -m analysis sweep-report DIR             # tables and figures of `python -m bench sweep SPEC --out DIR`
    python -m analysis ablation-report SPEC DIR     # tables and waterfall of `python -m bench ablate SPEC --out DIR`
    python -m analysis probes --voc-root /data/VOCdevkit --checkpoint rf101=refinenet101_voc.pth --size 512
    python -m analysis probes --voc-root my-7-class-set --num-classes 7 --families rf rf_lw --seeds 3
    python -m analysis probes --backbone resnet34 --families rf rf_lw --out my-probes   # generated data
    python -m analysis train rf_lw:resnet18 rf:resnet18 --setting cpu --seeds 1   # cached trained networks
    python -m analysis train --spec my-ablation.toml --seeds 3 --setting cpu        # every variant of a spec

Every argument is checked before any data is read or any network trained; a bad one (unknown
section, variant, family or level, a size, class count or seed count out of range, missing dataset
files, a checkpoint that cannot be read or has the wrong keys) exits with status 2 and one line.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path

from bench import validation
from bench.cli import OneLineParser
from bench.errors import UsageError, checked, run_cli
from bench.models import FAMILIES
from bench.models.checkpoints import read_state_dict, state_dict_file

from .networks.jobs import EXECUTORS
from .networks.settings import MAX_SEEDS
from .report import SECTIONS, SEEDED, run


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m analysis", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    p = sub.add_parser("report", help="regenerate reports/ (all sections by default)")
    only_seeded = ", ".join(s for s in SEEDED if s not in SECTIONS)
    p.add_argument("sections", nargs="*", metavar="SECTION",
                   help=f"any of: {', '.join(SECTIONS)} (default: all); with --seeds also {only_seeded}")
    p.add_argument("--seeds", type=int, default=None, help="networks, probes and the paper path's accuracy on N "
                   "training runs per family, into their own folders (<section>/<device>-N-seeds); 2 to 10")
    p.add_argument("--recipes", nargs="+", default=None, metavar="NAME",
                   help="with multiverse: the protocol's recipes to run beside the base (default: all of them; "
                        "analysis/protocol.toml [recipes])")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="the benefit sections (networks, erf, probes, path-accuracy, multiverse; default: networks "
                        "and probes) on a VOC-layout folder of your own, into reports/data/<folder>-<hash>/ with its "
                        "own front page; a plan with a measured time estimate comes first")
    p.add_argument("--dry-run", action="store_true", help="with --data: print the plan and the estimate only")
    p.add_argument("--size", type=int, default=None, help="with --data: the images' short side (default: the "
                                                           "setting's)")
    p.add_argument("--setting", default=None, help="with --data: cpu, gpu or a setting file (default: cpu, or gpu "
                                                    "with CUDA)")
    p.add_argument("--out", default=None, help="with --data: the report's folder")
    p.add_argument("--backbone-checkpoint", default=None, metavar="PATH",
                   help="with --data: a backbone state dict every network starts from (default: the setting's shared "
                        "pretrained backbone)")
    p.add_argument("--backbone-weights", default=None, metavar="NAME",
                   help="with --data: torchvision's weights of the backbone, e.g. IMAGENET1K_V1 (the paper's setting)")
    p.add_argument("--executor", default=None, choices=EXECUTORS,
                   help="with --data: train every network as a job first (local subprocesses, SLURM, debug)")
    p = sub.add_parser("sweep-report", help="tables and figures of `python -m bench sweep SPEC --out DIR`")
    p.add_argument("dir", help="the --out folder of a sweep")
    p.add_argument("--report", default=None, help="where to write (default: DIR/report)")
    p = sub.add_parser("ablation-report", help="tables and waterfall of `python -m bench ablate SPEC --out DIR`")
    p.add_argument("spec", help="the study's TOML spec")
    p.add_argument("dir", help="the --out folder of the study")
    p.add_argument("--report", default=None, help="where to write (default: DIR/report)")
    p.add_argument("--accuracy", action="store_true",
                   help="add each trained variant's own val mIoU over its seeds and every path's per-step Δ mIoU "
                        "(Shapley values where all subsets are trained), from the networks `python -m analysis "
                        "train --spec SPEC` left in the store with the same options below (nothing is trained)")
    add_recipe_options(p, training=False)
    p = sub.add_parser("probes", help="probes before RCU / after RCU / at CRP's input / after CRP at every level")
    p.add_argument("--voc-root", help="a VOC-layout folder (default: the generated shapes dataset)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="K, background included (default: from VOC2012/classes.txt, else the largest label + 1)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="VARIANT=PATH",
                   help="probe this trained model instead of training one here; repeatable")
    p.add_argument("--backbone", default=None,
                   help="backbone under each family when training here (default: the setting's, mobilenet_v2; "
                        "resnet18 with --tiny)")
    p.add_argument("--families", nargs="+", default=None, help=f"families to train (default: {' '.join(FAMILIES)})")
    p.add_argument("--levels", nargs="+", default=None, help="decoder levels to probe (default: all four)")
    p.add_argument("--size", type=int, default=None, help="square image side for features and labels (>= 32)")
    p.add_argument("--seeds", type=int, default=None, help="networks trained per family (default: 1 on CPU, 3 on GPU)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--budget-min", type=float, default=None,
                   help="wall-clock guard in minutes per network trained here (default: the setting's; not part of "
                        "the cache key: a network the guard stops is incomplete and never kept)")
    p.add_argument("--cache", default=None, help="trained-network cache folder (default: .cache/networks)")
    p.add_argument("--out", default="probes-report", help="folder for the tables and the figure")
    p.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (a few images and steps)")
    p = sub.add_parser("train", help="train networks to a plateau of their val mIoU (or a budget), cached")
    p.add_argument("variants", nargs="*", metavar="VARIANT",
                   help="registered names or FAMILY:BACKBONE (default: the setting's three families on MobileNet-v2)")
    p.add_argument("--spec", default=None, metavar="SPEC",
                   help="an ablation spec (TOML, see `python -m bench ablate`): train every variant it resolves, "
                        "its bases included; names of one architecture share one network")
    add_recipe_options(p)
    p.add_argument("--json", action="store_true", help="one JSON list on stdout (progress stays on stderr)")
    p.add_argument("--executor", default=None, choices=EXECUTORS,
                   help="train one job per network on the sweeps' executors (local subprocesses, a SLURM array, or "
                        "debug: in this process, opening pdb on a failed job); a rerun submits only what the weights "
                        "store still lacks "
                        "(default: this process, with one worker process per core)")
    p.add_argument("--workers", type=int, default=None, help="--executor local: jobs at a time (default 2)")
    p.add_argument("--timeout-min", type=float, default=None,
                   help="--executor local/slurm: minutes per job (default 120)")
    p.add_argument("--slurm-partition", default=None, help="--executor slurm: the partition")
    return parser


def add_recipe_options(p: argparse.ArgumentParser, training: bool = True) -> None:
    """The options that decide which trained networks are meant (the weights store's key): ``train`` trains them,
    ``ablation-report --accuracy`` looks them up with the same options."""
    p.add_argument("--data", default=None, help="a VOC-layout folder (default: the generated shapes dataset)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="K, background included (default: from VOC2012/classes.txt, else the largest label + 1)")
    p.add_argument("--setting", default=None, help="cpu, gpu (analysis/networks/named_settings/) or a setting file "
                                               "of your own (.toml, the same keys; default: gpu when CUDA is "
                                               "available, else cpu)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the setting's)")
    p.add_argument("--seeds", type=int, default=None,
                   help=f"per variant: seeds 0..N-1, 1 <= N <= {MAX_SEEDS} (default: the setting's"
                        + ("" if training else f"; here: the seeds looked up, default {LOOKUP_SEEDS}") + ")")
    if training:
        p.add_argument("--budget-min", type=float, default=None,
                       help="wall-clock guard in minutes per network (default: the setting's); a network it stops "
                            "is incomplete: not cached, not compared, exit status 1")
    p.add_argument("--size", type=int, default=None,
                   help="image side to train and evaluate at: a VOC folder's images get this short side, their "
                        "aspect kept (padded with ignored pixels); the generated ones are square (the setting's crops "
                        "scale with it)")
    p.add_argument("--steps", type=int, default=None, help="step limit (default: the setting's)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the setting's)")
    p.add_argument("--backbone-checkpoint", default=None, metavar="PATH",
                   help="a local state dict of the backbone's classification network to start from "
                        "(part of the cache key)")
    p.add_argument("--backbone-weights", default=None, metavar="NAME",
                   help="torchvision's weights of the backbone to start from, e.g. IMAGENET1K_V1 (the paper's "
                        "ImageNet pretraining; downloaded by torchvision where the machine has internet)")
    p.add_argument("--cache", default=None, help="cache folder (default: .cache/networks in the project)")


LOOKUP_SEEDS = 10
"""``ablation-report --accuracy`` looks for seeds 0..9 of every variant unless told otherwise."""


def recipe(args: argparse.Namespace) -> dict:
    """The checked recipe options as ``trained_set`` keywords (setting, schedule, device, data, num_classes,
    backbone_weights, cache_dir); every argument checked before any data is read or network trained."""
    import torch

    from .networks import network_setting
    from .networks.data import check_source

    setting = network_setting(args.setting or ("gpu" if torch.cuda.is_available() else "cpu"))
    device = validation.available_device("device", args.device or setting.device)
    if args.seeds is not None:
        validation.integer("--seeds", args.seeds, minimum=1, maximum=MAX_SEEDS)
    schedule = train_schedule(args, setting.schedule)
    checked(schedule.validate)
    backbone_weights = None
    if args.backbone_checkpoint is not None and args.backbone_weights is not None:
        raise UsageError("--backbone-checkpoint and --backbone-weights both name a starting backbone; give one")
    if args.backbone_checkpoint is not None:
        backbone_weights = state_dict_file("backbone checkpoint", args.backbone_checkpoint)
    if args.num_classes is not None:
        validation.integer("--num-classes", args.num_classes, minimum=2, maximum=255)
    check_source(args.data)
    if args.num_classes is not None and args.data is None:
        from .datasets.synthetic import CLASSES

        raise UsageError(f"--num-classes is for a --data folder; the generated shapes have their own K = {len(CLASSES)}"
                         f" ({', '.join(CLASSES)})")
    if args.command == "train":  # train writes there (ablation-report --accuracy only reads)
        from .networks.train import CACHE

        validation.writable_folder("--cache", args.cache or CACHE, make=False)
    if args.backbone_weights is not None:  # the paper's setting: torchvision's pretrained weights, by name
        from bench.models import variant_info

        from .networks.pretrain import torchvision_weights
        from .networks.train import CACHE

        names = list(getattr(args, "variants", None) or []) or setting.variants()
        backbones = sorted({variant_info(n).backbone for n in names})
        if len(backbones) != 1:
            raise UsageError(f"--backbone-weights names one backbone's weights, but the variants have "
                             f"{len(backbones)} backbones ({', '.join(backbones)}); train one backbone at a time")
        backbone_weights = torchvision_weights(backbones[0], args.backbone_weights, args.cache or CACHE)
    return {"setting": setting, "schedule": schedule, "device": device, "data": args.data,
            "num_classes": args.num_classes, "backbone_weights": backbone_weights, "cache_dir": args.cache}


RECIPE_FLAGS = ("data", "num_classes", "setting", "device", "seeds", "size", "steps", "lr", "backbone_checkpoint",
                "backbone_weights", "cache")
"""``ablation-report``'s options that say which trained networks ``--accuracy`` looks up."""


def no_recipe(args: argparse.Namespace) -> None:
    """``ablation-report`` without ``--accuracy``: a recipe option would do nothing, so it is refused."""
    given = [f"--{name.replace('_', '-')}" for name in RECIPE_FLAGS if getattr(args, name) is not None]
    if given:
        raise UsageError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for --accuracy (which trained "
                         "networks to look up); without --accuracy the report holds the costs only")


def drop_accuracy_files(out: Path) -> None:
    """Without ``--accuracy``, the accuracy tables and figures an earlier ``--accuracy`` run wrote under ``out`` are
    removed (they would be read as this run's); said in one line."""
    old = sorted(p for pattern in ("variants_accuracy.*", "path_*_accuracy.*") for p in out.glob(pattern))
    for path in old:
        path.unlink()
    if old:
        print(f"removed {len(old)} accuracy file(s) of an earlier --accuracy run from {out} (rerun with --accuracy "
              "to write them again)")


def train_command_for(args: argparse.Namespace) -> str:
    """The ``train`` command that trains what ``ablation-report --accuracy`` with these arguments looks up: the
    recipe options as the user gave them (a setting file by its path)."""
    import shlex

    words = ["python", "-m", "analysis", "train", "--spec", args.spec]
    for name in RECIPE_FLAGS:
        value = getattr(args, name)
        if value is not None:
            words += [f"--{name.replace('_', '-')}", str(value)]
    if args.seeds is None:
        words += ["--seeds", "3"]  # the lookup tries seeds 0..9; three is the fewest the verdicts rest on
    return shlex.join(words)


def accuracy_report(args: argparse.Namespace, options: dict, out: Path) -> list[Path]:
    """``ablation-report --accuracy``: the spec's trained variants from the weights store (nothing trained)."""
    from bench.ablations import load_ablation

    from .networks.spec_accuracy import spec_runs
    from .report.path_accuracy import write_spec_accuracy

    spec = load_ablation(args.spec)
    seeds = args.seeds or LOOKUP_SEEDS
    setting = options.pop("setting")
    runs = spec_runs(spec, None, setting, seeds, only_cached=True, say=None, **options)
    if runs.empty:
        raise UsageError(f"no trained network of {args.spec}'s variants in the weights store for the '{setting.name}' "
                         f"setting (seeds 0..{seeds - 1}, these options); train them first: "
                         f"{train_command_for(args)}")
    data = options["data"] or "generated shapes"
    where = f"'{setting.name}' setting, {options['device']}, {options['schedule'].size}px, data: {data}"
    return write_spec_accuracy(spec, runs, out, where)


def train_schedule(args: argparse.Namespace, schedule):
    """The setting's schedule with ``--size``, ``--steps``, ``--lr`` and ``--budget-min`` applied, each checked
    under its flag's name."""

    from .probes.run import resized_schedule

    if args.size is not None:
        schedule = resized_schedule(schedule, validation.integer("--size", args.size, minimum=validation.MIN_SIDE,
                                                                 maximum=validation.MAX_SIDE))
    if args.steps is not None:
        schedule = replace(schedule, max_steps=validation.integer("--steps", args.steps, minimum=1,
                                                                  maximum=MAX_STEPS))
    if args.lr is not None:
        if not args.lr > 0 or not math.isfinite(args.lr):  # one message for 0, -5, nan and inf alike
            raise UsageError(f"--lr must be a finite number > 0, got {args.lr!r}")
        schedule = replace(schedule, lr=float(args.lr))
    if getattr(args, "budget_min", None) is not None:  # train's option (ablation-report trains nothing)
        schedule = replace(schedule, budget_min=validation.minutes("--budget-min", args.budget_min))
    return schedule


MAX_STEPS = 10_000_000
"""The largest --steps (a bound, so a typo is an error line rather than a run that never ends)."""


def train_command(args: argparse.Namespace) -> int:
    """``train``: every argument checked first, then each network trained or loaded, one line (or JSON) each."""
    from bench.cli import check_variants
    from bench.records import to_json

    from .networks import IncompleteTraining, trained_set

    check_variants(args.variants)
    variants = list(args.variants)
    if args.spec is not None:
        from bench.ablations import load_ablation

        spec = load_ablation(args.spec)  # checked and resolved; every name registered in this process
        variants += [v.name for v in spec.variants if v.name not in variants]
    options = recipe(args)
    setting, schedule = options["setting"], options["schedule"]
    say = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    if schedule.warmup_steps >= schedule.max_steps:  # allowed (a smoke run), but not the recipe it looks like
        say(f"note: the setting's learning-rate warm-up ({schedule.warmup_steps} steps) is not shorter than the step "
            f"limit ({schedule.max_steps}): the rate rises for the whole run, ends at "
            f"{min(1.0, schedule.max_steps / max(1, schedule.warmup_steps)):.0%} of its peak {schedule.lr:g} and "
            "never decays")
    trained_by_jobs: set[tuple[str, int]] = set()
    if args.executor is None and (args.workers, args.timeout_min, args.slurm_partition) != (None, None, None):
        raise UsageError("--workers, --timeout-min and --slurm-partition are for --executor local|slurm|debug; "
                         "without --executor, training uses one worker process per core")
    if args.executor is not None:
        from .networks.jobs import train_as_jobs

        if args.executor != "slurm" and args.slurm_partition is not None:
            raise UsageError(f"--slurm-partition is for --executor slurm and does nothing with --executor "
                             f"{args.executor}")
        if args.executor == "debug" and (args.workers, args.timeout_min) != (None, None):
            given = "--workers" if args.workers is not None else "--timeout-min"
            raise UsageError(f"{given} does nothing with --executor debug, which runs each job in this process, one "
                             "after another, without a time limit")
        timeout = validation.minutes("--timeout-min", 120 if args.timeout_min is None else args.timeout_min)
        outcome = train_as_jobs(options.pop("setting"), variants or None, args.seeds, args.executor,
                                2 if args.workers is None else args.workers, timeout, args.slurm_partition, say=say,
                                **options)
        options["setting"] = setting
        trained_by_jobs = outcome.trained
        if outcome.failed:  # not the user's input: jobs that died (exit 1); a rerun resumes them
            print(f"python -m analysis train: {len(outcome.failed)} job(s) ended without their network, each "
                  "named on its own line above (a rerun submits only these)", file=sys.stderr)
            return 1
    try:
        nets = trained_set(variants=variants or None, seeds=args.seeds, progress=True, say=say,
                           only_cached=args.executor is not None, **options)
    except IncompleteTraining as err:  # not the user's input, not a bug: a run the guard stopped (exit 1)
        print(f"python -m analysis train: {err}", file=sys.stderr)
        return 1
    for net in nets:
        if (net.record["variant"], net.record["seed"]) in trained_by_jobs:
            net.cached = False
    keys = ("variant", "seed", "steps", "best_step", "stop_reason", "seconds", "val_miou")
    rows = [{**{k: n.record[k] for k in keys}, "cached": n.cached, "val_iou_per_class": n.record["val_iou_per_class"],
             "test_miou": n.test["miou"] if n.test else None,
             "test_iou_per_class": n.test["iou_per_class"] if n.test else None,
             "architecture": n.record["architecture"], "trained_as": n.record.get("trained_as", n.record["variant"]),
             "setting": setting.name, "device": n.record["device"], "path": str(n.path)} for n in nets]
    if args.json:
        print(to_json(rows, indent=2))
        return 0
    print(f"{'variant':<22} {'seed':>4} {'steps':>5} {'stop':<9} {'train s':>8} {'own val mIoU':>12} "
          f"{'test mIoU':>9}  source")
    for r in rows:
        test = f"{100 * r['test_miou']:>8.1f}%" if r["test_miou"] is not None else f"{'-':>9}"
        print(f"{r['variant']:<22} {r['seed']:>4} {r['steps']:>5} {r['stop_reason']:<9} {r['seconds']:>8.1f} "
              f"{100 * r['val_miou']:>11.1f}% {test}  {'cached' if r['cached'] else 'trained'}"
              + (f" as {r['trained_as']} (the same architecture)" if r["trained_as"] != r["variant"] else "")
              + f" ({r['path']})")
    test = (f"test mIoU: the same weights on the held-out test split ({nets[0].test['images']} images)"
            if nets[0].test else "test mIoU: '-', the data have no held-out test split (val picked and reports)")
    shape = (f"{schedule.size}x{schedule.size}px" if nets[0].record["data"].get("kind") == "generated" else
             f"a short side of {schedule.size}px, aspect kept")
    print(f"own val mIoU: the kept (best) weights on the val split that picked them, at {shape}; {test}")
    print(f"train s: wall seconds of the training on {rows[0]['device']}, evaluations included")
    return 0


def probe_plan(args: argparse.Namespace):
    """The ProbePlan the arguments ask for, every field checked (no data read, nothing trained)."""

    from .probes import ProbePlan

    plan = ProbePlan.tiny() if args.tiny else ProbePlan.default()
    checkpoints = {}
    if args.checkpoint:
        chooses = [flag for flag, value in (("--families", args.families), ("--seeds", args.seeds),
                                            ("--backbone", args.backbone), ("--budget-min", args.budget_min))
                   if value is not None]
        if chooses:
            raise UsageError(f"{', '.join(chooses)} choose{'s' if len(chooses) == 1 else ''} the networks probes "
                             "trains; with --checkpoint the networks are the given ones (name each VARIANT=PATH)")
    for item in args.checkpoint:
        variant, sep, path = item.partition("=")
        if not sep or not variant or not path:
            raise UsageError(f"malformed --checkpoint {item!r}: expected VARIANT=PATH, e.g. rf101=refinenet101_voc.pth")
        if variant in checkpoints:
            raise UsageError(f"--checkpoint names {variant} twice ({checkpoints[variant]} and {path}); one checkpoint "
                             "per variant")
        if not Path(path).is_file():
            raise UsageError(f"checkpoint file not found: {path}")
        read_state_dict(path)  # unreadable files fail here (a DataError), before any data is loaded
        from .networks import checkpoint_decoder

        checkpoint_decoder(variant, path)  # this project's own model.pt: its record must match the name
        checkpoints[variant] = path
    if args.size is not None:
        validation.integer("--size", args.size, minimum=validation.MIN_SIDE, maximum=validation.MAX_SIDE)
    if args.num_classes is not None:
        validation.integer("--num-classes", args.num_classes, minimum=2, maximum=255)
    changes = {"backbone": args.backbone, "voc_root": args.voc_root, "checkpoints": checkpoints,
               "num_classes": args.num_classes}
    for key in ("families", "levels"):
        if getattr(args, key):
            changes[key] = tuple(getattr(args, key))
    if args.seeds is not None:
        validation.integer("--seeds", args.seeds, minimum=1, maximum=MAX_SEEDS)  # bounded as train's
    for key in ("size", "seeds", "device"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    if args.budget_min is not None:
        changes["budget_min"] = validation.minutes("--budget-min", args.budget_min)
    if args.cache is not None:
        changes["cache_dir"] = str(validation.writable_folder("--cache", args.cache, make=False))
    plan = replace(plan, **changes)
    checked(plan.validate)
    validation.writable_folder("--out", args.out, make=False)
    return plan


def main(argv: list[str] | None = None) -> int:
    """Bad input (an :class:`~bench.errors.InputError`, from the arguments or the data) is one line and
    exit 2; anything else is a bug and keeps its traceback (exit 1)."""

    def body() -> int:
        args = build_parser().parse_args(argv)
        if args.command == "report":
            if args.data is not None:
                from .report.own_data import main as data_main

                return data_main(args)
            data_only = [f"--{k.replace('_', '-')}" for k in ("dry_run", "size", "setting", "out",
                                                             "backbone_checkpoint", "backbone_weights", "executor")
                         if getattr(args, k)]
            if data_only:
                raise UsageError(f"{', '.join(data_only)} {'is' if len(data_only) == 1 else 'are'} for --data DIR (a "
                                 "report on a folder of your own); the generated task's report takes none")
            status = run(args.sections or None, seeds=args.seeds, recipes=args.recipes)
            return 0 if all(v == "ok" for v in status.values()) else 1
        if args.command == "train":
            return train_command(args)
        if args.command == "sweep-report":
            from .report.sweep import report_sweep

            print(f"wrote {', '.join(str(p) for p in report_sweep(args.dir, args.report))}")
            return 0
        if args.command == "ablation-report":
            from .report.ablation import report

            options = recipe(args) if args.accuracy else no_recipe(args)  # checked before anything is read
            out = Path(args.report or Path(args.dir) / "report")
            written = report(args.spec, args.dir, out)
            if options is not None:
                written += accuracy_report(args, options, out)
            else:
                drop_accuracy_files(out)
            print(f"wrote {', '.join(str(p) for p in written)}")
            return 0
        plan = probe_plan(args)
        from .networks import IncompleteTraining
        from .report.probes import build

        try:
            section = build(Path(args.out), plan)
        except IncompleteTraining as err:  # a network the time guard stopped: not probed, not compared (exit 1)
            print(f"python -m analysis probes: {err}", file=sys.stderr)
            return 1
        print(f"wrote {', '.join(a.path for a in section.artifacts)} under {args.out}")
        return 0

    return run_cli(body, "python -m analysis")
