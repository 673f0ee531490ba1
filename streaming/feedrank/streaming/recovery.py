"""Where a restarted join resumes from: the newest retained checkpoint or savepoint."""

from __future__ import annotations

from pathlib import Path

from feedrank.core.settings import Settings

METADATA = "_metadata"


def snapshot_directories(settings: Settings) -> tuple[Path, Path]:
    """Where the join's checkpoints and savepoints are retained (absolute paths)."""
    paths = settings.paths
    return paths.flink_checkpoint_dir.resolve(), paths.flink_savepoint_dir.resolve()


def newest_snapshot(settings: Settings, *, newer_than: float | None = None) -> Path | None:
    """The snapshot a restarted join resumes from (see :func:`latest_snapshot`)."""
    return latest_snapshot(*snapshot_directories(settings), newer_than=newer_than)


def latest_snapshot(
    checkpoint_dir: Path, savepoint_dir: Path, *, newer_than: float | None = None
) -> Path | None:
    """The most recent complete snapshot (a directory holding ``_metadata``), if any;
    with ``newer_than`` (Unix time), only one completed after it.

    Checkpoints live in ``<checkpoint_dir>/<job id>/chk-<n>/``, savepoints in
    ``<savepoint_dir>/savepoint-*/``; only complete ones have their metadata file.
    """
    candidates = [
        (path.stat().st_mtime, path)
        for path in (
            *checkpoint_dir.glob(f"*/chk-*/{METADATA}"),
            *savepoint_dir.glob(f"savepoint-*/{METADATA}"),
        )
    ]
    if newer_than is not None:
        candidates = [(mtime, path) for mtime, path in candidates if mtime >= newer_than]
    if not candidates:
        return None
    return max(candidates)[1].parent


def completed_checkpoints(job_checkpoint_dir: Path) -> list[Path]:
    """The complete checkpoints one job has retained, oldest first (their metadata files)."""
    found = job_checkpoint_dir.glob(f"chk-*/{METADATA}")
    return sorted(found, key=lambda path: int(path.parent.name.removeprefix("chk-")))
