from __future__ import annotations

import math
import threading
from dataclasses import replace
from typing import cast

import numpy as np
import pytest

from feedrank.core.feature_schema import IntArray, post_id, post_keys, user_id
from feedrank.core.time_units import DAY_MS, MINUTE_MS
from feedrank.features.protocol import FeatureStore
from feedrank.features.rewards import apply_reward
from feedrank.features.store import FeatureStoreConfig, InMemoryFeatureStore
from feedrank.simulate.world.catalogue import catalogue_from_world
from feedrank.simulate.world.config import WorldConfig
from feedrank.simulate.world.generator import HiddenParameters, World, generate_world
from feedrank.v1 import events_pb2

T0 = 1_764_000_000_000


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(WorldConfig(num_users=200, num_creators=40, num_posts=2_000))


@pytest.fixture
def store(world: World) -> InMemoryFeatureStore:
    return InMemoryFeatureStore(catalogue_from_world(world))


def rows(*indices: int) -> IntArray:
    return np.array(indices, dtype=np.int64)


def impressions(store: FeatureStore, post: int, at_ms: int) -> float:
    """Raw impression count of one post as of ``at_ms``."""
    return math.expm1(float(store.post_features(rows(post), at_ms).impressions[0]))


class _Tripwire:
    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the feature store read hidden parameter {name!r}")


def test_the_store_never_reads_hidden_parameters(world: World) -> None:
    blind = replace(world, hidden=cast(HiddenParameters, _Tripwire()))
    store = InMemoryFeatureStore(catalogue_from_world(blind))
    store.record_impressions(rows(1, 2), T0)
    batch = store.post_features(rows(1, 2), T0)
    assert len(batch) == 2
    assert store.user_features(user_id(0), T0).known


def test_post_features_follow_the_requested_order(
    world: World, store: InMemoryFeatureStore
) -> None:
    requested = rows(1_999, 5, 700, 5, 0)
    batch = store.post_features(requested, T0)
    np.testing.assert_array_equal(batch.post_index, requested)
    np.testing.assert_array_equal(batch.post_key, post_keys(store.post_ids(requested)))
    assert store.post_ids(requested)[0] == post_id(1_999)
    np.testing.assert_array_equal(batch.creator_index, world.posts.creator_index[requested])
    np.testing.assert_array_equal(batch.topics, world.posts.topics[requested])
    np.testing.assert_array_equal(batch.content, world.posts.content[requested])
    np.testing.assert_array_equal(batch.country, world.posts.country[requested])
    creators = world.posts.creator_index[requested]
    np.testing.assert_allclose(
        batch.creator_followers, np.log1p(world.creators.followers[creators]), rtol=1e-6
    )
    assert batch.as_of_ms == T0
    assert batch.impressions.dtype == np.float32
    assert batch.language.dtype == np.int64


def test_age_is_hours_since_creation_and_never_negative(
    world: World, store: InMemoryFeatureStore
) -> None:
    created = int(world.posts.created_ms[10])
    assert store.post_features(rows(10), created + 3 * 3_600_000).age_hours[0] == 3.0
    assert store.post_features(rows(10), created - DAY_MS).age_hours[0] == 0.0


def test_lookups_see_only_increments_up_to_their_time(store: InMemoryFeatureStore) -> None:
    store.record_impressions(rows(7), T0)
    store.record_impressions(rows(7, 7), T0 + 10 * MINUTE_MS)
    assert impressions(store, 7, T0 - 1) == pytest.approx(0.0)
    assert impressions(store, 7, T0 + 5 * MINUTE_MS) == pytest.approx(1.0)
    assert impressions(store, 7, T0 + 10 * MINUTE_MS) == pytest.approx(3.0)
    # Read "now" first, then the past: the past still excludes the later increment.
    assert impressions(store, 7, T0 + 20 * MINUTE_MS) == pytest.approx(3.0)
    assert impressions(store, 7, T0 + 5 * MINUTE_MS) == pytest.approx(1.0)


def test_a_late_write_for_a_past_time_is_seen_from_then_on(store: InMemoryFeatureStore) -> None:
    assert impressions(store, 8, T0 + 60 * MINUTE_MS) == 0.0
    store.record_impressions(rows(8), T0 + 30 * MINUTE_MS)
    assert impressions(store, 8, T0 + 20 * MINUTE_MS) == 0.0
    assert impressions(store, 8, T0 + 40 * MINUTE_MS) == pytest.approx(1.0)
    assert impressions(store, 8, T0 + 60 * MINUTE_MS) == pytest.approx(1.0)


def test_future_dated_engagements_stay_invisible_until_due(
    world: World, store: InMemoryFeatureStore
) -> None:
    creator_rate = float(world.creators.engagement_rate[world.posts.creator_index[9]])
    store.record_impressions(rows(9), T0)
    store.record_engagements(user_id(1), rows(9), T0 + DAY_MS)
    now = store.post_features(rows(9), T0 + MINUTE_MS).engagement_rate[0]
    later = store.post_features(rows(9), T0 + 2 * DAY_MS).engagement_rate[0]
    prior = store.config.prior_impressions
    assert now == pytest.approx(prior * creator_rate / (1 + prior), rel=1e-5)
    assert later == pytest.approx((1 + prior * creator_rate) / (1 + prior), rel=1e-5)
    assert later > now


