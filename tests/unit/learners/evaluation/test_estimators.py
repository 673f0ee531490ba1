from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import pytest

from feedrank.learners.evaluation import (
    LoggingPolicy,
    PositionMeanRewardModel,
    SuppliedProbabilities,
    Weighting,
    doubly_robust,
    effective_sample_size,
    evaluate,
    importance_weights,
    ips,
    logging_value,
    snips,
)
from tests.unit.learners.evaluation.synthetic import (
    TRUE_LOGGING_VALUE,
    TRUE_TARGET_VALUE,
    logged_bandit,
    single_slot_logs,
)


def test_estimators_recover_a_known_value_within_their_intervals() -> None:
    data = single_slot_logs(seed=1, decisions=20_000)
    report = evaluate(data.logs, SuppliedProbabilities(data.target), seed=1)
    assert abs(TRUE_TARGET_VALUE - TRUE_LOGGING_VALUE) > 0.2  # a genuinely different target
    for estimate in report.estimates:
        assert estimate.covers(TRUE_TARGET_VALUE), estimate
        assert estimate.ci_high - estimate.ci_low < 0.08
    assert report.logging.covers(TRUE_LOGGING_VALUE)
    assert not report.logging.covers(TRUE_TARGET_VALUE)


def test_intervals_cover_the_truth_in_about_95_percent_of_seeds() -> None:
    covered = {"IPS": 0, "SNIPS": 0, "DR": 0}
    seeds = 200
    for seed in range(seeds):
        data = single_slot_logs(seed=seed, decisions=2_000)
        report = evaluate(
            data.logs,
            SuppliedProbabilities(data.target),
            reward_model=PositionMeanRewardModel,
            seed=seed,
        )
        for estimate in report.estimates:
            covered[estimate.estimator] += estimate.covers(TRUE_TARGET_VALUE)
    for name, count in covered.items():
        assert 0.9 <= count / seeds <= 0.99, (name, count)


def test_the_logging_policy_as_target_gives_the_on_policy_mean() -> None:
    data = single_slot_logs(seed=3, decisions=5_000)
    report = evaluate(data.logs, LoggingPolicy())
    mean = float(data.logs.rewards.mean())
    assert report.logging.value == pytest.approx(mean)
    for estimate in report.estimates:
        assert estimate.value == pytest.approx(mean, abs=1e-12)
        assert estimate.ess == pytest.approx(5_000)
    assert report.diagnostics.mean_weight == 1.0


def test_ess_is_kish_s_formula() -> None:
    assert effective_sample_size(np.array([1.0, 1.0, 2.0, 0.0])) == pytest.approx(16 / 6)
    assert effective_sample_size(np.full(7, 3.0)) == pytest.approx(7)
    assert effective_sample_size(np.zeros(3)) == 0.0


def test_one_row_per_decision_gives_the_textbook_interval() -> None:
    rewards = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    logs = logged_bandit(np.arange(8), np.zeros(8), np.full(8, 0.5), rewards)
    target = np.array([1.0, 0.5, 0.25, 0.5, 1.0, 0.5, 0.5, 0.25])
    estimate = ips(logs, importance_weights(logs, target))
    terms = target / 0.5 * rewards
    assert estimate.value == pytest.approx(terms.mean())
    assert estimate.std_error == pytest.approx(terms.std(ddof=1) / math.sqrt(8))
    assert estimate.ci_high - estimate.value == pytest.approx(1.959964 * estimate.std_error)


def test_cascade_weights_multiply_over_earlier_slots() -> None:
    logs = logged_bandit(
        np.array([0, 0, 0, 1, 1]),
        np.array([0, 1, 2, 0, 1]),
        np.array([0.5, 0.5, 0.25, 1.0, 0.5]),
        np.zeros(5),
    )
    target = np.array([1.0, 0.25, 0.5, 0.5, 1.0])
    cascade = importance_weights(logs, target, "cascade")
    np.testing.assert_allclose(cascade.through, [2.0, 1.0, 2.0, 0.5, 1.0])
    np.testing.assert_allclose(cascade.before, [1.0, 2.0, 1.0, 1.0, 0.5])
    item = importance_weights(logs, target, "item")
    np.testing.assert_allclose(item.through, [2.0, 0.5, 2.0, 0.5, 2.0])
    np.testing.assert_allclose(item.before, 1.0)


