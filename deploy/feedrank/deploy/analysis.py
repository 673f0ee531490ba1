"""Automatic canary analysis at each step: canary vs stable, safeguards and SLOs.

Inputs are plain numbers so the analysis is testable without Kafka or Prometheus:
:class:`ArmTotals` summed from the 5-minute ``EngagementAggregate`` records of each arm
since the rollout began, and :class:`ServiceLevels` of the canary (calls, errors, p99
latency) from Prometheus. The verdict is one of

* ``rollback``: a safeguard (prompt reports, blocks, hides per impression) is
  significantly higher on the canary, the prompt engagement rate significantly lower (when
  ``rollback_on_engagement_drop``), or the canary breaks its error-rate or latency SLO;
* ``continue``: not enough impressions yet on either arm (``min_impressions``), or, with
  an ``advance_margin``, the engagement rate not yet shown to be within that margin of
  stable's;
* ``advance``: enough data and no significant regression (and, with an
  ``advance_margin``, the engagement rate's lower bound within it).

Without a margin a step advances as soon as it holds ``min_impressions`` and nothing is
significantly worse: absence of evidence. At a 1% step that is far too little data to
see a 5% drop, so such a canary walks on to larger steps before it is caught
(``benchmarks/canary_sensitivity.py``). With ``advance_margin = m`` a step is a
sequential non-inferiority test: it holds until the canary is either significantly
worse (rollback) or shown to be no worse than ``m`` of stable's rate (advance).

Each metric is judged with an always-valid confidence sequence
(:mod:`feedrank.deploy.sequential`) at ``alpha / m`` for ``m`` metrics, so the chance
that a healthy canary is ever rolled back, over every look of the rollout and every
metric together, stays below ``alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from feedrank.core.settings import DeploySettings
from feedrank.deploy.sequential import (
    RateDifference,
    corrected_rate_difference,
    rate_difference,
)

# Rewards within the settle time of their impression ("prompt"). All rewards, counted
# when they happen, mix in late ones from impressions made under the previous split:
# with heavy-tailed delays (a fifth after 12 hours in the simulated world) the arm that
# just grew looked a fifth worse, healthy canaries were rolled back, and a canary's
# reports and blocks read a fifth lower than they were.
SAFEGUARDS = ("prompt_reports", "prompt_blocks", "prompt_hides")
TOPLINE = "prompt_engagements"


@dataclass(frozen=True)
class ArmTotals:
    """What the analysis judges of one arm, summed over its 5-minute aggregates: the
    impressions and the rewards within the settle time of their impression."""

    impressions: int = 0
    prompt_engagements: int = 0
    prompt_reports: int = 0
    prompt_blocks: int = 0
    prompt_hides: int = 0

    def plus(self, other: ArmTotals) -> ArmTotals:
        return ArmTotals(
            self.impressions + other.impressions,
            self.prompt_engagements + other.prompt_engagements,
            self.prompt_reports + other.prompt_reports,
            self.prompt_blocks + other.prompt_blocks,
            self.prompt_hides + other.prompt_hides,
        )

    def count(self, metric: str) -> int:
        value = getattr(self, metric)
        assert isinstance(value, int)
        return value


@dataclass(frozen=True)
class ServiceLevels:
    """The canary's Rank calls over the analysis window."""

    requests: int
    errors: int
    latency_p99_s: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


class VerdictKind(StrEnum):
    CONTINUE = "continue"
    ADVANCE = "advance"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class MetricComparison:
    metric: str  # "prompt_engagements", "prompt_reports", …: events per impression
    comparison: RateDifference

    def describe(self) -> str:
        c = self.comparison
        before = f", {c.offset:+.4%} before the rollout taken off" if c.offset else ""
        return (
            f"{self.metric} {c.canary_rate:.4%} vs {c.stable_rate:.4%} "
            f"(difference in [{c.lower:+.4%}, {c.upper:+.4%}]{before})"
        )


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    reasons: tuple[str, ...]
    comparisons: tuple[MetricComparison, ...] = ()

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons)


@dataclass(frozen=True)
class AnalysisConfig:
    min_impressions: int = 5_000
    alpha: float = 0.05
    mixture_effect: float = 0.25
    rollback_on_engagement_drop: bool = True
    max_error_rate: float = 0.01
    max_latency_p99_s: float = 0.25
    min_requests: int = 200
    # Relative: 0.03 advances once the drop is shown < 3%. The service takes
    # deploy.advance_margin (0.03 by default); 0 here keeps the plain rule for callers.
    advance_margin: float = 0.0

    @classmethod
    def from_settings(cls, settings: DeploySettings) -> AnalysisConfig:
        return cls(
            min_impressions=settings.min_impressions,
            alpha=settings.alpha,
            mixture_effect=settings.mixture_effect,
            rollback_on_engagement_drop=settings.rollback_on_engagement_drop,
            max_error_rate=settings.max_error_rate,
            max_latency_p99_s=settings.max_latency_p99_s,
            min_requests=settings.min_requests,
            advance_margin=settings.advance_margin,
        )

    @property
    def metrics(self) -> tuple[str, ...]:
        return (TOPLINE, *SAFEGUARDS) if self.rollback_on_engagement_drop else SAFEGUARDS