def test_unseen_posts_fall_back_to_their_creator_rate(
    world: World, store: InMemoryFeatureStore
) -> None:
    batch = store.post_features(rows(3, 4), T0)
    np.testing.assert_allclose(batch.engagement_rate, batch.creator_engagement_rate, rtol=1e-6)
    np.testing.assert_array_equal(batch.impressions, 0.0)


def test_lookups_before_the_retained_history_are_refused(world: World) -> None:
    store = InMemoryFeatureStore(
        catalogue_from_world(world), FeatureStoreConfig(history_retention_ms=DAY_MS)
    )
    store.record_impressions(rows(1), T0)
    store.record_impressions(rows(1), T0 + 2 * DAY_MS)
    assert impressions(store, 1, T0 + 3 * DAY_MS) == pytest.approx(2.0)
    assert impressions(store, 1, T0 + 2 * DAY_MS + 1) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="retained history"):
        store.post_features(rows(1), T0 - 1)


def test_known_users_come_from_the_world(world: World, store: InMemoryFeatureStore) -> None:
    features = store.user_features(user_id(5), T0, fallback_language=7, fallback_country=9)
    assert features.known
    assert features.language == int(world.users.language[5])
    assert features.country == int(world.users.country[5])
    assert features.age_bucket == int(world.users.age_bucket[5])
    assert features.activity == pytest.approx(math.log1p(float(world.users.sessions_per_day[5])))
    assert features.follow_count == pytest.approx(math.log1p(int(world.users.follow_count[5])))
    assert features.sensitive_filter == bool(world.users.sensitive_filter[5])
    assert features.as_of_ms == T0


@pytest.mark.parametrize("identifier", ["u999999", "guest-42", "u007", "u", "u-1"])
def test_unknown_users_get_cold_start_defaults(
    store: InMemoryFeatureStore, identifier: str
) -> None:
    features = store.user_features(identifier, T0, fallback_language=2, fallback_country=1)
    assert not features.known
    assert (features.language, features.country) == (2, 1)
    assert features.activity == 0.0
    assert features.engagements_7d == 0.0
    assert features.sensitive_filter == store.config.cold_start_sensitive_filter
    assert features.user_id == identifier


def test_cold_start_without_context_and_with_bad_context(store: InMemoryFeatureStore) -> None:
    features = store.user_features("new", T0)
    assert (features.language, features.country, features.known) == (0, 0, False)
    with pytest.raises(ValueError, match="out of range"):
        store.user_features("new", T0, fallback_language=99)


def test_engagements_count_over_the_last_seven_days(store: InMemoryFeatureStore) -> None:
    user = user_id(4)
    store.record_engagements(user, rows(1, 2), T0)
    store.record_engagements(user, rows(3), T0 + 5 * DAY_MS)
    store.record_engagements(user, rows(5), T0 + 9 * DAY_MS)
    assert store.user_features(user, T0 - 1).engagements_7d == 0.0
    assert store.user_features(user, T0 + DAY_MS).engagements_7d == pytest.approx(math.log1p(2))
    assert store.user_features(user, T0 + 6 * DAY_MS).engagements_7d == pytest.approx(math.log1p(3))
    assert store.user_features(user, T0 + 8 * DAY_MS).engagements_7d == pytest.approx(math.log1p(1))


def test_topic_affinity_is_the_history_mix_plus_recent_engagements(
    world: World, store: InMemoryFeatureStore
) -> None:
    user = user_id(11)
    history = np.asarray(world.users.history_topics[11], dtype=np.float64)
    before = np.array(store.user_features(user, T0).topic_affinity)
    np.testing.assert_allclose(before, history / history.sum(), rtol=1e-6)
    post = 17
    store.record_engagements(user, rows(post, post), T0 + MINUTE_MS)
    expected = history + 2 * np.asarray(world.posts.topics[post], dtype=np.float64)
    after = np.array(store.user_features(user, T0 + 2 * MINUTE_MS).topic_affinity)
    np.testing.assert_allclose(after, expected / expected.sum(), rtol=1e-6)
    assert after.sum() == pytest.approx(1.0)
    # Point in time: a lookup before the engagements does not see them.
    np.testing.assert_allclose(store.user_features(user, T0).topic_affinity, before)
    # The evidence behind the mix: history plus the two engagements, as a log count.
    evidence = store.user_features(user, T0 + 2 * MINUTE_MS).affinity_engagements
    assert evidence == pytest.approx(math.log1p(history.sum() + 2))
    assert store.user_features(user, T0).affinity_engagements == pytest.approx(
        math.log1p(history.sum())
    )


