"""Reward models for the doubly robust estimator: a baseline ``b(x, position)``.

The baseline may use the decision's context and the slot's position but **not the
logged post**: then the direct-method term ``E_{a~π}[b]`` is ``b`` itself and needs no
more of the target than the probability of each logged action. (An action-dependent
model needs the target's whole distribution over candidates; a registry-backed target
can add that later.) Any baseline keeps DR unbiased; a good one shrinks its variance.

Baselines are cross-fitted (:func:`cross_fitted_baseline`): each decision's baseline
comes from a model fitted on the other folds, so a row never predicts its own reward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from feedrank.learners.evaluation.logged_data import FloatColumn, IntColumn, LoggedBandit


class RewardModel(Protocol):
    """Predicts a row's reward from its context and position (never from its post)."""

    def fit(self, logs: LoggedBandit, rows: IntColumn) -> None:
        """Fit on the given rows of ``logs``."""
        ...

    def predict(self, logs: LoggedBandit, rows: IntColumn) -> FloatColumn:
        """Predicted rewards of the given rows."""
        ...


RewardModelFactory = Callable[[], RewardModel]


@dataclass
class PositionMeanRewardModel:
    """Mean logged reward per position, shrunk towards the overall mean.

    ``b(position) = (Σ r at position + prior_rows · r̄) / (n at position + prior_rows)``;
    positions from ``max_position`` on share one bucket.
    """

    max_position: int = 20
    prior_rows: float = 10.0
    _means: FloatColumn = field(default_factory=lambda: np.zeros(0))
    _overall: float = 0.0

    def fit(self, logs: LoggedBandit, rows: IntColumn) -> None:
        buckets = np.minimum(logs.positions[rows], self.max_position)
        rewards = logs.rewards[rows]
        self._overall = float(rewards.mean()) if rows.size else 0.0
        sums = np.bincount(buckets, weights=rewards, minlength=self.max_position + 1)
        counts = np.bincount(buckets, minlength=self.max_position + 1)
        self._means = (sums + self.prior_rows * self._overall) / (counts + self.prior_rows)

    def predict(self, logs: LoggedBandit, rows: IntColumn) -> FloatColumn:
        if self._means.size == 0:
            return np.full(rows.shape[0], self._overall)
        predictions: FloatColumn = self._means[np.minimum(logs.positions[rows], self.max_position)]
        return predictions


@dataclass
class RidgeRewardModel:
    """Ridge regression on one-hot position buckets, standardised numeric context
    features (missing → the mean) and one-hot categorical context features (their
    ``max_categories`` most frequent values). Predictions are clipped to the range of
    the rewards it was fitted on."""

    alpha: float = 1.0
    max_position: int = 20
    max_categories: int = 20
    _numeric: dict[str, tuple[float, float]] = field(default_factory=dict)
    _categories: dict[str, list[str]] = field(default_factory=dict)
    _coefficients: FloatColumn = field(default_factory=lambda: np.zeros(0))
    _column_means: FloatColumn = field(default_factory=lambda: np.zeros(0))
    _intercept: float = 0.0
    _range: tuple[float, float] = (0.0, 0.0)

    def fit(self, logs: LoggedBandit, rows: IntColumn) -> None:
        rewards = logs.rewards[rows]
        self._intercept = float(rewards.mean()) if rows.size else 0.0
        self._range = (float(rewards.min()), float(rewards.max())) if rows.size else (0.0, 0.0)
        self._numeric = {}
        for name, column in logs.context_numeric.items():
            values = column[rows]
            present = values[np.isfinite(values)]
            if present.size:
                self._numeric[name] = (float(present.mean()), float(present.std()) or 1.0)
        self._categories = {
            name: _most_frequent([column[row] for row in rows.tolist()], self.max_categories)
            for name, column in logs.context_categorical.items()
        }
        design = self._design(logs, rows)
        self._column_means = design.mean(axis=0) if rows.size else np.zeros(design.shape[1])
        centred = design - self._column_means
        gram = centred.T @ centred + self.alpha * np.eye(design.shape[1])
        self._coefficients = np.linalg.solve(gram, centred.T @ (rewards - self._intercept))

    def predict(self, logs: LoggedBandit, rows: IntColumn) -> FloatColumn:
        if self._coefficients.size == 0:
            return np.full(rows.shape[0], self._intercept)
        centred = self._design(logs, rows) - self._column_means
        predictions: FloatColumn = np.clip(
            self._intercept + centred @ self._coefficients, *self._range
        )
        return predictions

    def _design(self, logs: LoggedBandit, rows: IntColumn) -> FloatColumn:
        buckets = np.minimum(logs.positions[rows], self.max_position)
        parts = [np.eye(self.max_position + 1)[buckets]]
        for name, (mean, scale) in self._numeric.items():
            values = logs.context_numeric.get(name, np.full(logs.num_rows, np.nan))[rows]
            standard = (values - mean) / scale
            parts.append(np.where(np.isfinite(standard), standard, 0.0)[:, None])
        for name, categories in self._categories.items():
            column = np.asarray(logs.context_categorical.get(name, (None,) * logs.num_rows), object)
            cells = column[rows][:, None] == np.asarray(categories, dtype=object)[None, :]
            parts.append(cells.astype(np.float64))
        return np.hstack([part.reshape(rows.shape[0], -1) for part in parts])


def _most_frequent(cells: list[str | None], limit: int) -> list[str]:
    values, counts = np.unique([cell for cell in cells if cell is not None], return_counts=True)
    order = np.argsort(-counts, kind="stable")[:limit]
    return [str(value) for value in values[order]]


def cross_fitted_baseline(
    logs: LoggedBandit, factory: RewardModelFactory, folds: int = 2, seed: int = 0
) -> FloatColumn:
    """Per-row baselines, each from a model fitted on the other folds of decisions.

    With ``folds=1`` (or fewer decisions than folds) the model is fitted on every row.
    """
    all_rows = np.arange(logs.num_rows)
    if folds <= 1 or logs.num_decisions < folds:
        model = factory()
        model.fit(logs, all_rows)
        return model.predict(logs, all_rows)
    fold_of_decision = np.random.default_rng(seed).permutation(logs.num_decisions) % folds
    fold_of_row = fold_of_decision[logs.decision_index]
    baseline = np.empty(logs.num_rows)
    for fold in range(folds):
        held_out = np.flatnonzero(fold_of_row == fold)
        model = factory()
        model.fit(logs, np.flatnonzero(fold_of_row != fold))
        baseline[held_out] = model.predict(logs, held_out)
    return baseline


REWARD_MODELS: dict[str, RewardModelFactory] = {
    "ridge": RidgeRewardModel,
    "position-mean": PositionMeanRewardModel,
}
"""Reward models by the name the CLI takes."""
