"""Durable writes: fsync of files and directories, atomic replacement that survives a crash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from feedrank.core.durable_files import fsync_directory, fsync_path, replace_atomically


def test_files_and_directories_can_be_flushed(tmp_path: Path) -> None:
    file = tmp_path / "data.bin"
    file.write_bytes(b"payload")
    fsync_path(file)
    fsync_path(tmp_path)
    fsync_directory(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_path(tmp_path / "missing")


def test_replace_writes_the_data_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")
    replace_atomically(path, b"new" * 100_000, temporary=tmp_path / ".state.tmp", mode=0o600)
    assert path.read_bytes() == b"new" * 100_000
    assert os.stat(path).st_mode & 0o777 == 0o600 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_crash_before_the_rename_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")

    def crash(source: object, target: object) -> None:
        raise OSError("power cut before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        replace_atomically(path, b"new", temporary=tmp_path / ".state.tmp")
    assert path.read_bytes() == b"old"
    assert (tmp_path / ".state.tmp").read_bytes() == b"new", "left for the caller"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
