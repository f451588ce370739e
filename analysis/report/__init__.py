"""``python -m analysis report [SECTION ...]``: regenerate reports/ and its front page.

Each section measures (``collect``), writes its tables and figures (``write``) and returns a
:class:`Section`; the front page (reports/README.md) is rebuilt from ``reports/manifest.json``,
which keeps the last run of every section, and of the timing section once per device, so one
section can be rerun alone and a CPU run never replaces a GPU run. A section that fails is
reported with its reason and the others still run.
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from bench.environment import device_slug, environment, torch_threads
from bench.errors import UsageError
from bench.records import to_json

from ..verdicts import VERDICT_VERSION
from .files import REPORTS, Section, write_atomic
from .front_page import write_pages


def _complexity(out: Path) -> Section:
    from .complexity import build

    return build(out)


def _timing(out: Path, timings_done: Callable[[], None] | None = None) -> Section:
    from .timing import build

    return build(out)


def _networks(out: Path) -> Section:
    from .networks import FOLDER, build

    return build(out, name=f"{FOLDER}/{_this_device_slug()}")


def _erf(out: Path) -> Section:
    from .erf import FOLDER, build

    return build(out, name=f"{FOLDER}/{_this_device_slug()}")


def _probes(out: Path) -> Section:
    from .probes import FOLDER, build

    return build(out, name=f"{FOLDER}/{_this_device_slug()}")


def _this_device_slug() -> str:
    import torch

    return device_slug("cuda" if torch.cuda.is_available() else "cpu")


def _ablation(out: Path, timings_done: Callable[[], None] | None = None) -> Section:
    from .ablation import build

    return build(out, timings_done)


def _zoo(out: Path) -> Section:
    import multiprocessing
    import os

    from .zoo import build

    # one worker per core this run's own background work leaves free (the shared backbone's pretraining holds one
    # core while the shape-only sections run): two workers beside it slowed both, one finishes within its time
    free = (os.cpu_count() or 1) - len(multiprocessing.active_children())
    return build(out, workers=max(1, min(2, free)))


SECTIONS: dict[str, Callable[[Path], Section]] = {
    "complexity": _complexity,
    "zoo": _zoo,
    "timing": _timing,
    "networks": _networks,
    "erf": _erf,
    "probes": _probes,
    "ablation": _ablation,
}


def _networks_seeds(out: Path, seeds: int) -> Section:
    from dataclasses import replace

    from .networks import FOLDER, build, default_setting

    return build(out, replace(default_setting(), seeds=seeds), name=f"{FOLDER}/{_this_device_slug()}-{seeds}-seeds")


def _probes_seeds(out: Path, seeds: int) -> Section:
    from dataclasses import replace

    from ..probes import ProbePlan
    from .probes import FOLDER, build

    return build(out, replace(ProbePlan.default(), seeds=seeds), name=f"{FOLDER}/{_this_device_slug()}-{seeds}-seeds")


def _erf_seeds(out: Path, seeds: int) -> Section:
    from dataclasses import replace

    from .erf import FOLDER, ERFPlan, build

    return build(out, replace(ERFPlan.default(), seeds=seeds), name=f"{FOLDER}/{_this_device_slug()}-{seeds}-seeds")


def _path_accuracy_seeds(out: Path, seeds: int) -> Section:
    from .networks import default_setting
    from .path_accuracy import seeded

    return seeded(out, default_setting(), seeds, _this_device_slug())


def _multiverse_seeds(out: Path, seeds: int, recipes: list[str] | None = None) -> Section:
    from .multiverse import seeded
    from .networks import default_setting

    return seeded(out, default_setting(), seeds, _this_device_slug(), recipes)


SEEDED: dict[str, Callable[[Path, int], Section]] = {"networks": _networks_seeds, "erf": _erf_seeds,
                                                     "probes": _probes_seeds,
                                                     "path-accuracy": _path_accuracy_seeds,
                                                     "multiverse": _multiverse_seeds}
"""Sections that take ``--seeds N``: the setting's set trained N times per family (seeds 0..N-1, the first ones
shared with the default run through the cache), in their own folders (``<section>/<device>-N-seeds``), so the
one-seed default run is never replaced; the scorecard shows the run on the most seeds (its rank), and a benefit
claim's verdict over the recipes before any one recipe's (``multiverse.OVER_RECIPES_RANK``). ``path-accuracy``
(the paper path's variants trained, :mod:`analysis.report.path_accuracy`) and ``multiverse`` (every claim under every
recipe of the protocol, :mod:`analysis.report.multiverse`) run only with ``--seeds``: they are decided over seeds, and
one seed of them does not fit the default run's budget."""
MAX_REPORT_SEEDS = 10


