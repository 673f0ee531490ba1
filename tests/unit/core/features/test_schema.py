"""The decision log's view of posts: ``PostFeatureBatch.to_protos``."""

from __future__ import annotations

import dataclasses

import numpy as np

from feedrank.core.features.schema import NUM_TOPICS, TOPIC_FEATURES
from tests.unit.core.models.factories import make_posts


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
