"""Off-policy estimators of a target policy's value from logged bandit feedback.

The value is the expected reward **per shown slot** (per logged row): with decision
``i`` showing ``k_i`` slots, ``V = E[Σ_j r_ij] / E[k_i]``. Each estimator is a ratio of
per-decision sums ``Σ_i Y_i / Σ_i Z_i``:

======================  ===============================================  ==============
estimator               ``Y_i``                                          ``Z_i``
======================  ===============================================  ==============
logging (on-policy)     ``Σ_j r_ij``                                     ``k_i``
IPS                     ``Σ_j w_ij r_ij``                                ``k_i``
SNIPS                   ``Σ_j w_ij r_ij``                                ``Σ_j w_ij``
DR                      ``Σ_j [w_ij (r_ij - b_ij) + w⁻_ij b_ij]``        ``k_i``
======================  ===============================================  ==============

with importance weights ``w_ij`` (:func:`importance_weights`), the weight of the
slots before ``w⁻_ij`` and a reward-model baseline ``b_ij`` that does not depend on the
logged action. Decisions are the independent units: the 95% interval is
``estimate ± 1.96 · SE`` with the delta-method (linearised ratio) standard error
``SE = sqrt(Σ_i (Y_i - V̂ Z_i)² / (N (N - 1))) / mean(Z)``, which for one row per
decision is the usual ``sd / sqrt(N)``. The effective sample size is Kish's
``(Σ w)² / Σ w²`` over the rows. Derivations: ``docs/replay-and-evaluation.md``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

from feedrank.learners.evaluation.logged_data import FloatColumn, LoggedBandit

Weighting = Literal["cascade", "item"]
CONFIDENCE = 0.95
Z_95 = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)


@dataclass(frozen=True)
class Estimate:
    """One estimator's answer: the value per slot, its 95% interval and the ESS."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    std_error: float
    ess: float
    decisions: int
    rows: int

    def covers(self, truth: float) -> bool:
        return self.ci_low <= truth <= self.ci_high

    def to_dict(self) -> dict[str, float | int | str | None]:
        """JSON-ready: NaN (e.g. SNIPS without weight, SE of one decision) becomes None."""
        return {
            key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in asdict(self).items()
        }


@dataclass(frozen=True)
class ImportanceWeights:
    """Per-row weights ``w`` (through this slot) and ``w⁻`` (through the slot before)."""

    through: FloatColumn
    before: FloatColumn


def importance_weights(
    logs: LoggedBandit, target: FloatColumn, weighting: Weighting = "cascade"
) -> ImportanceWeights:
    """Importance weights of the logged rows for target probabilities ``target``.

    ``item``: ``w_ij = π_ij / μ_ij``. ``cascade`` (default): the product of those ratios
    over the decision's logged rows up to and including slot ``j``, which is unbiased
    for the target's reward at slot ``j`` when that reward depends on the posts at
    slots ``<= j`` only, not on later ones.
    """
    ratio = target / logs.propensities
    if weighting == "item":
        return ImportanceWeights(through=ratio, before=np.ones_like(ratio))
    ranks = logs.rank_in_decision()
    through = np.empty_like(ratio)
    before = np.empty_like(ratio)
    running = np.ones(logs.num_decisions)
    for rank in range(int(ranks.max()) + 1 if ranks.size else 0):
        rows = np.flatnonzero(ranks == rank)
        decisions = logs.decision_index[rows]
        before[rows] = running[decisions]
        running[decisions] *= ratio[rows]
        through[rows] = running[decisions]
    return ImportanceWeights(through=through, before=before)


def effective_sample_size(weights: FloatColumn) -> float:
    """Kish's ESS ``(Σ w)² / Σ w²`` (0 when every weight is 0)."""
    squares = float(np.sum(weights**2))
    return float(np.sum(weights)) ** 2 / squares if squares > 0 else 0.0


def logging_value(logs: LoggedBandit) -> Estimate:
    """The logging policy's own value: the mean logged reward per slot."""
    return _ratio_estimate(
        "logging (on-policy)",
        logs,
        _per_decision(logs, logs.rewards),
        logs.rows_per_decision().astype(np.float64),
        float(logs.num_rows),
    )


def ips(logs: LoggedBandit, weights: ImportanceWeights) -> Estimate:
    """Inverse propensity scoring: ``Σ w r / Σ k``."""
    return _ratio_estimate(
        "IPS",
        logs,
        _per_decision(logs, weights.through * logs.rewards),
        logs.rows_per_decision().astype(np.float64),
        effective_sample_size(weights.through),
    )


def snips(logs: LoggedBandit, weights: ImportanceWeights) -> Estimate:
    """Self-normalised IPS: ``Σ w r / Σ w`` (NaN when every weight is 0)."""
    return _ratio_estimate(
        "SNIPS",
        logs,
        _per_decision(logs, weights.through * logs.rewards),
        _per_decision(logs, weights.through),
        effective_sample_size(weights.through),
    )


def doubly_robust(
    logs: LoggedBandit, weights: ImportanceWeights, baseline: FloatColumn
) -> Estimate:
    """Doubly robust with an action-independent reward model ``b``:
    ``Σ [w (r - b) + w⁻ b] / Σ k``."""
    return _ratio_estimate(
        "DR",
        logs,
        _per_decision(logs, _dr_terms(logs, weights, baseline)),
        logs.rows_per_decision().astype(np.float64),
        effective_sample_size(weights.through),
    )


def dr_difference(
    logs: LoggedBandit,
    candidate: ImportanceWeights,
    reference: ImportanceWeights,
    baseline: FloatColumn,
) -> Estimate:
    """DR of a candidate target minus DR of a reference target on the same decisions,
    paired decision by decision (their shared reward noise cancels in the interval);
    the ESS is the smaller of the two."""
    terms = _dr_terms(logs, candidate, baseline) - _dr_terms(logs, reference, baseline)
    return _ratio_estimate(
        "DR difference",
        logs,
        _per_decision(logs, terms),
        logs.rows_per_decision().astype(np.float64),
        min(effective_sample_size(candidate.through), effective_sample_size(reference.through)),
    )


def _dr_terms(logs: LoggedBandit, weights: ImportanceWeights, baseline: FloatColumn) -> FloatColumn:
    terms: FloatColumn = weights.through * (logs.rewards - baseline) + weights.before * baseline
    return terms


def _per_decision(logs: LoggedBandit, values: FloatColumn) -> FloatColumn:
    sums: FloatColumn = np.bincount(
        logs.decision_index, weights=values, minlength=logs.num_decisions
    ).astype(np.float64)
    return sums


def _ratio_estimate(
    name: str, logs: LoggedBandit, numerators: FloatColumn, denominators: FloatColumn, ess: float
) -> Estimate:
    decisions = numerators.shape[0]
    if decisions == 0:
        raise ValueError("no logged decisions to estimate from")
    total = float(np.sum(denominators))
    value = float(np.sum(numerators)) / total if total > 0 else math.nan
    std_error = math.nan
    if decisions > 1 and total > 0:
        residuals = numerators - value * denominators
        variance = float(np.sum(residuals**2)) / (decisions * (decisions - 1))
        std_error = math.sqrt(variance) / (total / decisions)
    return Estimate(
        estimator=name,
        value=value,
        ci_low=value - Z_95 * std_error,
        ci_high=value + Z_95 * std_error,
        std_error=std_error,
        ess=ess,
        decisions=decisions,
        rows=logs.num_rows,
    )
