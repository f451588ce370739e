"""Writing files whole or not at all, with the permissions a plain ``open(path, "w")`` gives.

Sweep records (bench) and reports (analysis) share this writer: the data goes to a temporary file in the
same folder, which is renamed over the target, so a crash or an interrupt never leaves half a file. The
file gets 0666 minus the umask (0644 under the usual umask 022), not ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all, with a plain write's permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; records and reports are meant to be read
        with os.fdopen(fd, mode) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
