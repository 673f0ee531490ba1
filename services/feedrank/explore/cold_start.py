"""Cold start: the retrieval towers and the ranker served before the first trained model.

A new deployment has a catalogue and no model. Until a serving plan names a registry
version, explore serves this policy as ``v0-init`` (see ``serving_model``), computed
from the catalogue and the feature store's counters alone, with no weights to train:

* **Retrieval** by topic match and freshness, through the same ANN index as every
  version. :class:`ColdStartTowers` stands in for the two towers with fixed maps:

  - a post is ``[sqrt(topic weights) normalised | (cos a(created), sin a(created))]``,
  - a user is ``[sqrt(topic shares of their history) normalised |
    retrieval_freshness * (cos a(now), sin a(now))]``,

  with ``a(t) = pi * t / max_post_age`` (``t`` in ms, taken modulo the period
  ``2 * max_post_age``). Their inner product is the Hellinger affinity of the two topic
  mixes (1 for the same mix, 0 for disjoint topics) plus ``retrieval_freshness *
  cos(pi * age / max_post_age)``, which falls from 1 to -1 over the eligible ages: a
  post's *creation time* never changes, so its vector may sit in the index for hours
  while the user's vector, taken at request time, turns the pair into the post's
  *age*. (The creation time is read from the catalogue, ``creation_times``: the
  features carry the age, clamped at 0 for a post dated after the lookup.) A user
  with history gets the posts nearest their interests (with a weight below 0.5 a post
  matching them fully outranks one sharing none of their topics, whatever the ages);
  a user without history (a zero topic part) gets the newest eligible posts, which
  the ranker orders by popularity.
* **Ranking** by :class:`ColdStartRanker`: ``score = rate * 2 ** (-age_hours /
  half_life_hours) * exp(-mismatch_weight * (1 - match))``, clipped into (0, 1) like
  the trained ranker's probabilities. ``rate`` is the store's point-in-time engagement
  rate, a Bayesian average that shrinks a post's (likes + comments + shares + saves) /
  impressions to its creator's rate by ``prior_impressions`` pseudo-impressions, so a
  post with no impressions scores its creator's rate and a post with many scores its
  own. ``match`` is the retrieval's topic affinity; a user without history has no
  mismatch to count (factor 1). In log space the score is a sum: log popularity,
  minus age over the half-life, minus the weighted mismatch.

Why these stand-ins rather than the seeded, untrained towers and ranker that served
before: the untrained ranker's scores are noise, while these are documented and
monotone in what they claim (topic match, age, engagement; docs/explore.md has the
measured difference). Why the two-tower *interfaces* (``encode_users``,
``encode_posts``, ``score``) rather than a separate retrieval path: the service, the
catalogue indexer (which embeds new posts with the served model's post tower), the
ANN index, the rules, exploration and the decision log all keep working unchanged, and
a trained version replaces this one by the usual hot swap. The content embedding is
not matched: ``UserFeatures`` carries the topic mix of a user's history but no content
profile, and mapping topics into content space would be a model fitted to the
catalogue, which is what the learners are for. Exploration runs on these scores as on
any ranker's, so every logged decision carries its propensities.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from feedrank.catalogue import CatalogueState
from feedrank.core.feature_schema import (
    NUM_TOPICS,
    FloatArray,
    IntArray,
    PostFeatureBatch,
    UserFeatures,
)
from feedrank.core.settings import ColdStartSettings
from feedrank.core.time_units import DAY_MS
from feedrank.models.ranker import PROBABILITY_EPSILON

TIME_DIMS = 2  # cos and sin of the creation (post) or request (user) time's angle
COLD_START_DIM = NUM_TOPICS + TIME_DIMS

CreationTimes = Callable[[IntArray], IntArray]
"""``created_ms`` of catalogue rows (post indices)."""


def catalogue_creation_times(catalogue: CatalogueState) -> CreationTimes:
    """The creation times of ``catalogue``'s posts, read live (new posts included)."""

    def created_ms(rows: IntArray) -> IntArray:
        with catalogue.lock:
            return np.asarray(catalogue.post_column("created_ms")[rows], dtype=np.int64)

    return created_ms


