"""The decision log's view of posts: ``PostFeatureBatch.to_protos``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from feedrank.core.features.schema import AFFINITY_FEATURES, NUM_TOPICS, TOPIC_FEATURES
from tests.unit.core.models.factories import make_posts, make_user


def test_post_protos_log_the_non_zero_topic_weights_only() -> None:
    posts = make_posts(np.random.default_rng(0), 3)
    topics = np.zeros((3, NUM_TOPICS), dtype=np.float32)
    topics[0, [2, 17]] = [0.25, 0.75]
    topics[1, NUM_TOPICS - 1] = 1.0  # row 2 has no topic at all
    protos = dataclasses.replace(posts, topics=topics).to_protos()
    logged = [
        {name: value for name, value in proto.numeric.items() if name in TOPIC_FEATURES}
        for proto in protos
    ]
    assert logged == [
        {"topic_2": 0.25, "topic_17": 0.75},
        {f"topic_{NUM_TOPICS - 1}": 1.0},
        {},
    ]
    assert protos[0].numeric["impressions"] == float(posts.impressions[0])


def test_logged_topic_weights_are_exact() -> None:
    posts = make_posts(np.random.default_rng(1), 5)
    for row, proto in enumerate(posts.to_protos()):
        rebuilt = np.zeros(NUM_TOPICS, dtype=np.float32)
        for column, name in enumerate(TOPIC_FEATURES):
            rebuilt[column] = proto.numeric.get(name, 0.0)
        np.testing.assert_array_equal(rebuilt, posts.topics[row])


def test_user_protos_log_the_non_zero_topic_affinities_only() -> None:
    affinity = [0.0] * NUM_TOPICS
    affinity[3], affinity[30] = 0.75, 0.25
    user = make_user(np.random.default_rng(2), known=True)
    logged = dataclasses.replace(user, topic_affinity=tuple(affinity)).to_proto().numeric
    assert {name: logged[name] for name in logged if name in AFFINITY_FEATURES} == {
        "affinity_3": 0.75,
        "affinity_30": 0.25,
    }
    without = dataclasses.replace(user, topic_affinity=()).to_proto().numeric
    assert not any(name in AFFINITY_FEATURES for name in without)


def test_a_topic_affinity_of_the_wrong_length_is_refused() -> None:
    user = make_user(np.random.default_rng(3))
    with pytest.raises(ValueError, match="topic_affinity"):
        dataclasses.replace(user, topic_affinity=(1.0, 0.0))
