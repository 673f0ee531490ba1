from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from feedrank.core.settings import load_settings
from feedrank.streaming.join_jar import MissingJoinJarError, join_jar_path
from feedrank.streaming.join_runner import job_config
from feedrank.streaming.recovery import latest_snapshot


def test_job_config_follows_the_settings() -> None:
    settings = load_settings(
        time={"reward_window": 30},
        join={"max_skew_s": 2, "idleness_s": 3, "engine": "python"},
        topics={"examples": "ex"},
    )
    config = job_config(settings)
    assert config.join.reward_window_ms == 30_000
    assert config.join.max_skew_ms == 2_000
    assert config.idleness_ms == 3_000
    assert config.topics.examples == "ex"
    # Stable across restarts, so a recovered job aborts what a crashed one left open.
    assert job_config(settings).transactional_id_prefix == config.transactional_id_prefix


def test_job_config_names_the_engine_and_its_jar(tmp_path: Path) -> None:
    python = load_settings(join={"engine": "python"}, paths={"jar_cache": tmp_path})
    assert job_config(python).java_engine_jar is None
    java = load_settings(join={"engine": "java"}, paths={"jar_cache": tmp_path})
    with pytest.raises(MissingJoinJarError, match="feedrank setup"):
        job_config(java)
    jar = join_jar_path(java)
    jar.parent.mkdir(parents=True)
    jar.write_bytes(b"PK")
    assert job_config(java).java_engine_jar == jar


def test_latest_snapshot_is_the_newest_complete_one(tmp_path: Path) -> None:
    checkpoints, savepoints = tmp_path / "chk", tmp_path / "sp"
    assert latest_snapshot(checkpoints, savepoints) is None
    older = checkpoints / "job-a" / "chk-3"
    newer = savepoints / "savepoint-1"
    incomplete = checkpoints / "job-b" / "chk-9"
    for directory in (older, newer, incomplete):
        directory.mkdir(parents=True)
    (older / "_metadata").write_text("x")
    (newer / "_metadata").write_text("x")
    now = time.time()
    os.utime(older / "_metadata", (now - 60, now - 60))
    assert latest_snapshot(checkpoints, savepoints) == newer


def test_a_snapshot_older_than_asked_for_does_not_count(tmp_path: Path) -> None:
    """``--fresh`` on a session cluster: a resubmission ignores the snapshots from before."""
    checkpoints, savepoints = tmp_path / "chk", tmp_path / "sp"
    old = checkpoints / "job-a" / "chk-3"
    old.mkdir(parents=True)
    (old / "_metadata").write_text("x")
    now = time.time()
    os.utime(old / "_metadata", (now - 60, now - 60))
    assert latest_snapshot(checkpoints, savepoints, newer_than=now - 120) == old
    assert latest_snapshot(checkpoints, savepoints, newer_than=now - 30) is None
