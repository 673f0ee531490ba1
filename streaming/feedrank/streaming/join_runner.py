"""Run the join on the embedded mini-cluster until told to stop (``feedrank join``).

Checkpoints are retained (also on cancellation) under ``paths.flink_checkpoint_dir``;
a restart resumes from the newest complete checkpoint or savepoint, so a crash loses
and duplicates nothing (the sinks are transactional and commit on checkpoints, and
the restored sinks abort what the crashed run left open under the same transactional
id prefixes). A planned stop takes a savepoint first.

The mini-cluster's JVM is a child of this interpreter and exits with it; the join's
Python operators run embedded in that JVM (``join_job.run_python_operators_in_threads``)
and the reward intake's pandas UDF in PyFlink's Beam Python worker, so the calling
process *is* the job: killing it kills the job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyflink.java_gateway import get_gateway

from feedrank.core.settings import Settings
from feedrank.streaming.flink_configuration import retained_snapshot_configuration
from feedrank.streaming.flink_environment import (
    FlinkJobOptions,
    create_stream_environment,
    planning_on_one_gateway_thread,
)
from feedrank.streaming.join_jar import require_join_jar
from feedrank.streaming.join_job import JoinJobConfig, JoinTopics, build_join_job
from feedrank.streaming.join_logic import JoinConfig
from feedrank.streaming.join_status import JOB_NAME, TERMINAL, JoinRun, JoinStatus
from feedrank.streaming.recovery import completed_checkpoints, newest_snapshot

GROUP_ID = "feedrank-join"
POLL_INTERVAL_S = 2.0


def job_config(settings: Settings) -> JoinJobConfig:
    topics = settings.topics
    join = settings.join
    return JoinJobConfig(
        bootstrap=settings.kafka.access,
        topics=JoinTopics(
            topics.decisions, topics.rewards, topics.examples, topics.dlq, topics.metrics
        ),
        join=JoinConfig(
            reward_window_ms=settings.time.reward_window_ms,
            max_skew_ms=int(join.max_skew_s * 1000),
            dangling_wait_ms=int(join.dangling_wait_s * 1000),
            tombstone_ms=int(join.tombstone_hours * 3_600_000),
            # The canary analysis judges a split from settle_s after it began and
            # compares engagements this prompt: all of them from that split's impressions.
            prompt_horizon_ms=int(settings.deploy.settle_s * 1000),
            # Segment aggregates for the canary analysis's pre-period, when it has one.
            segment_salt=settings.deploy.salt if settings.deploy.pre_period_s > 0 else None,
        ),
        group_id=GROUP_ID,
        # Stable across restarts: on recovery Flink aborts the transactions a crashed run
        # left open under this prefix, so read-committed readers are never held up.
        transactional_id_prefix=f"{GROUP_ID}-{topics.examples}",
        out_of_orderness_ms=int(join.out_of_orderness_s * 1000),
        idleness_ms=int(join.idleness_s * 1000),
        aggregate_window_minutes=join.aggregate_window_minutes,
        top_posts=join.top_posts,
        java_engine_jar=require_join_jar(settings) if join.engine == "java" else None,
    )


def snapshot_configuration(settings: Settings, restore: bool) -> tuple[dict[str, str], Path | None]:
    """Retained checkpoints, the savepoint directory and, when asked, where to restore from."""
    values = retained_snapshot_configuration(settings)
    snapshot = newest_snapshot(settings) if restore else None
    if snapshot is not None:
        values["execution.state-recovery.path"] = snapshot.as_uri()
    return values, snapshot


class RunningJoin:
    """The submitted join: its status, and a planned stop with a savepoint."""

    def __init__(self, settings: Settings, client: Any, restored_from: Path | None) -> None:
        self.settings = settings
        self.client = client
        self.job_id = str(client.get_job_id())
        self.restored_from = restored_from

    def status(self) -> JoinStatus:
        state = str(self.client.get_job_status().result()).rsplit(".", 1)[-1]
        done = completed_checkpoints(self.settings.paths.flink_checkpoint_dir / self.job_id)
        if not done:
            return JoinStatus(self.job_id, state, self.restored_from, 0, None)
        newest = done[-1]
        checkpoint_id = int(newest.parent.name.removeprefix("chk-"))
        age = time.time() - newest.stat().st_mtime
        return JoinStatus(self.job_id, state, self.restored_from, checkpoint_id, age)

    def stop_with_savepoint(self) -> str:
        """Stop the job after a savepoint; returns the savepoint's path.

        PyFlink 2.2's ``JobClient.stop_with_savepoint`` calls a Java signature that no
        longer exists (the format type was added), hence the direct call.
        """
        gateway = get_gateway()
        canonical = gateway.jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
        directory = self.settings.paths.flink_savepoint_dir.resolve().as_uri()
        java_client = self.client._j_job_client
        return str(java_client.stopWithSavepoint(False, directory, canonical).get())

    def cancel(self) -> None:
        self.client.cancel().result()


def start_join(
    settings: Settings, *, restore: bool = True, extra: dict[str, str] | None = None
) -> RunningJoin:
    """Submit the unbounded join to the mini-cluster (restored from the newest snapshot)."""
    values, snapshot = snapshot_configuration(settings, restore)
    with planning_on_one_gateway_thread():
        stream_env, table_env = create_stream_environment(
            settings, FlinkJobOptions.from_settings(settings), extra={**values, **(extra or {})}
        )
        build_join_job(stream_env, table_env, job_config(settings))
        client = stream_env.execute_async(JOB_NAME)
    return RunningJoin(settings, client, snapshot)


def run_join(
    settings: Settings,
    stop: threading.Event,
    *,
    on_status: Callable[[JoinStatus], None] | None = None,
    restore: bool = True,
    poll_interval_s: float = POLL_INTERVAL_S,
) -> JoinRun:
    """Run the join until ``stop`` is set (then stop it with a savepoint) or it ends."""
    running = start_join(settings, restore=restore)
    state = "CREATED"
    while not stop.wait(poll_interval_s):
        status = running.status()
        state = status.state
        if on_status is not None:
            on_status(status)
        if state in TERMINAL:
            return JoinRun(running.restored_from, state, None)
    try:
        savepoint: str | None = running.stop_with_savepoint()
        state = "STOPPED_WITH_SAVEPOINT"
    except Exception:  # noqa: BLE001 - a job that cannot take a savepoint is cancelled
        savepoint = None
        running.cancel()
        state = "CANCELED"
    return JoinRun(running.restored_from, state, savepoint)
