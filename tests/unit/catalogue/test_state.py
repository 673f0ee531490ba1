"""The catalogue state that entity events build, and the feature store reading it live."""

from __future__ import annotations

import numpy as np
import pytest

from feedrank.catalogue.state import CatalogueChange, CatalogueState, ConflictingEvent
from feedrank.core.feature_schema import (
    CONTENT_DIM,
    COUNTRY_VOCABULARY,
    LANGUAGE_VOCABULARY,
    NUM_TOPICS,
    post_key,
    post_keys,
    topic_slot,
)
from feedrank.features.store import InMemoryFeatureStore
from feedrank.v1 import catalogue_pb2

T0 = 1_764_000_000_000
UPSERT = catalogue_pb2.ENTITY_OP_UPSERT
DELETE = catalogue_pb2.ENTITY_OP_DELETE
UNICODE_ID = "пост-🐈-" + "x" * 249  # 256 characters, the longest id accepted


def post(
    post_id: str,
    *,
    ts_ms: int = T0,
    creator_id: str = "creator-a",
    language: str = "en",
    country: str = "",
    topics: tuple[str, ...] = ("topic_3",),
    weights: tuple[float, ...] = (),
    followers: float | None = None,
) -> catalogue_pb2.PostEvent:
    event = catalogue_pb2.PostEvent(
        op=UPSERT,
        post_id=post_id,
        creator_id=creator_id,
        created_ms=ts_ms - 3_600_000,
        language=language,
        country=country,
        topics=list(topics),
        topic_weights=list(weights),
        ts_ms=ts_ms,
    )
    if followers is not None:
        event.features["creator_followers"].number = followers
    return event


def post_delete(post_id: str, *, ts_ms: int) -> catalogue_pb2.PostEvent:
    return catalogue_pb2.PostEvent(op=DELETE, post_id=post_id, ts_ms=ts_ms)


def user(
    user_id: str, *, ts_ms: int = T0, language: str = "", country: str = "", age_bucket: str = ""
) -> catalogue_pb2.UserEvent:
    return catalogue_pb2.UserEvent(
        op=UPSERT,
        user_id=user_id,
        language=language,
        country=country,
        age_bucket=age_bucket,
        ts_ms=ts_ms,
    )


def edge(
    op: catalogue_pb2.GraphOp.ValueType, user_id: str, target_id: str, *, ts_ms: int = T0
) -> catalogue_pb2.GraphEvent:
    return catalogue_pb2.GraphEvent(op=op, user_id=user_id, target_id=target_id, ts_ms=ts_ms)


@pytest.fixture
def state() -> CatalogueState:
    return CatalogueState()


# ---- posts ------------------------------------------------------------------------


def test_string_ids_get_dense_rows_that_round_trip(state: CatalogueState) -> None:
    assert len(UNICODE_ID) == 256
    ids = ["a", UNICODE_ID, "p/with spaces", "42"]
    rows = [int(state.apply_post(post(post_id)).upserted[0]) for post_id in ids]

    assert rows == [0, 1, 2, 3]
    assert state.num_posts == 4
    assert [state.post_row(post_id) for post_id in ids] == rows
    assert [state.post_id(row) for row in rows] == ids
    assert state.post_ids(rows) == ids
    assert state.post_row("never-seen") is None


def test_a_post_keeps_the_key_of_its_id_whatever_its_row() -> None:
    ids = ["a", UNICODE_ID, "article-é-42"]
    forwards, backwards = CatalogueState(), CatalogueState()
    for post_id in ids:
        forwards.apply_post(post(post_id))
    for post_id in reversed(ids):
        backwards.apply_post(post(post_id))
    forwards.apply_post(post("a", ts_ms=T0 + 1))  # an update keeps the key
    for post_id in ids:
        row, other_row = forwards.post_row(post_id), backwards.post_row(post_id)
        assert row is not None
        assert other_row is not None
        assert forwards.post_column("key")[row] == post_key(post_id)
        assert backwards.post_column("key")[other_row] == post_key(post_id)
    assert forwards.post_row("a") != backwards.post_row("a")  # rows differ, keys do not