class CanaryAnalysis:
    def __init__(self, config: AnalysisConfig) -> None:
        self.config = config

    def judge(
        self,
        canary: ArmTotals,
        stable: ArmTotals,
        service_levels: ServiceLevels | None = None,
        before: tuple[ArmTotals, ArmTotals] | None = None,
    ) -> Verdict:
        """The verdict on the arms' totals; ``before``: the totals of the users now on
        the canary and on stable from before the rollout, when known, whose difference
        is taken off each comparison (see :func:`corrected_rate_difference`)."""
        slo_breaches = self._slo_breaches(service_levels)
        if slo_breaches:
            return Verdict(VerdictKind.ROLLBACK, slo_breaches)
        needed = self.config.min_impressions
        if canary.impressions < needed or stable.impressions < needed:
            return Verdict(
                VerdictKind.CONTINUE,
                (
                    f"waiting for data: canary {canary.impressions:,}, stable "
                    f"{stable.impressions:,} of {needed:,} impressions each",
                ),
            )
        comparisons = tuple(
            self._compare(metric, canary, stable, before) for metric in self.config.metrics
        )
        regressions = tuple(
            f"{item.describe()}: significantly {'lower' if item.metric == TOPLINE else 'higher'}"
            for item in comparisons
            if (item.metric == TOPLINE and item.comparison.significantly_lower)
            or (item.metric != TOPLINE and item.comparison.significantly_higher)
        )
        if regressions:
            return Verdict(VerdictKind.ROLLBACK, regressions, comparisons)
        unproven = self._not_yet_within_margin(comparisons)
        if unproven:
            return Verdict(VerdictKind.CONTINUE, (unproven,), comparisons)
        return Verdict(
            VerdictKind.ADVANCE,
            ("no significant regression: " + "; ".join(c.describe() for c in comparisons),),
            comparisons,
        )

    def _compare(
        self,
        metric: str,
        canary: ArmTotals,
        stable: ArmTotals,
        before: tuple[ArmTotals, ArmTotals] | None,
    ) -> MetricComparison:
        during = (
            canary.count(metric),
            canary.impressions,
            stable.count(metric),
            stable.impressions,
        )
        alpha = self.config.alpha / len(self.config.metrics)
        effect = self.config.mixture_effect
        if before is None:
            comparison = rate_difference(*during, alpha=alpha, relative_effect=effect)
        else:
            canary_before, stable_before = before
            counts = (
                canary_before.count(metric),
                canary_before.impressions,
                stable_before.count(metric),
                stable_before.impressions,
            )
            comparison = corrected_rate_difference(
                during, counts, alpha=alpha, relative_effect=effect
            )
        return MetricComparison(metric, comparison)

    def _not_yet_within_margin(self, comparisons: tuple[MetricComparison, ...]) -> str:
        """Why the step may not advance yet under ``advance_margin`` ("" when it may)."""
        margin = self.config.advance_margin
        topline = next((c for c in comparisons if c.metric == TOPLINE), None)
        if margin <= 0.0 or topline is None:
            return ""
        allowed = -margin * topline.comparison.stable_rate
        if topline.comparison.lower >= allowed:
            return ""
        return (
            f"not yet shown within {margin:.0%} of stable: {topline.describe()}, "
            f"lower bound below {allowed:+.4%}"
        )

    def _slo_breaches(self, levels: ServiceLevels | None) -> tuple[str, ...]:
        if levels is None or levels.requests < self.config.min_requests:
            return ()
        breaches = []
        if levels.error_rate > self.config.max_error_rate:
            breaches.append(
                f"canary error rate {levels.error_rate:.2%} breaks its SLO "
                f"of {self.config.max_error_rate:.2%} ({levels.errors} of {levels.requests} calls)"
            )
        if levels.latency_p99_s > self.config.max_latency_p99_s:
            breaches.append(
                f"canary p99 latency {levels.latency_p99_s * 1000:.0f} ms breaks its SLO "
                f"of {self.config.max_latency_p99_s * 1000:.0f} ms"
            )
        return tuple(breaches)
