"""Reading a sweep's records back: one table, whatever machine or job wrote each record."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .spec import config_id

RECORD_KEYS = {"id": str, "config": dict, "rows": list, "error": str}
"""What every record file holds (jobs.run_configs writes them), with its JSON type."""


def read_record(path: Path) -> dict:
    """One record file, checked: an empty, truncated or hand-edited file is a DataError naming it."""
    redo = f"delete {path} and rerun the sweep to measure that configuration again"
    text = path.read_text(errors="replace")
    if not text.strip():
        raise DataError(f"sweep record {path} is empty; {redo}")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"sweep record {path} is not valid JSON ({err}); {redo}") from None
    if not isinstance(record, dict):
        raise DataError(f"sweep record {path} holds a JSON {type(record).__name__}, not a record object; {redo}")
    missing = sorted(k for k in RECORD_KEYS if k not in record)
    wrong = sorted(k for k, kind in RECORD_KEYS.items() if k in record and not isinstance(record[k], kind))
    if missing or wrong:
        problem = (f"lacks key(s) {missing}" if missing else "") + (" and " if missing and wrong else "") + (
            f"has key(s) of the wrong type {wrong}" if wrong else "")
        raise DataError(f"sweep record {path} {problem} (a record holds {', '.join(RECORD_KEYS)}); {redo}")
    if any(not isinstance(row, dict) for row in record["rows"]):
        raise DataError(f"sweep record {path}: every entry of 'rows' must be an object; {redo}")
    if record["id"] != path.stem or config_id(record["config"]) != path.stem:
        # a renamed, copied or edited record would be counted for a configuration it did not measure
        raise DataError(f"sweep record {path} does not hold the configuration its name says (id "
                        f"{record['id']!r}, configuration hash {config_id(record['config'])!r}); {redo}")
    return record


def read_records(out: str | Path) -> list[dict]:
    """Every complete record under ``out/records`` (half-written temporary files are never read)."""
    folder = Path(out) / "records"
    if not folder.is_dir():
        return []
    return [read_record(p) for p in sorted(folder.glob("*.json"))]


def merged_frame(out: str | Path) -> pd.DataFrame:
    """One row per result (a failed configuration: one row with its error), configuration columns first.
    A value a record holds as null (a measurement that did not happen) is NaN here."""
    rows = []
    for record in read_records(out):
        config = {k: v for k, v in record["config"].items() if k != "timing"}
        meta = {"record": record["id"], "host": record.get("host", ""), "seconds": record.get("seconds")}
        if record["rows"]:
            for row in record["rows"]:
                rows.append({**config, **row, **meta, "error": row.get("error", "") or ""})
        else:
            rows.append({**config, **meta, "error": record["error"]})
    frame = pd.DataFrame(rows)
    if len(frame):
        keys = [k for k in ("kind", "variant", "base", "other", "height", "width", "batch", "dtype", "mode")
                if k in frame]
        frame = frame.sort_values(keys, kind="stable", na_position="last").reset_index(drop=True)
        for column in frame.columns[frame.isna().all()]:  # all null (e.g. CPU peak memory): numbers, not objects
            frame[column] = frame[column].astype(float)
    return frame
