"""A Kafka broker for a benchmark run: the one given, or a KRaft broker of its own."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from feedrank.core.settings import load_settings
from feedrank.stack.jars import fetch_jars
from feedrank.stack.kafka_broker import BrokerConfig, KafkaBroker


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def broker(bootstrap: str | None, work: Path) -> Iterator[str]:
    """The given broker, or a KRaft broker of our own in ``work`` (stopped on exit)."""
    if bootstrap is not None:
        yield bootstrap
        return
    jars = fetch_jars(load_settings())
    config = BrokerConfig(
        data_dir=work / "kafka",
        jar_dir=jars.kafka_dir,
        port=free_port(),
        controller_port=free_port(),
    )
    kafka = KafkaBroker(config, log_file=work / "logs" / "kafka.log")
    process = kafka.start(tie_to_parent=True)
    try:
        kafka.wait_ready(process, timeout_s=90)
        yield kafka.bootstrap
    finally:
        process.stop()
