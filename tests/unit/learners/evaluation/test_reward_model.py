from __future__ import annotations

import numpy as np
import pytest

from feedrank.learners.evaluation import (
    LoggedBandit,
    PositionMeanRewardModel,
    RidgeRewardModel,
    cross_fitted_baseline,
)
from tests.unit.learners.evaluation.synthetic import logged_bandit


def test_position_means_shrink_towards_the_overall_mean() -> None:
    logs = logged_bandit(
        np.arange(4), np.array([0, 0, 1, 5]), np.ones(4), np.array([1.0, 1.0, 0.0, 0.0])
    )
    model = PositionMeanRewardModel(max_position=3, prior_rows=2.0)
    rows = np.arange(4)
    model.fit(logs, rows)
    overall = 0.5
    np.testing.assert_allclose(
        model.predict(logs, rows),
        [
            (2 + 2 * overall) / 4,
            (2 + 2 * overall) / 4,
            (0 + 2 * overall) / 3,
            (0 + 2 * overall) / 3,  # position 5 shares the last bucket (3)
        ],
    )


def _linear_logs(rows: int, seed: int = 0) -> LoggedBandit:
    rng = np.random.default_rng(seed)
    activity = rng.normal(size=rows)
    positions = rng.integers(0, 3, rows)
    country = rng.choice(["US", "DE"], rows)
    rewards = 0.5 + 0.2 * activity - 0.1 * positions + 0.3 * (country == "DE")
    logs = logged_bandit(
        np.arange(rows), positions, np.ones(rows), rewards, numeric={"activity": activity}
    )
    return LoggedBandit(
        **{**logs.__dict__, "context_categorical": {"country": tuple(country.tolist())}}
    )


def test_ridge_learns_a_linear_reward_of_context_and_position() -> None:
    logs = _linear_logs(2_000)
    model = RidgeRewardModel(alpha=1e-3)
    rows = np.arange(logs.num_rows)
    model.fit(logs, rows)
    predictions = model.predict(logs, rows)
    inside = (logs.rewards > logs.rewards.min() + 0.05) & (logs.rewards < logs.rewards.max() - 0.05)
    np.testing.assert_allclose(predictions[inside], logs.rewards[inside], atol=1e-3)


def test_ridge_handles_missing_values_and_unseen_categories() -> None:
    logs = _linear_logs(200)
    model = RidgeRewardModel()
    model.fit(logs, np.arange(100))
    changed = LoggedBandit(
        **{
            **logs.__dict__,
            "context_numeric": {"activity": np.full(200, np.nan)},
            "context_categorical": {"country": ("FR",) * 200},
        }
    )
    predictions = model.predict(changed, np.arange(100, 200))
    assert np.all(np.isfinite(predictions))


def test_cross_fitting_never_predicts_a_row_from_its_own_reward() -> None:
    # Every decision's reward is unique and the model is the overall mean: a row's
    # baseline is the mean of the other fold, which excludes the row itself.
    logs = logged_bandit(np.arange(10), np.zeros(10), np.ones(10), np.arange(10.0))
    baseline = cross_fitted_baseline(logs, PositionMeanRewardModel, folds=2, seed=0)
    folds = {float(value) for value in baseline}
    assert len(folds) == 2
    assert sum(folds) == pytest.approx(9.0)  # two fold means of 0..9 average to 4.5
    in_sample = cross_fitted_baseline(logs, PositionMeanRewardModel, folds=1)
    np.testing.assert_allclose(in_sample, 4.5)
