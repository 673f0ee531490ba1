"""Offline metrics: ROC AUC, log loss and retrieval recall@K (numpy, exact)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatLike = npt.NDArray[np.floating[Any]]


def roc_auc(labels: FloatLike, scores: FloatLike, weights: FloatLike | None = None) -> float:
    """Area under the ROC curve (ties count one half); NaN without both classes."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    w = np.ones_like(labels) if weights is None else np.asarray(weights, dtype=np.float64)
    positive = labels > 0.5
    total_positive, total_negative = w[positive].sum(), w[~positive].sum()
    if total_positive == 0 or total_negative == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    positive_w = np.where(positive[order], w[order], 0.0)
    negative_w = np.where(positive[order], 0.0, w[order])
    # Group ties: a group's positives beat every negative below it and tie half of its own.
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_scores)) + 1])
    group_positive = np.add.reduceat(positive_w, starts)
    group_negative = np.add.reduceat(negative_w, starts)
    negatives_below = np.cumsum(group_negative) - group_negative
    area = float((group_positive * (negatives_below + 0.5 * group_negative)).sum())
    return float(area / (total_positive * total_negative))


def log_loss(
    labels: FloatLike, probabilities: FloatLike, weights: FloatLike | None = None
) -> float:
    """Mean (weighted) binary cross-entropy of probabilities, clipped to (1e-7, 1 - 1e-7)."""
    labels = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-7, 1 - 1e-7)
    w = np.ones_like(labels) if weights is None else np.asarray(weights, dtype=np.float64)
    losses = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    return float((losses * w).sum() / w.sum())


def recall_at_k(
    user_vectors: FloatLike,
    target_rows: npt.NDArray[np.int64],
    candidate_vectors: FloatLike,
    k: int,
) -> float:
    """Share of (user, target) pairs whose target is among the user's top ``k``
    candidates by inner product; ``target_rows`` index ``candidate_vectors``."""
    if user_vectors.shape[0] == 0:
        return float("nan")
    scores = (
        np.asarray(user_vectors, dtype=np.float32)
        @ np.asarray(candidate_vectors, dtype=np.float32).T
    )
    target_scores = scores[np.arange(scores.shape[0]), target_rows]
    better = (scores > target_scores[:, None]).sum(axis=1)
    return float((better < k).mean())
