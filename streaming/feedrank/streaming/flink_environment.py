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

import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import EnvironmentSettings, StreamTableEnvironment, TableEnvironment

from feedrank.core.settings import Settings
from feedrank.streaming.flink_configuration import FlinkJobOptions, job_configuration

# FlinkJobOptions and job_configuration are re-exported: jobs build environments from here.
__all__ = [
    "FlinkJobOptions",
    "allow_own_gateway",
    "create_stream_environment",
    "create_table_environment",
    "job_configuration",
    "planning_on_one_gateway_thread",
]


GATEWAY_DISABLED_ENV = "PYFLINK_GATEWAY_DISABLED"


def allow_own_gateway() -> None:
    """Let this process start its own PyFlink gateway, whatever its parent left set.

    PyFlink runs a local job's Python workers in the client process itself (its loopback
    mode) and sets ``PYFLINK_GATEWAY_DISABLED`` there for them; a process that ran such a
    job (a test runner) passes it on to every child, and a child that is a Flink client of
    its own (a benchmark, ``feedrank join``) then fails at its first PyFlink call with
    "launching the PythonGatewayServer during Python UDF execution".
    """
    os.environ.pop(GATEWAY_DISABLED_ENV, None)


def create_table_environment(
    settings: Settings, options: FlinkJobOptions | None = None
) -> TableEnvironment:
    """A streaming TableEnvironment (SQL-only jobs) with exactly-once checkpoints."""
    options = options or FlinkJobOptions.from_settings(settings)
    allow_own_gateway()
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
    allow_own_gateway()
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


@contextmanager
def planning_on_one_gateway_thread() -> Iterator[None]:
    """Build and submit a job with every gateway call on one Java thread.

    Flink's SQL planner keeps Calcite's metadata providers in a thread-local of the Java
    thread that created the table environment; planning on another Java thread fails
    with ``NullPointerException: metadataHandlerProvider`` (Flink's SQL client sets the
    thread-local by hand for the same reason). py4j gives each concurrent Python call
    its own connection, and each connection its own Java thread, so a call the main
    thread makes while another thread holds the one connection lands on a new Java
    thread. Another thread does make calls: the cyclic garbage collector runs in
    whichever thread allocates, and a collected ``JavaObject`` tells the JVM to release
    it. (Seen once in a full test run: a join restarted while its metrics exporter was
    answering the test's polls failed to plan.) Cyclic collection waits until the job
    is built; plain reference counting still frees each thread's own objects.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
