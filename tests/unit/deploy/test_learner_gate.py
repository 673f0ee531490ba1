"""Deploy enforces the learner's publish verdict before a canary's first step: a failed
version is refused (and counted) whatever the next gate says; a passed or unjudged
version goes on to it."""

from __future__ import annotations

from prometheus_client import REGISTRY

from feedrank.deploy.counterfactual import OpenGate
from feedrank.deploy.learner_gate import PublishVerdictGate
from feedrank.learners.online.publish_gate import PublishGate

FAILED = {
    "rolling_auc": 0.5,
    "calibration": 1.0,
    **PublishGate().judge({"rolling_auc": 0.5, "calibration": 1.0}).metrics,
}
PASSED = {
    "rolling_auc": 0.7,
    "calibration": 1.0,
    **PublishGate().judge({"rolling_auc": 0.7, "calibration": 1.0}).metrics,
}


def gate(metrics: dict[str, dict[str, float]]) -> PublishVerdictGate:
    return PublishVerdictGate(lambda version: metrics.get(version, {}), OpenGate())


def refusals() -> float:
    labels = {"verdict": "learner_refused"}
    value = REGISTRY.get_sample_value("feedrank_deploy_gate_verdicts_total", labels)
    return value or 0.0


def test_a_version_its_learner_failed_is_refused_and_counted() -> None:
    before = refusals()
    result = gate({"v0002": FAILED}).check("v0001", "v0002")
    assert not result.passed
    assert result.verdict == "refused"
    assert "publish gate failed: rolling AUC 0.500 (floor 0.55)" in result.reason
    assert refusals() == before + 1


def test_passed_and_unjudged_versions_go_on_to_the_next_gate() -> None:
    for metrics in (PASSED, {"auc": 0.9}):
        result = gate({"v0002": metrics}).check("v0001", "v0002")
        assert result.passed
        assert result.reason == "no counterfactual gate configured"
