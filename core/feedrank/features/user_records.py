"""What the feature store remembers about each user, bounded and point-in-time.

A :class:`UserRecord` holds one user's seen, hidden and reported posts and blocked
creators (each a :class:`TimedSet`, readable as of a time, keeping only the most
recently touched items) and the time-ordered log of the user's engagements that
``UserFeatures.engagements_7d`` and the topic affinity are counted from.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field


class TimedSet:
    """A bounded set of ints, each with the first time it was added; oldest touch evicted."""

    def __init__(self, capacity: int) -> None:
        self._first_ms: OrderedDict[int, int] = OrderedDict()
        self._capacity = capacity
        self._latest_ms: int | None = None

    def add(self, item: int, at_ms: int) -> None:
        """Add ``item`` at ``at_ms`` (keeping its earliest time) and evict beyond capacity."""
        previous = self._first_ms.get(item)
        self._first_ms[item] = at_ms if previous is None else min(previous, at_ms)
        self._first_ms.move_to_end(item)
        while len(self._first_ms) > self._capacity:
            self._first_ms.popitem(last=False)
        self._latest_ms = at_ms if self._latest_ms is None else max(self._latest_ms, at_ms)

    def as_of(self, at_ms: int) -> frozenset[int]:
        """The retained items first added at or before ``at_ms``."""
        if self._latest_ms is None or self._latest_ms <= at_ms:
            return frozenset(self._first_ms)
        return frozenset(item for item, first in self._first_ms.items() if first <= at_ms)


@dataclass
class UserRecord:
    """Time-varying state of one user (known or not)."""

    seen: TimedSet
    hidden: TimedSet
    reported: TimedSet
    blocked: TimedSet
    engagement_ts: list[int] = field(default_factory=list)  # ascending, one per engagement
    engagement_posts: list[int] = field(default_factory=list)  # the post of each, in step
    forgotten_until_ms: int | None = None  # engagements at or before this were dropped

    def engagements_between(self, after_ms: int, until_ms: int) -> int:
        """Engagements dated in ``(after_ms, until_ms]``; ValueError if some were dropped."""
        return len(self.engaged_posts_between(after_ms, until_ms))

    def engaged_posts_between(self, after_ms: int, until_ms: int) -> list[int]:
        """The post of each engagement dated in ``(after_ms, until_ms]``."""
        if self.forgotten_until_ms is not None and after_ms < self.forgotten_until_ms:
            raise ValueError(f"engagements before {self.forgotten_until_ms} are no longer retained")
        ts = self.engagement_ts
        return self.engagement_posts[bisect_right(ts, after_ms) : bisect_right(ts, until_ms)]

    def add_engagements(
        self, posts: list[int], at_ms: int, keep: int, cutoff_ms: int | None
    ) -> None:
        """Add one engagement per post; drop those at or before ``cutoff_ms`` and all but
        the newest ``keep`` (counts saturate there)."""
        ts = self.engagement_ts
        for post in posts:
            slot = bisect_right(ts, at_ms)
            ts.insert(slot, at_ms)
            self.engagement_posts.insert(slot, post)
        stale = bisect_right(ts, cutoff_ms) if cutoff_ms is not None else 0
        if stale:
            dropped = ts[stale - 1]
            previous = self.forgotten_until_ms
            self.forgotten_until_ms = dropped if previous is None else max(previous, dropped)
            del ts[:stale], self.engagement_posts[:stale]
        if len(ts) > keep:
            excess = len(ts) - keep
            del ts[:excess], self.engagement_posts[:excess]
