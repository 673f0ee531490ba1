"""The feedrank topics, created with explicit partitions and retention."""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from feedrank.core.settings import DAY_MS, TopicSettings


@dataclass(frozen=True)
class TopicSpec:
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


def standard_topics(topics: TopicSettings) -> list[TopicSpec]:
    """Decisions and rewards outlive the reward window; derived topics keep a week; the
    catalogue topics keep their state for good (see :func:`entity_topics`)."""
    event_retention = int(topics.event_retention_days * DAY_MS)
    derived_retention = int(topics.derived_retention_days * DAY_MS)
    retention = {
        topics.decisions: event_retention,
        topics.rewards: event_retention,
        topics.examples: derived_retention,
        topics.metrics: derived_retention,
        topics.dlq: derived_retention,
    }
    timed = [
        TopicSpec(
            name=name,
            partitions=topics.partitions,
            replication_factor=topics.replication_factor,
            retention_ms=retention_ms,
            config={"min.insync.replicas": "1"},
        )
        for name, retention_ms in retention.items()
    ]
    return timed + entity_topics(topics)


def entity_topics(topics: TopicSettings) -> list[TopicSpec]:
    """Posts and users are log-compacted on their id: the latest event per key is the
    entity's state, a delete event included (it is a record, not a null tombstone, so a
    replay sees the takedown or erasure and never serves the entity again).

    The graph is keyed by user_id as the contract says, which keeps each user's edges in
    order, but compaction on that key would keep one edge per user: it is kept whole
    (no time limit) instead.
    """
    compacted = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
    return [
        TopicSpec(
            name=name,
            partitions=topics.partitions,
            replication_factor=topics.replication_factor,
            retention_ms=-1,
            config={"min.insync.replicas": "1", **config},
        )
        for name, config in (
            (topics.posts, compacted),
            (topics.users, compacted),
            (topics.graph, {"cleanup.policy": "delete"}),
        )
    ]


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


def describe_retention(
    admin: AdminClient, names: list[str], timeout_s: float = 10.0
) -> dict[str, int]:
    """retention.ms of each named topic, as the broker reports it."""
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    retention = {}
    for resource, future in admin.describe_configs(resources).items():
        entries = future.result(timeout=timeout_s)
        retention[resource.name] = int(entries["retention.ms"].value)
    return retention