# An exact check on slates: 3 posts, 2 slots, Plackett-Luce logging and target policies,
# engagement depending on the post and its slot only. Enumerating every slate gives each
# estimator's exact expectation under the logging policy and the target's true value.
ENGAGE = np.array([[0.6, 0.3], [0.2, 0.1], [0.4, 0.25]])  # [post, slot]
LOGGING_WEIGHTS = np.array([0.5, 0.3, 0.2])
TARGET_WEIGHTS = np.array([0.1, 0.2, 0.7])


def _slate_probabilities(
    weights: npt.NDArray[np.float64], slate: tuple[int, int]
) -> tuple[float, float]:
    first = weights[slate[0]] / weights.sum()
    second = weights[slate[1]] / (weights.sum() - weights[slate[0]])
    return float(first), float(second)


def _expected(estimator: str, weighting: Weighting) -> float:
    """Exact expectation of an estimator over slates and Bernoulli rewards."""
    total = 0.0
    for slate in itertools.permutations(range(3), 2):
        mu = _slate_probabilities(LOGGING_WEIGHTS, slate)
        pi = _slate_probabilities(TARGET_WEIGHTS, slate)
        for outcome in itertools.product((0.0, 1.0), repeat=2):
            engage = [ENGAGE[post, slot] for slot, post in enumerate(slate)]
            chance = math.prod(p if r else 1 - p for p, r in zip(engage, outcome, strict=True))
            logs = logged_bandit(np.zeros(2), np.arange(2), np.array(mu), np.array(outcome))
            weights = importance_weights(logs, np.array(pi), weighting)
            baseline = np.array([0.35, 0.15])
            value = {
                "IPS": ips(logs, weights).value,
                "DR": doubly_robust(logs, weights, baseline).value,
            }[estimator]
            total += math.prod(mu) * chance * value
    return total


def _true_slate_value() -> float:
    total = 0.0
    for slate in itertools.permutations(range(3), 2):
        pi = _slate_probabilities(TARGET_WEIGHTS, slate)
        engage = sum(ENGAGE[post, slot] for slot, post in enumerate(slate))
        total += math.prod(pi) * engage / 2
    return total


def test_cascade_ips_and_dr_are_exactly_unbiased_on_slates() -> None:
    truth = _true_slate_value()
    assert _expected("IPS", "cascade") == pytest.approx(truth, abs=1e-12)
    assert _expected("DR", "cascade") == pytest.approx(truth, abs=1e-12)
    # Per-item weights estimate another policy (target at this slot after the logged
    # earlier slots), so they miss the slate value here.
    assert abs(_expected("IPS", "item") - truth) > 0.01


def test_snips_is_undefined_when_the_target_never_shows_a_logged_action() -> None:
    logs = logged_bandit(np.arange(3), np.zeros(3), np.full(3, 0.5), np.ones(3))
    estimate = snips(logs, importance_weights(logs, np.zeros(3)))
    assert math.isnan(estimate.value)
    assert ips(logs, importance_weights(logs, np.zeros(3))).value == 0.0


def test_decisions_are_the_units_of_the_interval() -> None:
    # Two decisions of two slots: a ratio of per-decision sums.
    logs = logged_bandit(
        np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), np.full(4, 1.0), np.array([1, 1, 0, 0])
    )
    estimate = logging_value(logs)
    assert estimate.value == 0.5
    assert (estimate.decisions, estimate.rows) == (2, 4)
    # Per-decision totals 2 and 0 over 2 slots each: SE = sd(totals) / sqrt(2) / 2.
    assert estimate.std_error == pytest.approx(np.std([2.0, 0.0], ddof=1) / math.sqrt(2) / 2)


def test_json_form_has_no_nan() -> None:
    logs = logged_bandit(np.arange(1), np.zeros(1), np.full(1, 0.5), np.ones(1))
    document = ips(logs, importance_weights(logs, np.ones(1))).to_dict()
    assert document["value"] == 2.0
    assert document["std_error"] is None  # one decision: no spread to measure
