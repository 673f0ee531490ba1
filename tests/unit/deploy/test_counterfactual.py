"""The counterfactual gate judges the paired off-policy estimate a learner stored in a
candidate's metrics: refused when significantly worse than the stable version beyond the
margin, through when uncertain or not worse, skipped (and saying so) without an estimate
or with too few effective samples; every verdict counted."""

from __future__ import annotations

import math

from prometheus_client import REGISTRY

from feedrank.deploy.counterfactual import PairedEstimateGate
from feedrank.registry.off_policy import PairedEstimate, version_name, version_number


def estimate(difference: float, std_error: float, ess: float = 5_000.0) -> dict[str, float]:
    return PairedEstimate(
        value=0.10 + difference,
        std_error=0.01,
        reference="v0001",
        reference_value=0.10,
        difference=difference,
        difference_std_error=std_error,
        effective_samples=ess,
        decisions=2_000,
    ).to_metrics()


def gate(metrics: dict[str, dict[str, float]], margin: float = 0.0) -> PairedEstimateGate:
    return PairedEstimateGate(
        lambda version: metrics.get(version, {}),
        alpha=0.05,
        margin=margin,
        min_effective_samples=100,
    )


def verdicts(verdict: str) -> float:
    value = REGISTRY.get_sample_value("feedrank_deploy_gate_verdicts_total", {"verdict": verdict})
    return value or 0.0


def test_a_significantly_worse_candidate_is_refused_and_counted() -> None:
    before = verdicts("refused")
    result = gate({"v0002": estimate(-0.03, 0.005)}).check("v0001", "v0002")
    assert not result.passed
    assert result.verdict == "refused"
    assert "significantly worse" in result.reason
    assert "against v0001" in result.reason
    assert verdicts("refused") == before + 1
    assert REGISTRY.get_sample_value("feedrank_deploy_gate_difference") == -0.03


def test_uncertain_or_better_candidates_pass() -> None:
    assert gate({"v0002": estimate(-0.01, 0.02)}).check("v0001", "v0002").passed
    assert gate({"v0002": estimate(0.02, 0.005)}).check("v0001", "v0002").verdict == "passed"


def test_the_margin_lets_a_small_drop_through() -> None:
    small_drop = {"v0002": estimate(-0.004, 0.001)}  # 4% of the stable value, certain
    assert not gate(small_drop).check("v0001", "v0002").passed
    assert gate(small_drop, margin=0.05).check("v0001", "v0002").passed


def test_missing_or_thin_estimates_skip_the_gate_and_say_so() -> None:
    missing = gate({}).check("v0001", "v0002")
    assert (missing.passed, missing.verdict) == (True, "skipped")
    assert "no off-policy estimate of v0002" in missing.reason
    thin = gate({"v0002": estimate(-0.05, 0.001, ess=20)}).check("v0001", "v0002")
    assert (thin.passed, thin.verdict) == (True, "skipped")
    assert "20 effective samples" in thin.reason


def test_an_estimate_against_an_older_stable_is_judged_and_says_so() -> None:
    result = gate({"v0005": estimate(-0.03, 0.005)}).check("v0004", "v0005")
    assert not result.passed
    assert "against v0001, the stable version when it was published (now v0004)" in result.reason


def test_estimates_round_trip_through_version_metrics() -> None:
    metrics = estimate(-0.02, 0.004)
    assert metrics["ope_reference"] == 1.0
    read = PairedEstimate.from_metrics(metrics)
    assert read is not None
    assert read.reference == "v0001"
    assert math.isclose(read.difference, -0.02)
    assert PairedEstimate.from_metrics({"auc": 0.8}) is None
    assert PairedEstimate.from_metrics({**metrics, "ope_difference": math.nan}) is None
    assert version_name(version_number("v0042")) == "v0042"


def test_a_significantly_better_candidate_is_marked_better() -> None:
    better = gate({"v0002": estimate(0.02, 0.005)}).check("v0001", "v0002")
    assert better.passed
    assert better.better
    assert "significantly better" in better.reason
    unsure = gate({"v0002": estimate(0.005, 0.005)}).check("v0001", "v0002")
    assert unsure.passed
    assert not unsure.better
