"""AUC, log loss and recall@K against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from feedrank.learners.metrics import log_loss, recall_at_k, roc_auc


def test_auc_counts_pairs_and_half_ties() -> None:
    labels = np.array([0, 0, 1, 1], dtype=np.float64)
    assert roc_auc(labels, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert roc_auc(labels, np.array([0.1, 0.2, 0.3, 0.4])) == pytest.approx(1.0)
    assert math.isnan(roc_auc(np.zeros(3), np.arange(3.0)))


def test_log_loss_of_known_probabilities() -> None:
    value = log_loss(np.array([1.0, 0.0]), np.array([0.8, 0.4]))
    assert value == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)


def test_recall_at_k() -> None:
    candidates = np.eye(4, dtype=np.float32)
    users = np.array([[1, 0.5, 0, 0], [0, 0, 0.2, 1]], dtype=np.float32)
    targets = np.array([1, 2], dtype=np.int64)  # ranked 2nd and 2nd
    assert recall_at_k(users, targets, candidates, 1) == 0.0
    assert recall_at_k(users, targets, candidates, 2) == 1.0
