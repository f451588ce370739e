"""Sweep specs: one TOML file says what to measure over which variants, sizes, batches, dtypes, modes.

Keys (all optional but ``measure``; see specs/zoo.toml and specs/example-gpu.toml)::

    measure = ["complexity", "time", "speedup", "profile"]
    variants = ["rf_lw50", "rf_lw:resnet*"]      # names, or shell patterns over the built-in names of list_models()
    pairs = [["rf50", "rf_lw50"]]                # speedup: (base, other) pairs
    sizes = ["512x512", "468x625"]
    batches = [1]
    dtypes = ["fp32"]                            # fp32 | fp16 | bf16 (timing kinds)
    modes = ["eager"]                            # eager | graph (CUDA-graph replay) | fastest (channels_last,
                                                 #   folded BN, + graph replay on CUDA)
    device = "cpu"                               # cpu | cuda
    chunk = 20                                   # configurations per job (amortises start-up)
    timing_parallel = false                      # CPU: let timing jobs run side by side (default: one at a time)
    [timing]                                     # TimingSettings fields for every timing job (runs, warmup, ...)

Every configuration is a flat dict; its identity is a stable hash of its canonical JSON, which names
its record file, so a rerun knows what is done.

Keys are checked as types when the spec is read: an axis is a non-empty TOML list (``sizes = "64x64"`` is
refused with the list to write, never spread into letters), booleans are booleans, integers are bounded, the
device is cpu, cuda or cuda:N, ``[timing]`` is checked by TimingSettings.validate on that device, keys used by
no measured kind are refused, and a misspelt key names the nearest one. A value repeated on an axis is kept
once, with a note (``SweepSpec.notes``, said once by run_sweep), so ids are unique and every sweep can finish.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from .. import validation
from ..errors import DataError, InputError, MissingFileError, UsageError, UsageTypeError
from ..models import list_models, variant_info
from ..timing import DTYPES, TimingSettings

KINDS = ("complexity", "time", "speedup", "profile")
TIMING_KINDS = ("time", "speedup", "profile")
MODES = ("eager", "graph", "fastest")
KEYS = {"measure", "variants", "pairs", "sizes", "batches", "dtypes", "modes", "device", "chunk", "timing_parallel",
        "timing", "num_classes"}
SPECS = Path(__file__).parent / "specs"


@dataclass(frozen=True)
class SweepSpec:
    measure: tuple[str, ...]
    variants: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()
    sizes: tuple[tuple[int, int], ...] = ((512, 512),)
    batches: tuple[int, ...] = (1,)
    dtypes: tuple[str, ...] = ("fp32",)
    modes: tuple[str, ...] = ("eager",)
    device: str = "cpu"
    chunk: int = 20
    timing_parallel: bool = False
    timing: dict = field(default_factory=dict)
    num_classes: int = 21
    notes: tuple[str, ...] = ()  # what parse_spec changed (repeated axis values dropped), said once by run_sweep

    def configurations(self) -> list[dict]:
        """Every configuration, in a stable order; each a flat dict with a ``kind``."""
        configs = []
        for kind in self.measure:
            subjects = [{"base": b, "other": o} for b, o in self.pairs] if kind == "speedup" else \
                [{"variant": v} for v in self.variants]
            dims = [self.sizes, self.batches] + ([self.dtypes, self.modes] if kind in TIMING_KINDS else [])
            for subject, combo in itertools.product(subjects, itertools.product(*dims)):
                (h, w), batch = combo[0], combo[1]
                config = {"kind": kind, **subject, "height": h, "width": w, "batch": batch,
                          "num_classes": self.num_classes}
                registered = [r for r in (variant_info(n).registration() for n in subject.values()) if r]
                if registered:  # a name registered in this process: its jobs' processes register it too
                    config["registered"] = registered
                if kind in TIMING_KINDS:
                    config.update(dtype=combo[2], mode=combo[3], device=self.device, timing=dict(self.timing))
                configs.append(config)
        # a repeated axis value would make two configurations with one id (one record file): a sweep that
        # never finishes. parse_spec drops repeats; a spec built by hand must too.
        ids = [config_id(c) for c in configs]
        assert len(set(ids)) == len(ids), f"repeated configurations in {self}: drop repeated axis values"
        return configs


def config_id(config: dict) -> str:
    """A stable name for a configuration: the first 16 hex digits of the SHA-256 of its canonical JSON."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def timing_settings(config: dict) -> TimingSettings:
    """The TimingSettings a timing configuration asks for."""
    cuda = config["device"].startswith("cuda")
    mode = {"eager": {}, "graph": {"cuda_graph": True},
            "fastest": {"channels_last": True, "fold_bn": True, "cuda_graph": cuda}}[config["mode"]]
    return TimingSettings(**{**config["timing"], **mode, "device": config["device"], "dtype": config["dtype"],
                             "batch": config["batch"], "height": config["height"], "width": config["width"]})


