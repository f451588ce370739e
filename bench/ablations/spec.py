"""Ablation specs: one TOML file per study; variants, grids and paths as diffs of a base's DecoderSpec.

Keys (see specs/paper-path.toml)::

    measure = ["complexity", "time"]      # what the runner measures per variant (default: complexity)
    sizes = ["256x256"]                   # input sizes (HxW)
    batch = 1
    num_classes = 21
    device = "cpu"                        # timing device: cpu | cuda
    mode = "eager"                        # timing mode: eager | graph | fastest (see bench.sweeps.spec)
    chunk = 20                            # configurations per job
    [timing]                              # TimingSettings fields for every timing job (runs, budget_s, ...)

    [variants.lw_crp2]                    # a variant: a base name + dotted decoder changes
    base = "rf_lw50"
    decoder.crp_stages = 2

    [grids.crp]                           # a grid over decoder axes, every point a change of `base`
    base = "rf_lw50"
    product.crp_stages = [1, 2, 4]        # Cartesian product of these axes ...
    zip.crp_pool_kernel = [3, 5]          # ... times these axes taken in step (equal lengths)
    zip.crp_pool = ["max", "separable"]
    exclude = [{crp_stages = 1, crp_pool_kernel = 3}]   # points matching every key of one entry are dropped

    [paths.paper]                         # a path: ordered changes from `start`; checked to end at `end`
    start = "rf50"
    end = "rf_lw50"
    steps = [{crp_kernel = 1}, {fusion_kernel = 1, label = "1x1 fusion"}, ...]

Rules (the lessons of mmengine, timm and Hydra configs, see STYLE.md): one level of base (a base is a
built-in name, ``family:backbone``, or a ``[variants]`` entry of the same file, whose changes are merged);
dotted keys; a list always replaces; an unknown key, a value of the wrong kind or out of range is one line
naming the file, the key and the nearest valid one. A step may set several fields that make one change
together (removing the RCUs sets ``rcu``, ``rcu_in`` and ``rcu_out``), but must change the network, and a path
visits each architecture once. Names and changes go through :func:`bench.models.registry.resolve_variant`, the
check of :func:`register_variant`; a ``[variants]`` base may be another entry (a loop is refused). An ``exclude``
entry must match a point and must leave one; a grid point that is its base is refused; a repeated ``product`` value
is dropped with a note (``AblationSpec.notes``). A spec resolves to at most :data:`MAX_VARIANTS` variants, counted
before any is built, and to at least one.

Every resolved variant is registered (:func:`bench.models.register_variant`) and identified by the hash
of its backbone and fully resolved DecoderSpec (:func:`architecture_hash`; the ``family`` label is left out,
so RF-50 with every change of the paper's path hashes as LW-50). Names are generated where none is given:
``GRID.AXIS-VALUE.AXIS-VALUE`` for grid points and ``PATH.N`` for the variant after step N of a path.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .. import validation
from ..errors import DataError, MissingFileError, UsageError, UsageTypeError
from ..models import decoder_spec, variant_info
from ..models.decoder import DecoderSpec, changeable_fields, check_decoder_change
from ..models.registry import _register, check_variant_name, effective_spec, resolve_variant
from ..sweeps.spec import MODES
from ..timing import TimingSettings
from .attribution import MAX_SHAPLEY, all_subsets, subset_changes

SPECS = Path(__file__).parent / "specs"
MEASURES = ("complexity", "time")
TOP_KEYS = ("measure", "sizes", "batch", "num_classes", "device", "mode", "chunk", "timing", "variants", "grids",
            "paths")
VARIANT_KEYS = ("base", "decoder")
GRID_KEYS = ("base", "product", "zip", "exclude")
PATH_KEYS = ("start", "end", "steps")
STEP_LABEL = "label"
TIMING_FIXED = ("device", "dtype", "batch", "height", "width")
MAX_VARIANTS = 1000
"""The most resolved variants one spec may expand to (grid points, path variants and their subsets, bases): each
is counted, registered and measured; a larger study is several specs."""


LATER_FIELDS = {f: DecoderSpec.__dataclass_fields__[f].default for f in ("refine_levels",)}
"""DecoderSpec fields added after the first architecture hashes, with their defaults: a field at its default is
left out of the hash, so every network, timing record and cached weight named before the field keeps its identity."""


def architecture_fields(spec: DecoderSpec) -> dict:
    """The DecoderSpec fields that make a variant's identity: every field but the ``family`` label (a label, not a
    layer) and a :data:`LATER_FIELDS` field at its default."""
    return {k: v for k, v in asdict(spec).items()
            if k != "family" and not (k in LATER_FIELDS and v == LATER_FIELDS[k])}


def architecture_hash(backbone: str, spec: DecoderSpec) -> str:
    """The identity of a variant: 12 hex digits of the SHA-256 of its backbone and :func:`architecture_fields`."""
    arch = architecture_fields(spec)
    return hashlib.sha256(json.dumps({"backbone": backbone, **arch}, sort_keys=True).encode()).hexdigest()[:12]


def inference_hash(backbone: str, spec: DecoderSpec) -> str:
    """The identity of a variant's eval-mode network: :func:`architecture_hash` with dropout left out (dropout is
    the identity in eval mode and has no parameters, so variants that differ only in dropout time, count and have
    receptive fields alike; the timer and the ERF measure each such network once)."""
    return architecture_hash(backbone, replace(spec, dropout=0.0))


@dataclass(frozen=True)
class Variant:
    """One resolved variant of a study."""

    name: str
    base: str  # the built-in (or family:backbone) variant its changes apply to
    changes: tuple[tuple[str, object], ...]  # DecoderSpec changes from ``base``
    backbone: str
    decoder: DecoderSpec  # fully resolved
    hash: str
    group: str  # "variants", "grid NAME", "path NAME" or "base" (a base the others change, counted beside them)
    reference: str  # what its time is paired against: its path predecessor, else its base
    step: int | None = None  # paths: 0 for the start, N after step N
    label: str = ""  # paths: the change this step makes

    @property
    def inference_hash(self) -> str:
        return inference_hash(self.backbone, self.decoder)

    def registration(self) -> dict:
        """What a worker process needs to register this name itself (stored in every record)."""
        return {"name": self.name, "base": self.base, "changes": dict(self.changes), "hash": self.hash,
                "backbone": self.backbone, "decoder": asdict(self.decoder)}


@dataclass(frozen=True)
class Path_:
    """A path: its variants from start (step 0) to the end, and each step's own change."""

    name: str
    variants: tuple[Variant, ...]
    steps: tuple[dict, ...]  # each step's changes, in order
    labels: tuple[str, ...]
    end: str | None
    subsets: tuple[tuple[frozenset[int], str], ...] = ()  # (steps applied, 0-based; the variant's name)

    def subset_names(self) -> dict[frozenset[int], str]:
        return dict(self.subsets)


