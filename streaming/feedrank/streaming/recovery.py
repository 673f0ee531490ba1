"""Where a restarted join resumes from: the newest retained checkpoint or savepoint."""

from __future__ import annotations

from pathlib import Path

METADATA = "_metadata"


def latest_snapshot(checkpoint_dir: Path, savepoint_dir: Path) -> Path | None:
    """The most recent complete snapshot (a directory holding ``_metadata``), if any.

    Checkpoints live in ``<checkpoint_dir>/<job id>/chk-<n>/``, savepoints in
    ``<savepoint_dir>/savepoint-*/``; only complete ones have their metadata file.
    """
    candidates = [
        *checkpoint_dir.glob(f"*/chk-*/{METADATA}"),
        *savepoint_dir.glob(f"savepoint-*/{METADATA}"),
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda path: path.stat().st_mtime).parent


def completed_checkpoints(job_checkpoint_dir: Path) -> list[Path]:
    """The complete checkpoints one job has retained, oldest first (their metadata files)."""
    found = job_checkpoint_dir.glob(f"chk-*/{METADATA}")
    return sorted(found, key=lambda path: int(path.parent.name.removeprefix("chk-")))
