"""A local Kafka cluster in KRaft mode: one stack component per node (``kafka-1``, …).

Every node is both broker and controller, and every node is a voter of the controller
quorum (static ``controller.quorum.voters``). Node ``i`` (1, 2, …) listens on 127.0.0.1
at ``kafka.broker_port + (i-1)*cluster.kafka_port_step`` for clients and
``kafka.controller_port + (i-1)*cluster.kafka_port_step`` for the quorum, so node 1
keeps 9092 and 9093; it keeps its data in ``<state_dir>/kafka/node-<i>`` and its log in
``<state_dir>/logs/kafka-<i>.log``. All nodes are formatted once with one cluster id
(``<state_dir>/kafka/cluster.id``) and never again: a node restarted after SIGKILL
rejoins with its data and catches up from the others.

Each node is its own component with its own process, so the supervisor shows, kills and
restarts one at a time. Replication follows the cluster: every topic, Kafka's internal
ones included, has one replica per node and ``cluster.min_insync_replicas``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import replace
from pathlib import Path

from confluent_kafka.admin import AdminClient, ClusterMetadata, ConfigResource, ResourceType

from feedrank.core.kafka_clients import admin_config
from feedrank.core.kafka_topics import TopicSpec, ensure_topics
from feedrank.core.settings import LOOPBACK, Settings
from feedrank.stack.components import Component, Health, StackError, ensure_port_free
from feedrank.stack.jars import require_jars
from feedrank.stack.kafka_broker import BrokerConfig, KafkaBroker, KafkaBrokerError, new_cluster_id
from feedrank.stack.process import ManagedProcess
from feedrank.stack.topics import standard_topics

CLUSTER_ID_FILE = "cluster.id"
# Where a KRaft node keeps its view of the controller election (leader id and epoch).
QUORUM_STATE_FILE = Path("logs") / "__cluster_metadata-0" / "quorum-state"
POLL_S = 0.5


class KafkaNodeComponent:
    """One KRaft node of the local cluster: broker and controller."""

    def __init__(self, settings: Settings, node_id: int) -> None:
        self.settings = settings
        self.node_id = node_id
        self.name = f"kafka-{node_id}"
        self._broker: KafkaBroker | None = None

    @property
    def node_ids(self) -> list[int]:
        return list(range(1, self.settings.cluster.kafka_brokers + 1))

    @property
    def client_port(self) -> int:
        return self.settings.cluster.kafka_node_port(self.settings.kafka.broker_port, self.node_id)

    @property
    def controller_port(self) -> int:
        kafka, cluster = self.settings.kafka, self.settings.cluster
        return cluster.kafka_node_port(kafka.controller_port, self.node_id)

    @property
    def endpoint(self) -> str:
        return f"{LOOPBACK}:{self.client_port}"

    @property
    def data_dir(self) -> Path:
        return self.settings.paths.kafka_data_dir / f"node-{self.node_id}"

    @property
    def broker(self) -> KafkaBroker:
        if self._broker is None:
            kafka, cluster = self.settings.kafka, self.settings.cluster
            config = BrokerConfig(
                data_dir=self.data_dir,
                jar_dir=require_jars(self.settings).kafka_dir,
                port=self.client_port,
                controller_port=self.controller_port,
                heap_mb=kafka.broker_heap_mb,
                node_id=self.node_id,
                quorum_voters=tuple(
                    (node, cluster.kafka_node_port(kafka.controller_port, node))
                    for node in self.node_ids
                ),
                replication_factor=len(self.node_ids),
                min_insync_replicas=cluster.min_insync_replicas,
                cluster_id=shared_cluster_id(self.settings.paths.kafka_data_dir),
                component_name=self.name,
                # `feedrank down` stops the nodes one by one; see docs/operations.md.
                controlled_shutdown=False,
            )
            log_file = self.settings.paths.log_dir / f"{self.name}.log"
            self._broker = KafkaBroker(config, log_file)
        return self._broker

    def start(self, *, tie_to_parent: bool) -> ManagedProcess:
        for port in (self.client_port, self.controller_port):
            ensure_port_free(port, owner=f"Kafka node {self.node_id}")
        return self.broker.start(tie_to_parent=tie_to_parent)

    def wait_ready(self, process: ManagedProcess) -> None:
        """Ready once this node is a live broker in the ISR of all its partitions; while
        too few nodes run for a controller quorum, once its controller listener is up
        (the next node is needed to elect a controller). The last node waits for every
        node, creates the feedrank topics and waits until nothing is under-replicated."""
        deadline = time.monotonic() + self.settings.kafka.ready_timeout_s
        while not self._serves_itself():
            if not self._quorum_possible() and _listening(self.controller_port):
                return  # up and ready to vote; the quorum needs the next node
            self._still_starting(process, deadline, "serve requests")
        last = self.node_id == self.node_ids[-1]
        if last:
            while not self._sees_every_node():
                self._still_starting(process, deadline, "see every node live")
            ensure_topics(self._admin(), cluster_topics(self.settings))
        while not self._caught_up(everyone=last):
            self._still_starting(process, deadline, "catch up with its partitions' leaders")

    def probe(self) -> Health:
        """Healthy while this node answers requests itself and is a live broker in the
        ISR of all its partitions; the detail names the active controller and any
        under-replicated partition. (Right after a crash the cluster still lists the old
        incarnation as live and in sync: only asking the node tells.)"""
        if not self._serves_itself():
            return Health("unhealthy", f"{self.endpoint} does not answer (down or starting)")
        try:
            metadata = self._admin().list_topics(timeout=3.0)
        except Exception as error:  # noqa: BLE001 - any client error is "unreachable"
            return Health("unhealthy", f"no metadata from {self.settings.kafka.bootstrap}: {error}")
        controller = describe_controller(self.settings)
        if self.node_id not in metadata.brokers:
            return Health("unhealthy", f"not a live broker (fenced or starting); {controller}")
        missing = [name for name in self.settings.topics.names() if name not in metadata.topics]
        if missing:
            return Health("unhealthy", f"missing topics: {', '.join(missing)}; {controller}")
        lagging = under_replicated(metadata, lacking=self.node_id)
        if lagging:
            return Health(
                "unhealthy",
                f"not in the ISR of {len(lagging)} partitions ({', '.join(lagging[:3])}, …); "
                f"{controller}",
            )
        behind = under_replicated(metadata)
        replication = f"{len(behind)} under-replicated partitions" if behind else "fully replicated"
        return Health("healthy", f"{controller}; {replication}")

    def _still_starting(self, process: ManagedProcess, deadline: float, goal: str) -> None:
        """Wait one poll interval, or fail when the node exited or ``deadline`` passed."""
        if not process.is_running():
            raise KafkaBrokerError(
                f"{self.name} exited during start-up; last log lines:\n{self.broker.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise KafkaBrokerError(
                f"{self.name} at {self.endpoint} did not {goal} within "
                f"{self.settings.kafka.ready_timeout_s:.0f}s; log:\n{self.broker.log_tail()}"
            )
        time.sleep(POLL_S)

    def _sees_every_node(self) -> bool:
        try:
            return set(self._admin().list_topics(timeout=2.0).brokers) >= set(self.node_ids)
        except Exception:  # noqa: BLE001 - any client error means "not yet"
            return False

    def _caught_up(self, *, everyone: bool) -> bool:
        """This node (with ``everyone``: every node) is in the ISR of all its partitions."""
        try:
            metadata = self._admin().list_topics(timeout=2.0)
        except Exception:  # noqa: BLE001 - any client error means "not yet"
            return False
        return not under_replicated(metadata, lacking=None if everyone else self.node_id)

    def _serves_itself(self) -> bool:
        """This node answers requests sent to it by id, and the cluster lists it as a live
        (unfenced) broker. Asking the node itself matters after a crash: its old
        incarnation stays listed until the controller's session timeout fences it."""
        admin = self._admin()
        node = ConfigResource(ResourceType.BROKER, str(self.node_id))
        try:
            [answer] = admin.describe_configs([node], request_timeout=2.0).values()
            answer.result(timeout=3.0)
            metadata = admin.list_topics(timeout=2.0)
        except Exception:  # noqa: BLE001 - any client error means "not ready yet"
            return False
        return self.node_id in metadata.brokers

    def _quorum_possible(self) -> bool:
        """A majority of the voters' controller listeners accept connections."""
        kafka, cluster = self.settings.kafka, self.settings.cluster
        up = sum(
            _listening(cluster.kafka_node_port(kafka.controller_port, node))
            for node in self.node_ids
        )
        return up > len(self.node_ids) // 2

    def _admin(self) -> AdminClient:
        return AdminClient(admin_config(self.settings.kafka.access, log_level=0))