def test_bulk_upserted_posts_get_their_keys() -> None:
    state = CatalogueState()
    state.apply_post(post("first"))
    ids = ["bulk-1", "bulk-é-2"]
    count = len(ids)
    rows = state.bulk_upsert_posts(
        ids,
        ["creator-a"] * count,
        language=np.zeros(count, dtype=np.int64),
        country=np.zeros(count, dtype=np.int64),
        region_locked=np.zeros(count, dtype=np.bool_),
        topics=np.full((count, NUM_TOPICS), 1.0 / NUM_TOPICS, dtype=np.float32),
        content=np.zeros((count, CONTENT_DIM), dtype=np.float32),
        created_ms=np.full(count, T0, dtype=np.int64),
        sensitive=np.zeros(count, dtype=np.bool_),
        ts_ms=T0,
    )
    np.testing.assert_array_equal(state.post_column("key")[rows], post_keys(ids))
    assert state.post_column("key")[0] == post_key("first")


def test_new_language_and_country_extend_the_vocabulary_as_other(state: CatalogueState) -> None:
    state.apply_post(post("p1", language="sv", country="SE"))
    state.apply_post(post("p2", language="en", country="US"))

    language = state.post_column("language")
    country = state.post_column("country")
    assert LANGUAGE_VOCABULARY.code(int(language[0])) == "sv"
    assert int(language[0]) >= LANGUAGE_VOCABULARY.seeded
    assert LANGUAGE_VOCABULARY.model_code(int(language[0])) == LANGUAGE_VOCABULARY.seeded
    assert COUNTRY_VOCABULARY.code(int(country[0])) == "SE"
    assert int(country[0]) >= COUNTRY_VOCABULARY.seeded
    assert COUNTRY_VOCABULARY.model_code(int(country[0])) == COUNTRY_VOCABULARY.seeded
    # The schema's own codes keep their indexes for the models.
    assert LANGUAGE_VOCABULARY.model_code(int(language[1])) == LANGUAGE_VOCABULARY.get("en")
    assert COUNTRY_VOCABULARY.model_code(int(country[1])) == COUNTRY_VOCABULARY.get("US")
    assert state.post_column("region_locked").tolist() == [True, True]


def test_post_without_country_takes_its_creators_country(state: CatalogueState) -> None:
    state.apply_user(user("creator-b", country="BR"))
    state.apply_post(post("p1", creator_id="creator-b"))
    state.apply_post(post("p2", creator_id="stranger"))

    countries = [COUNTRY_VOCABULARY.code(int(c)) for c in state.post_column("country")]
    assert countries == ["BR", "ZZ"]
    assert not state.post_column("region_locked").any()


def test_a_post_before_its_creator_takes_the_creators_country_when_it_arrives(
    state: CatalogueState,
) -> None:
    heard: list[CatalogueChange] = []
    state.on_change(heard.append)
    state.apply_post(post("early", creator_id="late-creator"))
    state.apply_post(post("locked", creator_id="late-creator", country="JP"))
    state.apply_post(post("gone", creator_id="late-creator"))
    state.apply_post(post_delete("gone", ts_ms=T0 + 1))
    heard.clear()

    state.apply_user(user("late-creator", country="BR"))

    countries = [COUNTRY_VOCABULARY.code(int(c)) for c in state.post_column("country")]
    assert countries == ["BR", "JP", "ZZ"]
    [change] = heard
    assert change.upserted.tolist() == [0]  # re-read by the indexer, as an upsert is
    state.apply_user(user("late-creator", ts_ms=T0 + 5, country="US"))
    assert COUNTRY_VOCABULARY.code(int(state.post_column("country")[0])) == "BR"


def test_a_creator_profile_without_a_country_leaves_the_posts_waiting(
    state: CatalogueState,
) -> None:
    state.apply_post(post("early", creator_id="quiet"))
    state.apply_user(user("quiet"))
    assert COUNTRY_VOCABULARY.code(int(state.post_column("country")[0])) == "ZZ"

    state.apply_user(user("quiet", ts_ms=T0 + 1, country="DE"))
    assert COUNTRY_VOCABULARY.code(int(state.post_column("country")[0])) == "DE"


def test_topics_map_to_slots_and_weights_are_normalised(state: CatalogueState) -> None:
    state.apply_post(post("p1", topics=("topic_3",)))
    state.apply_post(post("p2", topics=("topic_3", "topic_7"), weights=(3.0, 1.0)))
    state.apply_post(post("p3", topics=("cats", "dogs")))

    topics = state.post_column("topics")
    assert topics.shape == (3, NUM_TOPICS)
    assert topics[0, 3] == pytest.approx(1.0)
    assert topics[1, 3] == pytest.approx(0.75)
    assert topics[1, 7] == pytest.approx(0.25)
    assert 0 <= topic_slot("cats") < NUM_TOPICS
    expected = np.zeros(NUM_TOPICS)
    expected[topic_slot("cats")] += 0.5
    expected[topic_slot("dogs")] += 0.5
    np.testing.assert_allclose(topics[2], expected, rtol=1e-6)
    np.testing.assert_allclose(topics.sum(axis=1), 1.0, rtol=1e-6)
    assert state.post_column("content").shape == (3, CONTENT_DIM)


