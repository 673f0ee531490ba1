from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest

from feedrank.core import codecs
from feedrank.core.codecs import RewardTypeValue
from feedrank.core.feature_schema import FloatArray, IntArray, post_id, post_index
from feedrank.core.time_units import DAY_MS, HOUR_MS
from feedrank.simulate.world.behaviour import BehaviourModel
from feedrank.simulate.world.config import WorldConfig
from feedrank.simulate.world.generator import World, generate_world
from feedrank.v1 import events_pb2

POSITIVE = {
    events_pb2.REWARD_TYPE_LIKE,
    events_pb2.REWARD_TYPE_COMMENT,
    events_pb2.REWARD_TYPE_SHARE,
    events_pb2.REWARD_TYPE_SAVE,
}
NEGATIVE = {
    events_pb2.REWARD_TYPE_HIDE,
    events_pb2.REWARD_TYPE_REPORT,
    events_pb2.REWARD_TYPE_BLOCK,
}
USER = 3


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(WorldConfig(num_users=300, num_creators=60, num_posts=3_000))


@pytest.fixture(scope="module")
def controlled(world: World) -> World:
    """The world with everything but interest match held equal: every post is fresh,
    of average quality, not sensitive and in the language every user speaks."""
    posts = replace(
        world.posts,
        language=np.zeros(world.num_posts, dtype=np.int64),
        sensitive=np.zeros(world.num_posts, dtype=np.bool_),
        created_ms=np.full(world.num_posts, world.config.start_ms - HOUR_MS, dtype=np.int64),
    )
    users = replace(world.users, language=np.zeros(world.num_users, dtype=np.int64))
    quality = np.zeros(world.num_posts, dtype=np.float32)
    hidden = replace(world.hidden, post_quality=quality)
    return replace(world, posts=posts, users=users, hidden=hidden)


@pytest.fixture(scope="module")
def model(world: World) -> BehaviourModel:
    return BehaviourModel(world, seed=11)


def _by_match(world: World, user: int) -> IntArray:
    """Post rows from best to worst interest match (reads hidden truth, as tests may)."""
    match = world.posts.topics @ world.hidden.user_interests[user]
    return np.argsort(-match / np.linalg.norm(world.posts.topics, axis=1), kind="stable")


def _count(rewards: Iterable[events_pb2.Reward], types: Collection[RewardTypeValue]) -> int:
    return sum(1 for reward in rewards if reward.type in types)


def _fresh_time(world: World, posts: IntArray) -> int:
    """An impression time one hour after the newest of ``posts`` was created."""
    return int(world.posts.created_ms[posts].max()) + HOUR_MS


def _show_many(
    model: BehaviourModel, user: int, posts: IntArray, draws: int, at_ms: int, seed: int = 0
) -> list[events_pb2.Reward]:
    rng = np.random.default_rng(seed)
    rewards: list[events_pb2.Reward] = []
    for draw in range(draws):
        rewards += model.respond(user, posts, decision_id=f"d{draw}", impression_ms=at_ms, rng=rng)
    return rewards


def test_rewards_are_valid_events_ordered_in_time(world: World, model: BehaviourModel) -> None:
    posts = _by_match(world, USER)[:30]
    at_ms = _fresh_time(world, posts)
    rewards = _show_many(model, USER, posts, draws=20, at_ms=at_ms)
    assert rewards
    for reward in rewards:
        assert codecs.decode_reward(codecs.encode(reward)) == reward
        assert reward.user_id == f"u{USER}"
        assert reward.decision_id.startswith("d")
        assert post_index(reward.post_id) in set(posts.tolist())
        assert reward.ts_ms > at_ms
        assert reward.HasField("value") == (reward.type == events_pb2.REWARD_TYPE_DWELL)
    single = model.respond(USER, posts, decision_id="one", impression_ms=at_ms)
    times = [reward.ts_ms for reward in single]
    assert times == sorted(times)


def test_the_same_rng_seed_gives_the_same_rewards(world: World, model: BehaviourModel) -> None:
    posts = _by_match(world, USER)[:20]
    at_ms = _fresh_time(world, posts)
    first = _show_many(model, USER, posts, draws=5, at_ms=at_ms, seed=5)
    second = _show_many(model, USER, posts, draws=5, at_ms=at_ms, seed=5)
    assert first == second
    assert first != _show_many(model, USER, posts, draws=5, at_ms=at_ms, seed=6)


