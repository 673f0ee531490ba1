"""What random and ORACLE feeds would earn for the same user at the same time.

Both are expected engagements per shown item, computed with the behaviour model's
``engagement_probability``, which reads hidden parameters: this module is evaluation,
never a policy the service could run.
"""

from __future__ import annotations

import numpy as np

from feedrank.core.features.schema import IntArray
from feedrank.core.world import BehaviourModel, World

DAY_MS = 86_400_000


def fresh_posts(world: World, now_ms: int, max_age_days: float) -> IntArray:
    """Catalogue rows of the posts the service may show at ``now_ms`` (created, not too old)."""
    created = np.asarray(world.posts.created_ms)
    low = np.searchsorted(created, now_ms - int(max_age_days * DAY_MS), side="left")
    high = np.searchsorted(created, now_ms, side="right")
    return np.arange(low, high, dtype=np.int64)


def random_feed_rate(
    behaviour: BehaviourModel,
    user_index: int,
    eligible: IntArray,
    *,
    feed_size: int,
    now_ms: int,
    rng: np.random.Generator,
) -> float:
    """Expected engagements per item of a feed of uniformly drawn eligible posts."""
    size = min(feed_size, len(eligible))
    if size == 0:
        return 0.0
    posts = rng.choice(eligible, size=size, replace=False)
    probabilities = behaviour.engagement_probability(user_index, posts, np.arange(size), now_ms)
    return float(probabilities.mean())


def oracle_feed_rate(
    behaviour: BehaviourModel, user_index: int, eligible: IntArray, *, feed_size: int, now_ms: int
) -> float:
    """ORACLE: expected engagements per item of the best feed the world allows."""
    size = min(feed_size, len(eligible))
    if size == 0:
        return 0.0
    best = behaviour.oracle_top_k(user_index, eligible, size, now_ms)
    probabilities = behaviour.engagement_probability(user_index, best, np.arange(size), now_ms)
    return float(probabilities.mean())
