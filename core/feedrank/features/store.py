"""The feature store: user and post features as they were at a given time.

A decision logs features as they were at impression time, so every lookup takes
``at_ms`` and never sees an increment recorded with a later timestamp, even when that
increment was written earlier (a simulator may write rewards that lie in the future).

:class:`FeatureStore` is the interface; :class:`InMemoryFeatureStore` is the in-process
default. Its static columns come from a :class:`CatalogueState` (what apps told through
the entity topics, or a generated world's OBSERVABLE tables, never its hidden
parameters), read live, so posts and users the catalogue gains are served at once. Its
time-varying counts live in :class:`PointInTimeCounts`: a cumulative
array holding every increment up to a watermark, increments dated after the watermark
waiting in a heap, and a time-ordered log of the applied ones. A lookup at or after the
watermark (serving asks "now") folds what has come due into the array and gathers,
which is O(rows); a lookup in the past subtracts the logged increments newer than
``at_ms``. The log keeps ``history_retention_ms`` behind the latest lookup; lookups
further back raise rather than answer wrongly (so one lookup far ahead of "now" makes
lookups at "now" fail: ask for times the clock has reached).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from feedrank.catalogue.state import CatalogueState
from feedrank.catalogue.values import UserProfile
from feedrank.core.feature_schema import (
    COUNTRY_VOCABULARY,
    LANGUAGE_VOCABULARY,
    NUM_TOPICS,
    BoolArray,
    IntArray,
    PostFeatureBatch,
    UserFeatures,
    log1p,
)
from feedrank.v1 import events_pb2

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
POSITIVE_REWARD_TYPES = frozenset(
    {
        events_pb2.REWARD_TYPE_LIKE,
        events_pb2.REWARD_TYPE_COMMENT,
        events_pb2.REWARD_TYPE_SHARE,
        events_pb2.REWARD_TYPE_SAVE,
    }
)
_Counts = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FeatureStoreConfig:
    """Tunables of the in-memory store."""

    prior_impressions: float = 20.0  # engagement_rate shrinks to the creator's rate by this
    history_retention_ms: int = DAY_MS  # how far back post lookups stay exact
    engagement_window_ms: int = 7 * DAY_MS  # UserFeatures.engagements_7d
    max_seen_per_user: int = 1_000
    max_actions_per_user: int = 1_000  # hides, reports and blocks kept per user, each
    max_engagement_records_per_user: int = 5_000
    cold_start_language: int = 0  # used when the request carries no language ("en")
    cold_start_country: int = 0  # ... and no country ("US")
    cold_start_age_bucket: int = 2  # 25-34
    cold_start_sensitive_filter: bool = True  # the safe default for an unknown user

    def __post_init__(self) -> None:
        limits = (self.max_seen_per_user, self.max_actions_per_user)
        if self.prior_impressions <= 0 or min(limits) <= 0:
            raise ValueError("prior_impressions and per-user limits must be positive")
        if self.history_retention_ms < 0 or self.engagement_window_ms <= 0:
            raise ValueError("history_retention_ms must be >= 0, engagement_window_ms > 0")


@dataclass(frozen=True)
class UserState:
    """What post-processing needs to know about a user as of ``as_of_ms``."""

    blocked_creators: frozenset[int]
    hidden_posts: frozenset[int]
    reported_posts: frozenset[int]
    seen_posts: frozenset[int]  # the most recent ones only (bounded)
    as_of_ms: int

    @property
    def rejected_posts(self) -> frozenset[int]:
        """Posts the user hid or reported: never show them again."""
        return self.hidden_posts | self.reported_posts


class FeatureStore(Protocol):
    """Point-in-time features and user state; a remote store can stand in for the default."""

    @property
    def num_posts(self) -> int:
        """Posts in the catalogue; valid post indices are 0 .. num_posts-1."""
        ...

    def user_features(
        self,
        user_id: str,
        at_ms: int,
        *,
        fallback_language: int | None = None,
        fallback_country: int | None = None,
    ) -> UserFeatures:
        """The user as of ``at_ms``; unknown users get cold-start defaults (known=False)
        with the request context's language and country."""
        ...

    def post_features(self, post_indices: IntArray, at_ms: int) -> PostFeatureBatch:
        """Features of these posts as of ``at_ms``, one row per index, in request order."""
        ...

    def user_state(self, user_id: str, at_ms: int) -> UserState:
        """Blocks, hides, reports and seen posts recorded at or before ``at_ms``."""
        ...

    def record_impressions(self, post_indices: IntArray, at_ms: int) -> None:
        """Each index was shown once at ``at_ms``."""
        ...

    def record_engagements(self, user_id: str, post_indices: IntArray, at_ms: int) -> None:
        """The user engaged once with each post at ``at_ms`` (once per engaged impression)."""
        ...

    def record_seen(self, user_id: str, post_indices: IntArray, at_ms: int) -> None:
        """The user was shown these posts at ``at_ms``."""
        ...

    def record_hide(self, user_id: str, post_index: int, at_ms: int) -> None:
        """The user hid a post."""
        ...

    def record_report(self, user_id: str, post_index: int, at_ms: int) -> None:
        """The user reported a post."""
        ...

    def record_block(self, user_id: str, creator_index: int, at_ms: int) -> None:
        """The user blocked a creator."""
        ...

    def creator_of(self, post_index: int) -> int:
        """The creator of a post."""
        ...

    def post_row(self, post_id: str) -> int | None:
        """The catalogue row of a post id; None for an id the catalogue does not hold."""
        ...

    def post_ids(self, post_indices: IntArray) -> list[str]:
        """The public ids of these catalogue rows, in order."""
        ...

    def servable(self, post_indices: IntArray) -> BoolArray:
        """Which rows may be served now (not taken down since they were indexed)."""
        ...

    def forget_user(self, user_id: str) -> None:
        """Erase what the store recorded about a user (seen posts, actions, engagements)."""
        ...

    def present_ms(self) -> int | None:
        """The latest time a lookup asked about (the store's "now": lookups far behind it
        may no longer be answerable), or None before any lookup."""
        ...


