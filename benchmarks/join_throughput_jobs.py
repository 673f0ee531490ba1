"""The join benchmark's Flink jobs on the embedded mini-cluster, and their checkpoints.

The join exactly as ``feedrank join`` builds it and the SQL relay baseline, each as a
context manager that cancels the job on exit; the checkpoint sizes and the committed
offsets the state measurement waits on.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from benchmarks.join_throughput_workload import PARTITIONS
from feedrank.core.settings import Settings, load_settings
from feedrank.streaming.flink_environment import (
    FlinkJobOptions,
    create_stream_environment,
    create_table_environment,
)
from feedrank.streaming.join_jar import require_join_jar
from feedrank.streaming.join_job import JoinJobConfig, JoinTopics, build_join_job
from feedrank.streaming.join_logic import JoinConfig
from feedrank.streaming.kafka_tables import KafkaSink, KafkaSource
from feedrank.streaming.recovery import completed_checkpoints
from feedrank.streaming.relay import relay


def job_settings(bootstrap: str, state_dir: Path, interval_s: float) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": bootstrap},
        paths={"state_dir": state_dir},
        flink={"parallelism": PARTITIONS, "checkpoint_interval_s": interval_s},
    )


def checkpoint_options(directory: Path) -> dict[str, str]:
    return {
        "execution.checkpointing.dir": directory.resolve().as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "DELETE_ON_CANCELLATION",
    }


@contextmanager
def running_join(settings: Settings, config: JoinJobConfig, checkpoints: Path) -> Iterator[str]:
    """The join submitted to a mini-cluster; yields its job id, cancelled on exit."""
    stream_env, table_env = create_stream_environment(
        settings, FlinkJobOptions.from_settings(settings), extra=checkpoint_options(checkpoints)
    )
    build_join_job(stream_env, table_env, config)
    client = stream_env.execute_async("bench-join")
    try:
        yield str(client.get_job_id())
    finally:
        client.cancel().result()


@contextmanager
def running_relay(settings: Settings, source: str, sink: str) -> Iterator[None]:
    table_env = create_table_environment(settings, FlinkJobOptions.from_settings(settings))
    bootstrap = settings.kafka.bootstrap
    result = relay(
        table_env,
        KafkaSource(source, bootstrap, f"bench-relay-{uuid.uuid4().hex[:6]}"),
        KafkaSink(sink, bootstrap, transactional_id_prefix=f"bench-relay-{uuid.uuid4().hex}"),
    )
    try:
        yield
    finally:
        client = result.get_job_client()
        if client is not None:
            client.cancel().result()


def engine_jar(engine: str | None = None) -> Path | None:
    """The join engine's jar: the Java engine's for "java" (built by ``feedrank setup``),
    None for "python"; without ``engine``, the shipped one (``join.engine``)."""
    settings = load_settings()
    return require_join_jar(settings) if (engine or settings.join.engine) == "java" else None


def join_config(
    bootstrap: str, topics: JoinTopics, join: JoinConfig, engine_jar: Path | None = None
) -> JoinJobConfig:
    """The benchmark's join job; ``engine_jar``: the Java engine's (None: Python's)."""
    return JoinJobConfig(
        bootstrap=bootstrap,
        topics=topics,
        join=join,
        group_id=f"bench-join-{uuid.uuid4().hex[:6]}",
        transactional_id_prefix=f"bench-join-{uuid.uuid4().hex}",
        out_of_orderness_ms=200,
        idleness_ms=2_000,
        java_engine_jar=engine_jar,
    )


def checkpoint_bytes(job_dir: Path, after: float) -> tuple[int, int]:
    """(id, total bytes) of the job's newest complete checkpoint finished after ``after``
    (a ``time.time()``); waits up to two minutes for one. With RocksDB's incremental
    checkpoints most of the bytes are the shared files the checkpoint references
    (``shared/``, ``taskowned/``): counted too."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = [m for m in completed_checkpoints(job_dir) if m.stat().st_mtime > after]
        if done:
            directory = done[-1].parent
            folders = (directory, job_dir / "shared", job_dir / "taskowned")
            size = sum(
                path.stat().st_size
                for folder in folders
                for path in folder.rglob("*")
                if path.is_file()
            )
            return int(directory.name.removeprefix("chk-")), size
        time.sleep(0.2)
    raise RuntimeError(f"no checkpoint under {job_dir} in two minutes")


def wait_consumed(bootstrap: str, group: str, topic: str, count: int) -> float:
    """``time.time()`` once the join's committed offsets (committed on checkpoints)
    cover ``count`` records of ``topic``; at most two minutes."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            offsets = consumer.committed(partitions, timeout=10)
            if sum(max(0, tp.offset) for tp in offsets) >= count:
                return time.time()
            time.sleep(0.5)
    finally:
        consumer.close()
    raise RuntimeError(f"the join did not consume {count} decisions of {topic} in two minutes")