def kafka_cluster_components(settings: Settings) -> list[Component]:
    """The cluster's nodes, in start order (``kafka-1`` first)."""
    cluster = settings.cluster
    if cluster.min_insync_replicas > cluster.kafka_brokers:
        raise StackError(
            f"cluster.min_insync_replicas ({cluster.min_insync_replicas}) exceeds "
            f"cluster.kafka_brokers ({cluster.kafka_brokers}): no write could ever succeed"
        )
    return [KafkaNodeComponent(settings, node) for node in range(1, cluster.kafka_brokers + 1)]


def node_of(settings: Settings, node_id: int) -> KafkaNodeComponent:
    """The component of KRaft node ``node_id`` (as :func:`partition_leader` names it)."""
    if not 1 <= node_id <= settings.cluster.kafka_brokers:
        raise StackError(
            f"no Kafka node {node_id}: the cluster has nodes 1 to {settings.cluster.kafka_brokers}"
        )
    return KafkaNodeComponent(settings, node_id)


def cluster_topics(settings: Settings) -> list[TopicSpec]:
    """The feedrank topics with one replica per node and the cluster's min ISR."""
    replicas = settings.cluster.kafka_brokers
    min_isr = str(settings.cluster.min_insync_replicas)
    return [
        replace(
            spec,
            replication_factor=replicas,
            config={**spec.config, "min.insync.replicas": min_isr},
        )
        for spec in standard_topics(settings.topics)
    ]


