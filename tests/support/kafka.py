"""Helpers for tests against the real broker: private topics and committed reads."""

from __future__ import annotations

import random
import socket
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Message
from confluent_kafka.admin import AdminClient

from feedrank.core.kafka_topics import TopicSpec, ensure_topics
from feedrank.core.time_units import DAY_MS

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range and never handed out before in
    this session. Tests hand ports to processes that bind them later; any client socket
    or server on port 0 in between (a Flink job's Beam workers open gRPC servers) draws
    from the ephemeral range and could take one, so the ports come from outside it."""
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32_768
    for _ in range(500):
        port = random.randrange(20_000, max(low, 20_001))
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
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
