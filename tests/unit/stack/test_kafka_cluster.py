"""The local Kafka cluster's layout: nodes, ports, topics, cluster id and controller."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from feedrank.core.settings import Settings, load_settings
from feedrank.stack import kafka_cluster
from feedrank.stack.components import StackError
from feedrank.stack.jars import JarLocations
from feedrank.stack.kafka_cluster import (
    QUORUM_STATE_FILE,
    KafkaNodeComponent,
    cluster_topics,
    describe_controller,
    kafka_cluster_components,
    node_of,
    shared_cluster_id,
)


def cluster_settings(state_dir: Path, **cluster: object) -> Settings:
    return load_settings(cluster={"topology": "cluster", **cluster}, paths={"state_dir": state_dir})


def parse(properties: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in properties.splitlines() if line)


def test_one_component_per_node_with_its_own_ports_and_data(tmp_path: Path) -> None:
    settings = cluster_settings(tmp_path)
    nodes = kafka_cluster_components(settings)
    assert [node.name for node in nodes] == ["kafka-1", "kafka-2", "kafka-3"]
    assert [node.endpoint for node in nodes] == [
        "127.0.0.1:9092",
        "127.0.0.1:9192",
        "127.0.0.1:9292",
    ]
    third = node_of(settings, 3)
    assert (third.client_port, third.controller_port) == (9292, 9293)
    assert third.data_dir == tmp_path / "kafka" / "node-3"


def test_node_config_joins_every_node_to_the_quorum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        kafka_cluster, "require_jars", lambda _settings: JarLocations(tmp_path, tmp_path, tmp_path)
    )
    settings = cluster_settings(tmp_path, min_insync_replicas=2)
    second = KafkaNodeComponent(settings, 2).broker.config
    properties = parse(second.server_properties())
    assert properties["node.id"] == "2"
    assert properties["controller.quorum.voters"] == (
        "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293"
    )
    assert properties["listeners"] == "PLAINTEXT://127.0.0.1:9192,CONTROLLER://127.0.0.1:9193"
    assert properties["default.replication.factor"] == "3"
    assert properties["min.insync.replicas"] == "2"
    assert properties["transaction.state.log.min.isr"] == "2"
    first = KafkaNodeComponent(settings, 1).broker.config
    assert first.cluster_id == second.cluster_id == shared_cluster_id(tmp_path / "kafka")
    assert second.process_tag != first.process_tag


def test_feedrank_topics_get_one_replica_per_node_and_the_min_isr(tmp_path: Path) -> None:
    specs = cluster_topics(cluster_settings(tmp_path, min_insync_replicas=2))
    assert {spec.name for spec in specs} == set(load_settings().topics.names())
    for spec in specs:
        assert spec.replication_factor == 3
        assert spec.config["min.insync.replicas"] == "2"
    compacted = {spec.name: spec for spec in specs}["feedrank.posts"]
    assert compacted.config["cleanup.policy"] == "compact"


def test_impossible_layouts_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="min_insync_replicas"):
        kafka_cluster_components(cluster_settings(tmp_path, kafka_brokers=1))
    with pytest.raises(StackError, match="nodes 1 to 3"):
        node_of(cluster_settings(tmp_path), 4)


def test_cluster_id_is_kept_and_recovered_from_formatted_nodes(tmp_path: Path) -> None:
    first = shared_cluster_id(tmp_path)
    assert shared_cluster_id(tmp_path) == first
    (tmp_path / "cluster.id").unlink()
    meta = tmp_path / "node-2" / "logs" / "meta.properties"
    meta.parent.mkdir(parents=True)
    meta.write_text("version=1\ncluster.id=from-node-2\nnode.id=2\n")
    assert shared_cluster_id(tmp_path) == "from-node-2"


def test_controller_is_the_leader_of_the_latest_election(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        # Node 2's controller port is node 1's + step: make it the listening one.
        settings = load_settings(
            cluster={"topology": "cluster", "kafka_port_step": 10},
            kafka={"controller_port": port - 10},
            paths={"state_dir": tmp_path},
        )
        assert describe_controller(settings) == "controller: unknown"
        for node, (epoch, leader) in {1: (3, 1), 2: (4, 2), 3: (4, 2)}.items():
            state = tmp_path / "kafka" / f"node-{node}" / QUORUM_STATE_FILE
            state.parent.mkdir(parents=True)
            state.write_text(json.dumps({"leaderId": leader, "leaderEpoch": epoch}))
        assert describe_controller(settings) == "controller: node 2"
    assert describe_controller(settings) == "controller: none (node 2 is down, election pending)"
