"""What one sweep job does: measure its configurations and write one record file per configuration.

A record is written atomically (a temporary file, then a rename) under ``DIR/records/<id>.json`` and
holds the configuration, its result (or its error) and where it ran. A configuration whose record
exists is skipped, so a job killed half-way loses only the configuration it was measuring.
"""

from __future__ import annotations

import socket
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from ..environment import environment
from ..files import write_atomic
from ..records import to_json
from .spec import config_id, timing_settings


def record_path(out: str | Path, config: dict) -> Path:
    return Path(out) / "records" / f"{config_id(config)}.json"


def write_record(path: Path, record: dict) -> None:
    """Whole or not at all, 0666 minus the umask, strict JSON (a missing value is null)."""
    write_atomic(path, to_json(record, indent=1, default=str))


def measure(config: dict) -> list[dict]:
    """The result rows of one configuration (flat dicts), by kind."""
    kind = config["kind"]
    if kind == "complexity":
        from ..complexity import complexity

        (r,) = complexity([config["variant"]], [(config["height"], config["width"])], batch=config["batch"],
                          num_classes=config["num_classes"])
        return [asdict(r)]
    settings = timing_settings(config)
    if kind == "time":
        from ..timing import time_variants

        return [r.flat() for r in time_variants([config["variant"]], settings, progress=None)]
    if kind == "speedup":
        from ..speedup import paired_speedup

        return [paired_speedup(config["base"], config["other"], settings).flat()]
    if kind == "profile":
        from ..profile import profile_variants

        return [r.flat() for r in profile_variants([config["variant"]], settings, progress=None)]
    raise ValueError(f"unknown measurement kind {kind!r}")


def subjects(configs: list[dict]) -> list[list[dict]]:
    """Configurations grouped by what they measure (kind and variant or pair), in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for c in configs:
        groups.setdefault((c["kind"], c.get("variant"), c.get("base"), c.get("other")), []).append(c)
    return list(groups.values())


def _complexity_rows(group: list[dict]) -> dict[str, list[dict]]:
    """One variant's complexity configurations counted in one call (one model build for all sizes);
    {record id: rows}. Empty when the call fails: each configuration is then measured, and fails, alone."""
    from ..complexity import complexity

    out: dict[str, list[dict]] = {}
    by_setting: dict[tuple, list[dict]] = {}
    for c in group:
        by_setting.setdefault((c["batch"], c["num_classes"]), []).append(c)
    for (batch, num_classes), same in by_setting.items():
        try:
            records = complexity([same[0]["variant"]], [(c["height"], c["width"]) for c in same], batch, num_classes)
        except Exception:
            continue
        out.update({config_id(c): [asdict(r)] for c, r in zip(same, records, strict=True)})
    return out


def register_names(configs: list[dict]) -> None:
    """Register the variants of one's own a configuration uses (ablations store them in ``registered``), so a
    worker process knows every name its parent knew."""
    from ..models import register_again

    for config in configs:
        for entry in config.get("registered", []):
            register_again(entry)


def run_configs(configs: list[dict], out: str) -> dict[str, int]:
    """Measure every configuration without a record, one subject at a time; returns counts of done, skipped,
    failed. Records are written as each subject finishes, so a killed job loses at most one subject's work."""
    import torch

    counts = {"done": 0, "skipped": 0, "failed": 0}
    env = None
    register_names(configs)
    if all(c["kind"] == "complexity" for c in configs):
        torch.set_num_threads(1)  # shape-only counting is single-threaded Python: idle threads only contend
    for group in subjects(configs):
        todo = [c for c in group if not record_path(out, c).exists()]
        counts["skipped"] += len(group) - len(todo)
        counted = _complexity_rows(todo) if todo and todo[0]["kind"] == "complexity" else {}
        for config in todo:
            path = record_path(out, config)
            env = env or environment(config.get("device", "cpu"))
            start = time.perf_counter()
            record = {"id": config_id(config), "config": config, "host": socket.gethostname(), "environment": env}
            try:
                record["rows"] = counted.get(record["id"]) or measure(config)
                errors = [r.get("error") for r in record["rows"] if r.get("error")]
                record["error"] = errors[0] if errors else ""
            except Exception as err:  # recorded; the job goes on with the next configuration
                record["rows"] = []
                record["error"] = f"{type(err).__name__}: {err}"
                record["traceback"] = traceback.format_exc(limit=5)
            record["seconds"] = time.perf_counter() - start
            write_record(path, record)
            counts["failed" if record["error"] else "done"] += 1
    return counts
