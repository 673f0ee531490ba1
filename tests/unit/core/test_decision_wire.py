"""The decision log's hand-written wire bytes parse to exactly the protobuf-built Decision,
full or compact; a realistic compact decision is a fifth of a full one."""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import pytest

from feedrank.core.decision_wire import encode_decision
from feedrank.core.feature_schema import DYNAMIC_POST_FEATURES, NUM_TOPICS, PostFeatureBatch
from feedrank.explore.queries import RankedPost
from feedrank.features.store import InMemoryFeatureStore
from feedrank.simulate.world.catalogue import catalogue_from_world
from feedrank.v1 import events_pb2
from tests.support.model_versions import small_world
from tests.unit.models.factories import AS_OF_MS, make_posts, make_user


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


def built_compact(
    decision: events_pb2.Decision,
    posts: PostFeatureBatch,
    items: list[RankedPost],
    versions: npt.NDArray[np.int64],
) -> events_pb2.Decision:
    """The compact decision, built by the protobuf runtime: dynamic values and a version per
    item (all features where the post has no version), their names once."""
    expected = built_with_protobuf(decision, posts, items)
    expected.item_feature_names.extend(DYNAMIC_POST_FEATURES)
    rows = zip(expected.items, posts.dynamic_values(), versions.tolist(), strict=True)
    for item, values, version in rows:
        if version > 0:
            item.features.CopyFrom(events_pb2.FeatureVector(values=values.tolist()))
            item.catalogue_version = version
    return expected


@pytest.mark.parametrize("count", [0, 1, 50, 200])
def test_compact_bytes_parse_to_the_protobuf_built_compact_decision(count: int) -> None:
    rng = np.random.default_rng(count)
    posts = make_posts(rng, count)
    items = items_for(count, rng)
    versions = rng.integers(1, 2**41, size=count, dtype=np.int64)
    encoded = encode_decision(header(), posts, items, versions)
    decision = events_pb2.Decision.FromString(encoded)
    assert decision == built_compact(header(), posts, items, versions)
    assert list(decision.item_feature_names) == list(DYNAMIC_POST_FEATURES)
    for item, row in zip(decision.items, posts.dynamic_values(), strict=True):
        assert not item.features.numeric
        assert not item.features.embedding
        assert list(item.features.values) == row.tolist()  # float32: nothing is rounded


def test_a_post_without_a_version_is_logged_whole_beside_compact_ones() -> None:
    rng = np.random.default_rng(4)
    posts = make_posts(rng, 4)
    items = items_for(4, rng)
    versions = np.array([5, 0, -1, 1_764_000_000_000], dtype=np.int64)
    decision = events_pb2.Decision.FromString(encode_decision(header(), posts, items, versions))
    assert decision == built_compact(header(), posts, items, versions)
    assert [item.catalogue_version for item in decision.items] == [5, 0, 0, 1_764_000_000_000]
    assert decision.items[1].features == posts.to_protos()[1]


def test_a_header_with_item_names_or_mismatched_versions_is_refused() -> None:
    rng = np.random.default_rng(5)
    posts = make_posts(rng, 2)
    named = header()
    named.item_feature_names.append("age_hours")
    with pytest.raises(ValueError, match="names"):
        encode_decision(named, posts, items_for(2, rng), np.ones(2, dtype=np.int64))
    with pytest.raises(ValueError, match="2 catalogue versions"):
        encode_decision(header(), posts, items_for(2, rng), np.ones(3, dtype=np.int64))


def test_a_realistic_30_item_compact_decision_is_a_fifth_of_a_full_one() -> None:
    """Posts, versions and the user as the feature store of a simulated world serves them
    (a user with eight topic affinities, posts with one or two topics)."""
    world = small_world(3_000, 300, AS_OF_MS)
    store = InMemoryFeatureStore(catalogue_from_world(world))
    posts, versions = store.versioned_post_features(np.arange(1_000, 1_030), AS_OF_MS)
    user = store.user_features("u5", AS_OF_MS)
    decision = header()
    decision.user_features.CopyFrom(user.to_proto())
    items = [
        RankedPost(post_id=identifier, position=position, score=0.5, propensity=0.9)
        for position, identifier in enumerate(store.post_ids(posts.post_index))
    ]
    full = encode_decision(decision, posts, items)
    compact = encode_decision(decision, posts, items, versions)
    header_bytes = len(decision.SerializeToString())
    print(f"30 items: full {len(full):,} B, compact {len(compact):,} B (header {header_bytes} B)")
    assert len(compact) - header_bytes <= 2_048  # the shown items and their names
    assert len(compact) * 5 <= len(full)
