"""Records as strict JSON: what ``--json`` prints and what sweep record files hold.

A measurement that did not happen is NaN in the dataclasses (a failed timing, a CPU's peak memory);
Python's ``json`` would write it as ``NaN``, which strict parsers (jq, JavaScript, most languages)
refuse. Here every non-finite float becomes ``null``, and ``allow_nan=False`` makes any that slipped
through a bug rather than a file no one else can read.
"""

from __future__ import annotations

import json
import math


def finite(obj: object) -> object:
    """``obj`` with every NaN/inf float (in dicts, lists, tuples, at any depth) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def to_json(obj: object, **kwargs) -> str:
    """Strict JSON text of ``obj``: non-finite floats are ``null``; other ``json.dumps`` arguments pass through."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
