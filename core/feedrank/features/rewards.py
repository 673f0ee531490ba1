"""What a reward event means for the feature store.

:func:`apply_reward` turns one ``Reward`` event into the writes it
implies on a :class:`~feedrank.features.protocol.FeatureStore`.
"""

from __future__ import annotations

import numpy as np

from feedrank.features.protocol import FeatureStore
from feedrank.v1 import events_pb2

POSITIVE_REWARD_TYPES = frozenset(
    {
        events_pb2.REWARD_TYPE_LIKE,
        events_pb2.REWARD_TYPE_COMMENT,
        events_pb2.REWARD_TYPE_SHARE,
        events_pb2.REWARD_TYPE_SAVE,
    }
)


def apply_reward(store: FeatureStore, reward: events_pb2.Reward) -> None:
    """Record what a reward means for the store: a positive action (like, comment, share,
    save) counts as one engagement, HIDE/REPORT mark the post, BLOCK blocks its creator.
    VIEW and DWELL change nothing (serving records impressions and seen posts itself).

    Raises KeyError for a post the catalogue does not hold."""
    row = store.post_row(reward.post_id)
    if row is None:
        raise KeyError(f"post {reward.post_id!r} is not in the catalogue")
    if reward.type in POSITIVE_REWARD_TYPES:
        store.record_engagements(reward.user_id, np.array([row], dtype=np.int64), reward.ts_ms)
    elif reward.type == events_pb2.REWARD_TYPE_HIDE:
        store.record_hide(reward.user_id, row, reward.ts_ms)
    elif reward.type == events_pb2.REWARD_TYPE_REPORT:
        store.record_report(reward.user_id, row, reward.ts_ms)
    elif reward.type == events_pb2.REWARD_TYPE_BLOCK:
        store.record_block(reward.user_id, store.creator_of(row), reward.ts_ms)
