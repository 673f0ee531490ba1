"""The cold-start policy served before the first model: topic-matched and fresh
retrieval, popularity x freshness ranking, full feeds for strangers, valid propensities."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
import pytest

from feedrank.catalogue import CatalogueState, UserProfile
from feedrank.core.clock import ManualClock
from feedrank.core.exploration import policy_from_name
from feedrank.core.feature_schema import NUM_TOPICS, FloatArray, IntArray
from feedrank.core.settings import ExploreSettings, Settings
from feedrank.core.time_units import HOUR_MS
from feedrank.explore.app import build_serving_state
from feedrank.explore.catalogue_index import CatalogueIndexer
from feedrank.explore.cold_start import (
    ColdStartRanker,
    ColdStartTowers,
    catalogue_creation_times,
    topic_directions,
)
from feedrank.explore.deadline import Deadline
from feedrank.explore.decision_log import DecisionLogger
from feedrank.explore.queries import RankQuery
from feedrank.explore.service import ExploreService
from feedrank.explore.serving_model import ServingModel, initial_serving_model
from feedrank.features.store import InMemoryFeatureStore
from feedrank.v1 import events_pb2

NOW_MS = 1_764_000_000_000
TOPICS_USED = 8
HISTORY_TOPIC = 3


@dataclass(frozen=True)
class Posts:
    """What a test catalogue's posts are: one topic each, an age, a creator."""

    topic: IntArray
    age_hours: FloatArray
    creator: list[str]


def one_hot(topics: IntArray) -> FloatArray:
    weights = np.zeros((topics.size, NUM_TOPICS), dtype=np.float32)
    weights[np.arange(topics.size), topics] = 1.0
    return weights


def add_posts(catalogue: CatalogueState, posts: Posts, first_id: int = 0) -> IntArray:
    count = posts.topic.size
    for creator in set(posts.creator):  # none is a small creator: fairness stays out
        catalogue.set_creator_stats(creator, followers=50_000.0, engagement_rate=0.05)
    content = np.random.default_rng(first_id).standard_normal((count, 32)).astype(np.float32)
    zeros = np.zeros(count, dtype=np.int64)
    return catalogue.bulk_upsert_posts(
        [f"p{first_id + row}" for row in range(count)],
        posts.creator,
        language=zeros,
        country=zeros,
        region_locked=np.zeros(count, dtype=np.bool_),
        topics=one_hot(posts.topic),
        content=content / np.linalg.norm(content, axis=1, keepdims=True),
        created_ms=np.rint(NOW_MS - posts.age_hours.astype(np.float64) * HOUR_MS).astype(np.int64),
        sensitive=np.zeros(count, dtype=np.bool_),
        ts_ms=NOW_MS - 1,
    )


def mixed_posts(count: int = 400) -> Posts:
    rng = np.random.default_rng(5)
    return Posts(
        topic=np.arange(count, dtype=np.int64) % TOPICS_USED,
        age_hours=rng.uniform(0.5, 20 * 24, count).astype(np.float32),
        creator=[f"c{row}" for row in range(count)],
    )


def with_history_user(catalogue: CatalogueState, topic: int) -> str:
    history = np.zeros(NUM_TOPICS, dtype=np.float32)
    history[topic] = 12.0
    catalogue.put_user(
        "fan",
        UserProfile(
            language=0,
            country=0,
            age_bucket=2,
            sessions_per_day=2.0,
            follow_count=100.0,
            sensitive_filter=False,
            history_topics=history,
            updated_ms=NOW_MS - 1,
        ),
    )
    return "fan"


@dataclass
class Served:
    catalogue: CatalogueState
    store: InMemoryFeatureStore
    model: ServingModel
    settings: ExploreSettings


