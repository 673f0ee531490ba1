"""The environment every feedrank Flink job runs in, wired to the Kafka SQL connector.

Jobs take their environment as an argument (injected, as in feast's Flink engine), so
the same job code runs on the embedded mini-cluster of ``feedrank join``, in tests, and
submitted to a real Flink cluster. Every environment built here ships the
``flink-sql-connector-kafka`` jar (``feedrank setup`` caches it, see
:mod:`feedrank.streaming.connector_jar`), takes its parallelism from
:class:`FlinkJobOptions` and checkpoints exactly once (the keys are
:mod:`feedrank.streaming.flink_configuration`'s)::

    from feedrank.streaming.flink_environment import create_stream_environment

    stream_env, table_env = create_stream_environment(settings)
"""

from __future__ import annotations

import sys

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import EnvironmentSettings, StreamTableEnvironment, TableEnvironment

from feedrank.core.settings import Settings
from feedrank.streaming.flink_configuration import FlinkJobOptions, job_configuration

# FlinkJobOptions and job_configuration are re-exported: jobs build environments from here.
__all__ = [
    "FlinkJobOptions",
    "create_stream_environment",
    "create_table_environment",
    "job_configuration",
]


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
