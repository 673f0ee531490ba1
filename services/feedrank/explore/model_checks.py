"""Checks a new model version passes before it serves: smoke scoring and ANN recall.

* **Smoke**: the user tower embeds a few real users (and a cold-start one), the index
  returns candidates for them and the ranker gives every candidate a finite
  probability in [0, 1].
* **Recall**: for the same users, the index's top-k (what serving would retrieve)
  against the exact top-k over the version's **own** embeddings, with the same
  eligibility (language, country lock, age). This catches a poor graph and an index
  that does not belong to these embeddings. Posts within ``RECALL_SCORE_TOLERANCE`` of
  the exact k-th best are ties: when many are that close (a young model's embeddings
  crowd together), any of them may fill those last places; the posts clearly better
  than the k-th must be found themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from feedrank.core.feature_schema import FloatArray, IntArray, UserFeatures
from feedrank.explore.catalogue import Catalogue
from feedrank.explore.errors import ModelRefused
from feedrank.explore.serving_model import ServingModel
from feedrank.features import FeatureStore
from feedrank.models.ann_index import top_k

RECALL_SCORE_TOLERANCE = 1e-3  # cosine: closer to the k-th best than this is a tie


@dataclass(frozen=True)
class CheckWindow:
    """When the checks pretend to serve: eligible posts were created in [min, max]."""

    at_ms: int
    min_created_ms: int

    def eligible(self, catalogue: Catalogue, rows: IntArray, user: UserFeatures) -> IntArray:
        """Which of ``rows`` the user may be shown (positions into ``rows``)."""
        created = catalogue.created_ms[rows]
        mask = (
            catalogue.alive[rows]
            & (catalogue.language[rows] == user.language)
            & (created >= self.min_created_ms)
            & (created <= self.at_ms)
            & (~catalogue.region_locked[rows] | (catalogue.country[rows] == user.country))
        )
        return np.flatnonzero(mask)


def smoke_score(
    model: ServingModel,
    users: Sequence[UserFeatures],
    store: FeatureStore,
    window: CheckWindow,
    candidates: int,
) -> FloatArray:
    """Score each user's candidates; returns the user vectors, or raises ModelRefused."""
    user_vectors = model.two_tower.encode_users(list(users))
    if not np.isfinite(user_vectors).all():
        raise ModelRefused(model.version, "smoke", "the user tower gives NaN or infinite vectors")
    scored = 0
    for user, vector in zip(users, user_vectors, strict=True):
        found, similarities = _search(model, vector, candidates, user, window)
        if found.size == 0:
            continue
        posts = store.post_features(found, window.at_ms)
        scores = model.ranker.score_retrieved(user, posts, similarities, window.at_ms)
        if not (np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()):
            raise ModelRefused(
                model.version, "smoke", f"the ranker gives scores outside [0, 1] for {user.user_id}"
            )
        scored += 1
    if scored == 0 and len(model.index) > 0:  # an empty catalogue has nothing to score
        raise ModelRefused(model.version, "smoke", f"no candidates for any of {len(users)} users")
    return user_vectors


def ann_recall(
    model: ServingModel,
    users: Sequence[UserFeatures],
    user_vectors: FloatArray,
    *,
    embedded: tuple[IntArray, FloatArray],
    catalogue: Catalogue,
    window: CheckWindow,
    k: int,
) -> float:
    """Mean recall@k of the index against exact search over ``embedded`` (rows, vectors)."""
    rows, vectors = embedded
    by_row = np.argsort(rows)
    recalls = []
    for user, vector in zip(users, user_vectors, strict=True):
        eligible = window.eligible(catalogue, rows, user)
        if eligible.size == 0:
            continue
        scores = vectors[eligible] @ vector
        best = top_k(scores, k)
        kth = float(scores[best[-1]])
        # The clear winners must be found; the places of posts tied with the k-th best
        # may be taken by any post that is just as close.
        clear = rows[eligible[best[scores[best] > kth + RECALL_SCORE_TOLERANCE]]]
        found, _ = _search(model, vector, k, user, window)
        slots = by_row[np.searchsorted(rows, found, sorter=by_row).clip(0, rows.size - 1)]
        known = rows[slots] == found  # a post the embeddings do not have is a miss
        others = ~np.isin(found, clear) & known
        ties = int((vectors[slots[others]] @ vector >= kth - RECALL_SCORE_TOLERANCE).sum())
        hits = np.intersect1d(found, clear).size + min(ties, best.size - clear.size)
        recalls.append(hits / best.size)
    return float(np.mean(recalls)) if recalls else 1.0


def _search(
    model: ServingModel, vector: FloatArray, k: int, user: UserFeatures, window: CheckWindow
) -> tuple[IntArray, FloatArray]:
    return model.index.search(
        vector,
        k,
        languages=[user.language],
        country=user.country,
        min_created_ms=window.min_created_ms,
        max_created_ms=window.at_ms,
    )
