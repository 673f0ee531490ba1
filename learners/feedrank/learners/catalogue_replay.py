"""The catalogue as it stands, for the learners: replayed from the entity topics when the
broker has them, or left out (with a warning) when it does not.

``feedrank train`` embeds the catalogue's live posts in the version it publishes, fills
in from it what older logs lack and re-joins compact examples' post features from it;
``feedrank learn`` starts its first version's index from it, takes post topics the logs
do not carry from it, and keeps following the topics (:func:`follow_catalogue`) so the
posts that decisions name later are there to re-join. A learner's catalogue keeps
superseded post versions as long as decisions live (``topics.event_retention_days``,
the posts topic's ``min.compaction.lag.ms``): a decision names the version its ranker
saw, which a later upsert may have replaced (:mod:`feedrank.catalogue.post_versions`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from feedrank.catalogue import CatalogueState
from feedrank.catalogue.kafka_feed import CatalogueEvents, CatalogueFeed
from feedrank.catalogue.replay import catalogue_topics, missing_entity_topics, replay_catalogue
from feedrank.core.clock import SystemClock
from feedrank.core.reporting import Reporter
from feedrank.core.settings import Settings
from feedrank.core.time_units import DAY_MS


def learner_catalogue(settings: Settings) -> CatalogueState:
    """An empty catalogue that keeps superseded post versions for as long as decisions
    are kept (``topics.event_retention_days``: the reward window and a day)."""
    return CatalogueState(keep_superseded_ms=int(settings.topics.event_retention_days * DAY_MS))


def replay_catalogue_if_present(
    settings: Settings,
    *,
    without: str,
    reporter: Reporter,
    clock_ms: Callable[[], int] | None = None,
) -> CatalogueState | None:
    """The catalogue topics replayed to their ends, or None when the broker lacks any of
    them: then ``reporter`` warns "no catalogue topics [...]: ``without``" (what the job
    does instead). The replay runs under ``reporter.working``."""
    if missing := missing_entity_topics(settings):
        reporter.warn(f"no catalogue topics {missing}: {without}")
        return None
    return _replayed(settings, reporter, clock_ms)[0]


@dataclass
class FollowedCatalogue:
    """A learner's catalogue, kept up to date by a feed tailing the topics on a thread."""

    state: CatalogueState
    feed: CatalogueFeed

    def stop(self) -> None:
        self.feed.stop()


def follow_catalogue(
    settings: Settings,
    *,
    without: str,
    reporter: Reporter,
    clock_ms: Callable[[], int] | None = None,
) -> FollowedCatalogue:
    """The catalogue replayed to the topics' ends, then tailed from there on a thread
    (call ``stop``). When the broker lacks the topics, ``reporter`` warns as
    :func:`replay_catalogue_if_present` does and the feed waits for them from the start."""
    now_ms = clock_ms or SystemClock().now_ms
    state = learner_catalogue(settings)
    positions: dict[tuple[str, int], int] = {}
    if missing := missing_entity_topics(settings):
        reporter.warn(f"no catalogue topics {missing} yet: {without} until they come")
    else:
        state, positions = _replayed(settings, reporter, now_ms)
    events = CatalogueEvents(state, catalogue_topics(settings))
    feed = CatalogueFeed(events, clock_ms=now_ms, start_at=positions)
    feed.start()
    return FollowedCatalogue(state, feed)


def _replayed(
    settings: Settings, reporter: Reporter, clock_ms: Callable[[], int] | None
) -> tuple[CatalogueState, dict[tuple[str, int], int]]:
    topics = settings.topics
    names = f"{topics.posts}, {topics.users}, {topics.graph}"
    with reporter.working(f"replaying the catalogue from {names}…"):
        replayed = replay_catalogue(
            settings, clock_ms or SystemClock().now_ms, state=learner_catalogue(settings)
        )
    return replayed.state, replayed.positions
