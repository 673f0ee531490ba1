"""The decision log's hand-written wire bytes parse to exactly the protobuf-built Decision."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from feedrank.core.decision_wire import encode_decision
from feedrank.core.feature_schema import NUM_TOPICS
from feedrank.explore.queries import RankedPost
from feedrank.v1 import events_pb2
from tests.unit.models.factories import make_posts, make_user


def header() -> events_pb2.Decision:
    user = make_user(np.random.default_rng(1), index=7)
    return events_pb2.Decision(
        decision_id="d" * 32,
        event_time_ms=1_764_000_000_123,
        user_id="u7",
        model_version="v0003",
        arm="canary",
        exploration_policy=events_pb2.EXPLORATION_POLICY_EPSILON_GREEDY,
        exploration_seed=2**63 + 5,
        user_features=user.to_proto(),
        context={"surface": "explore", "language": "pt"},
    )


def items_for(count: int, rng: np.random.Generator) -> list[RankedPost]:
    return [
        RankedPost(
            post_id=f"p{1_000_000 + row}",
            position=row,
            score=float(rng.random()),
            propensity=float(rng.uniform(1e-6, 1.0)),
        )
        for row in range(count)
    ]


def built_with_protobuf(
    decision: events_pb2.Decision, posts: object, items: list[RankedPost]
) -> events_pb2.Decision:
    expected = events_pb2.Decision()
    expected.CopyFrom(decision)
    for item, features in zip(items, posts.to_protos(), strict=True):  # type: ignore[attr-defined]
        expected.items.append(
            events_pb2.ShownItem(
                post_id=item.post_id,
                position=item.position,
                score=item.score,
                propensity=item.propensity,
                features=features,
            )
        )
    return expected


@pytest.mark.parametrize("count", [0, 1, 50, 200])
def test_bytes_parse_to_the_protobuf_built_decision(count: int) -> None:
    rng = np.random.default_rng(count)
    posts = make_posts(rng, count)
    items = items_for(count, rng)
    encoded = encode_decision(header(), posts, items)
    assert events_pb2.Decision.FromString(encoded) == built_with_protobuf(header(), posts, items)


def test_posts_without_topics_and_extreme_values_round_trip() -> None:
    rng = np.random.default_rng(9)
    posts = make_posts(rng, 3)
    topics = np.zeros((3, NUM_TOPICS), dtype=np.float32)
    topics[1, [0, NUM_TOPICS - 1]] = [1e-7, 0.999]
    posts = dataclasses.replace(
        posts,
        topics=topics,
        age_hours=np.array([0.0, 1e6, 3.5], dtype=np.float32),
        creator_index=np.array([0, 2**40, 7], dtype=np.int64),
    )
    items = items_for(3, rng)
    items[2] = dataclasses.replace(items[2], position=300, score=-0.0)  # a 2-byte varint
    encoded = encode_decision(header(), posts, items)
    assert events_pb2.Decision.FromString(encoded) == built_with_protobuf(header(), posts, items)


def test_a_header_with_items_or_mismatched_features_is_refused() -> None:
    rng = np.random.default_rng(2)
    posts = make_posts(rng, 2)
    with pytest.raises(ValueError, match="2 posts"):
        encode_decision(header(), posts, items_for(3, rng))
    with_items = header()
    with_items.items.add(post_id="p1")
    with pytest.raises(ValueError, match="must not carry items"):
        encode_decision(with_items, posts, items_for(2, rng))
