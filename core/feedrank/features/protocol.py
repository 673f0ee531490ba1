"""The feature store's interface: what serving and training ask of any store.

:class:`FeatureStore` answers every lookup as of a time ``at_ms`` and records
impressions, engagements and user actions; :class:`UserState` is what post-processing
learns about a user. :class:`~feedrank.features.store.InMemoryFeatureStore` is the
in-process implementation; a remote store can stand in for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from feedrank.core.feature_schema import BoolArray, IntArray, PostFeatureBatch, UserFeatures


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

    def versioned_post_features(
        self, post_indices: IntArray, at_ms: int
    ) -> tuple[PostFeatureBatch, IntArray]:
        """:meth:`post_features` and each post's catalogue version (the ``ts_ms`` of its
        latest upsert), read together: a version names exactly the static features the
        batch holds (what a compact decision logs instead of them)."""
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