def _expand(source: str, patterns: list[str], notes: list[str]) -> list[str]:
    names: list[str] = []
    for p in patterns:
        if not isinstance(p, str):
            raise UsageTypeError(f"{source}: 'variants' must hold strings (names or shell patterns), got {p!r}")
        if any(ch in p for ch in "*?["):
            # built-in names only: a spec file's pattern means the same in every process, whatever was registered
            # before it was read (the bench's zoo once swept the ablation's paper.N names, which its jobs lacked)
            matched = list_models(p, registered=False)
            if not matched:
                raise UsageError(f"{source}: variant pattern {p!r} matches no built-in name of list_models() "
                                 "(a registered variant is listed by its exact name)")
            names += matched
        else:
            variant_info(p)
            names.append(p)
    return _unique(source, "variants", names, notes)


def _unique(source: str, key: str, values: list, notes: list[str]) -> list:
    """``values`` without repeats (first-seen order); a repeat is noted once, so every id stays unique."""
    seen = list(dict.fromkeys(values))
    if len(seen) < len(values):
        repeated = [v for v in seen if values.count(v) > 1]
        how = " (directly or through a pattern)" if key == "variants" else ""
        notes.append(f"{source}: '{key}' lists {_show(repeated)} more than once{how}; each is measured once")
    return seen


def _show(values: list) -> str:
    return ", ".join("x".join(map(str, v)) if isinstance(v, tuple) and all(isinstance(i, int) for i in v)
                     else repr(v) for v in values)


def _axis(raw: dict, source: str, key: str, default: list, example: str) -> list:
    """A TOML list under ``key``: a single value where a list belongs is refused (never spread into letters),
    and so is an empty list (it would make a sweep of nothing)."""
    value = raw.get(key, default)
    if not isinstance(value, list):
        if isinstance(value, (str, int, float)):  # what the user meant, as a one-element TOML list
            example = f"[{json.dumps(value)}]"
        raise UsageTypeError(f"{source}: '{key}' must be a list, got {value!r} ({type(value).__name__}); "
                             f"write {key} = {example}")
    if not value:
        raise UsageError(f"{source}: '{key}' is empty, so the sweep would measure nothing; list at least one value, "
                         f"e.g. {key} = {example}, or leave the key out for the default")
    return value


def _timing_fields(source: str, timing: object, device: str) -> dict:
    """The [timing] table: known TimingSettings fields (the nearest one named for a misspelling), checked as
    their types by TimingSettings.validate on the spec's device."""
    if not isinstance(timing, dict):
        raise UsageTypeError(f"{source}: [timing] must be a table of TimingSettings fields, got {timing!r}")
    valid = sorted({f.name for f in fields(TimingSettings)} - {"device", "dtype", "batch", "height", "width"})
    bad = sorted(set(timing) - set(valid))
    if bad:
        near = validation.nearest(bad[0], valid)
        hint = f" (did you mean {near!r}?)" if near else ""
        raise UsageError(f"{source}: unknown [timing] field(s) {bad}{hint}; valid: {', '.join(valid)}")
    return dict(timing)


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a spec file: every problem is a UsageError/UsageTypeError/DataError naming the key, the value
    and the valid ones."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"sweep spec not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid TOML: {err}") from None
    return parse_spec(raw, source=str(path))


def parse_spec(raw: dict, source: str = "spec") -> SweepSpec:
    """Check a spec's keys as types and values; repeated axis values are dropped with a note in ``spec.notes``.
    Every problem is an InputError whose message starts with ``source`` (the file)."""
    if not isinstance(raw, dict):
        raise UsageTypeError(f"{source}: a spec is a table of keys, got {type(raw).__name__}")
    try:
        return _parse(raw, source)
    except InputError as err:
        if str(err).startswith(f"{source}: "):
            raise
        raise type(err)(f"{source}: {err}") from None


