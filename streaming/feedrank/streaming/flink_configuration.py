"""The Flink configuration feedrank's jobs run with, as plain key/value pairs.

One home for the keys, read by every place that configures Flink: the job environments
(:mod:`feedrank.streaming.flink_environment`, mini-cluster and ``join_main.py`` alike)
and the local stack's session cluster (its ``config.yaml``). Importing this module does
not import PyFlink.
"""

from __future__ import annotations

from dataclasses import dataclass

from feedrank.core.settings import Settings
from feedrank.streaming.connector_jar import require_connector_jar

RETAINED_CHECKPOINTS = 3


@dataclass(frozen=True)
class FlinkJobOptions:
    """How a job runs: its default parallelism and its checkpoint interval."""

    parallelism: int
    checkpoint_interval_s: float
    state_backend: str = "rocksdb"

    @classmethod
    def from_settings(cls, settings: Settings) -> FlinkJobOptions:
        return cls(
            parallelism=settings.flink.parallelism,
            checkpoint_interval_s=settings.flink.checkpoint_interval_s,
            state_backend=settings.flink.state_backend,
        )


def state_backend_configuration(state_backend: str) -> dict[str, str]:
    """The state backend; RocksDB checkpoints incrementally (only the files written since
    the last checkpoint), which a two-week join window needs."""
    return {
        "state.backend.type": state_backend,
        "execution.checkpointing.incremental": str(state_backend == "rocksdb").lower(),
    }


def job_configuration(settings: Settings, options: FlinkJobOptions) -> dict[str, str]:
    """What every feedrank job sets: the connector jar, parallelism, exactly-once
    checkpoints, the state backend and object reuse (chained Java operators hand
    records on instead of copying each one; no feedrank function keeps a record)."""
    return {
        "pipeline.jars": require_connector_jar(settings).resolve().as_uri(),
        "parallelism.default": str(options.parallelism),
        "execution.checkpointing.interval": f"{int(options.checkpoint_interval_s * 1000)} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        **state_backend_configuration(options.state_backend),
        "pipeline.object-reuse": "true",
    }


def retained_snapshot_configuration(settings: Settings) -> dict[str, str]:
    """Where checkpoints and savepoints go (``paths.flink_checkpoint_dir`` and
    ``paths.flink_savepoint_dir``, created here), kept also when the job is cancelled
    or fails, so that a new run finds them (:mod:`feedrank.streaming.recovery`)."""
    checkpoints = settings.paths.flink_checkpoint_dir.resolve()
    savepoints = settings.paths.flink_savepoint_dir.resolve()
    checkpoints.mkdir(parents=True, exist_ok=True)
    savepoints.mkdir(parents=True, exist_ok=True)
    return {
        "execution.checkpointing.dir": checkpoints.as_uri(),
        "execution.checkpointing.savepoint-dir": savepoints.as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": str(RETAINED_CHECKPOINTS),
    }
