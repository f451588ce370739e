"""Output files are written whole or not at all, with a plain write's permissions.

The fault is injected between writing the temporary file and the rename (the rename fails): a plain
``write_text`` never renames and so fails the first test; an atomic write that forgets to clean up leaves its
temporary file; one that writes in place has already destroyed the old file. A ``mkstemp`` write without
``fchmod`` leaves 0600 files and fails the permissions test.
"""

from __future__ import annotations

import os
import stat

import pytest

from analysis.report.files import write_atomic


@pytest.fixture
def failing_rename(monkeypatch):
    """os.replace and os.rename fail after checking that the whole new content is in the source file."""
    seen = []

    def failing(src, dst, *args, **kwargs):
        seen.append((os.fspath(src), os.fspath(dst), open(src, "rb").read()))
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(os, "replace", failing)
    monkeypatch.setattr(os, "rename", failing)
    return seen


@pytest.mark.parametrize("new", ["new text " * 1000, b"\x89PNG new bytes" * 1000])
def test_a_failed_rename_leaves_the_old_file_and_no_temporary_file(tmp_path, failing_rename, new):
    target = tmp_path / "table.md"
    target.write_text("old")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(OSError, match="injected"):
        write_atomic(target, new)
    (src, dst, written), = failing_rename
    assert dst == str(target) and src != str(target)  # the rename was from another file, in the same folder
    assert os.path.dirname(src) == str(tmp_path)  # (a rename across file systems would not be atomic)
    assert written == (new.encode() if isinstance(new, str) else new)  # written whole before the rename
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # the temporary file is gone


def test_a_successful_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    write_atomic(target, "a,b\n")
    write_atomic(target, "a,b\n1,2\n")
    assert target.read_text() == "a,b\n1,2\n"
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_permissions_are_a_plain_writes(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what open(path, "w") gives under this umask: 0666 & ~umask
        atomic = write_atomic(tmp_path / "atomic.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(plain.stat().st_mode) == mode
    assert stat.S_IMODE(atomic.stat().st_mode) == mode