def test_upsert_replacing_a_post_keeps_its_row(state: CatalogueState) -> None:
    state.apply_post(post("p1", topics=("topic_1",)))
    state.apply_post(post("p2"))
    change = state.apply_post(post("p1", ts_ms=T0 + 10, topics=("topic_9",), creator_id="c2"))

    assert change.upserted.tolist() == [0]
    assert state.num_posts == 2
    assert state.post_column("topics")[0, 9] == pytest.approx(1.0)
    assert state.post_column("topics")[0, 1] == 0.0
    assert state.creator_id(int(state.post_column("creator_row")[0])) == "c2"
    assert int(state.post_column("updated_ms")[0]) == T0 + 10


def test_delete_takes_a_post_down_and_a_later_upsert_revives_it(state: CatalogueState) -> None:
    state.apply_post(post("p1"))
    state.apply_post(post("p2"))

    change = state.apply_post(post_delete("p1", ts_ms=T0 + 5))
    assert change.deleted.tolist() == [0]
    assert state.live_rows().tolist() == [1]
    assert state.post_row("p1") == 0  # the row stays the post's

    revived = state.apply_post(post("p1", ts_ms=T0 + 9))
    assert revived.upserted.tolist() == [0]
    assert state.live_rows().tolist() == [0, 1]


def test_delete_of_an_unknown_post_changes_nothing(state: CatalogueState) -> None:
    change = state.apply_post(post_delete("ghost", ts_ms=T0))

    assert change.upserted.size == change.deleted.size == 0
    assert state.num_posts == 0


def test_an_older_post_event_is_refused_and_changes_nothing(state: CatalogueState) -> None:
    state.apply_post(post("p1", ts_ms=T0 + 100, topics=("topic_2",)))
    before = {name: state.post_column(name).copy() for name in ("topics", "alive", "updated_ms")}

    with pytest.raises(ConflictingEvent, match="older"):
        state.apply_post(post("p1", ts_ms=T0, topics=("topic_5",)))
    with pytest.raises(ConflictingEvent):
        state.apply_post(post_delete("p1", ts_ms=T0 + 99))

    for name, column in before.items():
        np.testing.assert_array_equal(state.post_column(name), column)
    assert state.num_posts == 1


def test_same_timestamp_replaces(state: CatalogueState) -> None:
    state.apply_post(post("p1", topics=("topic_2",)))
    state.apply_post(post("p1", topics=("topic_4",)))

    assert state.post_column("topics")[0, 4] == pytest.approx(1.0)


def test_listeners_get_upserted_and_deleted_rows(state: CatalogueState) -> None:
    changes: list[CatalogueChange] = []
    state.on_change(changes.append)

    state.apply_post(post("p1"))
    state.apply_post(post("p2"))
    state.apply_post(post_delete("p1", ts_ms=T0 + 1))
    state.apply_post(post_delete("unknown", ts_ms=T0 + 1))  # no change, no call
    with pytest.raises(ConflictingEvent):
        state.apply_post(post("p2", ts_ms=T0 - 1))

    assert [(c.upserted.tolist(), c.deleted.tolist()) for c in changes] == [
        ([0], []),
        ([1], []),
        ([], [0]),
    ]


# ---- users and graph ----------------------------------------------------------------


