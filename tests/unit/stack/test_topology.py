"""Which components each topology runs, and how the cluster's settings are wired."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedrank.core.settings import load_settings
from feedrank.stack.components import StackError
from feedrank.stack.topology import (
    remember_topology,
    remembered_topology,
    stack_components,
    topology_file,
    wired_settings,
    with_topology,
)

CLUSTER = [
    "kafka-1",
    "kafka-2",
    "kafka-3",
    "deploy",
    "explore-1",
    "explore-2",
    "balancer",
    "flink-jobmanager",
    "flink-taskmanager-1",
    "flink-taskmanager-2",
    "join",
    "learner",
]


def test_single_topology_runs_one_of_each(tmp_path: Path) -> None:
    settings = load_settings(paths={"state_dir": tmp_path})
    names = [component.name for component in stack_components(settings)]
    assert names == ["kafka", "deploy", "explore", "join", "learner"]


def test_only_the_named_components_run_in_their_usual_order(tmp_path: Path) -> None:
    single = load_settings(paths={"state_dir": tmp_path}, cluster={"only": ["deploy", "kafka"]})
    assert [component.name for component in stack_components(single)] == ["kafka", "deploy"]
    cluster = with_topology(single, "cluster")  # a prefix names every broker
    assert [c.name for c in stack_components(cluster)] == [
        "kafka-1",
        "kafka-2",
        "kafka-3",
        "deploy",
    ]
    unknown = load_settings(paths={"state_dir": tmp_path}, cluster={"only": ["kafak"]})
    with pytest.raises(StackError, match=r"cluster\.only names no component: kafak"):
        stack_components(unknown)


def test_cluster_topology_runs_every_piece_in_start_order(tmp_path: Path) -> None:
    settings = with_topology(load_settings(paths={"state_dir": tmp_path}), "cluster")
    assert [component.name for component in stack_components(settings)] == CLUSTER


def test_cluster_clients_bootstrap_from_every_kafka_node(tmp_path: Path) -> None:
    single = load_settings(paths={"state_dir": tmp_path})
    cluster = with_topology(single, "cluster")
    assert single.kafka.bootstrap == "127.0.0.1:9092"
    assert cluster.kafka.bootstrap == "127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292"
    assert with_topology(cluster, "single").kafka.bootstrap == "127.0.0.1:9092"


def test_cluster_replicas_fetch_models_and_log_decisions_before_answering(
    tmp_path: Path,
) -> None:
    cluster = wired_settings(with_topology(load_settings(paths={"state_dir": tmp_path}), "cluster"))
    assert cluster.explore.model_source == "deploy"
    assert cluster.explore.decision_delivery == "acked"
    assert cluster.explore.deploy_address == f"127.0.0.1:{cluster.ports.deploy_grpc}"
    assert cluster.world.start_ms > 0  # one world for every process
    single = wired_settings(load_settings(paths={"state_dir": tmp_path}))
    assert single.explore.model_source == "registry"
    assert single.explore.decision_delivery == "queued"


def test_the_topology_up_started_is_remembered(tmp_path: Path) -> None:
    settings = load_settings(paths={"state_dir": tmp_path})
    assert remembered_topology(settings) is None
    remember_topology(with_topology(settings, "cluster"))
    assert remembered_topology(settings) == "cluster"
    topology_file(settings).write_text("mesh\n")
    with pytest.raises(StackError, match="names no topology"):
        remembered_topology(settings)