PER_DEVICE = ("timing", "networks", "erf", "probes", "path-accuracy", "multiverse")
"""Sections kept once per device (folder and manifest key ``<section>/<device slug>``): a run on another machine
adds its results next to the others and never replaces them."""


TRAINED = ("networks", "erf", "probes", "path-accuracy", "multiverse")
"""Sections whose numbers stand on the trained set: their manifest entries carry the training version
(``analysis.networks.store.TRAINING_VERSION``), and the front page marks an entry of an earlier version superseded."""


TIMED = ("timing", "ablation")
"""Sections that time on this machine: a run puts them first, before any training starts beside other sections. Each
takes ``timings_done``: the ablation calls it once its timed subsets are measured (its ERF at random init comes after
them and is not timed); the timing section times to its end and never calls it."""
SHAPE_ONLY = ("complexity", "zoo")
"""Sections that only count shapes (their numbers do not depend on the machine's load)."""


def _pretrain_ahead(names: list[str], seeds: int | None, device: str):
    """The background pretraining process of a default CPU run that trains the set, started where nothing timed is
    left to run and untimed work comes before the networks section (the ablation's ERF, the shape-only sections):
    the set's shared backbone pretrains on one core beside that work (one thread, as every CPU training, so the
    same weights; :func:`analysis.networks.sets.pretrain_in_background`). None otherwise."""
    if seeds is not None or device != "cpu" or "networks" not in names:
        return None
    from ..networks.sets import pretrain_in_background
    from .networks import default_setting

    process = pretrain_in_background(default_setting())
    if process is not None:
        print("  the shared backbone pretrains in the background (one thread) beside the untimed sections",
              flush=True)
    return process


def _key(name: str, device: str) -> str:
    """Manifest key: ``section``, or ``section/<device slug>`` for the sections kept per device."""
    return f"{name}/{device_slug(device)}" if name in PER_DEVICE else name


def run(sections: list[str] | None = None, out: Path = REPORTS, device: str | None = None,
        seeds: int | None = None, recipes: list[str] | None = None) -> dict[str, str]:
    """Run the named sections (all by default); returns {section: "ok" | error}. ``seeds``: only the sections of
    :data:`SEEDED`, each on that many training runs per family, into their own folders. ``recipes``: the multiverse's
    recipes beside the base (default: all the protocol's)."""
    import torch

    names = sections or (list(SEEDED) if seeds is not None else list(SECTIONS))
    names = [n for n in names if n in TIMED] + [n for n in names if n not in TIMED]  # timings on a quiet machine
    unknown = [n for n in names if n not in SECTIONS and n not in SEEDED]
    if unknown:
        from bench.validation import nearest

        valid = list(dict.fromkeys([*SECTIONS, *SEEDED]))
        hints = [f"{n!r} (did you mean {near!r}?)" if (near := nearest(n, valid)) else repr(n) for n in unknown]
        raise UsageError(f"unknown report section(s) {', '.join(hints)}; valid: {', '.join(valid)}")
    only_seeded = [n for n in names if n not in SECTIONS]
    if only_seeded and seeds is None:
        raise UsageError(f"the section(s) {only_seeded} run only over training runs: add --seeds N (2 to "
                         f"{MAX_REPORT_SEEDS}), e.g. python -m analysis report {only_seeded[0]} --seeds 3")
    if seeds is not None:
        from bench import validation

        validation.integer("seeds", seeds, minimum=2, maximum=MAX_REPORT_SEEDS)
        other = [n for n in names if n not in SEEDED]
        if other:
            raise UsageError(f"--seeds applies to the sections {', '.join(SEEDED)}, not {other}")
    if recipes is not None:
        if "multiverse" not in names:
            raise UsageError("--recipes is for the multiverse section: python -m analysis report multiverse --seeds 3 "
                             "--recipes NAME ...")
        from .multiverse import checked_recipes

        recipes = checked_recipes(recipes)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    from bench.validation import writable_folder

    writable_folder("the reports folder", out, make=False)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    status = {}
    background = None

    def pretrain_from(i: int) -> Callable[[], None]:
        """What starts the background pretraining once section ``i`` (1-based) has nothing timed left to do, where
        no later section times (called by a timed section after its last measurement, or before a shape-only one)."""
        def start() -> None:
            nonlocal background
            if background is None and not any(n in TIMED for n in names[i:]):
                background = _pretrain_ahead(names, seeds, device)
        return start

    try:
        for i, name in enumerate(names, 1):
            if name in SHAPE_ONLY:
                pretrain_from(i)()
            # beside the one-thread background pretraining, a shape-only section leaves it its core: more threads
            # than cores slowed both (their counts do not depend on the thread count)
            beside = name in SHAPE_ONLY and background is not None and background.is_alive()
            with torch_threads(max(1, torch.get_num_threads() - 1) if beside else None):
                status[name] = _run_section(name, i, len(names), out, device, seeds, manifest, recipes,
                                            pretrain_from(i) if name in TIMED else None)
    finally:
        if background is not None:
            background.join()  # the networks section has waited for it; an error there is that section's
    ran = {_key(name, device) + (f"-{seeds}-seeds" if seeds is not None else "") for name in names}
    with manifest_lock(out):  # another report run may have written its sections meanwhile: merge into its manifest
        current = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        current.update({key: manifest[key] for key in ran})
        current = rejudge_timing(current, out)
        order = {name: i for i, name in enumerate(SECTIONS)}
        ordered = dict(sorted(current.items(), key=lambda kv: (order.get(kv[1].get("section", kv[0]), 99), kv[0])))
        write_atomic(manifest_path, to_json(ordered, indent=2) + "\n")
        write_pages(ordered, out)
    return status


