"""Sweep specs: one TOML file says what to measure over which variants, sizes, batches, dtypes, modes.

Keys (all optional but ``measure``; see specs/zoo.toml and specs/example-gpu.toml)::

    measure = ["complexity", "time", "speedup", "profile"]
    variants = ["rf_lw50", "rf_lw:resnet*"]      # names or shell patterns over list_models(), family:backbone too
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
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from .. import validation
from ..errors import DataError, MissingFileError, UsageError, UsageTypeError
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
                if kind in TIMING_KINDS:
                    config.update(dtype=combo[2], mode=combo[3], device=self.device, timing=dict(self.timing))
                configs.append(config)
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


def _expand(patterns: list[str]) -> list[str]:
    names: list[str] = []
    for p in patterns:
        if not isinstance(p, str):
            raise UsageTypeError(f"variants must be strings (names or shell patterns), got {p!r}")
        if any(ch in p for ch in "*?["):
            matched = list_models(p)
            if not matched:
                raise UsageError(f"variant pattern {p!r} matches no name of list_models()")
            names += matched
        else:
            variant_info(p)
            names.append(p)
    return list(dict.fromkeys(names))


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a spec file: every problem is a ValueError naming the key, the value and the valid ones."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"sweep spec not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise DataError(f"{path}: not valid TOML: {err}") from None
    return parse_spec(raw, source=str(path))


def parse_spec(raw: dict, source: str = "spec") -> SweepSpec:
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise UsageError(f"{source}: unknown key(s) {unknown}; valid: {', '.join(sorted(KEYS))}")
    measure = raw.get("measure")
    if not measure or not isinstance(measure, list):
        raise UsageError(f"{source}: 'measure' must list at least one of {', '.join(KINDS)}")
    for kind in measure:
        validation.choice("measure", kind, KINDS)
    variants = _expand(raw.get("variants", []))
    pairs = []
    for pair in raw.get("pairs", []):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise UsageError(f"{source}: each of 'pairs' must be [BASE, OTHER], got {pair!r}")
        pairs.append((variant_info(pair[0]).name, variant_info(pair[1]).name))
    if any(k != "speedup" for k in measure) and not variants:
        raise UsageError(f"{source}: 'variants' must name at least one variant for {measure}")
    if "speedup" in measure and not pairs:
        raise UsageError(f"{source}: 'speedup' needs 'pairs' = [[BASE, OTHER], ...]")
    sizes = tuple(validation.parse_size(s, "sizes") for s in raw.get("sizes", ["512x512"]))
    batches = tuple(validation.integer("batches", b, minimum=1) for b in raw.get("batches", [1]))
    dtypes = tuple(validation.choice("dtype", d, DTYPES) for d in raw.get("dtypes", ["fp32"]))
    modes = tuple(validation.choice("mode", m, MODES) for m in raw.get("modes", ["eager"]))
    device = raw.get("device", "cpu")
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise UsageError(f"{source}: unknown device {device!r}; valid: cpu, cuda")
    timing = dict(raw.get("timing", {}))
    valid_timing = {f.name for f in fields(TimingSettings)} - {"device", "dtype", "batch", "height", "width"}
    bad = sorted(set(timing) - valid_timing)
    if bad:
        raise UsageError(f"{source}: unknown [timing] field(s) {bad}; valid: {', '.join(sorted(valid_timing))}")
    spec = SweepSpec(tuple(measure), tuple(variants), tuple(pairs), sizes, batches, dtypes, modes, device,
                     validation.integer("chunk", raw.get("chunk", 20), minimum=1),
                     bool(raw.get("timing_parallel", False)), timing,
                     validation.integer("num_classes", raw.get("num_classes", 21), minimum=1))
    for config in spec.configurations():
        if config["kind"] in TIMING_KINDS:
            timing_settings(config).validate(require_device=False)
    return spec
