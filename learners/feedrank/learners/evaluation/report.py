"""One evaluation run: every estimator of a target policy next to the logging policy's value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from feedrank.learners.evaluation.estimators import (
    Estimate,
    ImportanceWeights,
    Weighting,
    doubly_robust,
    dr_difference,
    importance_weights,
    ips,
    logging_value,
    snips,
)
from feedrank.learners.evaluation.logged_data import FloatColumn, LoggedBandit
from feedrank.learners.evaluation.reward_model import (
    RewardModelFactory,
    RidgeRewardModel,
    cross_fitted_baseline,
)
from feedrank.learners.evaluation.target import TargetPolicy, check_probabilities


@dataclass(frozen=True)
class WeightDiagnostics:
    """How well the logs support the target: mean weight ≈ 1 when they do."""

    mean_weight: float
    max_weight: float
    zero_target_share: float  # rows the target would never show


@dataclass(frozen=True)
class EvaluationReport:
    logging: Estimate
    estimates: tuple[Estimate, ...]  # IPS, SNIPS, DR
    diagnostics: WeightDiagnostics
    weighting: Weighting

    def by_name(self) -> dict[str, Estimate]:
        return {estimate.estimator: estimate for estimate in (*self.estimates, self.logging)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "weighting": self.weighting,
            "logging": self.logging.to_dict(),
            "estimates": [estimate.to_dict() for estimate in self.estimates],
            "diagnostics": {
                "mean_weight": self.diagnostics.mean_weight,
                "max_weight": self.diagnostics.max_weight,
                "zero_target_share": self.diagnostics.zero_target_share,
            },
        }


def evaluate(
    logs: LoggedBandit,
    target: TargetPolicy,
    *,
    reward_model: RewardModelFactory = RidgeRewardModel,
    weighting: Weighting = "cascade",
    folds: int = 2,
    seed: int = 0,
) -> EvaluationReport:
    """IPS, SNIPS and DR estimates of ``target`` on ``logs``, and the logging value."""
    probabilities = check_probabilities(target.probabilities(logs), logs)
    weights = importance_weights(logs, probabilities, weighting)
    baseline = cross_fitted_baseline(logs, reward_model, folds=folds, seed=seed)
    return _report(logs, probabilities, weights, baseline, weighting)


def _report(
    logs: LoggedBandit,
    probabilities: FloatColumn,
    weights: ImportanceWeights,
    baseline: FloatColumn,
    weighting: Weighting,
) -> EvaluationReport:
    return EvaluationReport(
        logging=logging_value(logs),
        estimates=(
            ips(logs, weights),
            snips(logs, weights),
            doubly_robust(logs, weights, baseline),
        ),
        diagnostics=WeightDiagnostics(
            mean_weight=float(weights.through.mean()),
            max_weight=float(weights.through.max()),
            zero_target_share=float(np.mean(probabilities == 0)),
        ),
        weighting=weighting,
    )


@dataclass(frozen=True)
class VersionComparison:
    """Two targets on the same logged decisions, and the paired DR difference."""

    candidate: EvaluationReport
    reference: EvaluationReport
    difference: Estimate  # DR(candidate) - DR(reference)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate.to_dict(),
            "reference": self.reference.to_dict(),
            "difference": self.difference.to_dict(),
        }


def compare(
    logs: LoggedBandit,
    candidate: TargetPolicy,
    reference: TargetPolicy,
    *,
    reward_model: RewardModelFactory = RidgeRewardModel,
    weighting: Weighting = "cascade",
    folds: int = 2,
    seed: int = 0,
) -> VersionComparison:
    """Both targets evaluated as :func:`evaluate` does, and DR(candidate) -
    DR(reference) with its paired interval: each target scored once, one reward-model
    baseline for both."""
    baseline = cross_fitted_baseline(logs, reward_model, folds=folds, seed=seed)
    reports, weights = [], []
    for target in (candidate, reference):
        probabilities = check_probabilities(target.probabilities(logs), logs)
        weights.append(importance_weights(logs, probabilities, weighting))
        reports.append(_report(logs, probabilities, weights[-1], baseline, weighting))
    return VersionComparison(
        reports[0], reports[1], dr_difference(logs, weights[0], weights[1], baseline)
    )
