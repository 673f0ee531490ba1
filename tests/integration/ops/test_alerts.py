"""The alert rules are valid, unit-tested by promtool, and watch metrics the code exposes."""

from __future__ import annotations

from typing import Any

from tests.integration.ops.promql_checks import ROOT, load_yaml, problems, requires_promtool, run

PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERT_TESTS = PROMETHEUS / "alerts.test.yml"
SEVERITIES = {"critical", "warning"}
# What the on-call engineer needs: the brief's list, by alert name.
REQUIRED = {
    "FeedrankRankErrorRatioHigh",
    "FeedrankRankLatencyP99High",
    "FeedrankDecisionLogDropping",
    "FeedrankJoinNotRunning",
    "FeedrankJoinCheckpointStale",
    "FeedrankCanaryRolledBack",
    "FeedrankNoAggregates",
    "FeedrankLearnerStalled",
}


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(ALERTS)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@requires_promtool
def test_alert_rules_are_valid() -> None:
    result = run("promtool", "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


@requires_promtool
def test_alert_rule_unit_tests_pass() -> None:
    result = run("promtool", "test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_on_call_needs_exist() -> None:
    assert {rule["alert"] for rule in alert_rules()} >= REQUIRED


def test_every_alert_has_a_severity_summary_and_description() -> None:
    for rule in alert_rules():
        assert rule["alert"].startswith("Feedrank"), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]


def test_every_alert_is_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in load_yaml(ALERT_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts - firing == set(), "alerts never seen firing in alerts.test.yml"
    assert alerts - silent == set(), "alerts never seen silent in alerts.test.yml"


def test_every_alert_uses_exposed_metrics_and_labels() -> None:
    found = {rule["alert"]: issues for rule in alert_rules() if (issues := problems(rule["expr"]))}
    assert found == {}
