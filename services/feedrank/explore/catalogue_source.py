"""The explore service's catalogue: replayed from the entity topics, then tailed.

The parent process replays ``feedrank.posts``, ``feedrank.users`` and ``feedrank.graph``
into one :class:`CatalogueState` before it builds the initial model and forks
(:func:`replay_catalogue`); the workers inherit that state copy-on-write. Each worker
then tails the topics from the parent's positions into its own copy
(:class:`CatalogueTail`): new posts are embedded and indexed after each batch, deletes
leave the indexes, a user's erasure drops the user's feature-store state. A restarted
worker, or a replica on another host, replays the same topics and reaches the same state.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping

from feedrank.catalogue import CatalogueState
from feedrank.catalogue import replay as core_replay
from feedrank.catalogue.kafka_feed import CatalogueEvents, CatalogueFeed
from feedrank.catalogue.replay import ReplayedCatalogue, catalogue_topics
from feedrank.core.clock import Clock
from feedrank.core.settings import Settings
from feedrank.explore import metrics
from feedrank.explore.catalogue_index import CatalogueIndexer
from feedrank.explore.model_slots import ModelSlots
from feedrank.features import FeatureStore

log = logging.getLogger(__name__)
Positions = Mapping[tuple[str, int], int]


def replay_catalogue(
    settings: Settings, clock: Clock, progress: Callable[[int], None] | None = None
) -> ReplayedCatalogue:
    """The catalogue topics replayed to their ends (TimeoutError past the configured
    ``explore.catalogue_replay_timeout_s``), counted in the catalogue metrics."""
    replayed = core_replay.replay_catalogue(settings, clock.now_ms, progress)
    status, state = replayed.status, replayed.state
    _count(status.applied, status.rejected, Counter(), Counter())
    log.info(
        "catalogue replayed: %d records, %d posts, %d users, %d rejected",
        replayed.records,
        state.num_posts,
        state.num_users,
        replayed.rejected,
    )
    return replayed


class CatalogueTail:
    """One worker's feed from ``positions``, indexing what it applies into ``slots``."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        catalogue: CatalogueState,
        store: FeatureStore,
        slots: ModelSlots,
        *,
        positions: Positions,
    ) -> None:
        self.indexer = CatalogueIndexer(
            catalogue, store, slots, lambda: max(clock.now_ms(), store.present_ms() or 0)
        )
        events = CatalogueEvents(
            catalogue, catalogue_topics(settings), on_user_erased=store.forget_user
        )
        self.feed = CatalogueFeed(
            events, clock_ms=clock.now_ms, start_at=positions, after_batch=self._after_batch
        )
        self.catalogue = catalogue
        self._counted: tuple[Counter[str], Counter[str]] = (Counter(), Counter())
        self._count_posts()

    def start(self) -> None:
        self.feed.start()

    def stop(self) -> None:
        self.feed.stop()

    def _after_batch(self) -> None:
        self.indexer.flush()
        status = self.feed.status
        applied, rejected = self._counted
        _count(status.applied, status.rejected, applied, rejected)
        self._counted = (Counter(status.applied), Counter(status.rejected))
        self._count_posts()

    def _count_posts(self) -> None:
        live = int(self.catalogue.live_rows().size)
        metrics.CATALOGUE_POSTS.labels(state="live").set(live)
        metrics.CATALOGUE_POSTS.labels(state="deleted").set(self.catalogue.num_posts - live)


def _count(
    applied: Counter[str],
    rejected: Counter[str],
    applied_before: Counter[str],
    rejected_before: Counter[str],
) -> None:
    for topic, count in (applied - applied_before).items():
        metrics.CATALOGUE_EVENTS.labels(topic=topic, outcome="applied").inc(count)
    for topic, count in (rejected - rejected_before).items():
        metrics.CATALOGUE_EVENTS.labels(topic=topic, outcome="rejected").inc(count)
