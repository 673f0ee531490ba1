"""The learners' catalogue: replayed when the broker has its topics, left out when not."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import pytest

from feedrank.catalogue import CatalogueState
from feedrank.catalogue.replay import ReplayedCatalogue
from feedrank.core.reporting import Reporter
from feedrank.core.settings import Settings, load_settings
from feedrank.core.time_units import DAY_MS
from feedrank.learners import catalogue_replay
from feedrank.learners.catalogue_replay import replay_catalogue_if_present


def test_missing_topics_are_warned_about_and_nothing_is_replayed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(catalogue_replay, "missing_entity_topics", lambda _: ["feedrank.posts"])

    def no_replay(*_: object) -> ReplayedCatalogue:
        raise AssertionError("replayed without the topics")

    monkeypatch.setattr(catalogue_replay, "replay_catalogue", no_replay)
    warned: list[str] = []
    state = replay_catalogue_if_present(
        load_settings(), without="doing without", reporter=Reporter(warn=warned.append)
    )
    assert state is None
    assert warned == ["no catalogue topics ['feedrank.posts']: doing without"]


def test_present_topics_are_replayed_while_the_reporter_shows_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    replayed = CatalogueState()
    monkeypatch.setattr(catalogue_replay, "missing_entity_topics", lambda _: [])

    def replay(
        settings: Settings, clock_ms: Callable[[], int], *, state: CatalogueState
    ) -> ReplayedCatalogue:
        assert clock_ms() == 5
        # A learner's catalogue keeps superseded post versions as long as decisions live.
        assert state.superseded is not None
        assert state.superseded.retention_ms == settings.topics.event_retention_days * DAY_MS
        return ReplayedCatalogue(replayed, {}, 0, None)  # type: ignore[arg-type]

    monkeypatch.setattr(catalogue_replay, "replay_catalogue", replay)
    working: list[str] = []

    def work(message: str) -> AbstractContextManager[object]:
        working.append(message)
        return nullcontext()

    state = replay_catalogue_if_present(
        load_settings(), without="-", reporter=Reporter(working=work), clock_ms=lambda: 5
    )
    assert state is replayed
    assert working == [
        "replaying the catalogue from feedrank.posts, feedrank.users, feedrank.graph…"
    ]
