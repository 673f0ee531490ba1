"""A Kafka broker for a benchmark run: the one given, or a KRaft broker of its own; and
load that warms a fresh broker up before it is measured."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import Producer

from feedrank.core.kafka_clients import idempotent_producer_config
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


@contextmanager
def warming(
    bootstrap: str, topic: str, *, rate: float = 300.0, record_bytes: int = 2_000
) -> Iterator[None]:
    """While the body runs, produce ``rate`` records a second of ``record_bytes`` (half
    random, half zeros: lz4 halves them, as it does a decision) to ``topic``, keyed, with
    the decision log's producer settings.

    A broker's produce path costs more in its first minute of load than after: at 280
    records/s of 1.9 KB, 0.16 ms of the broker's CPU per record in the first 15 s, 0.10
    after 30 s, 0.055-0.068 from 60 s on (docs/benchmarks.md, "Logging on and off,
    session 24"). A benchmark that starts its own broker measures a serving broker only
    once it has had that minute; this gives it the minute while something else runs.
    """
    stop = threading.Event()
    value = os.urandom(record_bytes // 2) + bytes(record_bytes - record_bytes // 2)

    def produce() -> None:
        producer = Producer(idempotent_producer_config(bootstrap, linger_ms=200))
        started, sent = time.monotonic(), 0
        keys = random.Random(0)
        while not stop.is_set():
            producer.produce(topic, key=str(keys.randrange(100_000)).encode(), value=value)
            producer.poll(0)
            sent += 1
            stop.wait(max(0.0, started + sent / rate - time.monotonic()))
        producer.flush(30)

    thread = threading.Thread(target=produce, name="broker-warm-up", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)
