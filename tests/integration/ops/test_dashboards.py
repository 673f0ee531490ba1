"""The Grafana dashboards load, query Prometheus only, and ask for metrics the code exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.integration.ops.promql_checks import (
    ROOT,
    compose_mounts,
    grafana_to_promql,
    load_yaml,
    problems,
    promtool_parse_errors,
    requires_docker_compose,
    requires_promtool,
    run,
)

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
EXPECTED = {"explore.json", "engagement.json", "rollouts.json", "learner.json"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Range selectors a dashboard may use: Grafana's own intervals, never a fixed window.
RANGES = {"[$__rate_interval]", "[$__range]"}
# A subquery over the 5-minute window gauges, one sample per window (e.g. [6h:5m]).
SUBQUERY = re.compile(r"\[\d+[mhd]:5m\]")


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel but rows, also those inside collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found += panel.get("panels", [])
        else:
            found.append(panel)
    return found


def expressions(path: Path) -> dict[str, str]:
    """Every PromQL expression of a dashboard (targets and query variables), by place."""
    dashboard = load(path)
    found = {}
    for panel in panels(dashboard):
        for target in panel["targets"]:
            found[f"{path.stem}:panel {panel['id']} {panel['title']}:{target['refId']}"] = target[
                "expr"
            ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["definition"]
            selector = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            assert selector is not None, f"{path.name}: ${variable['name']} is not label_values"
            found[f"{path.stem}:variable {variable['name']}"] = selector.group(1)
    return found


def all_expressions() -> dict[str, str]:
    return {key: value for path in DASHBOARDS for key, value in expressions(path).items()}


def test_the_four_dashboards_exist() -> None:
    assert {path.name for path in DASHBOARDS} >= EXPECTED


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_is_provisionable(path: Path) -> None:
    dashboard = load(path)
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["title"].startswith("feedrank")
    assert re.fullmatch(r"feedrank-[a-z-]+", dashboard["uid"])
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    rows = [panel for panel in dashboard["panels"] if panel["type"] == "row"]
    ids = [panel["id"] for panel in [*rows, *panels(dashboard)]]
    assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"


def test_dashboard_uids_are_unique() -> None:
    uids = [load(path)["uid"] for path in DASHBOARDS]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_every_panel_queries_prometheus_by_the_datasource_variable(path: Path) -> None:
    dashboard = load(path)
    for panel in panels(dashboard):
        where = f"{path.name}: panel {panel['id']} {panel['title']!r}"
        assert panel.get("datasource") == DATASOURCE, where
        assert panel.get("targets"), f"{where} has no targets"
        assert panel.get("description"), f"{where} has no description"
        for target in panel["targets"]:
            assert target.get("datasource") == DATASOURCE, where
            assert target.get("expr", "").strip(), f"{where} has an empty query"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, f"{path.name}: ${variable['name']}"


def test_rates_use_grafanas_rate_interval() -> None:
    for key, expression in all_expressions().items():
        for window in re.findall(r"\[[^\]]*\]", expression):
            if SUBQUERY.fullmatch(window):  # a window of gauge samples, not a rate's
                continue
            assert window in RANGES, f"{key}: {window} should be [$__rate_interval]"


@requires_promtool
def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    promql = {key: grafana_to_promql(value) for key, value in all_expressions().items()}
    assert promtool_parse_errors(promql, tmp_path) == ""


def test_every_dashboard_expression_uses_exposed_metrics_and_labels() -> None:
    found = {
        key: issues
        for key, expression in all_expressions().items()
        if (issues := problems(grafana_to_promql(expression)))
    }
    assert found == {}


def test_the_checks_catch_a_typo_and_an_unknown_label(tmp_path: Path) -> None:
    assert problems("sum(rate(feedrank_rank_requests_total[5m]))") == []
    assert problems("sum(rate(feedrank_rank_request_total[5m]))") == [
        "unknown metric feedrank_rank_request_total"
    ]
    assert problems('sum(rate(feedrank_rank_requests_total{arm="canary"}[5m]))') == []
    assert problems('sum(rate(feedrank_rank_requests_total{colour="red"}[5m]))') != []
    assert problems("sum by (outcom) (feedrank_deploy_rollouts_total)") != []
    if run("promtool", "--version").returncode == 0:
        assert promtool_parse_errors({"broken": "sum(rate(up[5m])"}, tmp_path) != ""


def test_datasource_is_the_compose_prometheus() -> None:
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (prometheus,) = datasources["datasources"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"


@requires_docker_compose
def test_compose_mounts_what_grafana_provisions() -> None:
    mounts = compose_mounts("grafana")
    (provider,) = load_yaml(GRAFANA / "provisioning" / "dashboards" / "feedrank.yml")["providers"]
    assert mounts[(GRAFANA / "provisioning").resolve()] == "/etc/grafana/provisioning"
    assert mounts[(GRAFANA / "dashboards").resolve()] == provider["options"]["path"]
