"""docker-compose.yml runs the cluster topology, wired the way each piece expects.

Three KRaft nodes replicate every topic, a Flink session cluster runs from the feedrank
image and shares its snapshots with the join's submitter, explore replicas fetch their
models from deploy and sit behind the balancer, and the one image carries all of it.
Read from ``docker-compose config`` (the file as the engine would run it; no engine).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from feedrank.core.settings import Settings, load_settings
from feedrank.stack.compose_files import FLINK_CONFIG, HAPROXY_CONFIG, IMAGE_JAR_CACHE
from feedrank.stack.kafka_cluster import cluster_topics
from tests.integration.ops.promql_checks import (
    ROOT,
    compose_config,
    compose_mounts,
    compose_ports,
    compose_volumes,
    load_yaml,
    requires_docker_compose,
)

pytestmark = requires_docker_compose

DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
IMAGE = "feedrank:local"
DEFAULTS = Settings()


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose_config()["services"]
    return found


def environment(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (services()[service].get("environment") or {}).items()}


def settings_of(service: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a feedrank container builds from its FEEDRANK_* variables."""
    with monkeypatch.context() as patch:
        for key, value in environment(service).items():
            if key.startswith("FEEDRANK_"):
                patch.setenv(key, value)
        return load_settings()


def numbered(prefix: str) -> list[str]:
    """The services ``<prefix>-1``, ``<prefix>-2``… of the compose file, in order."""
    found = [name for name in services() if re.fullmatch(rf"{prefix}-\d+", name)]
    return sorted(found, key=lambda name: int(name.rsplit("-", 1)[1]))


def flink_config() -> dict[str, str]:
    config: dict[str, str] = load_yaml(ROOT / FLINK_CONFIG)
    return config


# ---------------------------------------------------------------- Kafka


def test_kafka_runs_one_kraft_node_per_broker_in_one_cluster() -> None:
    nodes = numbered("kafka")
    assert len(nodes) == DEFAULTS.cluster.kafka_brokers
    environments = [environment(node) for node in nodes]
    assert [env["KAFKA_NODE_ID"] for env in environments] == [str(n) for n in range(1, 4)]
    assert len({env["CLUSTER_ID"] for env in environments}) == 1, "one cluster id for all"
    voters = ",".join(
        f"{env['KAFKA_NODE_ID']}@{node}:9093" for node, env in zip(nodes, environments, strict=True)
    )
    for env in environments:
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters
    # Each node keeps its log on a volume of its own.
    data_volumes = [compose_volumes(node)[environment(node)["KAFKA_LOG_DIRS"]] for node in nodes]
    assert len(set(data_volumes)) == len(nodes)


def test_every_topic_has_a_replica_on_each_node_and_the_clusters_min_isr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    replicas = str(DEFAULTS.cluster.kafka_brokers)
    min_isr = str(DEFAULTS.cluster.min_insync_replicas)
    for node in numbered("kafka"):  # Kafka's internal topics and any created without a value
        env = environment(node)
        for key in ("DEFAULT", "OFFSETS_TOPIC", "TRANSACTION_STATE_LOG"):
            assert env[f"KAFKA_{key}_REPLICATION_FACTOR"] == replicas, (node, key)
        assert env["KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR"] == replicas
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == min_isr, node
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == min_isr, node
        assert env["KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR"] == min_isr, node
    # The feedrank topics, as the one-shot `topics` service creates them.
    assert "cluster_topics(settings)" in " ".join(services()["topics"]["entrypoint"])
    specs = cluster_topics(settings_of("topics", monkeypatch))
    assert {spec.replication_factor for spec in specs} == {int(replicas)}
    assert {spec.config["min.insync.replicas"] for spec in specs} == {min_isr}


def test_clients_bootstrap_from_every_node_inside_and_outside_compose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nodes = numbered("kafka")
    inside = settings_of("explore-1", monkeypatch).kafka.bootstrap
    assert inside == ",".join(f"{node}:9092" for node in nodes)
    kafka = DEFAULTS.kafka
    for node_id, node in enumerate(nodes, start=1):
        env = environment(node)
        host_port = DEFAULTS.cluster.kafka_node_port(kafka.broker_port, node_id)
        advertised = f"PLAINTEXT://{node}:9092,HOST://localhost:{host_port}"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == advertised
        assert compose_ports(node) == {host_port: 9094}
        assert "HOST://:9094" in env["KAFKA_LISTENERS"].split(",")


# ---------------------------------------------------------------- Flink


