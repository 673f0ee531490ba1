"""The decision log's hand-written wire bytes parse to exactly the protobuf-built Decision,
full or compact; a realistic compact decision is at most 2 KB, a seventh of a full one."""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import pytest

from feedrank.core.compact_features import (
    POST_VALUES_LAYOUT,
    is_compact_user,
    item_layout,
    logged_item_values,
    logged_user_features,
)
from feedrank.core.decision_wire import UnshownPool, encode_decision
from feedrank.core.feature_schema import (
    DYNAMIC_POST_FEATURES,
    NUM_TOPICS,
    PostFeatureBatch,
    country_codes,
)
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
    item (all features where the post has no version), named once: by the layout, without
    age_hours, for posts as of the decision time; else every dynamic feature by name."""
    expected = built_with_protobuf(decision, posts, items)
    at_posts_time_ = posts.as_of_ms == decision.event_time_ms
    names = (POST_VALUES_LAYOUT,) if at_posts_time_ else DYNAMIC_POST_FEATURES
    layout = item_layout(names)
    expected.item_feature_names.extend(names)
    country = country_codes(posts.country).tolist()
    logged = zip(posts.dynamic_values(layout.values), country, versions.tolist(), strict=True)
    for item, (values, country_code, version) in zip(expected.items, logged, strict=True):
        if version > 0:
            item.features.CopyFrom(events_pb2.FeatureVector(values=values.tolist()))
            if layout.country_code_field:
                item.features.country_code = country_code
            item.catalogue_version = version
    return expected


def at_posts_time(decision: events_pb2.Decision) -> events_pb2.Decision:
    """``decision`` at its posts' time (``make_posts``), as explore logs them."""
    decision.event_time_ms = AS_OF_MS
    return decision


@pytest.mark.parametrize("count", [0, 1, 50, 200])
@pytest.mark.parametrize("at_posts_time_", [True, False], ids=["layout", "named"])
def test_compact_bytes_parse_to_the_protobuf_built_compact_decision(
    count: int, at_posts_time_: bool
) -> None:
    rng = np.random.default_rng(count)
    posts = make_posts(rng, count)
    items = items_for(count, rng)
    versions = rng.integers(1, 2**41, size=count, dtype=np.int64)
    decision_header = at_posts_time(header()) if at_posts_time_ else header()
    encoded = encode_decision(decision_header, posts, items, versions)
    decision = events_pb2.Decision.FromString(encoded)
    assert decision == built_compact(decision_header, posts, items, versions)
    if at_posts_time_:  # age_hours is derived from the version and the decision time
        assert list(decision.item_feature_names) == [POST_VALUES_LAYOUT]
        logged = [name for name in DYNAMIC_POST_FEATURES if name != "age_hours"]
    else:  # posts of another time: their age_hours is logged, every value named
        assert list(decision.item_feature_names) == list(DYNAMIC_POST_FEATURES)
        logged = list(DYNAMIC_POST_FEATURES)
    for item, row in zip(decision.items, posts.dynamic_values(logged), strict=True):
        assert not item.features.numeric
        assert not item.features.embedding
        by_name = logged_item_values(decision.item_feature_names, item.features)
        assert by_name == dict(zip(logged, row.tolist(), strict=True))  # float32: exact


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


