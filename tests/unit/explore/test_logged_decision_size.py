"""A 30-item decision as the real ranking path logs it is at most 2 KB (issue 19), its
exploration pool's unshown items (``explore.log_pool``) aside, which cost under 60 bytes
each (issue 21).

Explore ranks a simulated world with epsilon-greedy exploration (the default policy) and
logs compact decisions; before that, every user engaged with a dozen posts over the last
days and every post was shown, so the user's engagement counts and topic mix and the
posts' impression counts are all set, as in a live feed.
"""

from __future__ import annotations

import numpy as np

from feedrank.core.compact_features import POST_VALUES_LAYOUT, is_compact_user
from feedrank.core.time_units import HOUR_MS
from feedrank.v1 import events_pb2
from tests.support.compact_serving import FEED_LENGTH, SERVE_MS, served_world

USERS = 12
MAX_DECISION_BYTES = 2_048
POOL_SIZE = 50  # EpsilonGreedy's default pool
MAX_POOL_ITEM_BYTES = 60


def test_a_30_item_decision_from_the_real_ranking_path_is_at_most_2_kb() -> None:
    world = served_world()
    rng = np.random.default_rng(19)
    posts = world.world.posts
    store = world.store
    for row in range(len(posts)):  # every post seen by a few feeds
        store.record_impressions(np.full(5, row, dtype=np.int64), SERVE_MS - 2 * HOUR_MS)
    for index in range(USERS):
        engaged = rng.choice(len(posts), size=12, replace=False).astype(np.int64)
        store.record_engagements(f"u{index}", engaged, SERVE_MS - HOUR_MS)
    payloads = world.serve(USERS, policy="epsilon_greedy")
    decisions = [events_pb2.Decision.FromString(payload) for payload in payloads]
    full = [decision for decision in decisions if len(decision.items) == FEED_LENGTH]
    assert len(full) >= USERS * 3 // 4  # the rules may leave a few feeds shorter
    explored = {item.propensity for decision in full for item in decision.items}
    assert len(explored) > 2  # propensities of an exploring policy, not all 1
    for decision, payload in zip(decisions, payloads, strict=True):
        assert list(decision.item_feature_names) == [POST_VALUES_LAYOUT]
        assert is_compact_user(decision.user_features)
        user = decision.user_features.user
        topics = user.affinity_topic_mask.bit_count()
        assert user.engagements_7d > 0
        assert topics >= 8
        assert all(item.catalogue_version for item in decision.items)
        if len(decision.items) == FEED_LENGTH:
            header = events_pb2.Decision()
            header.CopyFrom(decision)
            del header.items[:]
            del header.pool[:]
            shown = events_pb2.Decision()
            shown.CopyFrom(decision)
            del shown.pool[:]
            pool_bytes = len(payload) - shown.ByteSize()
            print(
                f"{len(payload):,} B: header {header.ByteSize()} B (user features "
                f"{decision.user_features.ByteSize()} B, {topics} topics), "
                f"items {shown.ByteSize() - header.ByteSize()} B, "
                f"{len(decision.pool)} unshown pool items {pool_bytes} B"
            )
            assert shown.ByteSize() <= MAX_DECISION_BYTES
            assert len(decision.pool) == POOL_SIZE - FEED_LENGTH  # the ε-greedy pool of 50
            assert pool_bytes <= MAX_POOL_ITEM_BYTES * len(decision.pool)


def test_a_feed_as_long_as_the_pool_logs_no_pool_items() -> None:
    """The slate is drawn from the pool: a feed of the whole pool leaves nothing unshown
    (and explore does not look for it)."""
    payloads = served_world().serve(USERS, policy="epsilon_greedy", limit=POOL_SIZE)
    decisions = [events_pb2.Decision.FromString(payload) for payload in payloads]
    assert max(len(decision.items) for decision in decisions) == POOL_SIZE
    assert not any(decision.pool for decision in decisions)
