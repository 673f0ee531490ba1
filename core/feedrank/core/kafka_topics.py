"""Kafka admin plumbing: create topics with explicit partitions, retention and configs.

Every component that needs its topics to exist (the local stack's ``feedrank up``,
the replay producer, tests and benchmarks) describes them as :class:`TopicSpec` and
creates the missing ones here::

    from confluent_kafka.admin import AdminClient
    from feedrank.core.kafka_topics import TopicSpec, ensure_topics
    from feedrank.core.time_units import DAY_MS

    admin = AdminClient({"bootstrap.servers": "127.0.0.1:9092"})
    ensure_topics(admin, [TopicSpec("decisions", partitions=3, replication_factor=1,
                                    retention_ms=14 * DAY_MS)])
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its name, partitions, replication, retention (ms, -1 for ever) and any
    further topic configs (``{"cleanup.policy": "compact"}``)."""

    name: str
    partitions: int
    replication_factor: int
    retention_ms: int
    config: dict[str, str] = field(default_factory=dict)

    def new_topic(self) -> NewTopic:
        config = {"retention.ms": str(self.retention_ms), **self.config}
        return NewTopic(
            self.name,
            num_partitions=self.partitions,
            replication_factor=self.replication_factor,
            config=config,
        )


def ensure_topics(admin: AdminClient, specs: list[TopicSpec], timeout_s: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [spec.new_topic() for spec in specs if spec.name not in existing]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created
