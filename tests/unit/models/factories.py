"""Synthetic users and posts for model and retrieval tests (random, seeded; no simulator)."""

from __future__ import annotations

import dataclasses

import numpy as np

from feedrank.core.feature_schema import (
    AGE_BUCKETS,
    CONTENT_DIM,
    COUNTRIES,
    LANGUAGES,
    NUM_TOPICS,
    PostFeatureBatch,
    UserFeatures,
    post_id,
    post_keys,
)

AS_OF_MS = 1_764_000_000_000  # 2025-11-24T16:00:00Z


def make_user(
    rng: np.random.Generator, *, index: int = 0, known: bool = True, as_of_ms: int = AS_OF_MS
) -> UserFeatures:
    """One user with random features."""
    return UserFeatures(
        user_id=f"u{index}",
        language=int(rng.integers(len(LANGUAGES))),
        country=int(rng.integers(len(COUNTRIES))),
        age_bucket=int(rng.integers(AGE_BUCKETS)),
        activity=float(rng.uniform(0.0, 3.0)),
        follow_count=float(rng.uniform(0.0, 8.0)),
        engagements_7d=float(rng.uniform(0.0, 5.0)),
        sensitive_filter=bool(rng.random() < 0.3),
        known=known,
        as_of_ms=as_of_ms,
        topic_affinity=tuple(rng.dirichlet(np.full(NUM_TOPICS, 0.3)).tolist()),
        affinity_engagements=float(rng.uniform(0.0, 4.0)),
    )


def make_users(rng: np.random.Generator, count: int, *, known: bool = True) -> list[UserFeatures]:
    return [make_user(rng, index=index, known=known) for index in range(count)]


def with_changes(user: UserFeatures, **changes: object) -> UserFeatures:
    """A copy of ``user`` with some fields replaced."""
    return dataclasses.replace(user, **changes)  # type: ignore[arg-type]


def make_posts(
    rng: np.random.Generator,
    count: int,
    *,
    first_index: int = 0,
    as_of_ms: int = AS_OF_MS,
    fresh: bool = False,
) -> PostFeatureBatch:
    """``count`` posts with random features; ``fresh`` posts have no impressions yet."""
    topics = rng.dirichlet(np.full(NUM_TOPICS, 0.3), size=count).astype(np.float32)
    impressions = np.zeros(count) if fresh else rng.uniform(0.5, 10.0, count)
    rows = np.arange(first_index, first_index + count, dtype=np.int64)
    return PostFeatureBatch(
        post_index=rows,
        post_key=post_keys(post_id(row) for row in rows.tolist()),
        language=rng.integers(len(LANGUAGES), size=count, dtype=np.int64),
        country=rng.integers(len(COUNTRIES), size=count, dtype=np.int64),
        region_locked=rng.random(count) < 0.2,
        creator_index=rng.integers(10_000, size=count, dtype=np.int64),
        topics=topics,
        content=rng.standard_normal((count, CONTENT_DIM), dtype=np.float32),
        age_hours=rng.uniform(0.0, 72.0, count).astype(np.float32),
        creator_followers=rng.uniform(0.0, 12.0, count).astype(np.float32),
        creator_engagement_rate=rng.uniform(0.0, 0.2, count).astype(np.float32),
        impressions=impressions.astype(np.float32),
        engagement_rate=rng.uniform(0.0, 0.3, count).astype(np.float32),
        sensitive=rng.random(count) < 0.05,
        as_of_ms=as_of_ms,
    )