class PointInTimeCounts:
    """Per-row counts that can be read as of any time within the retained history.

    Not thread-safe by itself: :class:`InMemoryFeatureStore` serialises access.
    """

    def __init__(self, size: int, retention_ms: int) -> None:
        self._applied = np.zeros(size, dtype=np.float64)  # increments with ts <= watermark
        self._watermark_ms: int | None = None
        self._log_ts: list[int] = []  # applied increments, ascending ts
        self._log_rows: list[IntArray] = []
        self._pending: list[tuple[int, int, IntArray]] = []  # heap of (ts, seq, rows)
        self._sequence = itertools.count()
        self._retention_ms = retention_ms
        self._exact_from_ms: int | None = None  # lookups before this could be wrong

    def grow(self, size: int) -> None:
        """Room for rows up to ``size`` (new rows count zero)."""
        if size > self._applied.shape[0]:
            grown = np.zeros(max(size, 2 * self._applied.shape[0]), dtype=np.float64)
            grown[: self._applied.shape[0]] = self._applied
            self._applied = grown

    def add(self, rows: IntArray, at_ms: int) -> None:
        """Count one for each of ``rows`` (repeats count repeatedly) at ``at_ms``."""
        if self._watermark_ms is None or at_ms > self._watermark_ms:
            heapq.heappush(self._pending, (at_ms, next(self._sequence), rows))
            return
        self._apply(rows, at_ms, insort_index=bisect_right(self._log_ts, at_ms))

    def at(self, rows: IntArray, at_ms: int) -> _Counts:
        """Counts of ``rows`` including exactly the increments dated at or before ``at_ms``."""
        if self._watermark_ms is None or at_ms >= self._watermark_ms:
            self._advance(at_ms)
            counts: _Counts = self._applied[rows]
            return counts
        if self._exact_from_ms is not None and at_ms < self._exact_from_ms:
            raise ValueError(
                f"at_ms={at_ms} is before the retained history (from {self._exact_from_ms})"
            )
        return self._applied[rows] - self._increments_after(rows, at_ms)

    @property
    def watermark_ms(self) -> int | None:
        """The latest lookup time so far (increments up to it are applied)."""
        return self._watermark_ms

    def _advance(self, at_ms: int) -> None:
        while self._pending and self._pending[0][0] <= at_ms:
            ts, _, rows = heapq.heappop(self._pending)
            self._apply(rows, ts, insort_index=len(self._log_ts))
        self._watermark_ms = at_ms
        self._forget_before(at_ms - self._retention_ms)

    def _apply(self, rows: IntArray, at_ms: int, insort_index: int) -> None:
        np.add.at(self._applied, rows, 1.0)
        self._log_ts.insert(insort_index, at_ms)
        self._log_rows.insert(insort_index, rows)

    def _forget_before(self, cutoff_ms: int) -> None:
        drop = bisect_right(self._log_ts, cutoff_ms)
        if drop:
            self._exact_from_ms = self._log_ts[drop - 1]
            del self._log_ts[:drop]
            del self._log_rows[:drop]

    def _increments_after(self, rows: IntArray, at_ms: int) -> _Counts:
        start = bisect_right(self._log_ts, at_ms)
        if start == len(self._log_ts) or rows.shape[0] == 0:
            return np.zeros(rows.shape[0], dtype=np.float64)
        newer = np.concatenate(self._log_rows[start:])
        unique, inverse = np.unique(rows, return_inverse=True)
        slot = np.minimum(np.searchsorted(unique, newer), unique.shape[0] - 1)
        hit = unique[slot] == newer
        per_unique = np.bincount(slot[hit], minlength=unique.shape[0]).astype(np.float64)
        increments: _Counts = per_unique[inverse]
        return increments