@dataclass(frozen=True)
class AblationSpec:
    source: str
    variants: tuple[Variant, ...]
    paths: tuple[Path_, ...] = ()
    measure: tuple[str, ...] = ("complexity",)
    sizes: tuple[tuple[int, int], ...] = ((512, 512),)
    batch: int = 1
    num_classes: int = 21
    device: str = "cpu"
    mode: str = "eager"
    chunk: int = 20
    timing: dict = field(default_factory=dict)
    timing_parallel: bool = False  # the sweep runner's switch: never on for ablations
    notes: tuple[str, ...] = ()  # what the sweep runner prints once (repeated grid values dropped)

    def variant(self, name: str) -> Variant:
        return {v.name: v for v in self.variants}[name]

    def configurations(self, measure: tuple[str, ...] | None = None) -> list[dict]:
        """The sweep runner's configurations: one per (variant, size) for counting, one per (variant with a
        reference, size) for paired timing. Each carries the registrations of the names it uses."""
        by_name = {v.name: v for v in self.variants}
        configs = []
        for kind in measure or self.measure:
            for v in self.variants:
                for h, w in self.sizes:
                    common = {"height": h, "width": w, "batch": self.batch, "num_classes": self.num_classes}
                    if kind == "complexity":
                        configs.append({"kind": "complexity", "variant": v.name, **common,
                                        "registered": [v.registration()] if v.base != v.name else []})
                    elif kind == "time" and v.reference != v.name:
                        ref = by_name.get(v.reference)
                        regs = [r.registration() for r in (ref, v) if r is not None and r.base != r.name]
                        configs.append({"kind": "speedup", "base": v.reference, "other": v.name, **common,
                                        "dtype": "fp32", "mode": self.mode, "device": self.device,
                                        "timing": dict(self.timing), "registered": regs})
        return configs


# --- reading -------------------------------------------------------------------------------------


