"""The catalogue state that the entity events build: posts, creators, users, graph.

Apply validated events (``feedrank.core.entity_codecs``) in topic order; the state with
the latest ``ts_ms`` wins. An event older than the state it would replace is refused
with :class:`ConflictingEvent` (its caller sends it to the dead-letter topic) and
changes nothing. A post delete (takedown) marks the row dead: it leaves retrieval and is
never served again, unless the app upserts the same id later (as a compacted topic's
replay would then see too). A user delete (erasure) drops the user's profile and graph
edges; the feature store drops the rest (``FeatureStore.forget_user``).

Creators need no event of their own: a post's ``creator_id`` interns one. Their
follower count is the post's ``creator_followers`` feature when the app gives one,
else the number of follow edges to the creator id in the graph; their engagement rate is
``creator_engagement_rate`` when given, else a prior.

Reads and writes take one lock; request threads read a few hundred rows at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from feedrank.catalogue.columns import GrowableColumns
from feedrank.catalogue.graph_edges import GRAPH_RELATION, Edges
from feedrank.catalogue.post_versions import SupersededPosts
from feedrank.catalogue.values import (
    UserProfile,
    content_vector,
    feature_number,
    topic_weights,
    user_profile,
)
from feedrank.core.feature_schema import (
    CONTENT_DIM,
    COUNTRY_VOCABULARY,
    LANGUAGE_VOCABULARY,
    NUM_TOPICS,
    BoolArray,
    FloatArray,
    IntArray,
    post_key,
    post_keys,
)
from feedrank.v1 import catalogue_pb2

UNKNOWN_COUNTRY = "ZZ"  # the model's country of a post whose creator's country is unknown
_POST_COLUMNS = {
    "key": (np.int64, ()),  # post_key(post id), computed once when the id is interned
    "language": (np.int64, ()),
    "country": (np.int64, ()),
    "region_locked": (np.bool_, ()),
    "creator_row": (np.int64, ()),
    "topics": (np.float32, (NUM_TOPICS,)),
    "content": (np.float32, (CONTENT_DIM,)),
    "created_ms": (np.int64, ()),
    "sensitive": (np.bool_, ()),
    "alive": (np.bool_, ()),
    "updated_ms": (np.int64, ()),
}
_CREATOR_COLUMNS = {
    "given_followers": (np.float64, ()),  # NaN: not given, count the graph's follows
    "graph_followers": (np.float64, ()),
    "engagement_rate": (np.float64, ()),  # NaN: not given, use the prior
}


class ConflictingEvent(ValueError):
    """An event the state refuses: older than what it would replace, or contradictory."""


@dataclass(frozen=True)
class CatalogueChange:
    """Post rows an event made servable (new or changed) and rows it took down."""

    upserted: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    deleted: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


class CatalogueState:
    """Posts, creators, users and the graph, with string ids interned to dense rows."""

    def __init__(
        self,
        *,
        prior_creator_engagement_rate: float = 0.02,
        keep_superseded_ms: int | None = None,
    ) -> None:
        self.prior_creator_engagement_rate = prior_creator_engagement_rate
        keep_ms = keep_superseded_ms  # a post's version is its updated_ms: see post_versions
        self.superseded = None if keep_ms is None else SupersededPosts(keep_ms)
        self._posts = GrowableColumns(_POST_COLUMNS)
        self._creators = GrowableColumns(_CREATOR_COLUMNS)
        self._post_ids: list[str] = []
        self._post_rows: dict[str, int] = {}
        self._creator_ids: list[str] = []
        self._creator_rows: dict[str, int] = {}
        self._users: dict[str, UserProfile] = {}
        self._erased_ms: dict[str, int] = {}  # user id -> ts of the latest erasure
        self._edges: dict[str, Edges] = {}
        # Posts that took ZZ because their creator's profile had not arrived yet: the
        # topics replay in no order across each other, so a post may come first.
        self._awaiting_creator: dict[str, list[int]] = {}
        self._listeners: list[Callable[[CatalogueChange], None]] = []
        self.lock = threading.RLock()

    # ---- reads ------------------------------------------------------------------

    @property
    def num_posts(self) -> int:
        """Post rows ever interned (deleted ones included): rows are 0 .. num_posts-1."""
        return self._posts.size

    def post_id(self, row: int) -> str:
        return self._post_ids[row]

    def post_ids(self, rows: Iterable[int]) -> list[str]:
        ids = self._post_ids
        return [ids[row] for row in rows]

    def post_row(self, post_id: str) -> int | None:
        """The row of a post id, or None for an id never upserted."""
        return self._post_rows.get(post_id)

    def creator_row(self, creator_id: str) -> int | None:
        return self._creator_rows.get(creator_id)

    @property
    def num_creators(self) -> int:
        return self._creators.size

    def creator_id(self, row: int) -> str:
        return self._creator_ids[row]

    def post_column(self, name: str) -> np.ndarray:  # type: ignore[type-arg]
        """A post column over every row (a view; read under ``lock`` for consistency)."""
        return self._posts.column(name)

    def live_rows(self) -> IntArray:
        """Rows of the posts that may be served (not deleted)."""
        with self.lock:
            alive: BoolArray = self._posts.column("alive")
            return np.flatnonzero(alive).astype(np.int64)

    def creator_stats(self, creator_rows: IntArray) -> tuple[FloatArray, FloatArray]:
        """Followers (raw count) and engagement rate of each creator row."""
        with self.lock:
            given = self._creators.column("given_followers")[creator_rows]
            graph = self._creators.column("graph_followers")[creator_rows]
            rate = self._creators.column("engagement_rate")[creator_rows]
        followers = np.where(np.isnan(given), graph, given)
        rate = np.where(np.isnan(rate), self.prior_creator_engagement_rate, rate)
        return followers.astype(np.float32), rate.astype(np.float32)

    def user(self, user_id: str) -> UserProfile | None:
        return self._users.get(user_id)

    @property
    def num_users(self) -> int:
        return len(self._users)

    def user_ids(self, limit: int | None = None) -> list[str]:
        """Ids of users with a profile, in the order they first arrived."""
        ids = list(self._users)
        return ids if limit is None else ids[:limit]

    def follow_count(self, user_id: str) -> int:
        with self.lock:
            edges = self._edges.get(user_id)
            return 0 if edges is None else sum(on for on, _ in edges.follows.values())

    def excluded_creators(self, user_id: str) -> frozenset[int]:
        """Creator rows the user blocked or hid through the graph topic."""
        with self.lock:
            edges = self._edges.get(user_id)
            if edges is None:
                return frozenset()
            rows = self._creator_rows
            targets = [t for t, (on, _) in (*edges.blocks.items(), *edges.hides.items()) if on]
            return frozenset(rows[target] for target in targets if target in rows)

    def on_change(self, listener: Callable[[CatalogueChange], None]) -> None:
        """Call ``listener`` after each change of servable posts (on the applying thread)."""
        self._listeners.append(listener)

    # ---- writes -----------------------------------------------------------------

    def apply_post(self, event: catalogue_pb2.PostEvent) -> CatalogueChange:
        with self.lock:
            row = self._post_rows.get(event.post_id)
            if row is not None:
                self._require_newer(self._posts.column("updated_ms")[row], event, event.post_id)
                if self.superseded is not None:  # keep the version the event replaces
                    self.superseded.replaced(event, self.post_column, row)
            if event.op == catalogue_pb2.ENTITY_OP_DELETE:
                change = self._delete_post(row, event.ts_ms)
            else:
                change = self._upsert_post(row, event)
        self._notify(change)
        return change

    def apply_user(self, event: catalogue_pb2.UserEvent) -> bool:
        """Apply a user event; True when it erased the user (the caller forgets the rest).

        A creator's profile that names a country gives it to the creator's posts that
        arrived before it without one (they took ``ZZ``); listeners hear them as changed.
        """
        change = CatalogueChange()
        with self.lock:
            current = self._users.get(event.user_id)
            previous_ms = current.updated_ms if current else self._erased_ms.get(event.user_id)
            if previous_ms is not None:
                self._require_newer(previous_ms, event, event.user_id)
            if event.op == catalogue_pb2.ENTITY_OP_DELETE:
                self._users.pop(event.user_id, None)
                self._erased_ms[event.user_id] = event.ts_ms
                for target, (on, _) in self._edges.pop(event.user_id, Edges()).follows.items():
                    if on:
                        self._count_follower(target, -1)
                return True
            profile = user_profile(event)
            self._users[event.user_id] = profile
            if profile.country is not None and event.user_id in self._awaiting_creator:
                change = self._give_country(self._awaiting_creator.pop(event.user_id), profile)
        self._notify(change)
        return False

    def _give_country(self, rows: list[int], profile: UserProfile) -> CatalogueChange:
        """The creator's country for those of ``rows`` still alive, unlocked and ``ZZ``."""
        candidates = np.array(rows, dtype=np.int64)
        unknown = COUNTRY_VOCABULARY.intern(UNKNOWN_COUNTRY)
        waiting = candidates[
            self._posts.column("alive")[candidates]
            & ~self._posts.column("region_locked")[candidates]
            & (self._posts.column("country")[candidates] == unknown)
        ]
        if waiting.size:
            self._posts.write(waiting, country=profile.country)
        return CatalogueChange(upserted=waiting)

    def apply_graph(self, event: catalogue_pb2.GraphEvent) -> None:
        """Apply an edge; one dated at or before its user's erasure is dropped: the topics
        replay in no order across each other, so it may arrive after the erasure."""
        relation, on = GRAPH_RELATION[event.op]
        with self.lock:
            erased_ms = self._erased_ms.get(event.user_id)
            if erased_ms is not None and event.ts_ms <= erased_ms:
                return
            edges = self._edges.setdefault(event.user_id, Edges())
            table: dict[str, tuple[bool, int]] = getattr(edges, relation)
            was_on, previous_ms = table.get(event.target_id, (False, None))
            if previous_ms is not None:
                self._require_newer(previous_ms, event, f"{event.user_id} -> {event.target_id}")
            table[event.target_id] = (on, event.ts_ms)
            if relation == "follows" and on != was_on:
                self._count_follower(event.target_id, 1 if on else -1)
            if relation != "follows" and on:
                self._intern_creator(event.target_id)

    def bulk_upsert_posts(
        self,
        post_ids: list[str],
        creator_ids: list[str],
        *,
        language: IntArray,
        country: IntArray,
        region_locked: BoolArray,
        topics: FloatArray,
        content: FloatArray,
        created_ms: IntArray,
        sensitive: BoolArray,
        ts_ms: int,
    ) -> IntArray:
        """Add many new posts at once (a generated or file-loaded catalogue); their rows.

        Vocabulary ints must already be interned. Every id must be new."""
        with self.lock:
            if any(post_id in self._post_rows for post_id in post_ids):
                raise ConflictingEvent("bulk_upsert_posts adds new posts only")
            creator_rows = np.fromiter(
                (self._intern_creator(creator) for creator in creator_ids),
                dtype=np.int64,
                count=len(creator_ids),
            )
            rows = self._posts.append(len(post_ids))
            self._posts.write(
                rows,
                key=post_keys(post_ids),
                language=language,
                country=country,
                region_locked=region_locked,
                creator_row=creator_rows,
                topics=topics,
                content=content,
                created_ms=created_ms,
                sensitive=sensitive,
                alive=True,
                updated_ms=ts_ms,
            )
            for post_id, row in zip(post_ids, rows.tolist(), strict=True):
                self._post_rows[post_id] = row
            self._post_ids.extend(post_ids)
        self._notify(CatalogueChange(upserted=rows))
        return rows

    def set_creator_stats(
        self, creator_id: str, *, followers: float | None, engagement_rate: float | None
    ) -> None:
        """What an app (or a generated world) knows of a creator's audience and rate."""
        with self.lock:
            row = self._intern_creator(creator_id)
            nan = float("nan")
            self._creators.write(
                row,
                given_followers=nan if followers is None else followers,
                engagement_rate=nan if engagement_rate is None else engagement_rate,
            )

    def put_user(self, user_id: str, profile: UserProfile) -> None:
        """Set a user's profile directly (a generated world; apps send UserEvents)."""
        with self.lock:
            self._users[user_id] = profile

    # ---- internals --------------------------------------------------------------

    def _upsert_post(self, row: int | None, event: catalogue_pb2.PostEvent) -> CatalogueChange:
        if row is None:
            row = int(self._posts.append(1)[0])
            self._posts.write(row, key=post_key(event.post_id))
            self._post_rows[event.post_id] = row
            self._post_ids.append(event.post_id)
        creator = self._intern_creator(event.creator_id)
        features = event.features
        if "creator_followers" in features or "creator_engagement_rate" in features:
            self.set_creator_stats(
                event.creator_id,
                followers=feature_number(features, "creator_followers"),
                engagement_rate=feature_number(features, "creator_engagement_rate"),
            )
        country = event.country or self._creator_country(event.creator_id)
        if country == UNKNOWN_COUNTRY and not event.country:
            self._awaiting_creator.setdefault(event.creator_id, []).append(row)
        self._posts.write(
            row,
            language=LANGUAGE_VOCABULARY.intern(event.language),
            country=COUNTRY_VOCABULARY.intern(country),
            region_locked=bool(event.country),
            creator_row=creator,
            topics=topic_weights(event.topics, event.topic_weights),
            content=content_vector(event.embedding),
            created_ms=event.created_ms,
            sensitive=event.sensitive,
            alive=True,
            updated_ms=event.ts_ms,
        )
        return CatalogueChange(upserted=np.array([row], dtype=np.int64))

    def _delete_post(self, row: int | None, ts_ms: int) -> CatalogueChange:
        if row is None:  # a takedown of a post never seen: nothing to serve, nothing kept
            return CatalogueChange()
        self._posts.write(row, alive=False, updated_ms=ts_ms)
        return CatalogueChange(deleted=np.array([row], dtype=np.int64))

    def _creator_country(self, creator_id: str) -> str:
        """The country of the creator's own user profile, for the model's post country."""
        profile = self._users.get(creator_id)
        if profile is None or profile.country is None:
            return UNKNOWN_COUNTRY
        return COUNTRY_VOCABULARY.code(profile.country)

    def _intern_creator(self, creator_id: str) -> int:
        row = self._creator_rows.get(creator_id)
        if row is None:
            row = int(self._creators.append(1)[0])
            self._creators.write(row, given_followers=np.nan, engagement_rate=np.nan)
            self._creator_rows[creator_id] = row
            self._creator_ids.append(creator_id)
        return row

    def _count_follower(self, target_id: str, delta: int) -> None:
        row = self._intern_creator(target_id)
        count = self._creators.column("graph_followers")[row]
        self._creators.write(row, graph_followers=max(count + delta, 0.0))

    def _require_newer(self, previous_ms: int, event: object, what: str) -> None:
        ts_ms = int(getattr(event, "ts_ms"))  # noqa: B009 - every entity event has one
        if ts_ms < previous_ms:
            raise ConflictingEvent(
                f"event for {what!r} at ts_ms={ts_ms} is older than its state "
                f"(ts_ms={int(previous_ms)}); the latest event per key wins"
            )

    def _notify(self, change: CatalogueChange) -> None:
        if change.upserted.size or change.deleted.size:
            for listener in self._listeners:
                listener(change)
