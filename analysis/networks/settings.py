"""Named settings of the embedded default: what a trained set (:func:`analysis.networks.sets.trained_set`) trains.

A setting is data: one TOML file per named setting in ``named_settings/`` (``cpu``: the CPU bench budget;
``gpu``: the families' own widths at 256 px on a CUDA GPU), read and checked by :func:`load_setting` like an
ablation spec; a file of one's own takes the same keys (``--setting my-setting.toml``). How each value was chosen,
with what it measured, is in README.md ("How the named settings were chosen"), not here.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import validation
from bench.errors import DataError, MissingFileError, UsageError, UsageTypeError
from bench.models import variant_info
from bench.models.decoder import changeable_fields

from ..datasets.synthetic import SyntheticSpec
from . import train as train_module
from .pretrain import TASKS as PRETRAIN_TASKS
from .pretrain import Pretrain
from .recipe import Schedule

SET_VERSION = 5
"""The version of the named settings' data and starting point (not of the training code, so not in the cache key:
the data spec and the backbone checkpoint's digest are). 1: objects of radius 16-26 / 40-60 px, every network from
scratch; 2 (2026-12-04): radius 20-34 / 56-110 px and one shared pretrained backbone; 3 (2026-12-05): the same
networks (the same keys), reported on a held-out test split instead of the val split that picked them; 4 (2026-12-05):
the 'cpu' set trained for 900 steps instead of 450 (from the same 450-step backbone), where every network ends on the
plateau rule (the schedule check: at 450 steps LW was 2.0 points short of its plateau); 5 (2026-12-06, protocol 1):
the version-3 scenes (an object's class by its shape and the ground around it, occlusion, clutter), a fixed schedule
(every run to its step limit), PyTorch's own init of the residual branches, lr 0.1. The front page archives the
sections of an earlier set version (analysis.report.front_page.superseded)."""
SET_DESCRIPTION = ("context-decided generated scenes with headroom (version 3), one shared pretrained backbone, a "
                   "fixed 900-step schedule, reported on a held-out test split")
DECODER_KEYS = tuple(changeable_fields())
MAX_SEEDS = 1000
"""The most seeds one call trains per variant (a count, or a list's length)."""

SETTINGS_DIR = Path(__file__).with_name("named_settings")
"""The named settings, one TOML file each (``cpu.toml``, ``gpu.toml``): data, checked like an ablation spec."""
SETTING_KEYS = ("description", "device", "seeds", "backbone", "families", "decoder", "schedule", "data", "pretrain")
DATA_KEYS = tuple(f for f in SyntheticSpec.__dataclass_fields__ if f != "version")
PRETRAIN_KEYS = tuple(Pretrain.__dataclass_fields__)


@dataclass(frozen=True)
class NetworkSetting:
    name: str
    schedule: Schedule
    seeds: int
    device: str
    decoder: dict | None = None  # DecoderSpec changes for every family (None: the families' own widths)
    backbone: str = "resnet18"
    families: tuple[str, ...] = ("rf", "rf_lw_rcu", "rf_lw")
    data: SyntheticSpec | str = field(default_factory=SyntheticSpec)  # the generated task, or a VOC-layout folder
    pretrain: Pretrain | None = None  # a backbone pretrained once and shared by every network (None: from scratch)
    description: str = ""
    backbone_weights: str | None = None  # a backbone state dict every network starts from, over ``pretrain``

    def variants(self) -> list[str]:
        return [f"{family}:{self.backbone}" for family in self.families]


def load_setting(path: str | Path) -> NetworkSetting:
    """Read and check a setting file (TOML, the keys of ``named_settings/cpu.toml``); its name is the file's stem.
    Every problem names the file and the key, with the valid choices."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"setting file not found: {path} (named settings: "
                               f"{', '.join(p.stem for p in sorted(SETTINGS_DIR.glob('*.toml')))})")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid TOML: {err}") from None
    try:
        return parse_setting(raw, path.stem)
    except (UsageError, UsageTypeError) as err:
        raise type(err)(f"{path}: {err}") from None


def parse_setting(raw: dict, name: str) -> NetworkSetting:
    """A :class:`NetworkSetting` from a setting file's tables, every key and value checked (nothing is read or
    trained)."""
    from bench.models.decoder import check_decoder_change

    validation.table("", raw, SETTING_KEYS)
    device = validation.device("device", raw.get("device", "cpu"))
    seeds = validation.integer("seeds", raw.get("seeds", 1), minimum=1, maximum=MAX_SEEDS)
    backbone = raw.get("backbone", "resnet18")
    families = raw.get("families", ["rf", "rf_lw_rcu", "rf_lw"])
    if not isinstance(families, list) or not families or not all(isinstance(f, str) for f in families):
        raise UsageTypeError(f"families must be a non-empty list of family names, got {families!r}")
    for family in families:
        variant_info(f"{family}:{backbone}")  # an unknown family or backbone names the valid ones
    decoder = {k: check_decoder_change(k, v) for k, v in validation.table("decoder", raw.get("decoder", {}),
                                                                         DECODER_KEYS).items()}
    fields = validation.table("schedule", raw.get("schedule", {}), tuple(Schedule.__dataclass_fields__))
    try:
        schedule = Schedule(**fields)
        schedule.validate()
    except (UsageError, UsageTypeError) as err:
        raise type(err)(f"schedule: {err}") from None
    data = _data_spec(validation.table("data", raw.get("data", {}), DATA_KEYS))
    pretrain = None
    if "pretrain" in raw:
        table = validation.table("pretrain", raw["pretrain"], PRETRAIN_KEYS)
        task = validation.choice("pretrain.task", table.get("task", "segmentation"), PRETRAIN_TASKS)
        if task == "classification" and ("decoder" in table or "zero_init_residual" in table):
            raise UsageError("pretrain.decoder and pretrain.zero_init_residual belong to task = \"segmentation\"; a "
                             "classification pretraining has no decoder")
        changes = {k: check_decoder_change(k, v, where="pretrain.decoder")
                   for k, v in validation.table("pretrain.decoder", table.get("decoder", {}), DECODER_KEYS).items()}
        seed = validation.integer("pretrain.seed", table.get("seed", 10_000), minimum=0,
                                  maximum=train_module.MAX_SEED)
        zero_init = validation.boolean("pretrain.zero_init_residual", table.get("zero_init_residual", True))
        steps = table.get("max_steps")
        if steps is not None:
            steps = validation.integer("pretrain.max_steps", steps, minimum=1)
        pretrain = Pretrain(task=task, decoder=changes if task == "segmentation" else {}, seed=seed,
                            zero_init_residual=zero_init, max_steps=steps)
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise UsageTypeError(f"description must be a string, got {description!r}")
    return NetworkSetting(name, schedule, seeds, device, decoder or None, backbone, tuple(families), data, pretrain,
                          description)


def _data_spec(table: dict) -> SyntheticSpec:
    """The generated data's spec from a setting's [data] table (pixel ranges as [low, high] pairs, shares and the
    noise as numbers)."""
    values = {}
    for key, value in table.items():
        if isinstance(SyntheticSpec.__dataclass_fields__[key].default, tuple):
            if not (isinstance(value, list) and len(value) == 2):
                raise UsageTypeError(f"data.{key} must be a pair [low, high] of pixels, got {value!r}")
            low = validation.integer(f"data.{key}[0]", value[0], minimum=1)
            high = validation.integer(f"data.{key}[1]", value[1], minimum=low)
            values[key] = (low, high)
        elif isinstance(SyntheticSpec.__dataclass_fields__[key].default, float):
            values[key] = validation.number(f"data.{key}", value, minimum=0, maximum=None if key == "noise" else 1)
        else:
            minimum = {"n_train": 1, "n_val": 1, "size": validation.MIN_SIDE, "max_objects": 1}.get(key, 0)
            values[key] = validation.integer(f"data.{key}", value, minimum=minimum)
    return SyntheticSpec(**values)


SETTINGS: dict[str, NetworkSetting] = {p.stem: load_setting(p) for p in sorted(SETTINGS_DIR.glob("*.toml"))}
"""The named settings, read from ``named_settings/*.toml`` (how each was chosen: README.md)."""
CPU_DECODER = SETTINGS["cpu"].decoder
"""The CPU narrowing of every family's decoder (the probes and the ERF section use the same networks)."""
DATA = SETTINGS["cpu"].data


def network_setting(setting: str | Path | NetworkSetting) -> NetworkSetting:
    """A named setting (``cpu``, ``gpu``), a setting file (``*.toml``) or a NetworkSetting as it is."""
    if isinstance(setting, NetworkSetting):
        return setting
    if isinstance(setting, Path) or (isinstance(setting, str) and (setting.lower().endswith(".toml") or
                                                                    Path(setting).is_file())):
        return load_setting(setting)  # a setting file by its path, whatever its suffix's case (or none)
    if not isinstance(setting, str):
        raise UsageTypeError(f"setting must be a name ({', '.join(SETTINGS)}), a setting file (.toml) or a "
                             f"NetworkSetting, got {setting!r}")
    return SETTINGS[validation.choice("setting", setting, SETTINGS)]


def variant_list(variants: str | Sequence[str], say: Callable[[str], None] | None = None) -> list[str]:
    """The variants asked for (a caller that has none takes its setting's, :meth:`NetworkSetting.variants`, which
    need no check): a string is one name (never its letters), a list must name at least one, a name given twice is
    trained once (with a note); every name checked."""
    if isinstance(variants, str):
        names = [variants]
    elif isinstance(variants, (list, tuple)):
        names = list(variants)
    else:
        raise UsageTypeError(f"variants must be a variant name or a list of them, got {variants!r}")
    if not names:
        raise UsageError("variants is an empty list; name at least one variant (or None for the setting's)")
    for name in names:
        variant_info(name)
    unique = list(dict.fromkeys(names))
    if len(unique) < len(names) and say:
        twice = sorted({n for n in names if names.count(n) > 1})
        say(f"  note: {', '.join(twice)} named more than once; each is trained once")
    return unique


def seed_list(seeds: int | Sequence[int], say: Callable[[str], None] | None = None) -> list[int]:
    """The seeds asked for (a caller that has none takes its setting's count): a count N (seeds 0..N-1,
    1 <= N <= MAX_SEEDS) or a non-empty list of seeds; a seed given twice is trained once (with a note)."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return list(range(validation.integer("seeds", seeds, minimum=1, maximum=MAX_SEEDS)))
    if not isinstance(seeds, (list, tuple, range)):
        raise UsageTypeError(f"seeds must be a count (an integer >= 1) or a list of seeds, got {seeds!r}")
    chosen = [validation.integer("seed", s, minimum=0, maximum=train_module.MAX_SEED) for s in seeds]
    if not chosen:
        raise UsageError("seeds is an empty list; give a count >= 1 or at least one seed")
    unique = list(dict.fromkeys(chosen))
    if len(unique) > MAX_SEEDS:
        raise UsageError(f"{len(unique)} seeds asked for; at most {MAX_SEEDS} per call")
    if len(unique) < len(chosen) and say:
        twice = sorted({s for s in chosen if chosen.count(s) > 1})
        say(f"  note: seed(s) {', '.join(map(str, twice))} given more than once; each is trained once")
    return unique
