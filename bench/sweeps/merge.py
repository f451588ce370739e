"""Reading a sweep's records back: one table, whatever machine or job wrote each record."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def read_records(out: str | Path) -> list[dict]:
    """Every complete record under ``out/records`` (half-written temporary files are never read)."""
    folder = Path(out) / "records"
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def merged_frame(out: str | Path) -> pd.DataFrame:
    """One row per result (a failed configuration: one row with its error), configuration columns first."""
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
    return frame
