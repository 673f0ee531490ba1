"""The random and ORACLE feeds for the same user at the same time, and what they earn.

The oracle ranks with the behaviour model's hidden parameters: this module is
evaluation, never a policy the service could run. The simulation draws the user's
reaction to both feeds as it does for a served one (``BehaviourModel.respond``), so
every arm's engagement is counted the same way; :func:`expected_rate` gives the
expected engagement per item instead (``engagement_probability``, no draws).
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


def random_feed(eligible: IntArray, feed_size: int, rng: np.random.Generator) -> IntArray:
    """Up to ``feed_size`` eligible posts drawn uniformly, in the drawn order."""
    size = min(feed_size, len(eligible))
    feed: IntArray = rng.choice(eligible, size=size, replace=False)
    return feed


def oracle_feed(
    behaviour: BehaviourModel, user_index: int, eligible: IntArray, feed_size: int, now_ms: int
) -> IntArray:
    """ORACLE: the best feed the world allows, best first."""
    return behaviour.oracle_top_k(user_index, eligible, min(feed_size, len(eligible)), now_ms)


def expected_rate(behaviour: BehaviourModel, user_index: int, feed: IntArray, now_ms: int) -> float:
    """ORACLE: expected engagements per item of ``feed``, shown in its order at
    ``now_ms`` (0 for an empty feed)."""
    if feed.size == 0:
        return 0.0
    positions = np.arange(feed.size)
    probabilities = behaviour.engagement_probability(user_index, feed, positions, now_ms)
    return float(probabilities.mean())