def partition_leader(bootstrap: str, topic: str, partition: int, timeout_s: float = 10.0) -> int:
    """The node id leading ``topic``'s ``partition``; -1 while it has no leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    metadata = admin.list_topics(topic=topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise KafkaBrokerError(f"no topic {topic} at {bootstrap}")
    if partition not in metadata.partitions:
        raise KafkaBrokerError(
            f"{topic} has partitions 0 to {len(metadata.partitions) - 1}, not {partition}"
        )
    return int(metadata.partitions[partition].leader)


def under_replicated(metadata: ClusterMetadata, lacking: int | None = None) -> list[str]:
    """Every ``topic-partition`` (internal topics included) with fewer in-sync replicas
    than replicas; with ``lacking``, only those whose ISR lacks that node's replica."""
    found = []
    for topic in metadata.topics.values():
        for partition in topic.partitions.values():
            missing = set(partition.replicas) - set(partition.isrs)
            if missing and (lacking is None or lacking in missing):
                found.append(f"{topic.topic}-{partition.id}")
    return sorted(found)


def describe_controller(settings: Settings) -> str:
    """Which node is the active controller, from the nodes' own election records (the
    Metadata API names a random broker in KRaft, not the controller)."""
    elections = []
    for node in range(1, settings.cluster.kafka_brokers + 1):
        state_file = settings.paths.kafka_data_dir / f"node-{node}" / QUORUM_STATE_FILE
        with contextlib.suppress(OSError, ValueError, KeyError):
            record = json.loads(state_file.read_text())
            elections.append((int(record["leaderEpoch"]), int(record["leaderId"])))
    if not elections:
        return "controller: unknown"
    epoch, leader = max(elections)
    if leader < 0:
        return f"controller: election under way (epoch {epoch})"
    port = settings.cluster.kafka_node_port(settings.kafka.controller_port, leader)
    if not _listening(port):
        return f"controller: none (node {leader} is down, election pending)"
    return f"controller: node {leader}"


def shared_cluster_id(kafka_root: Path) -> str:
    """The cluster id every node is formatted with: kept in ``cluster.id``, else read
    from a node already formatted, else new."""
    id_file = kafka_root / CLUSTER_ID_FILE
    if id_file.is_file():
        return id_file.read_text().strip()
    cluster_id = (
        next(
            (
                line.split("=", 1)[1].strip()
                for meta in sorted(kafka_root.glob("node-*/logs/meta.properties"))
                for line in meta.read_text().splitlines()
                if line.startswith("cluster.id=")
            ),
            None,
        )
        or new_cluster_id()
    )
    kafka_root.mkdir(parents=True, exist_ok=True)
    id_file.write_text(cluster_id + "\n")
    return cluster_id


def _listening(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0
