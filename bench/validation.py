"""Argument checks shared by the Python API and the command lines.

Every check raises :class:`~bench.errors.UsageError` (a bad value; a ``ValueError``) or
:class:`~bench.errors.UsageTypeError` (a value of the wrong kind; a ``TypeError``) whose message names
the argument, the value and what is accepted, in one line. The CLIs call the same functions with the
flag as the argument's name (``--batch``), so both say the same words, and print the exception as
``error: <message>`` with exit status 2 before any work starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import UsageError, UsageTypeError

MIN_SIDE = 32
"""The smallest input side: every backbone has a stride-32 stage."""
MAX_SIDE = 32768
"""The largest input side: far past any camera (a 32768x32768 RGB fp32 image is 12 GiB), and inside
what shape-only counting handles exactly."""
MAX_BATCH = 65536
MAX_MODEL_CLASSES = 65536
MAX_RUNS = 1_000_000
"""Timed or warm-up passes of one configuration: CUDA timing allocates two events per pass up front."""
MAX_THREADS = 4096

_SIZE = re.compile(r"([0-9]+)[xX]([0-9]+)")
_DEVICE = re.compile(r"cpu|cuda(:[0-9]{1,4})?")


def integer(name: str, value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int within [minimum, maximum]; bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageTypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{name} must be an integer <= {maximum}, got {value}")
    return value


def number(name: str, value: object, minimum: float | None = None, maximum: float | None = None) -> float:
    """A finite real number within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageTypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise UsageError(f"{name} must be a finite number{bound}, got {value!r}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{name} must be a number <= {maximum:g}, got {value!r}")
    return float(value)


def positive(name: str, value: object, zero: str) -> float:
    """A finite number > 0 (``zero``: what 0 would mean, for the message)."""
    value = number(name, value)
    if value <= 0:
        raise UsageError(f"{name} must be a finite number > 0 ({value:g} means {zero}), got {value!r}")
    return value


def minutes(name: str, value: object) -> float:
    """A finite number of minutes > 0: one message for 0, -1, nan and inf alike."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not (math.isfinite(value) and value > 0):
        raise UsageError(f"{name} must be a finite number of minutes > 0, got {value!r}")
    return number(name, value)  # the type check (a UsageTypeError for a string)


def table(name: str, value: object, valid: Sequence[str]) -> dict:
    """A table (a TOML table, a dict) whose keys are all in ``valid``: an unknown key names the nearest valid one and
    lists them all."""
    if not isinstance(value, dict):
        raise UsageTypeError(f"{name} must be a table, got {value!r}")
    for key in value:
        if key not in valid:
            near = nearest(key, valid) if isinstance(key, str) else None
            hint = f" (did you mean {near!r}?)" if near else ""
            raise UsageError(f"unknown key {name + '.' if name else ''}{key}{hint}; valid: {', '.join(valid)}")
    return value


def boolean(name: str, value: object) -> bool:
    """``value`` if it is a real bool (``"yes"``, ``1`` and ``"false"`` are refused: ``bool("false")`` is True)."""
    if not isinstance(value, bool):
        raise UsageTypeError(f"{name} must be true or false, got {value!r} ({type(value).__name__})")
    return value


def device(name: str, value: object) -> str:
    """A device string rfbench runs on: ``cpu``, ``cuda`` or ``cuda:N`` (whether it exists is checked where it
    is used: a sweep planned here may run on another machine)."""
    if not isinstance(value, str) or not _DEVICE.fullmatch(value):
        raise UsageError(f"unknown {name} {value!r}; valid: cpu, cuda, cuda:N")
    return value


def available_device(name: str, value: object) -> str:
    """:func:`device`, and one that this machine has (a CUDA device needs ``torch.cuda.is_available()``)."""
    value = device(name, value)
    if value.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"{name} {value!r} requested but torch.cuda.is_available() is False on this machine; "
                             "valid here: cpu")
    return value


def names(name: str, value: object) -> list[str]:
    """A list of names (variants, levels, taps): one string is one name, never its letters; an empty list,
    a non-string entry or something that is not a list is refused."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (bytes, dict)) or not isinstance(value, Iterable):
        raise UsageTypeError(f"{name} must be a name or a list of names, got {value!r} ({type(value).__name__})")
    out = list(value)
    if not out:
        raise UsageError(f"{name} must hold at least one name, got an empty list")
    for v in out:
        if not isinstance(v, str):
            raise UsageTypeError(f"{name} must hold names (strings), got {v!r} ({type(v).__name__})")
    return out


def choice(name: str, value: object, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``; else the error lists them (and the nearest one)."""
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        near = nearest(value, choices) if isinstance(value, str) else None
        hint = f" (did you mean {near!r}?)" if near else ""
        raise UsageError(f"unknown {name} {value!r}{hint}; valid: {', '.join(choices)}")
    return value


def writable_folder(name: str, path: str | Path, make: bool = True) -> Path:
    """A folder a command will write into, tried with a small file before any work: a folder that cannot be written
    (no permission, a read-only file system, a file in the way) is the user's input, one line naming it, not a
    traceback after the work. ``make``: create it now where it is missing (else its nearest existing parent is the
    one tried, and nothing is made)."""
    import os
    import tempfile

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{name} {folder} is an existing file, not a folder")
    try:
        if make:
            folder.mkdir(parents=True, exist_ok=True)
        tried = folder
        while not tried.exists():
            tried = tried.parent
        if not tried.is_dir():
            raise NotADirectoryError(f"{tried} is a file")
        fd, probe = tempfile.mkstemp(dir=tried, prefix=".rfbench-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UsageError(f"cannot write to {name} {folder}: {err.strerror or err}") from None
    return folder


def nearest(value: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to a misspelt ``value`` (difflib), or None."""
    import difflib

    found = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def image_size(name: str, height: object, width: object) -> tuple[int, int]:
    """An input size the backbones accept: both sides integers >= 32."""
    h = integer(f"{name} height", height)
    w = integer(f"{name} width", width)
    if h < MIN_SIDE or w < MIN_SIDE:
        raise UsageError(f"{name} must be at least {MIN_SIDE}x{MIN_SIDE} (the backbones' stride), got {h}x{w}")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise UsageError(f"{name} must be at most {MAX_SIDE}x{MAX_SIDE}, got {h}x{w}")
    return h, w


def parse_size(text: str, name: str = "--size") -> tuple[int, int]:
    """``HxW`` (e.g. ``512x512``, ``468x625``; ASCII digits) -> (height, width), both >= 32."""
    match = _SIZE.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise UsageError(f"malformed size {text!r} for {name}: expected HEIGHTxWIDTH with ASCII digits, e.g. 512x512")
    return image_size(name, int(match[1]), int(match[2]))


def sizes(name: str, values: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """A non-empty list of (height, width) pairs, each an input size the backbones accept."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise UsageTypeError(f"{name} must be a list of (height, width) pairs such as [(512, 512)], got {values!r}")
    values = list(values)
    if len(values) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise UsageTypeError(f"{name} must be a list of (height, width) pairs, got one pair {tuple(values)!r}; "
                             f"write [{tuple(values)!r}]")
    if not values:
        raise UsageError(f"{name} must hold at least one (height, width)")
    out = []
    for v in values:
        if not isinstance(v, (tuple, list)) or len(v) != 2:
            raise UsageTypeError(f"{name} must be (height, width) pairs, got {v!r}")
        out.append(image_size(name, *v))
    return out
