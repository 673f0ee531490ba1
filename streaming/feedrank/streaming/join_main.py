"""Entry point of the join on a real Flink cluster (``flink run -py join_main.py``).

The cluster's ``flink run`` provides the environment (JobManager address, state backend,
checkpoint storage, restore path from ``-s``); this module only reads feedrank's
settings (``FEEDRANK_*`` variables or ``FEEDRANK_CONFIG``), builds the same job graph
as ``feedrank join`` and submits it. See docs/streaming.md, "On a real Flink cluster".
"""

from __future__ import annotations

from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from feedrank.core.settings import load_settings
from feedrank.streaming.join_job import build_join_job
from feedrank.streaming.join_runner import JOB_NAME, job_config


def main() -> None:
    settings = load_settings()
    stream_env = StreamExecutionEnvironment.get_execution_environment()
    table_env = StreamTableEnvironment.create(stream_env)
    build_join_job(stream_env, table_env, job_config(settings))
    stream_env.execute(JOB_NAME)


if __name__ == "__main__":
    main()