def test_user_upsert_and_erasure(state: CatalogueState) -> None:
    event = user("u1", language="sv", country="SE", age_bucket="25-34")
    event.features["sessions_per_day"].number = 3.0
    event.features["history:topic_4"].number = 2.0
    assert state.apply_user(event) is False

    profile = state.user("u1")
    assert profile is not None
    assert profile.language == LANGUAGE_VOCABULARY.get("sv")
    assert profile.country == COUNTRY_VOCABULARY.get("SE")
    assert profile.age_bucket == 2
    assert profile.sessions_per_day == 3.0
    assert profile.history_topics[4] == 2.0
    assert state.user_ids() == ["u1"]

    state.apply_graph(edge(catalogue_pb2.GRAPH_OP_FOLLOW, "u1", "creator-a"))
    state.apply_graph(edge(catalogue_pb2.GRAPH_OP_FOLLOW, "u2", "creator-a"))
    creator = np.array([state.creator_row("creator-a")], dtype=np.int64)
    assert state.creator_stats(creator)[0].tolist() == [2.0]

    assert state.apply_user(catalogue_pb2.UserEvent(op=DELETE, user_id="u1", ts_ms=T0 + 1))
    assert state.user("u1") is None
    assert state.num_users == 0
    assert state.follow_count("u1") == 0
    assert state.creator_stats(creator)[0].tolist() == [1.0]

    with pytest.raises(ConflictingEvent):  # older than the erasure
        state.apply_user(user("u1", ts_ms=T0))
    assert state.user("u1") is None
    assert state.apply_user(user("u1", ts_ms=T0 + 2)) is False  # a new profile later
    assert state.user("u1") is not None


def test_edges_older_than_an_erasure_stay_erased(state: CatalogueState) -> None:
    """The topics replay in no order across each other: an edge may follow its erasure."""
    follow, block = catalogue_pb2.GRAPH_OP_FOLLOW, catalogue_pb2.GRAPH_OP_BLOCK
    state.apply_user(catalogue_pb2.UserEvent(op=DELETE, user_id="u1", ts_ms=T0 + 10))
    state.apply_graph(edge(follow, "u1", "creator-a", ts_ms=T0))
    state.apply_graph(edge(block, "u1", "creator-b", ts_ms=T0 + 10))

    assert state.follow_count("u1") == 0
    assert state.excluded_creators("u1") == frozenset()
    creator = np.array([state.creator_row("creator-a") or 0], dtype=np.int64)
    assert state.num_creators == 0 or state.creator_stats(creator)[0].tolist() == [0.0]

    state.apply_user(user("u1", ts_ms=T0 + 20))  # back, with edges made after the erasure
    state.apply_graph(edge(follow, "u1", "creator-a", ts_ms=T0 + 5))
    state.apply_graph(edge(follow, "u1", "creator-c", ts_ms=T0 + 21))
    assert state.follow_count("u1") == 1


def test_an_older_user_event_is_refused(state: CatalogueState) -> None:
    state.apply_user(user("u1", ts_ms=T0 + 10, language="en"))

    with pytest.raises(ConflictingEvent):
        state.apply_user(user("u1", ts_ms=T0, language="fr"))
    profile = state.user("u1")
    assert profile is not None
    assert profile.language == LANGUAGE_VOCABULARY.get("en")


def test_follows_count_for_user_and_creator(state: CatalogueState) -> None:
    follow, unfollow = catalogue_pb2.GRAPH_OP_FOLLOW, catalogue_pb2.GRAPH_OP_UNFOLLOW
    state.apply_post(post("p1", creator_id="creator-a"))
    state.apply_post(post("p2", creator_id="creator-b", followers=1_000.0))
    state.apply_graph(edge(follow, "u1", "creator-a"))
    state.apply_graph(edge(follow, "u1", "creator-b"))
    state.apply_graph(edge(follow, "u2", "creator-a"))
    state.apply_graph(edge(follow, "u2", "creator-a", ts_ms=T0 + 1))  # again: counts once

    assert state.follow_count("u1") == 2
    assert state.follow_count("u2") == 1
    assert state.follow_count("nobody") == 0
    rows = np.array([state.creator_row("creator-a"), state.creator_row("creator-b")])
    followers, rate = state.creator_stats(rows)
    assert followers.tolist() == [2.0, 1_000.0]  # given followers win over the graph's
    assert rate.tolist() == pytest.approx([0.02, 0.02])

    state.apply_graph(edge(unfollow, "u2", "creator-a", ts_ms=T0 + 2))
    assert state.follow_count("u2") == 0
    assert state.creator_stats(rows)[0].tolist() == [1.0, 1_000.0]
    with pytest.raises(ConflictingEvent):
        state.apply_graph(edge(follow, "u2", "creator-a", ts_ms=T0))
    assert state.follow_count("u2") == 0


