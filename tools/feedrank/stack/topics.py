"""The feedrank topics of the local stack: which there are, their partitions and retention.

:func:`feedrank.core.kafka_topics.ensure_topics` creates them.
"""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from feedrank.core.kafka_topics import TopicSpec
from feedrank.core.settings import TopicSettings
from feedrank.core.time_units import DAY_MS


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

    A post's superseded versions stay on its topic as long as decisions do
    (``min.compaction.lag.ms`` = ``topics.event_retention_days``, at least the reward
    window): a compact decision names the version its ranker saw, and a learner that
    replays the topic re-joins that version's static features from it.

    The graph is keyed by user_id as the contract says, which keeps each user's edges in
    order, but compaction on that key would keep one edge per user: it is kept whole
    (no time limit) instead.
    """
    compacted = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
    versions_kept = str(int(topics.event_retention_days * DAY_MS))
    return [
        TopicSpec(
            name=name,
            partitions=topics.partitions,
            replication_factor=topics.replication_factor,
            retention_ms=-1,
            config={"min.insync.replicas": "1", **config},
        )
        for name, config in (
            (topics.posts, {**compacted, "min.compaction.lag.ms": versions_kept}),
            (topics.users, compacted),
            (topics.graph, {"cleanup.policy": "delete"}),
        )
    ]


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
