"""The counterfactual gate: before a canary gets any traffic, is it worse on logged data?

The explore service logs every decision with its propensities, so a candidate can be
judged off-policy on exploration data before it serves anyone. A gate compares an
off-policy estimate of the candidate's value with the stable version's and refuses the
candidate when it is significantly worse (one-sided, at ``alpha``). Where either
estimate is missing or rests on too few effective samples, the gate lets the candidate
through and says so: the online canary analysis still guards every step.

Estimators plug in as a callable ``version -> PolicyValueEstimate | None`` (the IPS,
SNIPS and DR estimators of the learners fit it). :func:`manifest_estimator` reads the
estimate a learner stored in a registry version's metrics; :func:`snips_estimate`
computes one from logged (reward, logging propensity, target probability) triples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Protocol

import numpy as np
import numpy.typing as npt

# Registry metric names a learner writes when it estimates a version off-policy.
OPE_VALUE = "ope_value"
OPE_STD_ERROR = "ope_std_error"
OPE_EFFECTIVE_SAMPLES = "ope_effective_samples"


@dataclass(frozen=True)
class PolicyValueEstimate:
    value: float  # expected reward per decision under the policy
    std_error: float
    effective_samples: float


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str


PolicyEstimator = Callable[[str], PolicyValueEstimate | None]


class CounterfactualGate(Protocol):
    def check(self, stable_version: str, candidate_version: str) -> GateResult: ...


class OpenGate:
    """No counterfactual data: every candidate passes (the canary analysis still runs)."""

    def check(self, stable_version: str, candidate_version: str) -> GateResult:
        return GateResult(True, "no counterfactual gate configured")


class EstimateComparisonGate:
    """Refuse a candidate whose estimate is significantly below the stable version's."""

    def __init__(
        self, estimate: PolicyEstimator, *, alpha: float, min_effective_samples: float
    ) -> None:
        self.estimate = estimate
        self.alpha = alpha
        self.min_effective_samples = min_effective_samples

    def check(self, stable_version: str, candidate_version: str) -> GateResult:
        candidate = self.estimate(candidate_version)
        stable = self.estimate(stable_version)
        if candidate is None or stable is None:
            missing = candidate_version if candidate is None else stable_version
            return GateResult(True, f"gate skipped: no off-policy estimate of {missing}")
        fewest = min(candidate.effective_samples, stable.effective_samples)
        if fewest < self.min_effective_samples:
            return GateResult(
                True,
                f"gate skipped: {fewest:.0f} effective samples, "
                f"{self.min_effective_samples:.0f} needed",
            )
        difference = candidate.value - stable.value
        std_error = math.hypot(candidate.std_error, stable.std_error)
        upper = difference + NormalDist().inv_cdf(1.0 - self.alpha) * std_error
        summary = (
            f"off-policy value {candidate.value:.4f} vs stable {stable.value:.4f} "
            f"(difference {difference:+.4f}, one-sided upper bound {upper:+.4f})"
        )
        if upper < 0.0:
            return GateResult(False, f"significantly worse than {stable_version}: {summary}")
        return GateResult(True, f"not significantly worse: {summary}")


def manifest_estimator(metrics_of: Callable[[str], Mapping[str, float]]) -> PolicyEstimator:
    """Estimates stored as registry metrics ``ope_value``, ``ope_std_error``, …"""

    def estimate(version: str) -> PolicyValueEstimate | None:
        metrics = metrics_of(version)
        if OPE_VALUE not in metrics or OPE_STD_ERROR not in metrics:
            return None
        return PolicyValueEstimate(
            value=metrics[OPE_VALUE],
            std_error=metrics[OPE_STD_ERROR],
            effective_samples=metrics.get(OPE_EFFECTIVE_SAMPLES, math.inf),
        )

    return estimate


def snips_estimate(
    rewards: npt.ArrayLike,
    logging_propensities: npt.ArrayLike,
    target_probabilities: npt.ArrayLike,
) -> PolicyValueEstimate:
    """Self-normalised IPS with its delta-method standard error and Kish's ESS."""
    reward = np.asarray(rewards, dtype=np.float64)
    logging = np.asarray(logging_propensities, dtype=np.float64)
    target = np.asarray(target_probabilities, dtype=np.float64)
    if not reward.shape == logging.shape == target.shape or reward.ndim != 1 or not reward.size:
        raise ValueError("rewards and probabilities must be equally long, non-empty 1-d arrays")
    if not (np.all(logging > 0) and np.all(logging <= 1) and np.all(target >= 0)):
        raise ValueError("logging propensities must lie in (0, 1], target probabilities >= 0")
    weights = target / logging
    total = float(weights.sum())
    if total <= 0.0:
        return PolicyValueEstimate(0.0, math.inf, 0.0)
    value = float((weights * reward).sum()) / total
    std_error = math.sqrt(float((weights**2 * (reward - value) ** 2).sum())) / total
    effective = total**2 / float((weights**2).sum())
    return PolicyValueEstimate(value, std_error, effective)
