"""Post versions: a learner's catalogue answers for the version a ranker saw, or says why not."""

from __future__ import annotations

import numpy as np

from feedrank.catalogue import CatalogueState
from feedrank.catalogue.post_versions import PostVersion, VersionMiss, find_post_version
from feedrank.core.feature_schema import LANGUAGE_VOCABULARY, topic_slot
from feedrank.core.time_units import DAY_MS, HOUR_MS
from feedrank.features.store import InMemoryFeatureStore
from feedrank.v1 import catalogue_pb2
from tests.unit.core.entity_events import DELETE, TS, features, make_post


def kept(state: CatalogueState, post_id: str, version_ms: int) -> PostVersion:
    found = find_post_version(state, post_id, version_ms)
    assert isinstance(found, PostVersion), found
    return found


def test_the_live_row_and_every_replaced_version_answer_for_their_own_version() -> None:
    state = CatalogueState(keep_superseded_ms=DAY_MS)
    state.apply_post(make_post(language="en", topics=["cats"], sensitive=False))
    state.apply_post(make_post(language="pt", topics=["music"], sensitive=True, ts_ms=TS + 1))
    state.apply_post(make_post(language="ja", topics=["news"], ts_ms=TS + 2))

    first, second, live = (
        kept(state, "p-1", TS),
        kept(state, "p-1", TS + 1),
        kept(state, "p-1", TS + 2),
    )
    assert [LANGUAGE_VOCABULARY.code(v.language) for v in (first, second, live)] == [
        "en",
        "pt",
        "ja",
    ]
    assert [v.sensitive for v in (first, second, live)] == [False, True, False]
    assert first.topics[topic_slot("cats")] == 1.0
    assert second.topics[topic_slot("music")] == 1.0
    assert len(state.superseded or ()) == 2


def test_a_taken_down_post_keeps_the_version_it_was_served_at() -> None:
    state = CatalogueState(keep_superseded_ms=DAY_MS)
    state.apply_post(make_post(topics=["cats"]))
    state.apply_post(catalogue_pb2.PostEvent(op=DELETE, post_id="p-1", ts_ms=TS + 5))
    assert kept(state, "p-1", TS).topics[topic_slot("cats")] == 1.0
    assert find_post_version(state, "p-1", TS + 5) is VersionMiss.VERSION_GONE  # not a version
    state.apply_post(make_post(topics=["music"], ts_ms=TS + 9))  # back, as a new version
    assert kept(state, "p-1", TS).topics[topic_slot("cats")] == 1.0
    assert kept(state, "p-1", TS + 9).topics[topic_slot("music")] == 1.0


def test_misses_say_why_and_nothing_is_guessed() -> None:
    state = CatalogueState(keep_superseded_ms=DAY_MS)
    state.apply_post(make_post(ts_ms=TS + 10))
    assert find_post_version(state, "p-unknown", TS) is VersionMiss.UNKNOWN_POST
    assert find_post_version(state, "p-1", TS + 20) is VersionMiss.CATALOGUE_BEHIND
    assert find_post_version(state, "p-1", TS) is VersionMiss.VERSION_GONE  # never held it
    serving = CatalogueState()  # explore keeps no history
    serving.apply_post(make_post())
    serving.apply_post(make_post(ts_ms=TS + 1))
    assert serving.superseded is None
    assert find_post_version(serving, "p-1", TS) is VersionMiss.VERSION_GONE


def test_versions_replaced_longer_ago_than_kept_are_forgotten() -> None:
    state = CatalogueState(keep_superseded_ms=DAY_MS)
    state.apply_post(make_post(post_id="p-old"))
    state.apply_post(make_post(post_id="p-old", ts_ms=TS + HOUR_MS))
    state.apply_post(make_post(post_id="p-new", ts_ms=TS + DAY_MS))
    state.apply_post(make_post(post_id="p-new", ts_ms=TS + DAY_MS + HOUR_MS))
    assert kept(state, "p-old", TS).version_ms == TS  # replaced exactly a day ago
    state.apply_post(make_post(post_id="p-new", ts_ms=TS + DAY_MS + 2 * HOUR_MS))
    assert find_post_version(state, "p-old", TS) is VersionMiss.VERSION_GONE
    assert kept(state, "p-new", TS + DAY_MS).version_ms == TS + DAY_MS
    assert len(state.superseded or ()) == 2


def test_an_upsert_of_the_same_ts_is_the_same_version_and_equal_features_share_arrays() -> None:
    state = CatalogueState(keep_superseded_ms=DAY_MS)
    state.apply_post(make_post(topics=["cats"]))
    state.apply_post(make_post(topics=["music"]))  # the same ts: the same version, replaced
    assert len(state.superseded or ()) == 0
    assert kept(state, "p-1", TS).topics[topic_slot("music")] == 1.0
    # Only the creator's audience changes: the static features are the same arrays.
    for step in range(1, 4):
        state.apply_post(
            make_post(topics=["music"], ts_ms=TS + step, features=features(creator_followers=step))
        )
    first, second = kept(state, "p-1", TS), kept(state, "p-1", TS + 1)
    assert first.topics is second.topics
    assert first.content is second.content


def test_the_store_reads_each_posts_version_with_its_features() -> None:
    state = CatalogueState()
    state.apply_post(make_post(post_id="a"))
    state.apply_post(make_post(post_id="b", ts_ms=TS + 7))
    store = InMemoryFeatureStore(state)
    rows = np.array([1, 0], dtype=np.int64)
    posts, versions = store.versioned_post_features(rows, TS + HOUR_MS)
    assert versions.tolist() == [TS + 7, TS]
    np.testing.assert_array_equal(posts.topics, store.post_features(rows, TS + HOUR_MS).topics)