def _parse(raw: dict, source: str) -> SweepSpec:
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        near = validation.nearest(unknown[0], KEYS)
        hint = f" (did you mean {near!r}?)" if near else ""
        raise UsageError(f"{source}: unknown key(s) {unknown}{hint}; valid: {', '.join(sorted(KEYS))}")
    if "measure" not in raw:
        raise UsageError(f"{source}: 'measure' must list at least one of {', '.join(KINDS)}")
    notes: list[str] = []
    measure = _unique(source, "measure", [validation.choice("measure", k, KINDS) for k in
                                          _axis(raw, source, "measure", [], '["complexity"]')], notes)
    timed = [k for k in measure if k in TIMING_KINDS]
    listed = [k for k in measure if k != "speedup"]
    if listed:
        variants = _expand(source, _axis(raw, source, "variants", [], '["rf_lw50", "rf_lw:resnet*"]'), notes)
    elif "variants" in raw:
        raise UsageError(f"{source}: 'variants' is set but measure {measure} uses only 'pairs'; remove it or add "
                         f"a kind that measures variants ({', '.join(k for k in KINDS if k != 'speedup')})")
    else:
        variants = []
    pairs = []
    if "speedup" in measure:
        if "pairs" not in raw:
            raise UsageError(f"{source}: 'speedup' needs 'pairs' = [[BASE, OTHER], ...]")
        for pair in _axis(raw, source, "pairs", [], '[["rf50", "rf_lw50"]]'):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise UsageTypeError(f"{source}: each of 'pairs' must be [BASE, OTHER], got {pair!r}")
            pairs.append((variant_info(pair[0]).name, variant_info(pair[1]).name))
        pairs = _unique(source, "pairs", pairs, notes)
    elif "pairs" in raw:
        raise UsageError(f"{source}: 'pairs' is set but measure {measure} has no 'speedup'; add it or remove 'pairs'")
    for key in ("dtypes", "modes", "timing", "timing_parallel"):
        if key in raw and not timed:
            raise UsageError(f"{source}: '{key}' is set but measure {measure} times nothing; it is used by "
                             f"{', '.join(TIMING_KINDS)}")
    sizes = _unique(source, "sizes", [validation.parse_size(s, "sizes") if isinstance(s, str) else _bad_size(source, s)
                                      for s in _axis(raw, source, "sizes", ["512x512"], '["512x512"]')], notes)
    batches = _unique(source, "batches", [validation.integer("batches", b, minimum=1, maximum=validation.MAX_BATCH)
                                          for b in _axis(raw, source, "batches", [1], "[1]")], notes)
    dtypes = _unique(source, "dtypes", [validation.choice("dtype", d, DTYPES)
                                        for d in _axis(raw, source, "dtypes", ["fp32"], '["fp32"]')], notes)
    modes = _unique(source, "modes", [validation.choice("mode", m, MODES)
                                      for m in _axis(raw, source, "modes", ["eager"], '["eager"]')], notes)
    device = validation.device("device", raw.get("device", "cpu"))
    timing = _timing_fields(source, raw.get("timing", {}), device)
    spec = SweepSpec(tuple(measure), tuple(variants), tuple(pairs), tuple(sizes), tuple(batches), tuple(dtypes),
                     tuple(modes), device,
                     validation.integer("chunk", raw.get("chunk", 20), minimum=1, maximum=1_000_000),
                     validation.boolean("timing_parallel", raw.get("timing_parallel", False)), timing,
                     validation.integer("num_classes", raw.get("num_classes", 21), minimum=1,
                                        maximum=validation.MAX_MODEL_CLASSES),
                     tuple(notes))
    checked = set()
    for config in spec.configurations():  # every timing configuration as TimingSettings sees it, on the spec's device
        if config["kind"] in TIMING_KINDS and (config["dtype"], config["mode"]) not in checked:
            checked.add((config["dtype"], config["mode"]))
            timing_settings(config).validate(require_device=False)
    return spec


def _bad_size(source: str, value: object):
    raise UsageTypeError(f"{source}: each of 'sizes' must be a string HEIGHTxWIDTH such as \"512x512\", got {value!r}")
