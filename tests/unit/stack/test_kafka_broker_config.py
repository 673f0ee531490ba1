from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from feedrank.stack import kafka_broker
from feedrank.stack.kafka_broker import BrokerConfig, KafkaBroker


def parse(properties: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in properties.splitlines() if line)


def test_single_broker_internal_topics_use_replication_factor_one(tmp_path: Path) -> None:
    config = BrokerConfig(data_dir=tmp_path, jar_dir=tmp_path, port=19092, controller_port=19093)
    properties = parse(config.server_properties())
    assert properties["process.roles"] == "broker,controller"
    assert properties["offsets.topic.replication.factor"] == "1"
    assert properties["transaction.state.log.replication.factor"] == "1"
    assert properties["transaction.state.log.min.isr"] == "1"
    assert properties["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert properties["auto.create.topics.enable"] == "false"
    assert properties["log.dirs"] == str((tmp_path / "logs").resolve())
    # Flink's exactly-once sink asks for 10-minute transactions; the broker must allow it.
    assert int(properties["transaction.max.timeout.ms"]) >= 600_000


def test_cluster_id_is_passed_as_one_argument(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A random cluster id may start with '-'; as a separate argv item it reads as a flag."""
    captured: list[list[str]] = []

    def fake_run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        captured.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(kafka_broker, "_kafka_cluster_id", lambda: "-starts-with-dash")
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(kafka_broker, "java_executable", lambda: "java")
    config = BrokerConfig(data_dir=tmp_path, jar_dir=tmp_path, port=1, controller_port=2)
    KafkaBroker(config, tmp_path / "log").format_storage()
    [command] = captured
    assert "--cluster-id=-starts-with-dash" in command
