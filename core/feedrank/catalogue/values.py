"""Entity events to catalogue values: topic slots, content vectors, user profiles.

Well-known feature names: a post's ``creator_followers`` and ``creator_engagement_rate``;
a user's ``sessions_per_day``, ``follow_count``, ``sensitive_filter`` (0 or 1) and
``history:<topic>`` (past engagements with a topic). Other features are kept by apps'
events but no model reads them yet.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from feedrank.core.entity_codecs import AGE_BUCKET_NAMES
from feedrank.core.feature_schema import (
    AGE_BUCKETS,
    CONTENT_DIM,
    COUNTRY_VOCABULARY,
    LANGUAGE_VOCABULARY,
    NUM_TOPICS,
    FloatArray,
    topic_slot,
)
from feedrank.v1 import catalogue_pb2

HISTORY_FEATURE_PREFIX = "history:"  # user feature "history:<topic>": past engagements


@dataclass(frozen=True)
class UserProfile:
    """What an app told about a user (``None``: not told; defaults apply)."""

    language: int | None  # LANGUAGE_VOCABULARY int
    country: int | None  # COUNTRY_VOCABULARY int
    age_bucket: int | None
    sessions_per_day: float | None
    follow_count: float | None
    sensitive_filter: bool | None
    history_topics: FloatArray  # (NUM_TOPICS,) past engagements per topic slot
    updated_ms: int


def feature_number(features: Mapping[str, catalogue_pb2.FeatureValue], name: str) -> float | None:
    """A numeric feature's value; None when absent or a text."""
    value = features.get(name)
    if value is None or value.WhichOneof("value") != "number":
        return None
    return float(value.number)


def topic_weights(names: Iterable[str], weights: Iterable[float]) -> FloatArray:
    names, weights = list(names), list(weights)
    slots = [0.0] * NUM_TOPICS  # a Python list: a post has a few topics, numpy costs more
    for name, weight in zip(names, weights or [1.0] * len(names), strict=True):
        slots[topic_slot(name)] += weight
    total = sum(slots)
    vector = np.array(slots, dtype=np.float64)
    shares: FloatArray = (vector / total if total > 0 else vector).astype(np.float32)
    return shares


def content_vector(embedding: Iterable[float]) -> FloatArray:
    vector = np.asarray(list(embedding), dtype=np.float32)
    if vector.size == 0:
        return np.zeros(CONTENT_DIM, dtype=np.float32)
    return vector


def user_profile(event: catalogue_pb2.UserEvent) -> UserProfile:
    features = event.features
    history = np.zeros(NUM_TOPICS, dtype=np.float32)
    for name, value in features.items():
        if name.startswith(HISTORY_FEATURE_PREFIX) and value.WhichOneof("value") == "number":
            history[topic_slot(name.removeprefix(HISTORY_FEATURE_PREFIX))] += value.number
    sensitive = feature_number(features, "sensitive_filter")
    age = AGE_BUCKET_NAMES.index(event.age_bucket) if event.age_bucket else None
    return UserProfile(
        language=LANGUAGE_VOCABULARY.intern(event.language) if event.language else None,
        country=COUNTRY_VOCABULARY.intern(event.country) if event.country else None,
        age_bucket=age if age is None or age < AGE_BUCKETS else None,
        sessions_per_day=finite_or_none(feature_number(features, "sessions_per_day")),
        follow_count=finite_or_none(feature_number(features, "follow_count")),
        sensitive_filter=None if sensitive is None else sensitive != 0.0,
        history_topics=history,
        updated_ms=event.ts_ms,
    )


def finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
