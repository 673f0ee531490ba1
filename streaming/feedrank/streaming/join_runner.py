"""Run the join on the embedded mini-cluster until told to stop (for ``feedrank join``).

Work in progress: unbounded runs of this job crash the submitting interpreter
(SIGSEGV in PyFlink's in-process "loopback" Python worker) once records flow, so no
CLI command uses it yet; see the issue 4 notes. The bounded job it builds is tested
in tests/integration/streaming/test_join.py.

Checkpoints are retained on cancellation under ``paths.state_dir``; a restart resumes
from the newest checkpoint or savepoint, so a crash loses and duplicates nothing (the
sinks are transactional and only committed on checkpoints). A planned stop takes a
savepoint first.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from feedrank.core.settings import Settings
from feedrank.stack.flink import FlinkJobOptions, create_stream_environment
from feedrank.streaming.join_job import JoinJobConfig, JoinTopics, build_join_job
from feedrank.streaming.join_logic import JoinConfig
from feedrank.streaming.recovery import latest_snapshot

TERMINAL = {"FINISHED", "FAILED", "CANCELED"}
GROUP_ID = "feedrank-join"


@dataclass(frozen=True)
class JoinRun:
    restored_from: Path | None
    final_status: str


def job_config(settings: Settings) -> JoinJobConfig:
    topics = settings.topics
    join = settings.join
    return JoinJobConfig(
        bootstrap=settings.kafka.bootstrap,
        topics=JoinTopics(topics.decisions, topics.rewards, topics.examples, topics.dlq),
        join=JoinConfig(
            reward_window_ms=settings.time.reward_window_ms,
            max_skew_ms=int(join.max_skew_s * 1000),
            dangling_wait_ms=int(join.dangling_wait_s * 1000),
            tombstone_ms=int(join.tombstone_hours * 3_600_000),
        ),
        group_id=GROUP_ID,
        # Stable across restarts: on recovery Flink aborts the transactions a crashed run
        # left open under this prefix, so read-committed readers are never held up.
        transactional_id_prefix=f"{GROUP_ID}-{topics.examples}",
        out_of_orderness_ms=int(join.out_of_orderness_s * 1000),
        idleness_ms=int(join.idleness_s * 1000),
    )


def run_join(
    settings: Settings, stop: threading.Event, ready: threading.Event | None = None
) -> JoinRun:
    """Submit the join, wait for ``stop`` (or the job's end), then stop with a savepoint."""
    paths = settings.paths
    checkpoints, savepoints = (
        paths.flink_checkpoint_dir.resolve(),
        paths.flink_savepoint_dir.resolve(),
    )
    checkpoints.mkdir(parents=True, exist_ok=True)
    savepoints.mkdir(parents=True, exist_ok=True)
    snapshot = latest_snapshot(checkpoints, savepoints)
    extra = {
        "execution.checkpointing.dir": checkpoints.as_uri(),
        "execution.checkpointing.savepoint-dir": savepoints.as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": "3",
    }
    if snapshot is not None:
        extra["execution.state-recovery.path"] = snapshot.as_uri()
    stream_env, table_env = create_stream_environment(
        settings, FlinkJobOptions.from_settings(settings), extra=extra
    )
    build_join_job(stream_env, table_env, job_config(settings))
    client = stream_env.execute_async("feedrank-join")
    if ready is not None:
        ready.set()
    # Wait without calling into the JVM: polling the job status through py4j while the
    # in-process Python workers run has crashed the interpreter.
    stop.wait()
    client.stop_with_savepoint(False, savepoints.as_uri()).result()
    status = "STOPPED_WITH_SAVEPOINT"
    return JoinRun(snapshot, status)


def _status(client: object) -> str:
    return str(client.get_job_status().result()).rsplit(".", 1)[-1]  # type: ignore[attr-defined]