def test_top_positions_engage_more(controlled: World) -> None:
    model = BehaviourModel(controlled, seed=2)
    posts = _by_match(controlled, USER)[:20]
    at_ms = controlled.config.start_ms
    oracle = model.engagement_probability(
        USER, np.repeat(posts[:1], 20), np.arange(20, dtype=np.int64), at_ms
    )
    assert (np.diff(oracle) < 0).all()
    rng = np.random.default_rng(1)
    engaged_at = np.zeros(20)
    for draw in range(300):
        feed = rng.permutation(posts)
        position = {post_id(int(row)): slot for slot, row in enumerate(feed)}
        rewards = model.respond(USER, feed, decision_id=f"d{draw}", impression_ms=at_ms, rng=rng)
        for reward in rewards:
            if reward.type in POSITIVE:
                engaged_at[position[reward.post_id]] += 1
    assert engaged_at[:5].sum() > 2 * engaged_at[-5:].sum()


def test_older_posts_engage_less(controlled: World) -> None:
    model = BehaviourModel(controlled, seed=2)
    posts = _by_match(controlled, USER)[:20]
    fresh_ms = controlled.config.start_ms
    stale_ms = fresh_ms + 10 * DAY_MS
    positions = np.zeros(20, dtype=np.int64)
    fresh_p = model.engagement_probability(USER, posts, positions, fresh_ms)
    stale_p = model.engagement_probability(USER, posts, positions, stale_ms)
    assert (stale_p < fresh_p).all()
    fresh = _count(_show_many(model, USER, posts, 150, fresh_ms), POSITIVE)
    stale = _count(_show_many(model, USER, posts, 150, stale_ms), POSITIVE)
    assert fresh > 2 * stale


def test_interest_match_raises_engagement(controlled: World) -> None:
    model = BehaviourModel(controlled, seed=2)
    ranked = _by_match(controlled, USER)
    at_ms = controlled.config.start_ms
    engaged_best = _count(_show_many(model, USER, ranked[:20], 150, at_ms), POSITIVE)
    engaged_worst = _count(_show_many(model, USER, ranked[-20:], 150, at_ms), POSITIVE)
    assert engaged_best > 3 * max(engaged_worst, 1)


def test_bad_matches_draw_hides_reports_and_blocks(controlled: World) -> None:
    model = BehaviourModel(controlled, seed=2)
    ranked = _by_match(controlled, USER)
    at_ms = controlled.config.start_ms
    on_worst = Counter(reward.type for reward in _show_many(model, USER, ranked[-20:], 400, at_ms))
    on_best = _count(_show_many(model, USER, ranked[:20], 400, at_ms), NEGATIVE)
    for kind in NEGATIVE:
        assert on_worst[kind] > 0
    assert sum(on_worst[kind] for kind in NEGATIVE) > 3 * max(on_best, 1)


def test_sensitive_posts_upset_users_who_filter_them(controlled: World) -> None:
    def with_filter(value: bool) -> BehaviourModel:
        flags = np.full(controlled.num_users, value)
        users = replace(controlled.users, sensitive_filter=flags)
        posts = replace(controlled.posts, sensitive=np.ones(controlled.num_posts, dtype=np.bool_))
        return BehaviourModel(replace(controlled, users=users, posts=posts), seed=3)

    feed = _by_match(controlled, USER)[:20]
    at_ms = controlled.config.start_ms
    filtered = _show_many(with_filter(True), USER, feed, 200, at_ms)
    unfiltered = _show_many(with_filter(False), USER, feed, 200, at_ms)
    assert _count(filtered, NEGATIVE) > 3 * max(_count(unfiltered, NEGATIVE), 1)
    assert _count(filtered, POSITIVE) < _count(unfiltered, POSITIVE)


def test_a_foreign_language_lowers_engagement(controlled: World) -> None:
    posts = _by_match(controlled, USER)[:20]
    zero = np.zeros(posts.shape[0], dtype=np.int64)

    def oracle_with_user_language(language: int) -> FloatArray:
        languages = np.full(controlled.num_users, language, dtype=np.int64)
        users = replace(controlled.users, language=languages)
        model = BehaviourModel(replace(controlled, users=users))
        return model.engagement_probability(USER, posts, zero, controlled.config.start_ms)

    assert (oracle_with_user_language(0) > oracle_with_user_language(1)).all()


