from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from feedrank.stack import kafka_broker
from feedrank.stack.kafka_broker import BrokerConfig, KafkaBroker, KafkaBrokerError


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

    monkeypatch.setattr(kafka_broker, "new_cluster_id", lambda: "-starts-with-dash")
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(kafka_broker, "java_executable", lambda: "java")
    config = BrokerConfig(data_dir=tmp_path, jar_dir=tmp_path, port=1, controller_port=2)
    KafkaBroker(config, tmp_path / "log").format_storage()
    [command] = captured
    assert "--cluster-id=-starts-with-dash" in command


def test_single_broker_is_its_own_quorum_with_replication_one(tmp_path: Path) -> None:
    """The single-node stack's broker renders as before the cluster topology existed."""
    config = BrokerConfig(data_dir=tmp_path, jar_dir=tmp_path, port=9092, controller_port=9093)
    properties = parse(config.server_properties())
    assert properties["node.id"] == "1"
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert properties["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    for key in (
        "min.insync.replicas",
        "default.replication.factor",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ):
        assert properties[key] == "1", key
    assert properties["controlled.shutdown.enable"] == "true"
    assert config.process_tag == "-Dfeedrank.component=kafka"
    assert config.cluster_id is None  # formatted with a fresh random id


def test_cluster_node_renders_its_id_ports_and_the_shared_quorum(tmp_path: Path) -> None:
    voters = ((1, 9093), (2, 9193), (3, 9293))
    config = BrokerConfig(
        data_dir=tmp_path,
        jar_dir=tmp_path,
        port=9192,
        controller_port=9193,
        node_id=2,
        quorum_voters=voters,
        replication_factor=3,
        min_insync_replicas=2,
        cluster_id="shared-id",
        component_name="kafka-2",
        controlled_shutdown=False,
    )
    properties = parse(config.server_properties())
    assert properties["node.id"] == "2"
    assert properties["process.roles"] == "broker,controller"
    assert properties["controller.quorum.voters"] == (
        "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293"
    )
    assert properties["listeners"] == "PLAINTEXT://127.0.0.1:9192,CONTROLLER://127.0.0.1:9193"
    assert properties["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9192"
    assert properties["offsets.topic.replication.factor"] == "3"
    assert properties["transaction.state.log.replication.factor"] == "3"
    assert properties["transaction.state.log.min.isr"] == "2"
    assert properties["min.insync.replicas"] == "2"
    assert properties["default.replication.factor"] == "3"
    assert properties["controlled.shutdown.enable"] == "false"
    assert config.process_tag == "-Dfeedrank.component=kafka-2"


def test_a_cluster_node_is_formatted_with_the_shared_cluster_id(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    captured: list[list[str]] = []

    def fake_run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        captured.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(kafka_broker, "java_executable", lambda: "java")
    config = BrokerConfig(
        data_dir=tmp_path,
        jar_dir=tmp_path,
        port=1,
        controller_port=2,
        node_id=2,
        quorum_voters=((1, 4), (2, 2)),
        cluster_id="shared-id",
        component_name="kafka-2",
    )
    KafkaBroker(config, tmp_path / "log").format_storage()
    [command] = captured
    assert "--cluster-id=shared-id" in command
    assert "-Dfeedrank.component=kafka-2" in command


@pytest.mark.parametrize(
    ("node_id", "voters", "replication", "min_isr", "message"),
    [
        (4, ((1, 9093), (2, 9193)), 1, 1, "node 4 is not among the voters"),
        (1, ((1, 9093), (2, 9193)), 3, 2, r"replication factor \(3\) <= nodes \(2\)"),
        (1, ((1, 9093), (2, 9193)), 2, 3, r"min.insync.replicas \(3\) <= replication"),
    ],
)
def test_impossible_replication_is_refused(
    tmp_path: Path,
    node_id: int,
    voters: tuple[tuple[int, int], ...],
    replication: int,
    min_isr: int,
    message: str,
) -> None:
    with pytest.raises(KafkaBrokerError, match=message):
        BrokerConfig(
            data_dir=tmp_path,
            jar_dir=tmp_path,
            port=1,
            controller_port=2,
            node_id=node_id,
            quorum_voters=voters,
            replication_factor=replication,
            min_insync_replicas=min_isr,
        )
