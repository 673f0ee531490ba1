from __future__ import annotations

import dataclasses
from dataclasses import fields
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from feedrank.core.feature_schema import (
    AGE_BUCKETS,
    CONTENT_DIM,
    COUNTRIES,
    LANGUAGES,
    NUM_TOPICS,
)
from feedrank.simulate.world.config import BehaviourConfig, WorldConfig
from feedrank.simulate.world.generator import (
    CreatorTable,
    HiddenParameters,
    PostTable,
    UserTable,
    World,
    generate_world,
)

SMALL = WorldConfig(num_users=400, num_creators=80, num_posts=4_000)


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(SMALL)


def _tables(world: World) -> dict[str, UserTable | CreatorTable | PostTable]:
    return {"users": world.users, "creators": world.creators, "posts": world.posts}


def _columns(world: World) -> dict[str, npt.NDArray[Any]]:
    tables: dict[str, UserTable | CreatorTable | PostTable | HiddenParameters]
    tables = {**_tables(world), "hidden": world.hidden}
    return {
        f"{name}.{item.name}": getattr(table, item.name)
        for name, table in tables.items()
        for item in fields(table)
    }


def test_same_seed_gives_an_identical_world(world: World) -> None:
    again = _columns(generate_world(SMALL))
    for name, column in _columns(world).items():
        np.testing.assert_array_equal(column, again[name], err_msg=name)


def test_another_seed_gives_another_world(world: World) -> None:
    other = generate_world(WorldConfig(num_users=400, num_creators=80, num_posts=4_000, seed=8))
    assert not np.array_equal(world.posts.topics, other.posts.topics)
    assert not np.array_equal(world.users.country, other.users.country)
    assert not np.array_equal(world.hidden.user_interests, other.hidden.user_interests)


def test_tables_have_the_configured_sizes_and_dtypes(world: World) -> None:
    assert (len(world.users), len(world.creators), len(world.posts)) == (400, 80, 4_000)
    assert world.num_users == 400
    assert world.num_posts == 4_000
    assert world.posts.topics.shape == (4_000, NUM_TOPICS)
    assert world.posts.content.shape == (4_000, CONTENT_DIM)
    assert world.posts.topics.dtype == np.float32
    assert world.posts.content.dtype == np.float32
    assert world.posts.created_ms.dtype == np.int64
    assert world.posts.sensitive.dtype == np.bool_
    assert world.hidden.user_interests.shape == (400, NUM_TOPICS)
    assert world.nbytes > world.posts.nbytes > 0


def test_categorical_columns_stay_in_range(world: World) -> None:
    for table in (world.users, world.creators, world.posts):
        assert table.language.min() >= 0
        assert table.language.max() < len(LANGUAGES)
        assert table.country.min() >= 0
        assert table.country.max() < len(COUNTRIES)
    assert world.users.age_bucket.min() >= 0
    assert world.users.age_bucket.max() < AGE_BUCKETS
    assert world.posts.creator_index.max() < len(world.creators)
    assert (world.users.sessions_per_day > 0).all()
    assert (world.creators.followers >= 0).all()
    rates = world.creators.engagement_rate
    assert ((rates > 0) & (rates <= 1)).all()


def test_post_topics_are_a_few_weights_summing_to_one(world: World) -> None:
    topics = world.posts.topics
    np.testing.assert_allclose(topics.sum(axis=1), 1.0, atol=1e-5)
    assert (topics >= 0).all()
    used = (topics > 0).sum(axis=1)
    assert used.min() >= 1
    assert used.max() <= SMALL.max_topics_per_post
    assert used.mean() > 1.0


def test_content_is_unit_length_and_follows_topics(world: World) -> None:
    content = world.posts.content
    np.testing.assert_allclose(np.linalg.norm(content, axis=1), 1.0, atol=1e-4)
    dominant = world.posts.topics.argmax(axis=1)
    topic = int(np.bincount(dominant).argmax())
    same = content[dominant == topic][:50]
    other = content[dominant != topic][:50]
    assert float((same @ same.T).mean()) > float((same @ other.T).mean()) + 0.2


