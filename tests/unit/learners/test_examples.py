"""LabelledExample -> model inputs: exactly the logged impression-time features."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from feedrank.core.features.schema import AFFINITY_FEATURES, TOPIC_FEATURES
from feedrank.core.features.store import InMemoryFeatureStore
from feedrank.core.world.catalogue import catalogue_from_world
from feedrank.learners.examples import InvalidExampleError, batch_from_examples, concat
from tests.unit.learners.factories import simulated_examples, tiny_world


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
    rows = batch.posts.post_index
    np.testing.assert_array_equal(batch.posts.topics, np.asarray(world.posts.topics)[rows])
    assert batch.labels.tolist() == [float(example.engaged) for example in examples]
    assert batch.keys[0] == f"{first.decision_id}/{first.post_id}"


def test_topics_come_from_the_log_without_a_catalogue() -> None:
    examples = simulated_examples(50)[:5]
    batch = batch_from_examples(examples)
    expected = np.asarray(tiny_world().posts.topics)[batch.posts.post_index]
    np.testing.assert_array_equal(batch.posts.topics, expected)
    logged = [name for name in examples[0].post_features.numeric if name.startswith("topic_")]
    assert 0 < len(logged) < len(TOPIC_FEATURES)  # only the non-zero weights are logged


def test_logs_without_topics_use_the_catalogue_or_zeros() -> None:
    examples = copy.deepcopy(simulated_examples(50)[:5])
    for example in examples:
        for name in TOPIC_FEATURES:
            example.post_features.numeric.pop(name, None)
    assert not batch_from_examples(examples).posts.topics.any()
    catalogue = np.asarray(tiny_world().posts.topics)
    batch = batch_from_examples(examples, topics=catalogue)
    np.testing.assert_array_equal(batch.posts.topics, catalogue[batch.posts.post_index])


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
