"""Checks shared by the dashboard and alert tests: what the code exposes, what PromQL uses.

The exposed metrics come from the code itself: the explore, deploy and learner modules
(registered on ``prometheus_client.REGISTRY``) and the join's exporter (its own
registry), with the sample names Prometheus scrapes (``_total`` for counters,
``_bucket``/``_sum``/``_count`` for histograms) and their label names. An expression
may only name those, plus ``up``, and only filter or group by their labels (or the
target labels ``instance`` and ``job``). Whether an expression parses at all is left to
``promtool`` (see :func:`promtool_parse_errors`).
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

ROOT = Path(__file__).resolve().parents[3]

# Modules whose import registers feedrank metrics on prometheus_client.REGISTRY.
METRIC_MODULES = (
    "feedrank.explore.metrics",
    "feedrank.deploy.metrics",
    "feedrank.learners.online.metrics",
)
# Series Prometheus writes itself, and the labels it adds to every scraped series.
PROMETHEUS_SERIES: dict[str, frozenset[str]] = {"up": frozenset()}
TARGET_LABELS = frozenset({"instance", "job"})

requires_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool (Prometheus) is not installed: run `make tools`",
)
requires_docker_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed: run `make tools`",
)


def run(*command: str) -> subprocess.CompletedProcess[str]:
    """``command`` with this environment less Python's search paths: the tools here
    (docker-compose, promtool) are not this interpreter's, and an in-process Flink job
    (Beam's worker pool) may have left its PYTHONPATH behind."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, env=env)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@functools.cache
def compose_config() -> dict[str, Any]:
    """``docker-compose config``: the compose file as the engine would run it."""
    result = run("docker-compose", "config")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def compose_mounts(service: str) -> dict[Path, str]:
    """Host path -> container path of a compose service's bind mounts."""
    mounts = {}
    for volume in compose_config()["services"][service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("/"):
            mounts[Path(source).resolve()] = target
    return mounts


def compose_volumes(service: str) -> dict[str, str]:
    """Container path -> named volume of a compose service's volumes (not bind mounts)."""
    volumes = {}
    for volume in compose_config()["services"][service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if not source.startswith("/"):
            volumes[target] = source
    return volumes


def compose_ports(service: str) -> dict[int, int]:
    """Published (host) port -> container port of a compose service."""
    ports = compose_config()["services"][service].get("ports", [])
    return {int(port["published"]): int(port["target"]) for port in ports}


# ---------------------------------------------------------------- what the code exposes


@functools.cache
def exposed_metrics() -> dict[str, frozenset[str]]:
    """Every sample name the feedrank processes expose, with its label names."""
    from feedrank.streaming.metrics_exporter import JobGauges, WindowMetrics  # noqa: PLC0415
    from feedrank.v1 import events_pb2  # noqa: PLC0415

    collectors: list[Collector] = []
    for name in METRIC_MODULES:
        module = importlib.import_module(name)
        collectors += [m for m in vars(module).values() if isinstance(m, MetricWrapperBase)]
    join_registry = CollectorRegistry()
    windows = WindowMetrics(join_registry)
    gauges = JobGauges(join_registry)
    collectors += [windows.records, *vars(gauges).values()]
    # The window gauges exist only once an aggregate arrived: give them one.
    windows.windows.update(events_pb2.EngagementAggregate(model_version="v1", arm="stable"))
    collectors.append(windows.windows)

    exposed = dict(PROMETHEUS_SERIES)
    for collector in collectors:
        exposed.update(_sample_names(collector))
    _assert_registry_covered(exposed)
    return exposed


def _sample_names(collector: Collector) -> dict[str, frozenset[str]]:
    if isinstance(collector, MetricWrapperBase):
        (family,) = collector.describe()
        labels = frozenset(collector._labelnames)  # no public accessor
        families = [(family.name, family.type, labels)]
    else:  # a custom collector: its label names are those of its samples
        families = [
            (family.name, family.type, frozenset(k for s in family.samples for k in s.labels))
            for family in collector.collect()
        ]
    names: dict[str, frozenset[str]] = {}
    for name, kind, labels in families:
        if kind == "counter":
            names[f"{name}_total"] = labels
        elif kind == "histogram":
            names[f"{name}_bucket"] = labels | {"le"}
            names[f"{name}_sum"] = names[f"{name}_count"] = labels
        elif kind == "summary":
            names[name] = labels | {"quantile"}
            names[f"{name}_sum"] = names[f"{name}_count"] = labels
        else:
            names[name] = labels
    return names


def _assert_registry_covered(exposed: dict[str, frozenset[str]]) -> None:
    """Every feedrank family on the default registry was seen (no module left out)."""
    for family in REGISTRY.collect():
        if family.name.startswith("feedrank_"):
            for sample in family.samples:
                if not sample.name.endswith("_created"):
                    assert sample.name in exposed, f"{sample.name} is missing from the catalogue"


# ---------------------------------------------------------------- what PromQL uses

# Grafana's built-in intervals, as Prometheus durations.
GRAFANA_INTERVALS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"offset", "bool", "inf", "nan"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
_VARIABLE = re.compile(r"\$\{?(\w+)(?::\w+)?\}?")


def grafana_to_promql(expression: str) -> str:
    """Substitute Grafana variables: intervals by durations, template variables by ``.*``.

    A template variable is only valid inside a regex matcher (``=~"$arm"``), where
    ``.*`` keeps the expression valid; anywhere else the result fails to parse.
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("__"):
            assert name in GRAFANA_INTERVALS, f"unknown Grafana variable ${name}"
            return GRAFANA_INTERVALS[name]
        return ".*"

    return _VARIABLE.sub(substitute, expression)


@dataclass(frozen=True)
class Usage:
    metrics: frozenset[str]
    matcher_labels: dict[str, frozenset[str]]  # metric -> labels its selector filters on
    grouping_labels: frozenset[str]  # labels in by/without/on/ignoring/group_*


def usage(expression: str) -> Usage:
    """The metric names and label names a PromQL expression refers to."""
    text = _STRING.sub('""', expression)
    matcher_labels: dict[str, frozenset[str]] = {}
    for name, matchers in _SELECTOR.findall(text):
        labels = frozenset(_MATCHER_LABEL.findall(matchers)) - {"__name__"}
        if name:
            matcher_labels[name] = matcher_labels.get(name, frozenset()) | labels
    grouping = frozenset(
        label.strip() for _, labels in _GROUPING.findall(text) for label in labels.split(",")
    ) - {""}
    text = _GROUPING.sub(" ", _SELECTOR.sub(r" \1 ", text))
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries: [5m], [1h:1m]
    metrics = frozenset(
        word for word in _IDENTIFIER.findall(text) if word.lower() not in KEYWORDS
    ) | frozenset(matcher_labels)
    return Usage(metrics, matcher_labels, grouping)


def problems(expression: str) -> list[str]:
    """What an expression names that the code does not expose (empty: nothing)."""
    exposed = exposed_metrics()
    used = usage(expression)
    found = [f"unknown metric {name}" for name in sorted(used.metrics - exposed.keys())]
    known_labels: set[str] = set(TARGET_LABELS)
    for name in used.metrics & exposed.keys():
        labels = exposed[name] | TARGET_LABELS
        known_labels |= labels
        found += [
            f"{name} has no label {label} (it has {', '.join(sorted(labels))})"
            for label in sorted(used.matcher_labels.get(name, frozenset()) - labels)
        ]
    found += [
        f"no metric in the expression has the label {label}"
        for label in sorted(used.grouping_labels - known_labels)
    ]
    return found


def promtool_parse_errors(expressions: dict[str, str], directory: Path) -> str:
    """``promtool check rules`` on the expressions as recording rules; "" when all parse.

    Keys become the rules' names, so a failure names the dashboard panel or alert.
    """
    rules = [
        {"record": "check:" + re.sub(r"\W", "_", key), "expr": expression}
        for key, expression in expressions.items()
    ]
    path = directory / "expressions.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}))
    result = run("promtool", "check", "rules", str(path))
    return "" if result.returncode == 0 else result.stdout + result.stderr
