"""The catalogue topics named by the settings, replayed to their ends into a new state.

Every process that needs the catalogue as it stands (explore before it forks its
workers, ``feedrank train`` and ``feedrank learn`` for the posts they embed and the
topics older logs lack) replays ``feedrank.users``, ``feedrank.graph`` and
``feedrank.posts`` here; see :class:`~feedrank.catalogue.kafka_feed.CatalogueFeed`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from feedrank.catalogue.kafka_feed import (
    CatalogueEvents,
    CatalogueFeed,
    CatalogueTopics,
    FeedStatus,
)
from feedrank.catalogue.state import CatalogueState
from feedrank.core.kafka_clients import admin_config
from feedrank.core.settings import Settings


def catalogue_topics(settings: Settings) -> CatalogueTopics:
    topics = settings.topics
    return CatalogueTopics(
        bootstrap=settings.kafka.access,
        posts=topics.posts,
        users=topics.users,
        graph=topics.graph,
        dlq=topics.dlq,
    )


@dataclass(frozen=True)
class ReplayedCatalogue:
    state: CatalogueState
    positions: dict[tuple[str, int], int]  # where a tail of the same topics starts
    records: int
    status: FeedStatus  # applied and rejected records by topic

    @property
    def rejected(self) -> int:
        return sum(self.status.rejected.values())


def replay_catalogue(
    settings: Settings,
    clock_ms: Callable[[], int],
    progress: Callable[[int], None] | None = None,
    timeout_s: float | None = None,
    state: CatalogueState | None = None,
) -> ReplayedCatalogue:
    """The catalogue topics replayed to their ends (TimeoutError past ``timeout_s``,
    by default ``explore.catalogue_replay_timeout_s``) into ``state`` (a new one by
    default); the consumer is closed before returning."""
    state = CatalogueState() if state is None else state
    feed = CatalogueFeed(CatalogueEvents(state, catalogue_topics(settings)), clock_ms=clock_ms)
    try:
        limit_s = settings.explore.catalogue_replay_timeout_s if timeout_s is None else timeout_s
        records = feed.replay(limit_s, progress=progress)
        positions = feed.positions()
    finally:
        feed.detach()
    return ReplayedCatalogue(state, positions, records, feed.status)


def missing_entity_topics(settings: Settings, timeout_s: float = 10.0) -> list[str]:
    """The catalogue topics the broker does not have (all of them when it is unreachable
    within ``timeout_s``): a process that can work without the catalogue (the learners)
    checks this instead of waiting for them."""
    names = catalogue_topics(settings).entity_topics()
    try:
        admin = AdminClient(admin_config(settings.kafka.access))
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException:
        return names
    return [name for name in names if name not in existing]
