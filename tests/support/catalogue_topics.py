"""A generated world published to private entity topics, as an app publishes its catalogue.

``feedrank serve`` replays its catalogue from ``feedrank.posts``, ``feedrank.users`` and
``feedrank.graph``; tests that start it as a process first publish a world there and
point the process at the topics with :func:`topic_env`.
"""

from __future__ import annotations

import uuid

from confluent_kafka.admin import AdminClient

from feedrank.client import EventProducer, TopicNames
from feedrank.core.kafka_topics import ensure_topics
from feedrank.core.settings import TopicSettings
from feedrank.simulate.catalogue_publisher import publish_world
from feedrank.simulate.world import World
from feedrank.stack.topics import entity_topics


def private_entity_topics(bootstrap: str, prefix: str) -> TopicSettings:
    """Fresh posts, users and graph topics (compacted as in the stack) on ``bootstrap``."""
    tag = f"{prefix}.{uuid.uuid4().hex[:8]}"
    topics = TopicSettings(posts=f"{tag}.posts", users=f"{tag}.users", graph=f"{tag}.graph")
    ensure_topics(AdminClient({"bootstrap.servers": bootstrap}), entity_topics(topics))
    return topics


def publish_world_to(bootstrap: str, topics: TopicSettings, world: World) -> None:
    """Every creator, user and post of ``world``, acknowledged by Kafka on return."""
    names = TopicNames(posts=topics.posts, users=topics.users, graph=topics.graph)
    with EventProducer(bootstrap, topics=names) as producer:
        publish_world(world, producer)


def topic_env(topics: TopicSettings) -> dict[str, str]:
    """The environment that points a ``feedrank`` process at ``topics``."""
    return {
        "FEEDRANK_TOPICS__POSTS": topics.posts,
        "FEEDRANK_TOPICS__USERS": topics.users,
        "FEEDRANK_TOPICS__GRAPH": topics.graph,
    }
