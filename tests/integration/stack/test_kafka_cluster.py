"""A real three-node KRaft cluster: a partition leader killed under an idempotent
producer loses and duplicates nothing, the crashed node rejoins the ISR, and
transactions commit with a node down.

The cluster is private to this module (its own free ports and state directory) and is
stopped at the end even when a test fails; its JVMs also die with the pytest process.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from feedrank.core.kafka_topics import TopicSpec, ensure_topics
from feedrank.core.settings import Settings, load_settings
from feedrank.core.time_units import DAY_MS
from feedrank.stack.jars import JarLocations
from feedrank.stack.kafka_cluster import (
    KafkaNodeComponent,
    kafka_cluster_components,
    node_of,
    partition_leader,
)
from feedrank.stack.process import ManagedProcess
from tests.support.kafka import CommittedReader, free_ports_at

NODES = 3
PORT_STEP = 10
MIN_ISR = 2
WAIT_S = 180.0


@dataclass
class RunningCluster:
    settings: Settings
    processes: dict[int, ManagedProcess] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka.bootstrap

    def node(self, node_id: int) -> KafkaNodeComponent:
        return node_of(self.settings, node_id)

    def launch(self, node: KafkaNodeComponent) -> ManagedProcess:
        """Start the node's process, not waiting for it."""
        process = node.start(tie_to_parent=True)
        self.processes[node.node_id] = process
        return process

    def start(self, node: KafkaNodeComponent) -> None:
        node.wait_ready(self.launch(node))

    def kill(self, node_id: int) -> None:
        """SIGKILL the node, as a crash would."""
        process = self.processes.pop(node_id)
        os.killpg(process.pid, signal.SIGKILL)
        process.stop(grace_s=10)  # reaps it

    def stop_all(self) -> None:
        for node_id in sorted(self.processes, reverse=True):
            self.processes.pop(node_id).stop()


def free_port_ladder(nodes: int, step: int) -> int:
    """A first port whose client (+0) and controller (+1) ports are free for every node."""
    first = free_ports_at(offset + node * step for node in range(nodes) for offset in (0, 1))
    if first is None:
        raise RuntimeError("no free ladder of ports for the Kafka cluster")
    return first


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, jars: JarLocations
) -> Iterator[RunningCluster]:
    first_port = free_port_ladder(NODES, PORT_STEP)
    settings = load_settings(
        kafka={
            "broker_port": first_port,
            "controller_port": first_port + 1,
            "ready_timeout_s": WAIT_S,
        },
        cluster={
            "topology": "cluster",
            "kafka_brokers": NODES,
            "kafka_port_step": PORT_STEP,
            "min_insync_replicas": MIN_ISR,
        },
        paths={
            "state_dir": tmp_path_factory.mktemp("kafka-cluster"),
            "jar_cache": jars.kafka_dir.parent,
        },
    )
    running = RunningCluster(settings)
    nodes = [
        node for node in kafka_cluster_components(settings) if isinstance(node, KafkaNodeComponent)
    ]
    assert len(nodes) == NODES
    try:
        # All at once, then each waited on in order, as `feedrank up` does (one after
        # another, each node waited for its controller listener before the next began).
        launched = [(node, running.launch(node)) for node in nodes]
        for node, process in launched:
            node.wait_ready(process)
        yield running
    finally:
        running.stop_all()


def replicated_topic(cluster: RunningCluster, hint: str, partitions: int = 3) -> str:
    name = f"test.cluster.{hint}.{uuid.uuid4().hex[:8]}"
    spec = TopicSpec(name, partitions, NODES, DAY_MS, {"min.insync.replicas": str(MIN_ISR)})
    ensure_topics(AdminClient({"bootstrap.servers": cluster.bootstrap}), [spec])
    return name


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> float:
    """Poll ``condition``; return the seconds it took, fail after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def replication(cluster: RunningCluster, topic: str) -> list[tuple[int, list[int], list[int]]]:
    """``(leader, replicas, isr)`` of each partition of ``topic``."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    partitions = admin.list_topics(topic=topic, timeout=10).topics[topic].partitions
    return [
        (partition.leader, sorted(partition.replicas), sorted(partition.isrs))
        for _, partition in sorted(partitions.items())
    ]


def test_every_topic_is_replicated_to_every_node(cluster: RunningCluster) -> None:
    for node_id in range(1, NODES + 1):
        health = cluster.node(node_id).probe()
        assert health.state == "healthy", health
        assert "controller: node " in health.detail
        assert "fully replicated" in health.detail
    decisions = cluster.settings.topics.decisions
    assert all(replicas == isr == [1, 2, 3] for _, replicas, isr in replication(cluster, decisions))
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    [entries] = admin.describe_configs([ConfigResource(ResourceType.TOPIC, decisions)]).values()
    assert entries.result(timeout=10)["min.insync.replicas"].value == str(MIN_ISR)