def load_ablation(path: str | Path) -> AblationSpec:
    """Read, check and resolve an ablation spec (every name registered); problems name the file and key."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"ablation spec not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise DataError(f"{path}: not valid TOML: {err}") from None
    return parse_ablation(raw, source=str(path))


def _keys(where: str, table: object, valid: tuple[str, ...], source: str) -> dict:
    return _checked(source, validation.table, where, table, valid)


def _change(where: str, key: str, value: object, source: str):
    _keys(where, {key: value}, tuple(changeable_fields()), source)
    try:
        return check_decoder_change(key, value, where=where)
    except (UsageError, UsageTypeError) as err:
        raise type(err)(f"{source}: {err}") from None


def _root(base: object, where: str, local: dict[str, Variant], source: str) -> tuple[str, dict]:
    """(built-in root, changes from it) of a base name: a built-in / family:backbone, or a [variants] entry."""
    if not isinstance(base, str):
        raise UsageTypeError(f"{source}: {where}.base must be a variant name, got {base!r}")
    if base in local:
        return local[base].base, dict(local[base].changes)
    try:
        info = variant_info(base)
    except UsageError as err:
        raise UsageError(f"{source}: {where}.base: {err}") from None
    if info.base:  # registered elsewhere: still one level from its built-in root
        return info.base, dict(info.changes)
    return info.name, {}


def _variant(name: str, root: str, changes: dict, group: str, reference: str, source: str, step: int | None = None,
             label: str = "") -> Variant:
    spec = decoder_spec(root).with_changes(**changes)
    backbone = variant_info(root).backbone
    return Variant(name, root, tuple(changes.items()), backbone, spec, architecture_hash(backbone, spec), group,
                   reference, step, label)


def _grid_axes(name: str, table: dict, source: str, notes: list[str]) -> tuple[dict[str, list], list[str], list[str]]:
    """(axis -> its values, repeats dropped with a note; product axes; zip axes), checked."""
    axes: dict[str, list] = {}
    for part in ("product", "zip"):
        block = table.get(part, {})
        if not isinstance(block, dict):
            raise UsageTypeError(f"{source}: grids.{name}.{part} must be a table of AXIS = [values], got {block!r}")
        for axis, values in block.items():
            where = f"grids.{name}.{part}"
            if not isinstance(values, list) or not values:
                raise UsageTypeError(f"{source}: {where}.{axis} must be a non-empty list of values, got {values!r}")
            if axis in axes:
                raise UsageError(f"{source}: {where}.{axis}: axis {axis!r} is already in grids.{name}")
            checked = [_change(where, axis, v, source) for v in values]
            unique = _unique_values(checked)
            if part == "product" and len(unique) < len(checked):  # a zip axis keeps its rows: they pair up
                repeated = [v for v in unique if sum(_same(v, c) for c in checked) > 1]
                notes.append(f"{source}: {where}.{axis} lists {', '.join(map(repr, repeated))} more than once; "
                             "each value is measured once")
                checked = unique
            axes[axis] = checked
    zipped = list(table.get("zip", {}))
    if len({len(axes[a]) for a in zipped}) > 1:
        lengths = ", ".join(f"{a}: {len(axes[a])}" for a in zipped)
        raise UsageError(f"{source}: grids.{name}.zip axes must have equal lengths, got {lengths}")
    if not axes:
        raise UsageError(f"{source}: grids.{name} needs at least one axis in product or zip")
    return axes, list(table.get("product", {})), zipped


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b  # 1 and True, 1 and 1.0 are different values of a field


def _unique_values(values: list) -> list:
    out: list = []
    for v in values:
        if not any(_same(v, u) for u in out):
            out.append(v)
    return out


def _grid(name: str, table: dict, local: dict[str, Variant], source: str, notes: list[str],
          room: int) -> list[Variant]:
    _keys(f"grids.{name}", table, GRID_KEYS, source)
    base = table.get("base")
    root, base_changes = _root(base, f"grids.{name}", local, source)
    axes, product_axes, zipped = _grid_axes(name, table, source, notes)
    excludes = table.get("exclude", [])
    if not isinstance(excludes, list) or not all(isinstance(e, dict) for e in excludes):
        raise UsageTypeError(f"{source}: grids.{name}.exclude must be a list of tables, got {excludes!r}")
    for e in excludes:
        _keys(f"grids.{name}.exclude", e, tuple(axes), source)
    size = math.prod(len(axes[a]) for a in product_axes) * (len(axes[zipped[0]]) if zipped else 1)
    if size > room:  # counted before a single point is made: a huge grid is refused at once
        raise UsageError(f"{source}: grids.{name} has {size} points; a spec may resolve to at most {MAX_VARIANTS} "
                         f"variants ({room} left for this grid): split the study or take fewer values per axis")
    zip_rows = list(zip(*(axes[a] for a in zipped), strict=True)) if zipped else [()]
    points, used = [], [0] * len(excludes)
    for prod in itertools.product(*(axes[a] for a in product_axes)):
        for row in zip_rows:
            point = dict(zip(product_axes + zipped, prod + row, strict=True))
            hits = [i for i, e in enumerate(excludes) if all(_same(point[k], v) for k, v in e.items())]
            for i in hits:
                used[i] += 1
            if not hits:
                points.append(point)
    unused = [excludes[i] for i, n in enumerate(used) if not n]
    if unused:
        raise UsageError(f"{source}: grids.{name}.exclude entry {unused[0]} matches no point of the grid (axes: "
                         + "; ".join(f"{a} in {axes[a]}" for a in axes) + ")")
    if not points:
        raise UsageError(f"{source}: grids.{name}.exclude removes every point of the grid; nothing is left to measure")
    same = {effective_spec(decoder_spec(root).with_changes(**base_changes)): base,
            effective_spec(decoder_spec(root)): root}
    out = []
    for point in points:
        vname = ".".join([name] + [f"{k}-{v}" for k, v in point.items()])
        _checked(source, check_variant_name, vname)
        v = _variant(vname, root, {**base_changes, **point}, f"grid {name}", root, source)
        if effective_spec(v.decoder) in same:
            ex = ", ".join(f"{k} = {json.dumps(val)}" for k, val in point.items())
            raise UsageError(f"{source}: grids.{name} point {vname!r} is {same[effective_spec(v.decoder)]!r} itself "
                             f"(no change of the network); drop it with exclude = [{{{ex}}}]")
        out.append(v)
    return out


def _path(name: str, table: dict, local: dict[str, Variant], source: str, room: int = MAX_VARIANTS
          ) -> tuple[list[Variant], Path_]:
    _keys(f"paths.{name}", table, PATH_KEYS, source)
    start = table.get("start")
    root, changes = _root(start, f"paths.{name}", local, source)
    steps = table.get("steps")
    if not isinstance(steps, list) or not steps:
        raise UsageTypeError(f"{source}: paths.{name}.steps must be a non-empty list of tables of changes")
    size = len(_attribution_subsets(len(steps))) if len(steps) <= MAX_SHAPLEY else 2 * len(steps) + 1
    if size > room:
        raise UsageError(f"{source}: paths.{name} has {len(steps)} steps, {size} variants with the subsets its "
                         f"attribution measures; a spec may resolve to at most {MAX_VARIANTS} variants ({room} left "
                         "for this path)")
    variants = [_variant(start, root, changes, f"path {name}", start, source, 0, "start")]
    step_changes, labels = [], []
    valid = (*changeable_fields(), STEP_LABEL)
    current = dict(changes)
    for i, step in enumerate(steps, 1):
        where = f"paths.{name}.steps[{i}]"
        _keys(where, step, valid, source)
        change = {k: _change(where, k, v, source) for k, v in step.items() if k != STEP_LABEL}
        before = decoder_spec(root).with_changes(**current)
        after = before.with_changes(**change)
        if not change or effective_spec(after) == effective_spec(before):
            raise UsageError(f"{source}: {where} changes nothing (the variant before it already has {change}, or "
                             "it sets counts of a part the variant does not have)")
        earlier = [v.name for v in variants if effective_spec(v.decoder) == effective_spec(after)]
        if effective_spec(after) == effective_spec(decoder_spec(root)):
            earlier.append(root)
        if earlier:
            raise UsageError(f"{source}: {where} returns to {earlier[0]!r}, an earlier variant of the path; a path "
                             "visits each architecture once")
        label = step.get(STEP_LABEL) or ", ".join(f"{k} {getattr(before, k)}->{v}" for k, v in change.items())
        if not isinstance(label, str):
            raise UsageTypeError(f"{source}: {where}.label must be a string, got {label!r}")
        current = {**current, **change}
        variants.append(_variant(f"{name}.{i}", root, dict(current), f"path {name}", variants[-1].name, source, i,
                                 label))
        step_changes.append(change)
        labels.append(label)
    last = variants[-1].name
    # every variant of the path is timed against its end (one fixed reference: drift between pair-sets cancels
    # in the ratios, and every subset's time is on one scale for the Shapley values); the end against nothing
    variants = [replace(v, reference=last if v.name != last else v.name) for v in variants]
    subsets = [(frozenset(range(i)), v.name) for i, v in enumerate(variants)]
    subset_variants = []
    for s in _attribution_subsets(len(step_changes)):
        if s == frozenset(range(len(s))):
            continue  # a prefix: the path's own variant
        applied = {**changes, **subset_changes(step_changes, s)}
        vname = f"{name}.with-{'-'.join(str(i + 1) for i in sorted(s))}"
        _checked(source, check_variant_name, vname)
        v = _variant(vname, root, applied, f"path {name} subset", last, source)
        same = next((u.name for u in variants + subset_variants
                     if effective_spec(u.decoder) == effective_spec(v.decoder)), None)
        if same is None and effective_spec(v.decoder) == effective_spec(decoder_spec(root)):
            same = root  # counted as the base the path's variants change
        if same is not None:  # the same network as another subset (or the start): measured once, under that name
            subsets.append((s, same))
            continue
        subset_variants.append(v)
        subsets.append((s, vname))
    end = table.get("end")
    if end is not None:
        end_root, end_changes = _root(end, f"paths.{name}.end", local, source)
        end_spec = decoder_spec(end_root).with_changes(**end_changes)
        last = variants[-1]
        if variant_info(end_root).backbone != last.backbone:
            raise UsageError(f"{source}: paths.{name} starts on {last.backbone} but its end {end!r} is on "
                             f"{variant_info(end_root).backbone}")
        diff = [f"{f.name} {getattr(last.decoder, f.name)!r} (end: {getattr(end_spec, f.name)!r})"
                for f in fields(DecoderSpec) if f.name != "family"
                and getattr(last.decoder, f.name) != getattr(end_spec, f.name)]
        if diff:
            raise UsageError(f"{source}: paths.{name} does not end at {end!r}: after its last step it differs in "
                             f"{'; '.join(diff)}")
    return variants + subset_variants, Path_(name, tuple(variants), tuple(step_changes), tuple(labels), end,
                                             tuple(subsets))


def _attribution_subsets(n: int) -> list[frozenset[int]]:
    """The subsets of a path's n steps that are measured: all 2^n (exact Shapley values) up to MAX_SHAPLEY
    steps; beyond that the prefixes and suffixes only (path and reverse-order deltas)."""
    if n <= MAX_SHAPLEY:
        return all_subsets(n)
    return list(dict.fromkeys([frozenset(range(i)) for i in range(n + 1)] +
                              [frozenset(range(i, n)) for i in range(n + 1)]))


def parse_ablation(raw: dict, source: str = "spec", register: bool = True) -> AblationSpec:
    """Check and resolve a parsed spec; with ``register``, every resolved name is registered (idempotently)."""
    _keys("", raw, TOP_KEYS, source)
    measure = raw.get("measure", ["complexity"])
    if not isinstance(measure, list) or not measure:
        raise UsageTypeError(f"{source}: measure must list at least one of {', '.join(MEASURES)}")
    for m in measure:
        _checked(source, validation.choice, "measure", m, MEASURES)
    sizes = raw.get("sizes", ["512x512"])
    if not isinstance(sizes, list) or not sizes:
        raise UsageTypeError(f"{source}: sizes must be a non-empty list of HxW strings, got {sizes!r}")
    sizes = tuple(_checked(source, validation.parse_size, s, "sizes") for s in sizes)
    device = raw.get("device", "cpu")
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise UsageError(f"{source}: unknown device {device!r}; valid: cpu, cuda, cuda:N")
    timing = _keys("timing", raw.get("timing", {}),
                   tuple(f.name for f in fields(TimingSettings) if f.name not in TIMING_FIXED), source)
    local = _local_variants(_table(raw, "variants", source), source)
    if len(local) > MAX_VARIANTS:
        raise UsageError(f"{source}: {len(local)} [variants] entries; a spec may resolve to at most {MAX_VARIANTS}")
    variants = list(local.values())
    notes: list[str] = []
    for name, table in _table(raw, "grids", source).items():
        variants += _grid(name, table, local, source, notes, MAX_VARIANTS - len(variants))
    paths = []
    for name, table in _table(raw, "paths", source).items():
        path_variants, path = _path(name, table, local, source, MAX_VARIANTS - len(variants))
        paths.append(path)
        for v in path_variants:  # a path starting at a [variants] entry: that entry is now timed as the path's
            if v.name in local:
                variants[[u.name for u in variants].index(v.name)] = v
            else:
                variants.append(v)
    named = {v.name for v in variants}
    for root in dict.fromkeys(v.base for v in variants):  # the bases are counted too: what each change is against
        if root not in named:
            variants.append(_variant(root, root, {}, "base", root, source))
    if not variants:
        raise UsageError(f"{source}: the spec defines no variants; add at least one [variants.NAME], [grids.NAME] "
                         f"or [paths.NAME] table (see {SPECS / 'paper-path.toml'})")
    seen: dict[str, Variant] = {}
    for v in variants:
        if v.name in seen and seen[v.name].hash != v.hash:
            raise UsageError(f"{source}: the name {v.name!r} is given to two different variants")
        seen.setdefault(v.name, v)
    if len(seen) > MAX_VARIANTS:
        raise UsageError(f"{source}: the spec resolves to {len(seen)} variants (with the bases they change); at most "
                         f"{MAX_VARIANTS}: split the study")
    spec = AblationSpec(source, tuple(seen.values()), tuple(paths), tuple(measure), sizes,
                        _checked(source, validation.integer, "batch", raw.get("batch", 1), minimum=1,
                                 maximum=validation.MAX_BATCH),
                        _checked(source, validation.integer, "num_classes", raw.get("num_classes", 21), minimum=1,
                                 maximum=validation.MAX_MODEL_CLASSES),
                        device, _checked(source, validation.choice, "mode", raw.get("mode", "eager"), MODES),
                        _checked(source, validation.integer, "chunk", raw.get("chunk", 20), minimum=1), dict(timing),
                        notes=tuple(notes))
    if register:
        for v in _progress([v for v in spec.variants if v.base != v.name], "registering variants"):
            try:  # the very check register_variant makes (a worker process registers each name again so)
                root, merged, decoder = resolve_variant(v.name, v.base, dict(v.changes))
                _register(v.name, root, merged, decoder, exist_ok=True)
            except UsageError as err:
                raise UsageError(f"{source}: {err}") from None
    return spec


def _progress(items: list, what: str, at_least: int = 200):
    """``items`` with a tqdm bar on stderr where there are many (a large spec takes a while to resolve)."""
    if len(items) < at_least:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=what, unit="variant", leave=False)


def _local_variants(tables: dict, source: str) -> dict[str, Variant]:
    """The ``[variants]`` entries, in file order; a base may be another entry (in any order: chains are resolved
    to their built-in root, a loop is refused). Each is checked by :func:`bench.models.registry.resolve_variant`,
    the check :func:`register_variant` makes."""
    resolved: dict[str, Variant] = {}
    chain: list[str] = []

    def resolve(name: str) -> Variant:
        if name in resolved:
            return resolved[name]
        if name in chain:
            loop = " -> ".join(chain[chain.index(name):] + [name])
            raise UsageError(f"{source}: variants.{name}: the bases loop ({loop})")
        chain.append(name)
        table = _keys(f"variants.{name}", tables[name], VARIANT_KEYS, source)
        base = table.get("base")
        if not isinstance(base, str):
            raise UsageTypeError(f"{source}: variants.{name}.base must be a variant name, got {base!r}")
        if base in tables:
            resolve(base)
        decoder = table.get("decoder", {})
        if not isinstance(decoder, dict):
            raise UsageTypeError(f"{source}: variants.{name}.decoder must be dotted keys (decoder.FIELD = value)")
        changes = {k: _change(f"variants.{name}.decoder", k, v, source) for k, v in decoder.items()}
        known = {n: (v.base, dict(v.changes)) for n, v in resolved.items()}
        try:
            root, merged, _ = resolve_variant(name, base, changes, known)
        except (UsageError, UsageTypeError) as err:
            raise type(err)(f"{source}: variants.{name}: {err}") from None
        resolved[name] = _variant(name, root, merged, "variants", root, source)
        chain.pop()
        return resolved[name]

    for name in tables:
        resolve(name)
    return {name: resolved[name] for name in tables}


def _table(raw: dict, key: str, source: str) -> dict:
    table = raw.get(key, {})
    if not isinstance(table, dict) or not all(isinstance(t, dict) for t in table.values()):
        raise UsageTypeError(f"{source}: {key} must be tables [{key}.NAME], got {table!r}")
    return table


def _checked(source: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except (UsageError, UsageTypeError) as err:
        raise type(err)(f"{source}: {err}") from None