def test_a_realistic_30_item_compact_decision_is_at_most_2_kb() -> None:
    """Posts, versions and the user as the feature store of a simulated world serves them
    (a user with eight topic affinities, posts with one or two topics), the header as
    explore writes it (a request with a language, the canary arm)."""
    world = small_world(3_000, 300, AS_OF_MS)
    store = InMemoryFeatureStore(catalogue_from_world(world))
    posts, versions = store.versioned_post_features(np.arange(1_000, 1_030), AS_OF_MS)
    user = store.user_features("u5", AS_OF_MS)
    assert sum(share > 0 for share in user.topic_affinity) == 8
    rng = np.random.default_rng(30)
    items = [
        RankedPost(
            post_id=identifier,
            position=position,
            score=float(np.float32(rng.random())),  # the ranker's scores are float32
            propensity=float(rng.uniform(0.002, 1.0)),
        )
        for position, identifier in enumerate(store.post_ids(posts.post_index))
    ]
    full_header = at_posts_time(header())
    full_header.user_features.CopyFrom(user.to_proto())
    full = encode_decision(full_header, posts, items)
    decision = at_posts_time(header())
    decision.user_features.CopyFrom(logged_user_features(user, AS_OF_MS))
    assert is_compact_user(decision.user_features)
    compact = encode_decision(decision, posts, items, versions)
    header_bytes, user_bytes = decision.ByteSize(), decision.user_features.ByteSize()
    parsed = events_pb2.Decision.FromString(compact)
    item_bytes = [item.ByteSize() for item in parsed.items]
    print(
        f"30 items: full {len(full):,} B, compact {len(compact):,} B: header {header_bytes} B "
        f"(user features {user_bytes} B), items and their names {len(compact) - header_bytes} B "
        f"({min(item_bytes)}-{max(item_bytes)} B an item, its tag and length aside)"
    )
    assert len(compact) <= 2_048
    assert len(compact) * 6 <= len(full)


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "full"])
def test_the_unshown_pool_parses_to_pool_items_as_a_shown_item_logs_them(compact: bool) -> None:
    rng = np.random.default_rng(12)
    posts, pool_posts = make_posts(rng, 3), make_posts(rng, 4)
    items = items_for(3, rng)
    versions = np.array([7, 8, 9], dtype=np.int64)
    pool_versions = np.array([11, 0, 12, 13], dtype=np.int64)
    pool = UnshownPool(
        posts=pool_posts,
        post_ids=[f"q{row}" for row in range(4)],
        scores=[0.5, 0.25, 0.125, 0.0625],
        catalogue_versions=pool_versions if compact else None,
    )
    decision_header = at_posts_time(header())
    encoded = encode_decision(decision_header, posts, items, versions if compact else None, pool)
    decision = events_pb2.Decision.FromString(encoded)
    # The pool, logged as shown items without position or propensity (position 0, as a
    # compact item's is encoded, parses the same), equals the runtime's own encoding.
    pool_items = [
        RankedPost(post_id=f"q{row}", position=0, score=score, propensity=0.0)
        for row, score in enumerate(pool.scores)
    ]
    if compact:
        expected_pool = built_compact(decision_header, pool_posts, pool_items, pool_versions)
        expected = built_compact(decision_header, posts, items, versions)
    else:
        expected_pool = built_with_protobuf(decision_header, pool_posts, pool_items)
        expected = built_with_protobuf(decision_header, posts, items)
    expected.pool.extend(expected_pool.items)
    assert decision == expected
    assert [item.post_id for item in decision.pool] == ["q0", "q1", "q2", "q3"]
    with pytest.raises(ValueError, match="compact exactly when"):
        encode_decision(decision_header, posts, items, None if compact else versions, pool)


def test_a_20_item_decision_with_its_30_unshown_pool_items_costs_about_50_bytes_each() -> None:
    """The demo's decisions: 20 shown of an ε-greedy pool of 50 (docs/replay-and-evaluation.md
    gives these bytes as the cost of evaluating versions off-policy)."""
    world = small_world(3_000, 300, AS_OF_MS)
    store = InMemoryFeatureStore(catalogue_from_world(world))
    posts, versions = store.versioned_post_features(np.arange(1_000, 1_050), AS_OF_MS)
    identifiers = store.post_ids(posts.post_index)
    rng = np.random.default_rng(20)
    items = [
        RankedPost(identifiers[row], row, float(np.float32(rng.random())), 0.5) for row in range(20)
    ]
    rows = np.arange(20, 50)
    pool = UnshownPool(
        posts=posts.take(rows),
        post_ids=identifiers[20:],
        scores=rng.random(30).astype(np.float32).tolist(),
        catalogue_versions=versions[rows],
    )
    decision = at_posts_time(header())
    decision.user_features.CopyFrom(
        logged_user_features(store.user_features("u5", AS_OF_MS), AS_OF_MS)
    )
    shown_only = encode_decision(decision, posts.take(np.arange(20)), items, versions[:20])
    with_pool = encode_decision(decision, posts.take(np.arange(20)), items, versions[:20], pool)
    per_pool_item = (len(with_pool) - len(shown_only)) / 30
    print(
        f"20 shown: {len(shown_only):,} B; with 30 unshown pool items {len(with_pool):,} B "
        f"({per_pool_item:.1f} B each)"
    )
    assert 40 <= per_pool_item <= 60
