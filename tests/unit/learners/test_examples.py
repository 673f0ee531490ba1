"""LabelledExample -> model inputs: exactly the logged impression-time features."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pytest

from feedrank.core.feature_schema import (
    AFFINITY_FEATURES,
    TOPIC_FEATURES,
    IntArray,
    post_index,
    post_keys,
)
from feedrank.features.store import InMemoryFeatureStore
from feedrank.learners.examples import InvalidExampleError, batch_from_examples, concat
from feedrank.learners.post_ids import PostIds
from feedrank.learners.post_topics import CatalogueTopics
from feedrank.simulate.world.catalogue import catalogue_from_world
from feedrank.simulate.world_views import world_topics
from feedrank.v1 import events_pb2
from tests.unit.learners.factories import simulated_examples, tiny_world


def world_rows(examples: Sequence[events_pb2.LabelledExample]) -> IntArray:
    """The generated world's row of each example's post (its ids are ``p<row>``)."""
    return np.array([post_index(example.post_id) for example in examples], dtype=np.int64)


def test_a_batch_rebuilds_the_logged_user_and_post_features() -> None:
    examples = simulated_examples(50)[:20]
    world = tiny_world()
    batch = batch_from_examples(examples, topics=np.asarray(world.posts.topics))
    fresh_store = InMemoryFeatureStore(catalogue_from_world(world))
    first = examples[0]
    user = fresh_store.user_features(first.user_id, first.decision_time_ms)
    assert batch.users[0].language == user.language
    assert batch.users[0].age_bucket == user.age_bucket
    assert batch.users[0].as_of_ms == first.decision_time_ms
    assert batch.users[0].topic_affinity  # the simulated users have a history
    np.testing.assert_allclose(batch.users[0].topic_affinity, user.topic_affinity, rtol=1e-6)
    np.testing.assert_array_equal(
        batch.posts.content[0], np.asarray(first.post_features.embedding, dtype=np.float32)
    )
    rows = world_rows(examples)
    np.testing.assert_array_equal(batch.posts.topics, np.asarray(world.posts.topics)[rows])
    np.testing.assert_array_equal(batch.posts.post_key, post_keys(ex.post_id for ex in examples))
    assert batch.labels.tolist() == [float(example.engaged) for example in examples]
    assert batch.keys[0] == f"{first.decision_id}/{first.post_id}"


def test_topics_come_from_the_log_without_a_catalogue() -> None:
    examples = simulated_examples(50)[:5]
    batch = batch_from_examples(examples)
    expected = np.asarray(tiny_world().posts.topics)[world_rows(examples)]
    np.testing.assert_array_equal(batch.posts.topics, expected)
    logged = [name for name in examples[0].post_features.numeric if name.startswith("topic_")]
    assert 0 < len(logged) < len(TOPIC_FEATURES)  # only the non-zero weights are logged


def test_logs_without_topics_use_the_catalogue_or_zeros() -> None:
    examples = copy.deepcopy(simulated_examples(50)[:5])
    for example in examples:
        for name in TOPIC_FEATURES:
            example.post_features.numeric.pop(name, None)
    assert not batch_from_examples(examples).posts.topics.any()
    world = tiny_world()
    expected = np.asarray(world.posts.topics)[world_rows(examples)]
    for lookup in (
        world_topics(world),  # a table by id
        CatalogueTopics(catalogue_from_world(world)),  # a catalogue state, read live
        np.asarray(world.posts.topics),  # a world's array by row, as older callers pass
    ):
        batch = batch_from_examples(examples, topics=lookup)
        np.testing.assert_array_equal(batch.posts.topics, expected)


def test_posts_the_lookup_does_not_know_keep_their_logged_topics() -> None:
    examples = copy.deepcopy(simulated_examples(50)[:3])
    examples[0].post_id = "article-not-in-the-world"
    for example in examples[:2]:
        for name in TOPIC_FEATURES:
            example.post_features.numeric.pop(name, None)
    batch = batch_from_examples(examples, topics=world_topics(tiny_world()))
    assert not batch.posts.topics[0].any()  # unknown, nothing logged: zeros
    expected = np.asarray(tiny_world().posts.topics)[world_rows(examples[1:])]
    np.testing.assert_array_equal(batch.posts.topics[1:], expected)


def test_nan_and_missing_features_are_rejected_naming_the_field() -> None:
    example = copy.deepcopy(simulated_examples(50)[0])
    example.post_features.numeric["impressions"] = float("nan")
    with pytest.raises(InvalidExampleError) as caught:
        batch_from_examples([example])
    assert caught.value.field == "post_features.impressions"
    example = copy.deepcopy(simulated_examples(50)[0])
    del example.user_features.numeric["activity"]
    with pytest.raises(InvalidExampleError, match="activity"):
        batch_from_examples([example])
    example = copy.deepcopy(simulated_examples(50)[0])
    example.propensity = 0.0
    with pytest.raises(InvalidExampleError, match="propensities"):
        batch_from_examples([example])


def test_a_logged_affinity_is_checked_and_older_logs_have_none() -> None:
    example = copy.deepcopy(simulated_examples(50)[0])
    example.user_features.numeric["affinity_4"] = -0.5
    with pytest.raises(InvalidExampleError) as caught:
        batch_from_examples([example])
    assert caught.value.field == "user_features.affinity_4"
    for name in AFFINITY_FEATURES:
        example.user_features.numeric.pop(name, None)
    assert batch_from_examples([example]).users[0].topic_affinity == ()


def test_the_affinity_evidence_is_decoded_checked_and_zero_in_older_logs() -> None:
    example = copy.deepcopy(simulated_examples(50)[0])
    logged = example.user_features.numeric["affinity_engagements"]
    assert logged > 0.0  # the simulated users have a history
    assert batch_from_examples([example]).users[0].affinity_engagements == pytest.approx(logged)
    example.user_features.numeric["affinity_engagements"] = float("inf")
    with pytest.raises(InvalidExampleError) as caught:
        batch_from_examples([example])
    assert caught.value.field == "user_features.affinity_engagements"
    del example.user_features.numeric["affinity_engagements"]
    assert batch_from_examples([example]).users[0].affinity_engagements == 0.0


def test_take_and_concat_keep_rows_aligned() -> None:
    batch = batch_from_examples(simulated_examples(50)[:10])
    rows = np.array([3, 1], dtype=np.int64)
    joined = concat([batch.take(rows), batch.take(rows)])
    assert joined.keys == (batch.keys[3], batch.keys[1]) * 2
    np.testing.assert_array_equal(joined.posts.post_index[:2], batch.posts.post_index[rows])


def test_any_string_post_id_is_interned_first_seen_first() -> None:
    examples = copy.deepcopy(simulated_examples(50)[:4])
    ids = ["article-é-42", "p7", "article-é-42", "x" * 256]
    for example, identifier in zip(examples, ids, strict=True):
        example.post_id = identifier
    post_ids = PostIds(["seeded"])
    batch = batch_from_examples(examples, post_ids=post_ids)
    assert batch.posts.post_index.tolist() == [1, 2, 1, 3]
    assert post_ids.ids(batch.posts.post_index) == ids
    np.testing.assert_array_equal(batch.posts.post_key, post_keys(ids))
    again = batch_from_examples(examples[::-1], post_ids=post_ids)  # rows are never reused
    assert again.posts.post_index.tolist() == [3, 1, 2, 1]
    assert batch.keys[0] == f"{examples[0].decision_id}/article-é-42"


def test_an_example_without_a_post_id_is_refused() -> None:
    example = copy.deepcopy(simulated_examples(50)[0])
    example.post_id = ""
    post_ids = PostIds()
    with pytest.raises(InvalidExampleError) as caught:
        batch_from_examples([example], post_ids=post_ids)
    assert caught.value.field == "post_id"
    assert len(post_ids) == 0