def test_delays_run_from_seconds_to_beyond_the_reward_window(controlled: World) -> None:
    model = BehaviourModel(controlled, seed=2)
    posts = _by_match(controlled, USER)[:20]
    at_ms = controlled.config.start_ms
    rewards = _show_many(model, USER, posts, 600, at_ms)
    delays_s = np.array([(reward.ts_ms - at_ms) / 1000 for reward in rewards])
    late = np.array(
        [(r.ts_ms - at_ms) / 1000 for r in rewards if r.type in POSITIVE], dtype=np.float64
    )
    assert (delays_s < 60).sum() > 0
    assert (delays_s > 14 * 86_400).sum() > 0
    assert 0.015 < float((late > 14 * 86_400).mean()) < 0.07
    assert delays_s.max() <= model.config.max_delay_s + model.config.max_dwell_s + 1


@pytest.mark.parametrize("within_days", [0.01, 2.0, 60.0])
def test_expected_engaged_within_is_what_respond_draws_on_average(
    controlled: World, within_days: float
) -> None:
    model = BehaviourModel(controlled, seed=3)
    posts = _by_match(controlled, USER)[:20]
    at_ms = _fresh_time(controlled, posts)
    within_ms = int(within_days * DAY_MS)
    expected = model.expected_engaged_within(USER, posts, at_ms, within_ms)
    draws = 4_000
    rng = np.random.default_rng(5)
    engaged = 0
    for draw in range(draws):
        rewards = model.respond(USER, posts, decision_id=f"d{draw}", impression_ms=at_ms, rng=rng)
        engaged += len(
            {r.post_id for r in rewards if r.type in POSITIVE and r.ts_ms <= at_ms + within_ms}
        )
    mean = engaged / draws
    standard_error = float(np.sqrt(np.sum(expected * (1 - expected)) / draws))
    assert abs(mean - float(expected.sum())) < 4 * standard_error
    assert np.all((expected >= 0) & (expected <= 1))


def test_expected_engaged_within_grows_with_the_window(world: World, model: BehaviourModel) -> None:
    posts = np.arange(0, 200, 10, dtype=np.int64)
    at_ms = world.config.start_ms
    windows = [0, HOUR_MS, DAY_MS, 14 * DAY_MS, 100 * DAY_MS]
    totals = [model.expected_engaged_within(USER, posts, at_ms, w).sum() for w in windows]
    assert totals[0] == 0.0
    assert all(a < b for a, b in pairwise(totals))
    everything = model.engagement_probability(USER, posts, np.arange(posts.size), at_ms)
    np.testing.assert_allclose(totals[-1], everything.sum(), rtol=1e-5)


def test_oracle_top_k_orders_candidates_by_oracle_probability(
    world: World, model: BehaviourModel
) -> None:
    candidates = np.arange(0, 3_000, 7, dtype=np.int64)
    at_ms = world.config.start_ms
    top = model.oracle_top_k(USER, candidates, 10, at_ms)
    probability = model.engagement_probability(USER, candidates, np.zeros_like(candidates), at_ms)
    expected = candidates[np.argsort(-probability, kind="stable")[:10]]
    np.testing.assert_array_equal(top, expected)
    assert model.oracle_top_k(USER, candidates[:3], 10, at_ms).shape == (3,)


def test_bad_input_is_rejected(model: BehaviourModel) -> None:
    feed = np.array([1, 2], dtype=np.int64)
    with pytest.raises(IndexError, match="user index"):
        model.respond(10_000, feed, decision_id="d", impression_ms=0)
    with pytest.raises(IndexError, match="post indices"):
        model.respond(0, np.array([-1], dtype=np.int64), decision_id="d", impression_ms=0)
    with pytest.raises(ValueError, match="one entry per post"):
        model.engagement_probability(0, feed, np.zeros(3, dtype=np.int64), 0)
    with pytest.raises(ValueError, match="decision_id"):
        model.respond(0, feed, decision_id="", impression_ms=0)
    empty = np.array([], dtype=np.int64)
    assert model.respond(0, empty, decision_id="d", impression_ms=1_764_000_000_000) == []
