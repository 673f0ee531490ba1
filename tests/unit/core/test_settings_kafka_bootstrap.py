"""In the cluster topology every Kafka client bootstraps from all local nodes."""

from __future__ import annotations

import os

import pytest

from feedrank.core.settings import load_settings, settings_to_environment


@pytest.fixture(autouse=True)
def _no_feedrank_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("FEEDRANK_"):
            monkeypatch.delenv(key)


def test_single_topology_bootstraps_from_the_one_broker() -> None:
    settings = load_settings()
    assert settings.kafka.bootstrap_servers is None
    assert settings.kafka.bootstrap == "127.0.0.1:9092"


def test_cluster_topology_bootstraps_from_every_node() -> None:
    settings = load_settings(cluster={"topology": "cluster"})
    assert settings.kafka.bootstrap == "127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292"


def test_cluster_bootstrap_follows_the_ports_and_node_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEEDRANK_CLUSTER__TOPOLOGY", "cluster")
    monkeypatch.setenv("FEEDRANK_CLUSTER__KAFKA_BROKERS", "2")
    monkeypatch.setenv("FEEDRANK_CLUSTER__KAFKA_PORT_STEP", "10")
    monkeypatch.setenv("FEEDRANK_KAFKA__BROKER_PORT", "19092")
    assert load_settings().kafka.bootstrap == "127.0.0.1:19092,127.0.0.1:19102"


def test_explicit_bootstrap_servers_win_and_survive_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    explicit = load_settings(cluster={"topology": "cluster"}, kafka={"bootstrap_servers": "k:9"})
    assert explicit.kafka.bootstrap == "k:9"
    derived = load_settings(cluster={"topology": "cluster"})
    for key, value in settings_to_environment(derived).items():
        monkeypatch.setenv(key, value)
    assert load_settings() == derived