def serve(posts: Posts, **settings: object) -> Served:
    catalogue = CatalogueState()
    add_posts(catalogue, posts)
    store = InMemoryFeatureStore(catalogue)
    explore = ExploreSettings(**settings)  # type: ignore[arg-type]
    rows = catalogue.live_rows()
    model = initial_serving_model(
        store.post_features(rows, NOW_MS),
        catalogue.post_column("created_ms")[rows],
        settings=explore,
        creation_times=catalogue_creation_times(catalogue),
    )
    return Served(catalogue, store, model, explore)


class RecordingLog:
    def __init__(self) -> None:
        self.decisions: list[events_pb2.Decision] = []

    def log_encoded(self, user_id: str, decision: bytes) -> bool:
        self.decisions.append(events_pb2.Decision.FromString(decision))
        return True

    def close(self) -> None:
        return None


def service_of(
    served: Served, policy: str = "epsilon_greedy"
) -> tuple[ExploreService, RecordingLog]:
    log = RecordingLog()
    service = ExploreService(
        store=served.store,
        settings=served.settings,
        policy=policy_from_name(policy, epsilon=0.3, temperature=0.1),
        clock=ManualClock(NOW_MS),
        decision_log=cast(DecisionLogger, log),
    )
    service.load(served.model)
    return service, log


def query(user_id: str, limit: int = 20) -> RankQuery:
    return RankQuery(user_id, limit, NOW_MS, language=None, country=None, surface="home")


def retrieved(served: Served, user_id: str) -> IntArray:
    service, _ = service_of(served)
    user = served.store.user_features(user_id, NOW_MS)
    return service.retrieve(served.model, user, query(user_id)).post_indices


def test_a_user_with_history_in_a_topic_retrieves_and_is_shown_that_topic() -> None:
    posts = mixed_posts()
    served = serve(posts, candidates=40)
    fan = with_history_user(served.catalogue, HISTORY_TOPIC)

    candidates = retrieved(served, fan)
    assert candidates.size == 40
    assert (posts.topic[candidates] == HISTORY_TOPIC).mean() >= 0.9

    service, _ = service_of(served)
    feed = service.rank(query(fan, limit=10), Deadline.after(30.0))
    shown = [int(item.post_id[1:]) for item in feed.items]
    assert (posts.topic[shown] == HISTORY_TOPIC).mean() >= 0.8


def test_a_brand_new_user_gets_a_full_feed_starting_from_the_newest_posts() -> None:
    posts = mixed_posts()
    served = serve(posts, candidates=30)

    candidates = retrieved(served, "stranger")
    newest = np.argsort(posts.age_hours)[:30]
    assert set(candidates.tolist()) == set(newest.tolist())

    service, _ = service_of(served)
    feed = service.rank(query("stranger", limit=25), Deadline.after(30.0))
    assert len(feed.items) == 25
    assert feed.model_version == "v0-init"


def pair(age_hours: tuple[float, float]) -> Served:
    """Two posts alike in everything but age (same topic, creator and counts)."""
    posts = Posts(np.array([HISTORY_TOPIC] * 2), np.array(age_hours, np.float32), ["c0", "c0"])
    return serve(posts)


def scores_of(served: Served, user_id: str = "stranger") -> FloatArray:
    rows = served.catalogue.live_rows()
    posts = served.store.post_features(rows, NOW_MS)
    user = served.store.user_features(user_id, NOW_MS)
    user_vector = served.model.two_tower.encode_users([user])[0]
    vectors = served.model.index.vectors(rows)
    similarity = vectors @ user_vector
    return served.model.ranker.score_retrieved(user, posts, similarity, NOW_MS).astype(np.float32)


def test_a_popular_post_outranks_an_unpopular_one_and_counts_move_it() -> None:
    served = pair((5.0, 5.0))
    shown = np.array([0, 1] * 100, dtype=np.int64)
    served.store.record_impressions(shown, NOW_MS - HOUR_MS)
    served.store.record_engagements("crowd", np.array([0] * 30), NOW_MS - HOUR_MS)

    popular, unpopular = scores_of(served)
    assert popular > unpopular
    untouched = scores_of(pair((5.0, 5.0)))[0]  # no counts: the creator's rate
    assert popular > untouched > unpopular


