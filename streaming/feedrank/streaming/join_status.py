"""What a running join reports, wherever it runs (mini-cluster or session cluster).

Importing this module does not import PyFlink: the session-cluster supervisor
(:mod:`feedrank.streaming.cluster_join`) and the CLI's status line use it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

JOB_NAME = "feedrank-join"
TERMINAL = frozenset({"FINISHED", "FAILED", "CANCELED", "SUSPENDED"})
"""Flink job states a job does not leave."""


@dataclass(frozen=True)
class JoinStatus:
    """What ``feedrank join`` shows and exports while the job runs."""

    job_id: str
    state: str  # Flink's JobStatus name: RUNNING, RESTARTING, FAILED, ...
    restored_from: Path | None
    last_checkpoint: int  # id of this run's newest complete checkpoint (0: none yet)
    last_checkpoint_age_s: float | None  # None before the first one


@dataclass(frozen=True)
class JoinRun:
    restored_from: Path | None
    final_state: str
    savepoint: str | None  # where the planned stop left its savepoint
