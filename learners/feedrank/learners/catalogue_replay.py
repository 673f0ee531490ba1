"""The catalogue as it stands, for the learners: replayed from the entity topics when the
broker has them, or left out (with a warning) when it does not.

``feedrank train`` embeds the catalogue's live posts in the version it publishes and
fills in from it what older logs lack; ``feedrank learn`` starts its first version's
index from it and takes post topics the logs do not carry from it. Both can work
without it, so neither waits for topics the broker lacks.
"""

from __future__ import annotations

from collections.abc import Callable

from feedrank.catalogue import CatalogueState
from feedrank.catalogue.replay import missing_entity_topics, replay_catalogue
from feedrank.core.clock import SystemClock
from feedrank.core.reporting import Reporter
from feedrank.core.settings import Settings


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
    topics = settings.topics
    names = f"{topics.posts}, {topics.users}, {topics.graph}"
    with reporter.working(f"replaying the catalogue from {names}…"):
        return replay_catalogue(settings, clock_ms or SystemClock().now_ms).state