def test_a_fresh_post_outranks_an_old_one_by_the_half_life() -> None:
    served = pair((2.0, 26.0))
    fresh, old = scores_of(served)
    assert fresh > old
    assert fresh / old == pytest.approx(2.0, rel=1e-3)  # 24 hours apart: one half-life


def test_a_post_off_the_users_topics_is_penalised_only_for_users_with_history() -> None:
    posts = Posts(np.array([HISTORY_TOPIC, 7]), np.array([5.0, 5.0], np.float32), ["c0", "c0"])
    served = serve(posts)
    fan = with_history_user(served.catalogue, HISTORY_TOPIC)
    on_topic, off_topic = scores_of(served, fan)
    assert on_topic / off_topic == pytest.approx(math.exp(3.0), rel=1e-3)
    stranger = scores_of(served)
    assert stranger[0] == pytest.approx(stranger[1])


def test_scores_are_finite_for_zero_counts_zero_rates_and_old_posts() -> None:
    posts = Posts(
        np.array([0, 1, 2]), np.array([0.0, 24.0 * 29, 24.0 * 400], np.float32), ["z"] * 3
    )
    served = serve(posts)
    served.catalogue.set_creator_stats("z", followers=0.0, engagement_rate=0.0)
    scores = scores_of(served)
    assert np.isfinite(scores).all()
    assert ((scores > 0) & (scores < 1)).all()


@pytest.mark.parametrize("policy", ["epsilon_greedy", "plackett_luce", "greedy"])
def test_logged_decisions_carry_valid_propensities(policy: str) -> None:
    served = serve(mixed_posts())
    fan = with_history_user(served.catalogue, HISTORY_TOPIC)
    service, log = service_of(served, policy)
    for user_id in (fan, "stranger", "another stranger"):
        result = service.rank(query(user_id), Deadline.after(30.0))
        assert len(result.items) == 20

    assert len(log.decisions) == 3
    for decision in log.decisions:
        assert decision.model_version == "v0-init"
        propensities = [item.propensity for item in decision.items]
        assert len(propensities) == 20
        assert all(0.0 < propensity <= 1.0 for propensity in propensities)


def test_the_towers_inner_product_is_topic_affinity_plus_freshness() -> None:
    served = serve(Posts(np.array([1, 2]), np.array([0.0, 15 * 24.0], np.float32), ["c", "c"]))
    towers = served.model.two_tower
    assert isinstance(towers, ColdStartTowers)
    fan = with_history_user(served.catalogue, 1)
    user = served.store.user_features(fan, NOW_MS)

    similarity = served.model.index.vectors(np.array([0, 1])) @ towers.encode_users([user])[0]
    # post 0: full topic match, brand new; post 1: no match, half the maximum age (cos 0)
    np.testing.assert_allclose(
        similarity, [1.0 + served.settings.cold_start.retrieval_freshness, 0.0], atol=1e-5
    )
    assert (topic_directions(np.zeros((1, NUM_TOPICS))) == 0).all()


def test_posts_arriving_later_are_embedded_by_the_cold_start_towers() -> None:
    served = serve(mixed_posts())
    service, _ = service_of(served)
    indexer = CatalogueIndexer(served.catalogue, served.store, service.slots, lambda: NOW_MS)
    late = Posts(np.array([5]), np.array([0.1], np.float32), ["late"])
    row = int(add_posts(served.catalogue, late, first_id=10_000)[0])
    indexer.flush()

    assert row in served.model.index
    assert int(retrieved(served, "stranger")[0]) == row  # the newest post comes first


def test_the_serving_state_starts_on_the_cold_start_policy() -> None:
    catalogue = CatalogueState()
    add_posts(catalogue, mixed_posts(50))
    state = build_serving_state(Settings(), ManualClock(NOW_MS), catalogue, show_progress=False)
    assert state.model.version == "v0-init"
    assert isinstance(state.model.ranker, ColdStartRanker)
    assert len(state.model.index) == 50
