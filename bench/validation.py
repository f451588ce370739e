"""Argument checks shared by the Python API and the command lines.

Every check raises ``ValueError`` (a bad value) or ``TypeError`` (a value of the wrong kind) whose
message names the argument, the value and what is accepted, in one line. The CLIs call the same
functions with the flag as the argument's name (``--batch``), so both say the same words, and turn
the exception into ``error: <message>`` with exit status 2 before any work starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

MIN_SIDE = 32
"""The smallest input side: every backbone has a stride-32 stage."""

_SIZE = re.compile(r"([0-9]+)[xX]([0-9]+)")


def integer(name: str, value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int within [minimum, maximum]; bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be an integer <= {maximum}, got {value}")
    return value


def number(name: str, value: object, minimum: float | None = None) -> float:
    """A finite real number >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return float(value)


def choice(name: str, value: object, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(choices)}")
    return value  # type: ignore[return-value]


def image_size(name: str, height: object, width: object) -> tuple[int, int]:
    """An input size the backbones accept: both sides integers >= 32."""
    h = integer(f"{name} height", height)
    w = integer(f"{name} width", width)
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ValueError(f"{name} must be at least {MIN_SIDE}x{MIN_SIDE} (the backbones' stride), got {h}x{w}")
    return h, w


def parse_size(text: str, name: str = "--size") -> tuple[int, int]:
    """``HxW`` (e.g. ``512x512``, ``468x625``; ASCII digits) -> (height, width), both >= 32."""
    match = _SIZE.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"malformed size {text!r} for {name}: expected HEIGHTxWIDTH with ASCII digits, e.g. 512x512")
    return image_size(name, int(match[1]), int(match[2]))


def sizes(name: str, values: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    values = list(values)
    if not values:
        raise ValueError(f"{name} must hold at least one (height, width)")
    out = []
    for v in values:
        if not isinstance(v, (tuple, list)) or len(v) != 2:
            raise TypeError(f"{name} must be (height, width) pairs, got {v!r}")
        out.append(image_size(name, *v))
    return out
