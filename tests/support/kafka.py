"""Helpers for tests against the real broker: private topics and committed reads."""

from __future__ import annotations

import random
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient
from google.protobuf.message import Message as ProtoMessage

from feedrank.core import codecs
from feedrank.core.kafka_topics import TopicSpec, ensure_topics
from feedrank.core.time_units import DAY_MS

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def free_ports_at(offsets: Iterable[int]) -> int | None:
    """A base port such that ``base + offset`` is free now for every offset, below the
    kernel's ephemeral range and never handed out before in this session (see
    :func:`free_port`); those ports count as handed out. None when none was found."""
    wanted = sorted(set(offsets))
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32_768
    top = max(low - wanted[-1], 20_001)
    for _ in range(500):
        base = random.randrange(20_000, top)
        ports = [base + offset for offset in wanted]
        if _handed_out.intersection(ports) or not all(_bindable(port) for port in ports):
            continue
        _handed_out.update(ports)
        return base
    return None


def consecutive_free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports (see :func:`free_ports_at`)."""
    first = free_ports_at(range(count))
    if first is None:
        raise RuntimeError(f"found no {count} consecutive free ports")
    return first


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range and never handed out before in
    this session. Tests hand ports to processes that bind them later; any client socket
    or server on port 0 in between (a Flink job's Beam workers open gRPC servers) draws
    from the ephemeral range and could take one, so the ports come from outside it."""
    base = free_ports_at([0])
    if base is not None:
        return base
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:  # no luck: any free one
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TopicFactory:
    """Creates topics private to one test and deletes them afterwards."""

    def __init__(self, admin: AdminClient, test_name: str) -> None:
        self.admin = admin
        self.test_name = "".join(c if c.isalnum() else "_" for c in test_name)[:40]
        self.created: list[str] = []

    def __call__(self, hint: str = "topic", partitions: int = 1) -> str:
        name = f"test.{self.test_name}.{hint}.{uuid.uuid4().hex[:8]}"
        ensure_topics(self.admin, [TopicSpec(name, partitions, 1, DAY_MS)])
        self.created.append(name)
        return name

    def delete_all(self) -> None:
        if self.created:
            for future in self.admin.delete_topics(self.created, operation_timeout=30).values():
                future.result(timeout=30)


class CommittedReader:
    """Reads records a read-committed consumer would see."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def __call__(self, topic: str, count: int, timeout_s: float = 30.0) -> list[Message]:
        """Exactly ``count`` records, failing when fewer arrive within ``timeout_s``."""
        records = self.read(topic, count, timeout_s)
        assert len(records) == count, f"read {len(records)} of {count} records from {topic}"
        return records

    def read(
        self, topic: str, at_most: int, timeout_s: float, idle_s: float | None = None
    ) -> list[Message]:
        """Up to ``at_most`` records; stop early after ``idle_s`` without a new one."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"test-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([topic])
        records: list[Message] = []
        deadline = time.monotonic() + timeout_s
        last_record = time.monotonic()
        try:
            while len(records) < at_most and time.monotonic() < deadline:
                if idle_s is not None and records and time.monotonic() - last_record > idle_s:
                    break
                message = consumer.poll(0.5)
                if message is None:
                    continue
                assert message.error() is None, message.error()
                records.append(message)
                last_record = time.monotonic()
        finally:
            consumer.close()
        return records


def produce_alternately(bootstrap: str, topic: str, messages: Sequence[ProtoMessage]) -> None:
    """``messages`` encoded onto ``topic``, alternately into partitions 0 and 1 (keyed
    alike, idempotent), flushed."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for index, message in enumerate(messages):
        producer.produce(topic, key=b"u", value=codecs.encode(message), partition=index % 2)
    assert producer.flush(30) == 0
