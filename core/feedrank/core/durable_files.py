"""Durable file writes: flush files and directories to disk, and replace files atomically;
and the stamp by which a reader of such a file notices it was replaced (``file_stamp``).

A write is only durable once the file's data *and* the directory entry naming it have
been fsynced; a reader sees either the old file or the new one when the new one is
written to a temporary name first and renamed over the old (``replace_atomically``).

Example::

    from feedrank.core.durable_files import fsync_path, replace_atomically

    replace_atomically(state / "CURRENT", b"ckpt-00000007", temporary=state / ".CURRENT.tmp")
    fsync_path(state / "checkpoints")  # after writing the files under it
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush ``path``, a file or a directory (its entries: creations, renames), to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries to disk: the files created, renamed or removed in it."""
    fsync_path(directory)


def replace_atomically(path: Path, data: bytes, *, temporary: Path, mode: int = 0o666) -> None:
    """Make ``data`` the content of ``path``, durably and atomically.

    ``data`` is written to ``temporary`` (created with ``mode``, less the umask, or
    truncated) and fsynced, renamed over ``path`` and the directory fsynced: a crash
    leaves either the old file or the new one, never a mix. ``temporary`` must be in
    ``path``'s directory (a rename does not cross file systems). If the write or the
    rename fails, the temporary file stays behind for the caller to clean up.
    """
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
    fsync_directory(path.parent)


def file_stamp(path: Path) -> tuple[int, int]:
    """``path``'s modification time (ns) and size, (-1, -1) when it cannot be read: a
    reader that keeps the stamp of what it loaded reads the file again when it differs."""
    try:
        status = path.stat()
    except OSError:
        return (-1, -1)
    return (status.st_mtime_ns, status.st_size)