@dataclass
class NumberedProducer:
    """Sends 0, 1, 2, … round-robin over partitions until stopped; records deliveries."""

    bootstrap: str
    topic: str
    partitions: int
    sent: int = 0
    delivered: dict[int, tuple[int, float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
            }
        )
        while not self.stop.is_set():
            number = self.sent
            producer.produce(
                self.topic,
                value=str(number).encode(),
                partition=number % self.partitions,
                on_delivery=self._delivered,
            )
            self.sent += 1
            producer.poll(0.005)  # about 150 messages a second
        if remaining := producer.flush(120):
            self.errors.append(f"{remaining} messages still undelivered after 120 s")

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.errors.append(str(error))
            return
        partition = message.partition()
        assert partition is not None
        self.delivered[int(message.value() or b"-1")] = (partition, time.monotonic())

    def deliveries_to(self, partition: int, after: float) -> int:
        return sum(1 for p, at in list(self.delivered.values()) if p == partition and at > after)


def test_killing_a_partition_leader_loses_and_duplicates_nothing(
    cluster: RunningCluster,
) -> None:
    topic = replicated_topic(cluster, "failover")
    producer = NumberedProducer(cluster.bootstrap, topic, partitions=3)
    sending = threading.Thread(target=producer.run, daemon=True)
    sending.start()
    try:
        wait_until(lambda: len(producer.delivered) >= 300, "the first 300 deliveries")
        leader = partition_leader(cluster.bootstrap, topic, 0)
        killed_at = time.monotonic()
        cluster.kill(leader)
        election_s = wait_until(
            lambda: partition_leader(cluster.bootstrap, topic, 0) not in (leader, -1),
            "a new leader of partition 0",
        )
        wait_until(lambda: producer.deliveries_to(0, after=killed_at) > 0, "writes to resume")
        stall_s = min(
            at - killed_at
            for p, at in list(producer.delivered.values())
            if p == 0 and at > killed_at
        )
        restarted_at = time.monotonic()
        cluster.start(cluster.node(leader))
        rejoin_s = time.monotonic() - restarted_at
        health = cluster.node(leader).probe()
        assert health.state == "healthy", health
        assert all(leader in isr for _, _, isr in replication(cluster, topic))
        back = time.monotonic()
        wait_until(lambda: producer.deliveries_to(0, after=back) >= 50, "writes after the rejoin")
    finally:
        producer.stop.set()
        sending.join(timeout=150)
    print(  # the measured numbers, shown with -s
        f"\nnode {leader} killed: new leader elected after {election_s:.1f}s, partition 0 "
        f"stalled {stall_s:.1f}s for the producer; the restarted node was ready and back "
        f"in the ISR after {rejoin_s:.1f}s; {producer.sent} messages sent"
    )
    assert producer.errors == []
    values = [
        int(record.value() or b"-1")
        for record in CommittedReader(cluster.bootstrap).read(
            topic, producer.sent + 100, timeout_s=WAIT_S, idle_s=15
        )
    ]
    assert len(values) == producer.sent, "messages lost or duplicated"
    assert sorted(values) == list(range(producer.sent))
    offsets = replication(cluster, "__consumer_offsets")  # the reader's group created it
    assert all(len(replicas) == NODES for _, replicas, _ in offsets)


def test_transactions_commit_with_a_node_down(cluster: RunningCluster) -> None:
    topic = replicated_topic(cluster, "txn", partitions=1)

    def transaction(value: bytes, *, commit: bool) -> None:
        producer = Producer(
            {
                "bootstrap.servers": cluster.bootstrap,
                "transactional.id": f"test-{uuid.uuid4().hex}",
                "enable.idempotence": True,
            }
        )
        producer.init_transactions(60)
        producer.begin_transaction()
        producer.produce(topic, value=value)
        if commit:
            producer.commit_transaction(60)
        else:
            producer.abort_transaction(60)

    transaction(b"all-up", commit=True)  # creates __transaction_state on every node
    assert all(
        len(replicas) == NODES for _, replicas, _ in replication(cluster, "__transaction_state")
    )
    down = partition_leader(cluster.bootstrap, topic, 0)
    cluster.kill(down)
    try:
        transaction(b"aborted", commit=False)
        transaction(b"one-down", commit=True)
        values = [
            record.value()
            for record in CommittedReader(cluster.bootstrap).read(topic, 10, timeout_s=60, idle_s=5)
        ]
        assert values == [b"all-up", b"one-down"]
    finally:
        cluster.start(cluster.node(down))
    assert cluster.node(down).probe().state == "healthy"
