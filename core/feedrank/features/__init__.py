"""The point-in-time feature store: user and post features as they were at a time.

:class:`FeatureStore` (:mod:`~feedrank.features.protocol`) is what serving and
training ask of a store; :class:`InMemoryFeatureStore` (:mod:`~feedrank.features.store`)
is the in-process one, built from :mod:`~feedrank.features.point_in_time` counts and
:mod:`~feedrank.features.user_records`; :func:`apply_reward`
(:mod:`~feedrank.features.rewards`) writes a reward event into any store.
"""

from feedrank.features.point_in_time import PointInTimeCounts
from feedrank.features.protocol import FeatureStore, UserState
from feedrank.features.rewards import POSITIVE_REWARD_TYPES, apply_reward
from feedrank.features.store import FeatureStoreConfig, InMemoryFeatureStore

__all__ = [
    "POSITIVE_REWARD_TYPES",
    "FeatureStore",
    "FeatureStoreConfig",
    "InMemoryFeatureStore",
    "PointInTimeCounts",
    "UserState",
    "apply_reward",
]