def test_blocks_and_hides_exclude_creators(state: CatalogueState) -> None:
    state.apply_post(post("p1", creator_id="creator-a"))
    state.apply_graph(edge(catalogue_pb2.GRAPH_OP_BLOCK, "u1", "creator-a"))
    state.apply_graph(edge(catalogue_pb2.GRAPH_OP_HIDE_CREATOR, "u1", "creator-new"))

    a, new = state.creator_row("creator-a"), state.creator_row("creator-new")
    assert new is not None  # a hide interns a creator not seen yet
    assert state.excluded_creators("u1") == {a, new}
    assert state.excluded_creators("u2") == frozenset()

    state.apply_graph(edge(catalogue_pb2.GRAPH_OP_UNBLOCK, "u1", "creator-a", ts_ms=T0 + 1))
    assert state.excluded_creators("u1") == {new}
    unhide = catalogue_pb2.GRAPH_OP_UNHIDE_CREATOR
    state.apply_graph(edge(unhide, "u1", "creator-new", ts_ms=T0 + 1))
    assert state.excluded_creators("u1") == frozenset()


# ---- the feature store over the catalogue -------------------------------------------


def test_store_reads_profiles_and_cold_starts_unknown_users(state: CatalogueState) -> None:
    event = user("u1", language="sv", country="SE", age_bucket="45-54")
    event.features["follow_count"].number = 9.0
    state.apply_user(event)
    store = InMemoryFeatureStore(state)

    known = store.user_features("u1", T0)
    assert known.known
    assert known.language == LANGUAGE_VOCABULARY.get("sv")
    assert known.country == COUNTRY_VOCABULARY.get("SE")
    assert known.age_bucket == 4
    assert known.follow_count == pytest.approx(np.log1p(9.0))

    unknown = store.user_features("u-new", T0, fallback_language=1, fallback_country=2)
    assert not unknown.known
    assert (unknown.language, unknown.country) == (1, 2)
    assert unknown.sensitive_filter is True


def test_store_follow_count_falls_back_to_the_graph(state: CatalogueState) -> None:
    state.apply_user(user("u1"))
    state.apply_graph(edge(catalogue_pb2.GRAPH_OP_FOLLOW, "u1", "creator-a"))
    state.apply_graph(edge(catalogue_pb2.GRAPH_OP_FOLLOW, "u1", "creator-b"))

    features = InMemoryFeatureStore(state).user_features("u1", T0)
    assert features.follow_count == pytest.approx(np.log1p(2.0))


def test_store_post_features_follow_the_live_catalogue(state: CatalogueState) -> None:
    state.apply_post(post("p1", topics=("topic_3",), followers=99.0))
    store = InMemoryFeatureStore(state)
    state.apply_post(post("p2", language="sv", topics=("topic_5",)))  # after the store
    new_row = state.post_row("p2")
    assert new_row is not None
    assert store.num_posts == 2

    store.record_impressions(np.array([new_row, new_row], dtype=np.int64), T0)
    batch = store.post_features(np.array([0, new_row], dtype=np.int64), T0 + 3_600_000)

    assert batch.post_key.tolist() == [post_key("p1"), post_key("p2")]
    assert batch.topics[0, 3] == pytest.approx(1.0)
    assert batch.topics[1, 5] == pytest.approx(1.0)
    assert int(batch.language[1]) == LANGUAGE_VOCABULARY.get("sv")
    assert batch.creator_followers[0] == pytest.approx(np.log1p(99.0))
    assert batch.impressions.tolist() == pytest.approx([0.0, np.log1p(2.0)])
    assert batch.age_hours.tolist() == pytest.approx([2.0, 2.0])


def test_store_user_state_and_forget_user(state: CatalogueState) -> None:
    state.apply_post(post("p1", creator_id="creator-a"))
    state.apply_post(post("p2", creator_id="creator-b"))
    state.apply_graph(edge(catalogue_pb2.GRAPH_OP_BLOCK, "u1", "creator-a"))
    store = InMemoryFeatureStore(state)
    a, b = state.creator_row("creator-a"), state.creator_row("creator-b")
    assert a is not None
    assert b is not None

    assert store.user_state("u1", T0).blocked_creators == {a}  # no record yet: graph only
    store.record_seen("u1", np.array([0, 1], dtype=np.int64), T0)
    store.record_block("u1", b, T0)
    user_state = store.user_state("u1", T0)
    assert user_state.blocked_creators == {a, b}
    assert user_state.seen_posts == {0, 1}

    store.forget_user("u1")
    forgotten = store.user_state("u1", T0)
    assert forgotten.seen_posts == frozenset()
    assert forgotten.blocked_creators == {a}  # the graph's block is the catalogue's
