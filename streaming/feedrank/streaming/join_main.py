"""Entry point of the join on a Flink session cluster (``flink run -py join_main.py``).

``flink run`` provides the cluster (``-m``), the Python interpreters (``-pyexec``,
``-pyclientexec``) and the snapshot to restore (``-s``); this module reads feedrank's
settings (``FEEDRANK_*`` variables or ``FEEDRANK_CONFIG``), sets what every feedrank
job sets (connector jar, parallelism, exactly-once checkpoints, RocksDB) and where its
checkpoints and savepoints are retained (``paths.flink_checkpoint_dir``, the directory
:mod:`feedrank.streaming.cluster_join` restores from), builds the same job graph as
the mini-cluster's ``feedrank join`` and submits it. ``feedrank join --jobmanager``
runs this for you; see docs/streaming.md, "On a Flink session cluster".
"""

from __future__ import annotations

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from feedrank.core.settings import load_settings
from feedrank.streaming.flink_configuration import (
    FlinkJobOptions,
    job_configuration,
    retained_snapshot_configuration,
)
from feedrank.streaming.join_job import build_join_job
from feedrank.streaming.join_runner import job_config
from feedrank.streaming.join_status import JOB_NAME


def main() -> None:
    settings = load_settings()
    configuration = Configuration()
    values = {
        **job_configuration(settings, FlinkJobOptions.from_settings(settings)),
        **retained_snapshot_configuration(settings),
    }
    for key, value in values.items():
        configuration.set_string(key, value)
    stream_env = StreamExecutionEnvironment.get_execution_environment(configuration)
    table_env = StreamTableEnvironment.create(stream_env)
    build_join_job(stream_env, table_env, job_config(settings))
    stream_env.execute(JOB_NAME)


if __name__ == "__main__":
    main()