def test_the_flink_cluster_runs_from_the_feedrank_image_on_the_checked_in_config() -> None:
    taskmanagers = numbered("taskmanager")
    assert len(taskmanagers) == DEFAULTS.cluster.flink_taskmanagers
    for name, script in [
        ("jobmanager", "jobmanager.sh"),
        *((t, "taskmanager.sh") for t in taskmanagers),
    ]:
        service = services()[name]
        assert service["image"] == IMAGE, name
        assert service["entrypoint"][:2] == [f"/opt/flink/bin/{script}", "start-foreground"]
        conf_dir = environment(name)["FLINK_CONF_DIR"]
        assert compose_mounts(name)[(ROOT / FLINK_CONFIG).resolve()] == f"{conf_dir}/config.yaml"
        # The image makes the Flink home that the compose file points at.
        for directory in (conf_dir, environment(name)["FLINK_LIB_DIR"], "/opt/flink/bin"):
            assert directory in DOCKERFILE.read_text(), f"the image has no {directory}"


def test_each_taskmanager_advertises_its_own_service() -> None:
    for name in numbered("taskmanager"):
        properties = services()[name]["entrypoint"][2:]
        assert properties[0::2] == ["-D"] * (len(properties) // 2)
        assert f"taskmanager.host={name}" in properties[1::2]
        assert f"taskmanager.resource-id={name}" in properties[1::2]
    config = flink_config()
    assert "taskmanager.host" not in config, "one value would serve every TaskManager"
    assert config["jobmanager.rpc.address"] == config["rest.address"] == "jobmanager"


def test_the_join_is_submitted_to_the_jobmanagers_rest_api() -> None:
    rest_port = int(flink_config()["rest.port"])
    assert services()["join"]["command"] == ["join", "--jobmanager", f"jobmanager:{rest_port}"]
    assert compose_ports("jobmanager") == {rest_port: rest_port}
    assert services()["join"]["depends_on"]["jobmanager"] == {"condition": "service_healthy"}


def test_snapshots_are_on_one_volume_the_cluster_and_the_join_submitter_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The TaskManagers and the JobManager write checkpoints and savepoints where the
    join's submitter looks for the newest one to restore (its own settings' paths)."""
    config = flink_config()
    snapshot_dirs = [
        Path(urlparse(config[key]).path)
        for key in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir")
    ]
    join = settings_of("join", monkeypatch).paths
    assert snapshot_dirs == [join.flink_checkpoint_dir, join.flink_savepoint_dir]
    volumes = set()
    for name in ["jobmanager", *numbered("taskmanager"), "join"]:
        holding = {
            volume
            for target, volume in compose_volumes(name).items()
            if all(directory.is_relative_to(target) for directory in snapshot_dirs)
        }
        assert len(holding) == 1, f"{name} does not see the snapshot directories"
        volumes |= holding
    assert len(volumes) == 1, f"not one shared volume: {volumes}"


# ---------------------------------------------------------------- explore and the balancer


def test_explore_replicas_fetch_models_from_deploy_and_share_no_registry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    replicas = numbered("explore")
    assert len(replicas) == DEFAULTS.cluster.explore_replicas
    for name in replicas:
        explore = settings_of(name, monkeypatch).explore
        assert explore.model_source == "deploy", name
        assert explore.deploy_address == f"deploy:{DEFAULTS.ports.deploy_grpc}", name
        assert not services()[name].get("volumes"), f"{name} mounts a volume"
        assert not services()[name].get("ports"), f"{name} is reached through the balancer"


def test_the_balancer_fronts_every_replica_on_the_ranking_port() -> None:
    ports = DEFAULTS.ports
    mounts = compose_mounts("balancer")
    assert mounts[(ROOT / HAPROXY_CONFIG).resolve()] == "/usr/local/etc/haproxy/haproxy.cfg"
    stats = DEFAULTS.cluster.balancer_stats_port
    assert compose_ports("balancer") == {ports.ranking_grpc: ports.ranking_grpc, stats: stats}
    servers = re.findall(r"^\s*server (\S+) (\S+)", (ROOT / HAPROXY_CONFIG).read_text(), re.M)
    assert servers == [(name, f"{name}:{ports.ranking_grpc}") for name in numbered("explore")]
    simulate = services()["simulate"]["command"]
    assert simulate[simulate.index("--address") + 1] == f"balancer:{ports.ranking_grpc}"


# ---------------------------------------------------------------- the image


def test_the_image_installs_every_room_of_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    rooms = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["sources"]
    copied = set(re.findall(r"^COPY (\S+) \1$", DOCKERFILE.read_text(), re.M))
    assert set(rooms) - copied == set(), "rooms the image does not copy"


def test_the_image_caches_the_connector_where_the_flink_config_names_it() -> None:
    assert f"ENV FEEDRANK_PATHS__JAR_CACHE={IMAGE_JAR_CACHE}" in DOCKERFILE.read_text()
    assert flink_config()["pipeline.jars"].startswith(IMAGE_JAR_CACHE.as_uri() + "/")


def test_every_feedrank_service_runs_the_one_image() -> None:
    others = {"balancer", "prometheus", "grafana", *numbered("kafka")}
    for name, service in services().items():
        if name not in others:
            assert service["image"] == IMAGE, name
            assert service["build"]["dockerfile"] == str(DOCKERFILE.relative_to(ROOT)), name
