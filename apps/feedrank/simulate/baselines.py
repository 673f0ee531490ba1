"""The random and ORACLE feeds for the same user at the same time, and what they earn.

The oracle ranks with the behaviour model's hidden parameters: this module is
evaluation, never a policy the service could run. The simulation draws the user's
reaction to both feeds as it does for a served one (``BehaviourModel.respond``), so
every arm's engagement is counted the same way; :func:`expected_rate` gives the
expected engagement per item instead (``engagement_probability``, no draws).

Both baselines choose among the posts the service could show the user at that moment:
fresh ones (:func:`fresh_posts`) that the user has not been served yet
(:class:`SeenPosts`). The explore service never shows a post twice, and the behaviour
model does not tire of repeats, so an oracle free to repeat would show a returning
user the same best twenty posts again: a feed no policy under the product's rules can
serve (in the demo about 1.5 % above the feasible oracle).
"""

from __future__ import annotations

import threading

import numpy as np

from feedrank.core.feature_schema import IntArray
from feedrank.core.time_units import DAY_MS
from feedrank.features.store import FeatureStoreConfig
from feedrank.simulate.world import BehaviourModel, World


def fresh_posts(world: World, now_ms: int, max_age_days: float) -> IntArray:
    """Catalogue rows of the posts the service may show at ``now_ms`` (created, not too old)."""
    created = np.asarray(world.posts.created_ms)
    low = np.searchsorted(created, now_ms - int(max_age_days * DAY_MS), side="left")
    high = np.searchsorted(created, now_ms, side="right")
    return np.arange(low, high, dtype=np.int64)


class SeenPosts:
    """The posts served to each user, the latest ``per_user`` kept, as the explore
    service's store keeps them for its already-seen rule. Thread-safe."""

    def __init__(self, per_user: int = FeatureStoreConfig().max_seen_per_user) -> None:
        if per_user < 1:
            raise ValueError("per_user must be >= 1")
        self.per_user = per_user
        self._lock = threading.Lock()
        self._seen: dict[int, dict[int, None]] = {}  # insertion-ordered: oldest first

    def add(self, user_index: int, posts: IntArray) -> None:
        with self._lock:
            seen = self._seen.setdefault(user_index, {})
            for post in posts.tolist():
                seen.pop(post, None)  # a repeat becomes the newest
                seen[post] = None
            while len(seen) > self.per_user:
                del seen[next(iter(seen))]

    def unseen(self, user_index: int, eligible: IntArray) -> IntArray:
        """``eligible`` without the posts ``user_index`` has been served, in order."""
        with self._lock:
            seen = self._seen.get(user_index)
            if not seen:
                return eligible
            served = np.fromiter(seen, dtype=np.int64, count=len(seen))
        kept: IntArray = eligible[~np.isin(eligible, served)]
        return kept


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
