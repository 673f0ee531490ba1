"""The counterfactual gate: before a canary gets any traffic, is it worse on logged data?

The explore service logs every decision with its exploration pool and propensities, so
a candidate can be judged off-policy on exploration data before it serves anyone. The
learner that publishes a version estimates it against the stable version on the most
recent logged decisions (``learner.ope_window_s``) and stores the paired estimate in the
version's metrics (:class:`~feedrank.registry.off_policy.PairedEstimate`). The gate
reads it and refuses the candidate when it is worse than the stable version beyond
``margin`` (a share of the stable version's value) with confidence ``1 - alpha``: when
the one-sided upper bound of DR(candidate) - DR(stable) is below ``-margin * DR(stable)``.

A candidate whose one-sided lower bound lies above zero is significantly better; with
``deploy.confident_first_step`` its rollout starts at a larger first step (the reason is
in the rollout's history).

Where there is no estimate (the learner estimates nothing, or had no labelled decisions),
or it rests on fewer than ``min_effective_samples`` effective samples, the gate lets the
candidate through and says so: the online canary analysis still guards every step.
Each verdict is counted (``feedrank_deploy_gate_verdicts_total``) and its difference
exported (``feedrank_deploy_gate_difference``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal, Protocol

from feedrank.deploy import metrics
from feedrank.registry.off_policy import PairedEstimate

Verdict = Literal["passed", "refused", "skipped"]


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str
    verdict: Verdict = "passed"
    better: bool = False  # significantly better than stable (``deploy.confident_first_step``)


class CounterfactualGate(Protocol):
    def check(self, stable_version: str, candidate_version: str) -> GateResult: ...


class OpenGate:
    """No counterfactual data: every candidate passes (the canary analysis still runs)."""

    def check(self, stable_version: str, candidate_version: str) -> GateResult:
        return GateResult(True, "no counterfactual gate configured", "skipped")


class PairedEstimateGate:
    """Refuse a candidate whose paired estimate is significantly below the stable one's."""

    def __init__(
        self,
        metrics_of: Callable[[str], Mapping[str, float]],
        *,
        alpha: float,
        margin: float,
        min_effective_samples: float,
    ) -> None:
        self.metrics_of = metrics_of
        self.alpha = alpha
        self.margin = margin
        self.min_effective_samples = min_effective_samples

    def check(self, stable_version: str, candidate_version: str) -> GateResult:
        result = self._judge(stable_version, candidate_version)
        metrics.GATE_VERDICTS.labels(verdict=result.verdict).inc()
        return result

    def _judge(self, stable_version: str, candidate_version: str) -> GateResult:
        estimate = PairedEstimate.from_metrics(self.metrics_of(candidate_version))
        if estimate is None:
            return GateResult(
                True,
                f"gate skipped: no off-policy estimate of {candidate_version} "
                "(its learner estimates with learner.ope_window_s)",
                "skipped",
            )
        if estimate.effective_samples < self.min_effective_samples:
            return GateResult(
                True,
                f"gate skipped: {estimate.effective_samples:.0f} effective samples, "
                f"{self.min_effective_samples:.0f} needed",
                "skipped",
            )
        metrics.GATE_DIFFERENCE.set(estimate.difference)
        upper = (
            estimate.difference
            + NormalDist().inv_cdf(1.0 - self.alpha) * estimate.difference_std_error
        )
        allowed = -self.margin * abs(estimate.reference_value)
        against = (
            f"against {estimate.reference}"
            if estimate.reference == stable_version
            else f"against {estimate.reference}, the stable version when it was published "
            f"(now {stable_version})"
        )
        summary = (
            f"off-policy value {estimate.value:.4f} vs {estimate.reference_value:.4f} "
            f"(difference {estimate.difference:+.4f}, one-sided {1 - self.alpha:.0%} upper "
            f"bound {upper:+.4f}, allowed {allowed:+.4f}; {estimate.decisions:,} decisions, "
            f"ESS {estimate.effective_samples:,.0f}) {against}"
        )
        if upper < allowed:
            return GateResult(False, f"significantly worse: {summary}", "refused")
        lower = 2 * estimate.difference - upper  # the one-sided lower bound
        if lower > 0.0:
            return GateResult(
                True,
                f"significantly better (one-sided lower bound {lower:+.4f}): {summary}",
                "passed",
                better=True,
            )
        return GateResult(True, f"not significantly worse: {summary}", "passed")