class _TimedSet:
    """A bounded set of ints, each with the first time it was added; oldest touch evicted."""

    def __init__(self, capacity: int) -> None:
        self._first_ms: OrderedDict[int, int] = OrderedDict()
        self._capacity = capacity
        self._latest_ms: int | None = None

    def add(self, item: int, at_ms: int) -> None:
        previous = self._first_ms.get(item)
        self._first_ms[item] = at_ms if previous is None else min(previous, at_ms)
        self._first_ms.move_to_end(item)
        while len(self._first_ms) > self._capacity:
            self._first_ms.popitem(last=False)
        self._latest_ms = at_ms if self._latest_ms is None else max(self._latest_ms, at_ms)

    def as_of(self, at_ms: int) -> frozenset[int]:
        if self._latest_ms is None or self._latest_ms <= at_ms:
            return frozenset(self._first_ms)
        return frozenset(item for item, first in self._first_ms.items() if first <= at_ms)


@dataclass
class _UserRecord:
    """Time-varying state of one user (known or not)."""

    seen: _TimedSet
    hidden: _TimedSet
    reported: _TimedSet
    blocked: _TimedSet
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


class InMemoryFeatureStore:
    """The in-process :class:`FeatureStore`: numpy columns, one lock, bounded user state.

    Reads and writes take one lock (a read of 1,000 posts holds it for microseconds), so
    any number of reader threads may share the store with a writer.
    """

    def __init__(self, catalogue: CatalogueState, config: FeatureStoreConfig | None = None) -> None:
        self.config = config or FeatureStoreConfig()
        self.catalogue = catalogue
        retention = self.config.history_retention_ms
        self._impressions = PointInTimeCounts(catalogue.num_posts, retention)
        self._engagements = PointInTimeCounts(catalogue.num_posts, retention)
        self._records: dict[str, _UserRecord] = {}
        self._latest_user_lookup_ms: int | None = None  # "now", as far as pruning knows
        self._lock = threading.Lock()

    @property
    def num_posts(self) -> int:
        return self.catalogue.num_posts

    def post_row(self, post_id: str) -> int | None:
        return self.catalogue.post_row(post_id)

    def post_ids(self, post_indices: IntArray) -> list[str]:
        return self.catalogue.post_ids(post_indices.tolist())

    def present_ms(self) -> int | None:
        with self._lock:
            times = [
                self._latest_user_lookup_ms,
                self._impressions.watermark_ms,
                self._engagements.watermark_ms,
            ]
        known = [time for time in times if time is not None]
        return max(known) if known else None

    def user_features(
        self,
        user_id: str,
        at_ms: int,
        *,
        fallback_language: int | None = None,
        fallback_country: int | None = None,
    ) -> UserFeatures:
        with self._lock:
            latest = self._latest_user_lookup_ms
            self._latest_user_lookup_ms = at_ms if latest is None else max(latest, at_ms)
            record = self._records.get(user_id)
            window = self.config.engagement_window_ms
            recent = record.engaged_posts_between(at_ms - window, at_ms) if record else []
        profile = self.catalogue.user(user_id)
        affinity, evidence = self._topic_affinity(profile, recent)
        config = self.config
        language = _first(_told(profile, "language"), fallback_language, config.cold_start_language)
        country = _first(_told(profile, "country"), fallback_country, config.cold_start_country)
        if not (
            0 <= language < len(LANGUAGE_VOCABULARY) and 0 <= country < len(COUNTRY_VOCABULARY)
        ):
            raise ValueError(f"fallback language {language} or country {country} out of range")
        follows = None if profile is None else profile.follow_count
        if follows is None:
            follows = float(self.catalogue.follow_count(user_id))
        return UserFeatures(
            user_id=user_id,
            language=language,
            country=country,
            age_bucket=_first(_told(profile, "age_bucket"), config.cold_start_age_bucket),
            activity=log1p((profile and profile.sessions_per_day) or 0.0),
            follow_count=log1p(follows),
            engagements_7d=log1p(len(recent)),
            sensitive_filter=bool(
                _first(_told(profile, "sensitive_filter"), config.cold_start_sensitive_filter)
            ),
            known=profile is not None,
            as_of_ms=at_ms,
            topic_affinity=affinity,
            affinity_engagements=evidence,
        )

    def _topic_affinity(
        self, profile: UserProfile | None, engaged_posts: list[int]
    ) -> tuple[tuple[float, ...], float]:
        """The topic mix of the user's history and recent engagements (shares summing to
        one), or ``()`` when there is neither; and log1p of the engagements behind it."""
        totals = np.zeros(NUM_TOPICS, dtype=np.float64)
        if profile is not None:
            totals += profile.history_topics
        if engaged_posts:
            with self.catalogue.lock:
                totals += self.catalogue.post_column("topics")[engaged_posts].sum(axis=0)
        mass = float(totals.sum())
        if mass <= 0.0:
            return (), 0.0
        shares: list[float] = (totals / mass).tolist()
        return tuple(shares), log1p(mass)

    def post_features(self, post_indices: IntArray, at_ms: int) -> PostFeatureBatch:
        rows = self._checked_rows(post_indices)
        with self._lock:
            impressions = self._impressions.at(rows, at_ms)
            engagements = self._engagements.at(rows, at_ms)
        catalogue = self.catalogue
        with catalogue.lock:
            column = catalogue.post_column
            key = column("key")[rows]
            creator = column("creator_row")[rows]
            created_ms = column("created_ms")[rows]
            static = {
                name: column(name)[rows]
                for name in ("language", "country", "region_locked", "topics", "content")
            }
            sensitive = column("sensitive")[rows]
        followers, creator_rate = catalogue.creator_stats(creator)
        prior = self.config.prior_impressions
        rate = (engagements + prior * creator_rate.astype(np.float64)) / (impressions + prior)
        age_hours = np.maximum(at_ms - created_ms, 0) / HOUR_MS
        return PostFeatureBatch(
            post_index=rows,
            post_key=key,
            **static,
            creator_index=creator,
            age_hours=age_hours.astype(np.float32),
            creator_followers=np.log1p(followers).astype(np.float32),
            creator_engagement_rate=creator_rate,
            impressions=np.log1p(impressions).astype(np.float32),
            engagement_rate=rate.astype(np.float32),
            sensitive=sensitive,
            as_of_ms=at_ms,
        )

    def user_state(self, user_id: str, at_ms: int) -> UserState:
        excluded = self.catalogue.excluded_creators(user_id)
        with self._lock:
            record = self._records.get(user_id)
            if record is None:
                empty: frozenset[int] = frozenset()
                return UserState(excluded, empty, empty, empty, as_of_ms=at_ms)
            return UserState(
                blocked_creators=record.blocked.as_of(at_ms) | excluded,
                hidden_posts=record.hidden.as_of(at_ms),
                reported_posts=record.reported.as_of(at_ms),
                seen_posts=record.seen.as_of(at_ms),
                as_of_ms=at_ms,
            )

    def servable(self, post_indices: IntArray) -> BoolArray:
        catalogue = self.catalogue
        with catalogue.lock:
            alive: BoolArray = catalogue.post_column("alive")[post_indices]
        return alive

    def forget_user(self, user_id: str) -> None:
        with self._lock:
            self._records.pop(user_id, None)

    def record_impressions(self, post_indices: IntArray, at_ms: int) -> None:
        rows = self._checked_rows(post_indices)
        with self._lock:
            self._impressions.add(rows, at_ms)

    def record_engagements(self, user_id: str, post_indices: IntArray, at_ms: int) -> None:
        rows = self._checked_rows(post_indices)
        config = self.config
        horizon = config.engagement_window_ms + config.history_retention_ms
        with self._lock:
            self._engagements.add(rows, at_ms)
            record = self._record(user_id)
            latest = self._latest_user_lookup_ms
            cutoff = None if latest is None else latest - horizon
            keep = config.max_engagement_records_per_user
            record.add_engagements(rows.tolist(), at_ms, keep, cutoff)

    def record_seen(self, user_id: str, post_indices: IntArray, at_ms: int) -> None:
        rows = self._checked_rows(post_indices)
        with self._lock:
            seen = self._record(user_id).seen
            for row in rows.tolist():
                seen.add(row, at_ms)

    def record_hide(self, user_id: str, post_index: int, at_ms: int) -> None:
        self._check_post(post_index)
        with self._lock:
            self._record(user_id).hidden.add(post_index, at_ms)

    def record_report(self, user_id: str, post_index: int, at_ms: int) -> None:
        self._check_post(post_index)
        with self._lock:
            self._record(user_id).reported.add(post_index, at_ms)

    def record_block(self, user_id: str, creator_index: int, at_ms: int) -> None:
        if not 0 <= creator_index < self.catalogue.num_creators:
            raise IndexError(f"creator index {creator_index} is not in the catalogue")
        with self._lock:
            self._record(user_id).blocked.add(creator_index, at_ms)

    def creator_of(self, post_index: int) -> int:
        self._check_post(post_index)
        with self.catalogue.lock:
            return int(self.catalogue.post_column("creator_row")[post_index])

    def _record(self, user_id: str) -> _UserRecord:
        record = self._records.get(user_id)
        if record is None:
            limit = self.config.max_actions_per_user
            record = _UserRecord(
                seen=_TimedSet(self.config.max_seen_per_user),
                hidden=_TimedSet(limit),
                reported=_TimedSet(limit),
                blocked=_TimedSet(limit),
            )
            self._records[user_id] = record
        return record

    def _checked_rows(self, post_indices: IntArray) -> IntArray:
        rows = np.array(post_indices, dtype=np.int64).reshape(-1)  # a private copy
        size = self.catalogue.num_posts
        if rows.size and (rows.min() < 0 or rows.max() >= size):
            raise IndexError(f"post indices must lie in 0..{size - 1}")
        with self._lock:
            self._impressions.grow(size)
            self._engagements.grow(size)
        return rows

    def _check_post(self, post_index: int) -> None:
        if not 0 <= post_index < self.catalogue.num_posts:
            raise IndexError(f"post index {post_index} is not in the catalogue")


def _told(profile: UserProfile | None, name: str) -> int | bool | None:
    """What the user's profile says of ``name``; None without a profile or an answer."""
    value: int | bool | None = None if profile is None else getattr(profile, name)
    return value


def _first(*values: int | bool | None) -> int:
    """The first value that is not None (profile, then request, then default)."""
    for value in values:
        if value is not None:
            return int(value)
    raise ValueError("no value and no default")


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
