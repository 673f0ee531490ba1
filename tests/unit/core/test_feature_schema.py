"""The decision log's view of posts (``PostFeatureBatch.to_protos``) and stable post keys."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from feedrank.core.feature_schema import (
    AFFINITY_FEATURES,
    NUM_TOPICS,
    TOPIC_FEATURES,
    post_key,
    post_keys,
)
from tests.unit.models.factories import make_posts, make_user


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


def test_post_keys_are_golden_int64_values_of_the_id_alone() -> None:
    # blake2b of the UTF-8 id: the same in every process, on every machine, whatever row
    # a catalogue gave the post. These values must never change (models hash them).
    assert post_key("article-é-42") == 5599170621307466370
    assert post_key("p0") == -833293793672659315  # digests past 2**63 wrap, as int64 does
    keys = post_keys(["article-é-42", "p0", "p1"])
    assert keys.dtype == np.int64
    assert keys.tolist() == [post_key(item) for item in ["article-é-42", "p0", "p1"]]
    assert post_keys([]).shape == (0,)


def test_post_keys_are_the_same_in_another_process() -> None:
    ids = ["article-é-42", "пост-🐈", "p7"]
    program = (
        "import sys; from feedrank.core.feature_schema import post_keys; "
        "print(post_keys(sys.argv[1:]).tolist())"
    )
    environment = {**os.environ, "PYTHONHASHSEED": "12345"}
    output = subprocess.run(
        [sys.executable, "-c", program, *ids],
        check=True,
        capture_output=True,
        text=True,
        env=environment,
    ).stdout
    assert output.strip() == str(post_keys(ids).tolist())


def test_the_decision_log_does_not_carry_the_key() -> None:
    # The learner recomputes it from the logged post id.
    proto = make_posts(np.random.default_rng(2), 1).to_protos()[0]
    assert not any("key" in name for name in (*proto.numeric, *proto.categorical))
