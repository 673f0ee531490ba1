"""PyFlink's embedded mini-cluster, wired to the Kafka SQL connector.

Jobs take a ``TableEnvironment`` (injected, as in feast's Flink engine), so the same
job code runs on this mini-cluster, in tests, and submitted to a real Flink cluster.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import EnvironmentSettings, StreamTableEnvironment, TableEnvironment

from feedrank.core.settings import Settings
from feedrank.stack.jars import require_jars


@dataclass(frozen=True)
class FlinkJobOptions:
    parallelism: int
    checkpoint_interval_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> FlinkJobOptions:
        return cls(
            parallelism=settings.flink.parallelism,
            checkpoint_interval_s=settings.flink.checkpoint_interval_s,
        )


def use_own_log_dir(settings: Settings) -> None:
    """Send this process's Flink (JVM) logs to ``<log_dir>/flink`` instead of the shared
    file inside the PyFlink package, which every Flink process would overwrite.

    Takes effect for the JVM started next, so call it before the first environment.
    """
    if "FLINK_LOG_DIR" not in os.environ:
        directory = settings.paths.log_dir / "flink"
        directory.mkdir(parents=True, exist_ok=True)
        os.environ["FLINK_LOG_DIR"] = str(directory.resolve())


def _job_configuration(settings: Settings, options: FlinkJobOptions) -> dict[str, str]:
    """What every feedrank job sets: the connector jar, parallelism, exactly-once checkpoints."""
    return {
        "pipeline.jars": require_jars(settings).flink_connector.resolve().as_uri(),
        "parallelism.default": str(options.parallelism),
        "execution.checkpointing.interval": f"{int(options.checkpoint_interval_s * 1000)} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
    }


def create_table_environment(
    settings: Settings, options: FlinkJobOptions | None = None
) -> TableEnvironment:
    """A streaming TableEnvironment on the local mini-cluster with exactly-once checkpoints."""
    options = options or FlinkJobOptions.from_settings(settings)
    table_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = table_env.get_config()
    for key, value in _job_configuration(settings, options).items():
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
    so they import the same ``feedrank`` code.
    """
    options = options or FlinkJobOptions.from_settings(settings)
    configuration = Configuration()
    values = {
        **_job_configuration(settings, options),
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        **(extra or {}),
    }
    for key, value in values.items():
        configuration.set_string(key, value)
    stream_env = StreamExecutionEnvironment.get_execution_environment(configuration)
    table_env = StreamTableEnvironment.create(stream_env)
    return stream_env, table_env
