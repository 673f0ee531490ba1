"""The deployment files are valid for the real tools that read them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from feedrank.core.settings import Settings, load_settings
from feedrank.stack.compose_files import FLINK_CONFIG, FLINK_METRICS_PORT, HAPROXY_CONFIG
from feedrank.stack.process import java_executable
from feedrank.streaming.pyflink_distribution import pyflink_home
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
SERVICES = {
    *("kafka-1", "kafka-2", "kafka-3", "topics"),
    *("explore-1", "explore-2", "balancer"),
    *("jobmanager", "taskmanager-1", "taskmanager-2", "join"),
    *("learner", "deploy", "simulate", "prometheus", "grafana"),
}
HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/local/sbin:/usr/sbin")
requires_haproxy = pytest.mark.skipif(
    HAPROXY is None, reason="HAProxy is not installed: run `make tools` (apt-get install haproxy)"
)
requires_java = pytest.mark.skipif(
    shutil.which("java") is None, reason="no Java runtime: run `make tools` (openjdk-17)"
)
# Prometheus job of the local stack -> (compose service, the settings field of its port).
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
    services = compose_config()["services"]
    for name, service in services.items():
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
            brokers = sorted(host for host in services if host.startswith("kafka-"))
            assert settings.kafka.bootstrap == ",".join(f"{b}:9092" for b in brokers), name


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
def test_compose_prometheus_scrapes_every_replica_the_balancer_and_flink() -> None:
    services = compose_config()["services"]
    settings = Settings()
    ports = settings.ports
    replicas = [f"explore-{k}" for k in range(1, settings.cluster.explore_replicas + 1)]
    taskmanagers = [f"taskmanager-{k}" for k in range(1, settings.cluster.flink_taskmanagers + 1)]
    expected = {
        job: [f"{service}:{getattr(ports, field)}"] for job, (service, field) in SCRAPE_JOBS.items()
    }
    expected["feedrank-explore"] = [f"{replica}:{ports.explore_metrics}" for replica in replicas]
    expected["feedrank-balancer"] = [f"balancer:{settings.cluster.balancer_stats_port}"]
    expected["flink"] = [f"{host}:{FLINK_METRICS_PORT}" for host in ["jobmanager", *taskmanagers]]
    targets = scrape_targets("prometheus.yml")
    assert targets == expected
    hosts = {target.split(":")[0] for job in targets.values() for target in job}
    assert hosts <= set(services), "a scrape target is no compose service"
    flink = load_yaml(ROOT / FLINK_CONFIG)
    assert flink["metrics.reporter.prom.port"] == str(FLINK_METRICS_PORT)


@requires_docker_compose
def test_compose_prometheus_reads_these_files() -> None:
    mounts = compose_mounts("prometheus")
    for name in ("prometheus.yml", "alerts.yml"):
        assert mounts[Path(PROMETHEUS / name).resolve()] == f"/etc/prometheus/{name}"


@requires_haproxy
def test_haproxy_accepts_the_balancer_config() -> None:
    """The replicas' names do not resolve here: HAProxy must start anyway (init-addr)."""
    assert HAPROXY is not None
    result = run(HAPROXY, "-c", "-f", str(ROOT / HAPROXY_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@requires_java
@pytest.mark.parametrize("process", ["JM", "TM"])
def test_flink_sizes_its_processes_from_the_flink_config(process: str) -> None:
    """What jobmanager.sh and taskmanager.sh run first: Flink parses config.yaml and
    derives the JVM's memory from it (a bad key or an impossible size fails here)."""
    home = pyflink_home()
    (dist,) = (home / "lib").glob("flink-dist-*.jar")
    result = run(
        java_executable(),
        "-classpath",
        f"{home / 'bin' / 'bash-java-utils.jar'}:{dist}",
        "org.apache.flink.runtime.util.bash.BashJavaUtils",
        f"GET_{process}_RESOURCE_PARAMS",
        "--configDir",
        str(ROOT / FLINK_CONFIG.parent),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    results = [
        line for line in result.stdout.splitlines() if "BASH_JAVA_UTILS_EXEC_RESULT:" in line
    ]
    assert len(results) == 2, result.stdout
    slots = load_yaml(ROOT / FLINK_CONFIG)["taskmanager.numberOfTaskSlots"]
    if process == "TM":
        assert f"taskmanager.numberOfTaskSlots={slots}" in results[1]
