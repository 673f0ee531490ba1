"""The counterfactual gate and the SNIPS estimator behind its default."""

from __future__ import annotations

import math

import numpy as np
import pytest

from feedrank.deploy.counterfactual import (
    EstimateComparisonGate,
    PolicyValueEstimate,
    manifest_estimator,
    snips_estimate,
)


def gate(estimates: dict[str, PolicyValueEstimate | None]) -> EstimateComparisonGate:
    return EstimateComparisonGate(estimates.get, alpha=0.05, min_effective_samples=100)


def test_significantly_worse_candidate_is_refused() -> None:
    result = gate(
        {
            "v1": PolicyValueEstimate(0.10, 0.005, 5_000),
            "v2": PolicyValueEstimate(0.07, 0.005, 5_000),
        }
    ).check("v1", "v2")
    assert not result.passed
    assert "significantly worse than v1" in result.reason


def test_slightly_worse_but_uncertain_candidate_passes() -> None:
    result = gate(
        {"v1": PolicyValueEstimate(0.10, 0.02, 5_000), "v2": PolicyValueEstimate(0.09, 0.02, 5_000)}
    ).check("v1", "v2")
    assert result.passed
    assert "not significantly worse" in result.reason


def test_missing_or_thin_estimates_skip_the_gate_and_say_so() -> None:
    missing = gate({"v1": PolicyValueEstimate(0.1, 0.01, 5_000)}).check("v1", "v2")
    assert missing.passed
    assert "no off-policy estimate of v2" in missing.reason
    thin = gate(
        {"v1": PolicyValueEstimate(0.1, 0.01, 5_000), "v2": PolicyValueEstimate(0.0, 0.01, 20)}
    ).check("v1", "v2")
    assert thin.passed
    assert "20 effective samples" in thin.reason


def test_manifest_estimator_reads_registry_metrics() -> None:
    metrics = {"v1": {"auc": 0.8, "ope_value": 0.12, "ope_std_error": 0.01}, "v2": {"auc": 0.8}}
    estimate = manifest_estimator(lambda version: metrics[version])
    assert estimate("v1") == PolicyValueEstimate(0.12, 0.01, math.inf)
    assert estimate("v2") is None


def test_snips_recovers_a_target_policy_value_from_uniform_logs() -> None:
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 4, size=20_000)  # logged uniformly: propensity 1/4
    reward_rate = np.array([0.1, 0.2, 0.3, 0.6])
    rewards = rng.random(actions.size) < reward_rate[actions]
    target = np.where(actions == 3, 1.0, 0.0)  # always pick action 3
    estimate = snips_estimate(rewards, np.full(actions.size, 0.25), target)
    assert abs(estimate.value - 0.6) < 3 * estimate.std_error + 1e-3
    assert 4_000 < estimate.effective_samples < 6_000


def test_snips_rejects_bad_propensities() -> None:
    with pytest.raises(ValueError, match="propensities"):
        snips_estimate([1.0], [0.0], [1.0])