def _run_section(name: str, i: int, count: int, out: Path, device: str, seeds: int | None, manifest: dict,
                 recipes: list[str] | None = None, timings_done: Callable[[], None] | None = None) -> str:
    """Run one section into ``manifest`` (its entry, or its error beside its last good entry); "ok" or the error."""
    key = _key(name, device) + (f"-{seeds}-seeds" if seeds is not None else "")
    print(f"[{i}/{count}] {name} ...", flush=True)
    start = time.perf_counter()
    entry = {"section": name, "title": name, "environment": environment(device), "verdict_version": VERDICT_VERSION}
    if name in TRAINED:
        from ..networks.settings import SET_VERSION
        from ..networks.store import TRAINING_VERSION
        from ..protocol import PROTOCOL

        entry["training_version"] = TRAINING_VERSION
        entry["set_version"] = SET_VERSION
        entry["protocol"] = {"version": PROTOCOL.version, "sha256": PROTOCOL.sha256}
    try:
        if name == "multiverse" and recipes is not None:
            section = _multiverse_seeds(out, seeds, recipes)
        else:
            section = SEEDED[name](out, seeds) if seeds is not None else (
                SECTIONS[name](out, timings_done) if name in TIMED else SECTIONS[name](out))
        entry.update(title=section.title, text=section.text, settings=section.settings, folder=section.folder,
                     artifacts=[asdict(a) for a in section.artifacts], scores=[asdict(s) for s in section.scores])
        result = "ok"
    except Exception as err:  # a failed section is reported; the others still run
        traceback.print_exc()
        entry.update({k: v for k, v in manifest.get(key, {}).items() if k != "error"},
                     error=f"{type(err).__name__}: {err}")
        result = entry["error"]
    entry["seconds"] = time.perf_counter() - start
    entry["finished"] = time.strftime("%Y-%m-%d %H:%M")
    manifest[key] = entry
    print(f"[{i}/{count}] {name}: {result} ({entry['seconds']:.1f} s)", flush=True)
    return result


def rejudge_timing(manifest: dict, out: Path) -> dict:
    """Timing sections decided by earlier verdict rules, decided again from their recorded tables (the measurement
    stands, the rule changed: :func:`analysis.report.timing.rejudge`); other sections wait for their machine."""
    from .timing import rejudge

    out_manifest = {}
    for key, entry in manifest.items():
        if entry.get("section") == "timing" and entry.get("verdict_version") != VERDICT_VERSION:
            entry = rejudge(entry, out) or entry
        out_manifest[key] = entry
    return out_manifest


@contextlib.contextmanager
def manifest_lock(out: Path):
    """An exclusive lock on ``out/.manifest.lock`` for the read-merge-write of the manifest and the front page:
    two report runs at once both keep their sections (the second waits, and says so)."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".manifest.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("waiting for another report run to finish writing reports/manifest.json ...", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
