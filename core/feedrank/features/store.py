"""The in-process feature store: user and post features as they were at a given time.

A decision logs features as they were at impression time, so every lookup takes
``at_ms`` and never sees an increment recorded with a later timestamp, even when that
increment was written earlier (a simulator may write rewards that lie in the future).

:class:`InMemoryFeatureStore` is the default
:class:`~feedrank.features.protocol.FeatureStore`. Its static columns come from a
:class:`CatalogueState` (what apps told through the entity topics, or a generated
world's OBSERVABLE tables, never its hidden parameters), read live, so posts and users
the catalogue gains are served at once. Its time-varying post counts live in
:class:`~feedrank.features.point_in_time.PointInTimeCounts` (lookups further back than
``history_retention_ms`` behind the latest one raise), its per-user state in
:class:`~feedrank.features.user_records.UserRecord`; one lock serialises both.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

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
    post_age_hours,
)
from feedrank.core.time_units import DAY_MS
from feedrank.features.point_in_time import PointInTimeCounts
from feedrank.features.protocol import UserState
from feedrank.features.user_records import TimedSet, UserRecord


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


class InMemoryFeatureStore:
    """The in-process :class:`~feedrank.features.protocol.FeatureStore`: numpy columns, one
    lock, bounded user state.

    Reads and writes take one lock (a read of 1,000 posts holds it for microseconds), so
    any number of reader threads may share the store with a writer.
    """

    def __init__(self, catalogue: CatalogueState, config: FeatureStoreConfig | None = None) -> None:
        self.config = config or FeatureStoreConfig()
        self.catalogue = catalogue
        retention = self.config.history_retention_ms
        self._impressions = PointInTimeCounts(catalogue.num_posts, retention)
        self._engagements = PointInTimeCounts(catalogue.num_posts, retention)
        self._records: dict[str, UserRecord] = {}
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
        return self.versioned_post_features(post_indices, at_ms)[0]

    def versioned_post_features(
        self, post_indices: IntArray, at_ms: int
    ) -> tuple[PostFeatureBatch, IntArray]:
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
            versions = np.array(column("updated_ms")[rows], dtype=np.int64)
        followers, creator_rate = catalogue.creator_stats(creator)
        prior = self.config.prior_impressions
        rate = (engagements + prior * creator_rate.astype(np.float64)) / (impressions + prior)
        age_hours = post_age_hours(at_ms, created_ms)  # derived again by the re-join
        posts = PostFeatureBatch(
            post_index=rows,
            post_key=key,
            **static,
            creator_index=creator,
            age_hours=age_hours,
            creator_followers=np.log1p(followers).astype(np.float32),
            creator_engagement_rate=creator_rate,
            impressions=np.log1p(impressions).astype(np.float32),
            engagement_rate=rate.astype(np.float32),
            sensitive=sensitive,
            as_of_ms=at_ms,
        )
        return posts, versions

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

    def _record(self, user_id: str) -> UserRecord:
        record = self._records.get(user_id)
        if record is None:
            limit = self.config.max_actions_per_user
            record = UserRecord(
                seen=TimedSet(self.config.max_seen_per_user),
                hidden=TimedSet(limit),
                reported=TimedSet(limit),
                blocked=TimedSet(limit),
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
