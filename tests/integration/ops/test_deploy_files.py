"""The deployment files are valid for the real tools that read them."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedrank.core.settings import Settings, load_settings
from tests.integration.ops.promql_checks import (
    ROOT,
    compose_config,
    compose_mounts,
    load_yaml,
    requires_docker_compose,
    requires_promtool,
    run,
)

PROMETHEUS = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIGS = ["prometheus.yml", "prometheus.local.yml"]
# The topology the compose file shows: every feedrank process, its apps and monitoring.
SERVICES = {"kafka", "explore", "join", "learner", "deploy", "simulate", "prometheus", "grafana"}
# Prometheus job -> (compose service, the settings field of its /metrics port).
SCRAPE_JOBS = {
    "feedrank-explore": ("explore", "explore_metrics"),
    "feedrank-learner": ("learner", "learner_metrics"),
    "feedrank-deploy": ("deploy", "deploy_metrics"),
    "feedrank-join": ("join", "streaming_metrics"),
}


@requires_docker_compose
def test_docker_compose_file_is_valid() -> None:
    result = run("docker-compose", "config", "-q")
    assert result.returncode == 0, result.stderr


@requires_docker_compose
def test_docker_compose_names_every_service() -> None:
    assert set(compose_config()["services"]) >= SERVICES


@requires_docker_compose
def test_docker_compose_feedrank_environment_is_valid_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every FEEDRANK_* variable names a setting and holds a value it accepts."""
    for name, service in compose_config()["services"].items():
        environment = {
            key: str(value)
            for key, value in (service.get("environment") or {}).items()
            if key.startswith("FEEDRANK_")
        }
        with monkeypatch.context() as patch:
            for key, value in environment.items():
                patch.setenv(key, value)
            try:
                settings = load_settings()
            except ValueError as error:  # pydantic's ValidationError included
                pytest.fail(f"{name}: {error}")
        if environment:
            assert settings.ports.bind_host == "0.0.0.0", f"{name} binds only loopback"
            assert settings.kafka.bootstrap == "kafka:9092", name


@requires_promtool
@pytest.mark.parametrize("config", PROMETHEUS_CONFIGS)
def test_prometheus_config_is_valid(config: str) -> None:
    result = run("promtool", "check", "config", str(PROMETHEUS / config))
    assert result.returncode == 0, result.stdout + result.stderr


def scrape_targets(config: str) -> dict[str, list[str]]:
    document = load_yaml(PROMETHEUS / config)
    return {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in document["scrape_configs"]
    }


@pytest.mark.parametrize("config", PROMETHEUS_CONFIGS)
def test_prometheus_loads_the_alerts(config: str) -> None:
    assert load_yaml(PROMETHEUS / config)["rule_files"] == ["alerts.yml"]


def test_local_prometheus_scrapes_every_default_port() -> None:
    ports = Settings().ports
    expected = {
        job: [f"127.0.0.1:{getattr(ports, field)}"] for job, (_, field) in SCRAPE_JOBS.items()
    }
    assert scrape_targets("prometheus.local.yml") == expected


@requires_docker_compose
def test_compose_prometheus_scrapes_every_feedrank_service() -> None:
    services = compose_config()["services"]
    ports = Settings().ports
    expected = {
        job: [f"{service}:{getattr(ports, field)}"] for job, (service, field) in SCRAPE_JOBS.items()
    }
    assert scrape_targets("prometheus.yml") == expected
    assert {service for service, _ in SCRAPE_JOBS.values()} <= set(services)


@requires_docker_compose
def test_compose_prometheus_reads_these_files() -> None:
    mounts = compose_mounts("prometheus")
    for name in ("prometheus.yml", "alerts.yml"):
        assert mounts[Path(PROMETHEUS / name).resolve()] == f"/etc/prometheus/{name}"