def topic_directions(weights: npt.NDArray[np.floating[Any]]) -> FloatArray:
    """Unit rows of square-rooted topic weights, shape (n, NUM_TOPICS); zero rows stay
    zero. Two rows' dot product is the Hellinger affinity of their topic mixes."""
    roots = np.sqrt(np.clip(np.asarray(weights, dtype=np.float64), 0.0, None))
    norms = np.linalg.norm(roots, axis=1, keepdims=True)
    directions = np.divide(roots, norms, out=np.zeros_like(roots), where=norms > 0)
    return directions.astype(np.float32)


def user_topic_direction(user: UserFeatures) -> FloatArray:
    """The user's history topic mix as a unit vector; zeros without history."""
    if not user.topic_affinity:
        return np.zeros(NUM_TOPICS, dtype=np.float32)
    direction: FloatArray = topic_directions(np.asarray([user.topic_affinity]))[0]
    return direction


class ColdStartTowers:
    """Fixed user and post "towers" over topics and time (see the module docstring)."""

    def __init__(
        self,
        settings: ColdStartSettings,
        *,
        max_post_age_days: float,
        creation_times: CreationTimes,
    ) -> None:
        if max_post_age_days <= 0:
            raise ValueError(f"max_post_age_days must be positive, got {max_post_age_days}")
        self.settings = settings
        self.period_ms = round(2 * max_post_age_days * DAY_MS)  # cos falls over half of it
        self.creation_times = creation_times

    def encode_users(self, users: Sequence[UserFeatures]) -> FloatArray:
        """User vectors, shape (n, COLD_START_DIM), float32, as of each ``as_of_ms``."""
        vectors = np.zeros((len(users), COLD_START_DIM), dtype=np.float32)
        for row, user in enumerate(users):
            vectors[row, :NUM_TOPICS] = user_topic_direction(user)
        request_ms = np.array([user.as_of_ms for user in users], dtype=np.int64)
        vectors[:, NUM_TOPICS:] = self.settings.retrieval_freshness * self._clock_hands(request_ms)
        return vectors

    def encode_posts(self, posts: PostFeatureBatch) -> FloatArray:
        """Post vectors, shape (n, COLD_START_DIM), float32; the same row gives the same
        vector in any batch and at any time (nothing in it ages)."""
        vectors = np.empty((len(posts), COLD_START_DIM), dtype=np.float32)
        vectors[:, :NUM_TOPICS] = topic_directions(posts.topics)
        vectors[:, NUM_TOPICS:] = self._clock_hands(self.creation_times(posts.post_index))
        return vectors

    def _clock_hands(self, times_ms: IntArray) -> FloatArray:
        """(cos, sin) of each time's angle, 2 pi per period (the remainder first, in
        integer ms, so float precision does not depend on the epoch)."""
        phase = np.mod(np.asarray(times_ms, dtype=np.int64), self.period_ms) / self.period_ms
        angle = 2.0 * math.pi * phase
        hands: FloatArray = np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)
        return hands


class ColdStartRanker:
    """Popularity x freshness x topic match (see the module docstring); no weights."""

    def __init__(self, settings: ColdStartSettings) -> None:
        self.settings = settings

    def score_retrieved(
        self,
        user: UserFeatures,
        posts: PostFeatureBatch,
        tower_similarity: npt.NDArray[np.floating[Any]],
        request_time_ms: int,
        *,
        surface: str = "",
    ) -> npt.NDArray[np.float64]:
        """Scores in (0, 1), shape (n,), finite for every post (zero counts included).

        Post age comes from ``posts`` (taken at ``request_time_ms`` by the store); the
        topic match is recomputed from the features, so the towers' similarity (what the
        trained ranker reads) and the surface are not needed."""
        del tower_similarity, request_time_ms, surface
        settings = self.settings
        rate = np.nan_to_num(posts.engagement_rate.astype(np.float64), nan=0.0, posinf=1.0)
        age_hours = np.maximum(posts.age_hours.astype(np.float64), 0.0)
        log_score = np.log(np.clip(rate, PROBABILITY_EPSILON, 1.0))
        log_score -= math.log(2.0) * age_hours / settings.half_life_hours
        if user.topic_affinity:
            match = topic_directions(posts.topics) @ user_topic_direction(user)
            log_score -= settings.mismatch_weight * (1.0 - np.clip(match, 0.0, 1.0))
        scores: npt.NDArray[np.float64] = np.clip(
            np.exp(log_score), PROBABILITY_EPSILON, 1.0 - PROBABILITY_EPSILON
        )
        return scores