def test_users_without_any_history_have_no_affinity(store: InMemoryFeatureStore) -> None:
    assert store.user_features("guest", T0).topic_affinity == ()
    assert store.user_features("guest", T0).affinity_engagements == 0.0
    store.record_engagements("guest", rows(3), T0)
    affinity = np.array(store.user_features("guest", T0 + 1).topic_affinity)
    topics = np.asarray(store.post_features(rows(3), T0).topics[0], dtype=np.float64)
    np.testing.assert_allclose(affinity, topics / topics.sum(), rtol=1e-6)


def test_old_engagements_are_forgotten_once_time_moves_on(store: InMemoryFeatureStore) -> None:
    user = user_id(8)
    store.record_engagements(user, rows(1), T0)
    assert store.user_features(user, T0 + 20 * DAY_MS).engagements_7d == 0.0
    store.record_engagements(user, rows(2), T0 + 20 * DAY_MS)
    assert store.user_features(user, T0 + 20 * DAY_MS).engagements_7d == pytest.approx(
        math.log1p(1)
    )
    with pytest.raises(ValueError, match="no longer retained"):
        store.user_features(user, T0 + DAY_MS)


def test_user_state_is_point_in_time(world: World, store: InMemoryFeatureStore) -> None:
    user = user_id(6)
    store.record_seen(user, rows(10, 11), T0)
    store.record_hide(user, 11, T0 + 1)
    store.record_report(user, 12, T0 + 2)
    store.record_block(user, 3, T0 + 3)
    before = store.user_state(user, T0)
    after = store.user_state(user, T0 + 3)
    assert before.seen_posts == {10, 11}
    assert before.hidden_posts == frozenset()
    assert before.blocked_creators == frozenset()
    assert after.hidden_posts == {11}
    assert after.reported_posts == {12}
    assert after.blocked_creators == {3}
    assert after.rejected_posts == {11, 12}
    assert store.user_state("nobody", T0).seen_posts == frozenset()


def test_seen_posts_keep_only_the_most_recent(world: World) -> None:
    store = InMemoryFeatureStore(
        catalogue_from_world(world), FeatureStoreConfig(max_seen_per_user=3)
    )
    user = user_id(2)
    for step, post in enumerate([1, 2, 3, 4, 5]):
        store.record_seen(user, rows(post), T0 + step)
    assert store.user_state(user, T0 + 10).seen_posts == {3, 4, 5}


def test_rewards_update_the_store(world: World, store: InMemoryFeatureStore) -> None:
    user = user_id(7)

    def reward(kind: events_pb2.RewardType.ValueType, post: int) -> events_pb2.Reward:
        return events_pb2.Reward(
            decision_id="d", post_id=post_id(post), user_id=user, type=kind, ts_ms=T0
        )

    apply_reward(store, reward(events_pb2.REWARD_TYPE_LIKE, 20))
    apply_reward(store, reward(events_pb2.REWARD_TYPE_VIEW, 21))
    apply_reward(store, reward(events_pb2.REWARD_TYPE_HIDE, 22))
    apply_reward(store, reward(events_pb2.REWARD_TYPE_REPORT, 23))
    apply_reward(store, reward(events_pb2.REWARD_TYPE_BLOCK, 24))
    state = store.user_state(user, T0)
    assert state.hidden_posts == {22}
    assert state.reported_posts == {23}
    assert state.blocked_creators == {int(world.posts.creator_index[24])}
    assert store.user_features(user, T0).engagements_7d == pytest.approx(math.log1p(1))


def test_indices_outside_the_catalogue_are_rejected(store: InMemoryFeatureStore) -> None:
    with pytest.raises(IndexError, match="post indices"):
        store.post_features(rows(-1), T0)
    with pytest.raises(IndexError, match="post indices"):
        store.record_impressions(rows(2_000), T0)
    with pytest.raises(IndexError, match="post index"):
        store.record_hide(user_id(1), 2_000, T0)
    with pytest.raises(IndexError, match="creator index"):
        store.record_block(user_id(1), 40, T0)


def test_readers_and_a_writer_can_share_the_store(store: InMemoryFeatureStore) -> None:
    errors: list[BaseException] = []
    requested = rows(*range(0, 2_000, 10))

    def read() -> None:
        try:
            for step in range(200):
                batch = store.post_features(requested, T0 + step)
                assert len(batch) == requested.shape[0]
        except BaseException as error:  # noqa: BLE001 - surfaced through errors below
            errors.append(error)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    for step in range(200):
        store.record_impressions(requested[:5], T0 + step)
    for reader in readers:
        reader.join()
    assert errors == []
    assert impressions(store, 0, T0 + 1_000) == pytest.approx(200.0)


def test_the_store_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="positive"):
        FeatureStoreConfig(prior_impressions=0.0)
    with pytest.raises(ValueError, match="history_retention_ms"):
        FeatureStoreConfig(history_retention_ms=-1)
