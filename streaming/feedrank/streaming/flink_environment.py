"""The environment every feedrank Flink job runs in, wired to the Kafka SQL connector.

Jobs take their environment as an argument (injected, as in feast's Flink engine), so
the same job code runs on the embedded mini-cluster of ``feedrank join``, in tests, and
submitted to a real Flink cluster. Every environment built here ships the
``flink-sql-connector-kafka`` jar (``feedrank setup`` caches it, see
:mod:`feedrank.streaming.connector_jar`), takes its parallelism from
:class:`FlinkJobOptions` and checkpoints exactly once::

    from feedrank.streaming.flink_environment import create_stream_environment

    stream_env, table_env = create_stream_environment(settings)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import EnvironmentSettings, StreamTableEnvironment, TableEnvironment

from feedrank.core.settings import Settings
from feedrank.streaming.connector_jar import require_connector_jar


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


def job_configuration(settings: Settings, options: FlinkJobOptions) -> dict[str, str]:
    """What every feedrank job sets: the connector jar, parallelism, exactly-once
    checkpoints, the state backend (RocksDB checkpoints incrementally: only the files
    written since the last checkpoint) and object reuse (chained Java operators hand
    records on instead of copying each one; no feedrank function keeps a record)."""
    return {
        "pipeline.jars": require_connector_jar(settings).resolve().as_uri(),
        "parallelism.default": str(options.parallelism),
        "execution.checkpointing.interval": f"{int(options.checkpoint_interval_s * 1000)} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "state.backend.type": options.state_backend,
        "execution.checkpointing.incremental": str(options.state_backend == "rocksdb").lower(),
        "pipeline.object-reuse": "true",
    }


def create_table_environment(
    settings: Settings, options: FlinkJobOptions | None = None
) -> TableEnvironment:
    """A streaming TableEnvironment (SQL-only jobs) with exactly-once checkpoints."""
    options = options or FlinkJobOptions.from_settings(settings)
    table_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = table_env.get_config()
    for key, value in job_configuration(settings, options).items():
        config.set(key, value)
    config.set("table.exec.source.idle-timeout", "5 s")
    return table_env


def create_stream_environment(
    settings: Settings,
    options: FlinkJobOptions | None = None,
    *,
    extra: dict[str, str] | None = None,
) -> tuple[StreamExecutionEnvironment, StreamTableEnvironment]:
    """DataStream + Table environments for jobs that mix SQL with Python operators.

    Python operators run in worker processes of this interpreter (the project's venv),
    so they import the same ``feedrank`` code. ``extra`` adds or replaces Flink
    configuration keys (checkpoint directories, a savepoint to restore from).
    """
    options = options or FlinkJobOptions.from_settings(settings)
    configuration = Configuration()
    values = {
        **job_configuration(settings, options),
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        **(extra or {}),
    }
    for key, value in values.items():
        configuration.set_string(key, value)
    stream_env = StreamExecutionEnvironment.get_execution_environment(configuration)
    table_env = StreamTableEnvironment.create(stream_env)
    return stream_env, table_env
