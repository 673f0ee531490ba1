"""A real explore ranking path logging compact decisions over a simulated world, what it
used for every post it scored, and a learner's twin of its catalogue: for the re-join tests.

``ServedWorld.serve`` ranks with :class:`ExploreService` (greedy, a small model) and keeps
the decisions' bytes as explore logs them; :class:`RecordingStore` is the real feature
store, remembering each batch it served the ranker. Both catalogues apply the same
entity events (``apply``), as a ranker and a learner replaying ``feedrank.posts`` do.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Literal, cast

import numpy as np

from feedrank.catalogue import CatalogueState
from feedrank.core.clock import ManualClock
from feedrank.core.exploration import policy_from_name
from feedrank.core.feature_schema import (
    CONTENT_DIM,
    IntArray,
    PostFeatureBatch,
    UserFeatures,
    post_id,
)
from feedrank.core.settings import ExploreSettings
from feedrank.core.time_units import DAY_MS, HOUR_MS
from feedrank.explore.deadline import Deadline
from feedrank.explore.decision_log import DecisionLogger
from feedrank.explore.queries import RankQuery
from feedrank.explore.service import ExploreService
from feedrank.explore.serving_model import ServingModel, index_catalogue
from feedrank.features.store import InMemoryFeatureStore
from feedrank.simulate.world import World
from feedrank.simulate.world.catalogue import catalogue_from_world, creator_id
from feedrank.v1 import catalogue_pb2
from tests.support.model_versions import all_posts, small_bundle, small_world

START_MS = 1_764_000_000_000
SERVE_MS = START_MS + 3 * HOUR_MS  # when the ranker serves
FEED_LENGTH = 30


class RecordingStore(InMemoryFeatureStore):
    """The in-memory store; remembers every batch of post features (and versions) and every
    user's features it served."""

    def __init__(self, catalogue: CatalogueState) -> None:
        super().__init__(catalogue)
        self.served: list[tuple[PostFeatureBatch, IntArray]] = []
        self.users: dict[tuple[str, int], UserFeatures] = {}  # by (user id, as of)

    def user_features(
        self,
        user_id: str,
        at_ms: int,
        *,
        fallback_language: int | None = None,
        fallback_country: int | None = None,
    ) -> UserFeatures:
        user = super().user_features(
            user_id, at_ms, fallback_language=fallback_language, fallback_country=fallback_country
        )
        self.users.setdefault((user_id, at_ms), user)
        return user

    def versioned_post_features(
        self, post_indices: IntArray, at_ms: int
    ) -> tuple[PostFeatureBatch, IntArray]:
        posts, versions = super().versioned_post_features(post_indices, at_ms)
        self.served.append((posts, versions))
        return posts, versions

    def used(self, identifier: str, at_ms: int) -> tuple[PostFeatureBatch, int]:
        """The features (one row) and version of ``identifier`` the ranker first scored at
        ``at_ms``."""
        row = self.catalogue.post_row(identifier)
        for posts, versions in self.served:
            if posts.as_of_ms == at_ms and row in posts.post_index:
                at = int(np.flatnonzero(posts.post_index == row)[0])
                return posts.take(np.array([at], dtype=np.int64)), int(versions[at])
        raise KeyError(f"{identifier} was not scored at {at_ms}")


class RecordingLog:
    """Stands in for the Kafka decision log: keeps each decision's bytes."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    def log_encoded(self, user_id: str, decision: bytes) -> bool:
        self.payloads.append(decision)
        return True

    def close(self) -> None:
        return None


@dataclass
class ServedWorld:
    """A world served by a ranker; ``learner`` is the learner's catalogue of it."""

    world: World
    ranker: CatalogueState
    learner: CatalogueState
    store: RecordingStore
    log: RecordingLog = field(default_factory=RecordingLog)

    def apply(self, *events: catalogue_pb2.PostEvent | catalogue_pb2.UserEvent) -> None:
        """The same entity events, in order, into both catalogues."""
        for event in events:
            for catalogue in (self.ranker, self.learner):
                if isinstance(event, catalogue_pb2.PostEvent):
                    catalogue.apply_post(event)
                else:
                    catalogue.apply_user(event)

    def serve(
        self,
        users: int,
        *,
        decision_features: Literal["compact", "full"] = "compact",
        policy: str = "greedy",
        epsilon: float = 0.1,
        limit: int = FEED_LENGTH,
    ) -> list[bytes]:
        """One Rank call for each of the first ``users`` users at SERVE_MS (``policy``: the
        exploration policy's name, with ``epsilon``; feeds of ``limit``); the decisions."""
        posts = all_posts(self.store, SERVE_MS)
        bundle = small_bundle(posts, seed=3)
        created = np.asarray(self.ranker.post_column("created_ms"), dtype=np.int64)
        index = index_catalogue(bundle.two_tower, posts, created)
        service = ExploreService(
            store=self.store,
            settings=ExploreSettings(candidates=300, decision_features=decision_features),
            policy=policy_from_name(policy, epsilon=epsilon, temperature=1.0),
            clock=ManualClock(SERVE_MS),
            decision_log=cast(DecisionLogger, self.log),
            # Fixed ids: each seeds its decision's exploration, so every run serves the
            # same slates (random ids made the OPE tests' data differ from run to run).
            decision_ids=map("{:032x}".format, itertools.count(len(self.log.payloads))).__next__,
        )
        service.load(ServingModel("v0001", bundle.two_tower, bundle.ranker, index))
        start = len(self.log.payloads)
        for user in range(users):
            query = RankQuery(
                user_id=f"u{user}",
                limit=limit,
                request_time_ms=SERVE_MS,
                language=None,
                country=None,
                surface="explore",
            )
            service.rank(query, Deadline.after(30.0))
        return self.log.payloads[start:]

    def restyled(
        self, row: int, ts_ms: int, seed: int, **changes: object
    ) -> catalogue_pb2.PostEvent:
        return restyled(self.world, row, ts_ms, seed, **changes)


def served_world(num_posts: int = 600, num_users: int = 60) -> ServedWorld:
    world = small_world(num_posts, num_users, START_MS)
    ranker = catalogue_from_world(world)
    learner = catalogue_from_world(world, CatalogueState(keep_superseded_ms=DAY_MS))
    return ServedWorld(world, ranker, learner, RecordingStore(ranker))


def restyled(
    world: World, row: int, ts_ms: int, seed: int, **changes: object
) -> catalogue_pb2.PostEvent:
    """An upsert of ``world``'s post ``row`` at ``ts_ms`` with new topics and content (and
    ``changes``: language, country, sensitive, ...)."""
    rng = np.random.default_rng(seed)
    posts = world.posts
    event = catalogue_pb2.PostEvent(
        op=catalogue_pb2.ENTITY_OP_UPSERT,
        post_id=post_id(row),
        creator_id=creator_id(int(posts.creator_index[row])),
        created_ms=int(posts.created_ms[row]),
        language=str(changes.pop("language", "en")),
        topics=[f"topic_{int(slot)}" for slot in rng.choice(32, size=2, replace=False)],
        topic_weights=[0.7, 0.3],
        embedding=rng.standard_normal(CONTENT_DIM).astype(np.float32).tolist(),
        ts_ms=ts_ms,
    )
    for name, value in changes.items():
        setattr(event, name, value)
    return event