def test_posts_are_created_in_order_within_the_span(world: World) -> None:
    created = world.posts.created_ms
    assert (np.diff(created) >= 0).all()
    assert created.min() >= SMALL.first_post_ms
    assert created.max() < SMALL.last_post_ms
    assert SMALL.last_post_ms == SMALL.start_ms


def test_posts_carry_their_creator_country_and_a_few_locks(world: World) -> None:
    posts = world.posts
    np.testing.assert_array_equal(posts.country, world.creators.country[posts.creator_index])
    assert 0.005 < posts.region_locked.mean() < 0.08
    assert 0.0 < posts.sensitive.mean() < 0.2
    assert 0.1 < world.users.sensitive_filter.mean() < 0.5


def test_most_posts_are_in_their_creator_language(world: World) -> None:
    same = world.posts.language == world.creators.language[world.posts.creator_index]
    assert same.mean() > 0.85


def test_hidden_parameters_are_not_in_the_observable_tables(world: World) -> None:
    hidden_names = {item.name for item in fields(world.hidden)}
    hidden_arrays = [getattr(world.hidden, name) for name in hidden_names]
    for table in _tables(world).values():
        for item in fields(table):
            assert item.name not in hidden_names
            column = getattr(table, item.name)
            assert not any(np.shares_memory(column, secret) for secret in hidden_arrays)
    assert "hidden" not in repr(world)


def test_hidden_parameters_look_as_documented(world: World) -> None:
    hidden = world.hidden
    np.testing.assert_allclose(np.linalg.norm(hidden.user_interests, axis=1), 1.0, atol=1e-4)
    assert abs(float(hidden.post_quality.mean())) < 0.2
    assert 0.8 < float(hidden.post_quality.std()) < 1.2


def test_history_is_a_few_engagements_per_user_on_their_interests(world: World) -> None:
    history = world.users.history_topics
    assert history.shape == (400, NUM_TOPICS)
    assert history.min() >= 0.0
    np.testing.assert_array_equal(history, np.rint(history))  # whole engagements
    per_user = history.sum(axis=1)
    assert 6.0 < float(per_user.mean()) < 20.0  # history_engagements_mean = 12
    # Most of a user's past engagements are on topics they care about.
    interests = world.hidden.user_interests
    shares = history / np.maximum(per_user[:, None], 1.0)
    on_interest = (shares * (interests**2)).sum(axis=1)
    by_chance = (interests**2).mean(axis=1)
    assert float(on_interest[per_user > 0].mean()) > 4 * float(by_chance.mean())


def test_history_does_not_change_the_other_draws() -> None:
    without = generate_world(dataclasses.replace(SMALL, history_engagements_mean=0.0))
    world = generate_world(SMALL)
    assert float(without.users.history_topics.sum()) == 0.0
    np.testing.assert_array_equal(without.hidden.user_interests, world.hidden.user_interests)
    np.testing.assert_array_equal(without.users.language, world.users.language)
    np.testing.assert_array_equal(without.posts.topics, world.posts.topics)


def test_every_array_is_read_only(world: World) -> None:
    for name, column in _columns(world).items():
        assert not column.flags.writeable, name
    with pytest.raises(ValueError, match="read-only"):
        world.posts.created_ms[0] = 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_users": 0}, "num_users"),
        ({"num_posts": -1}, "num_posts"),
        ({"region_locked_share": 1.5}, "region_locked_share"),
        ({"country_weights": (1.0, 2.0)}, "country_weights"),
        ({"post_span_days": 0.0}, "post_span_days"),
        ({"max_topics_per_post": 0}, "max_topics_per_post"),
    ],
)
def test_world_config_rejects_bad_values(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorldConfig(**overrides)  # type: ignore[arg-type]


def test_behaviour_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="second_action_prob"):
        BehaviourConfig(second_action_prob=2.0)
    with pytest.raises(ValueError, match="negative_weights"):
        BehaviourConfig(negative_weights=(1.0, 1.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="position_decay"):
        BehaviourConfig(position_decay=0.0)


def test_default_delays_put_a_few_percent_beyond_two_weeks() -> None:
    assert 0.03 <= BehaviourConfig().share_beyond(14.0) <= 0.05
