"""Strict JSON for every record and ``--json`` output: a missing value is ``null``, never ``NaN``.

Python's json writes NaN and Infinity, which strict parsers (jq, JavaScript, most languages) reject.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, +-inf) replaced by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def to_json(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that never writes NaN or Infinity (they become null); other kwargs as json.dumps."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
