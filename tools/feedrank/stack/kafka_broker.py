"""An Apache Kafka node in KRaft mode (broker and controller), run as a local JVM process.

Alone it is the single-node stack's broker (replication 1); with its peers in
``quorum_voters`` it is one node of a local cluster (see :mod:`feedrank.stack.kafka_cluster`).
Storage is formatted on first start under a project-owned directory and never again
(a node restarted after a crash rejoins with its data); readiness is awaited by asking
the broker for cluster metadata (never by sleeping); stop sends SIGTERM to the broker's
process group and escalates to SIGKILL only after a grace period, so no JVM is left behind.
With a :class:`~feedrank.stack.broker_security.BrokerSecurity` its client listener is
SASL_SSL with SCRAM users and ACLs enforced (a single node only).
"""

from __future__ import annotations

import base64
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from confluent_kafka.admin import AdminClient

from feedrank.core.kafka_clients import KafkaAccess, admin_config
from feedrank.stack.broker_security import CLIENT_LISTENER, BrokerSecurity
from feedrank.stack.process import ManagedProcess, java_executable

BROKER_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"


class KafkaBrokerError(RuntimeError):
    """The local broker could not be formatted, started or reached."""


@dataclass(frozen=True)
class BrokerConfig:
    """One KRaft node. The defaults describe the single-node broker: node 1, its own sole
    voter, every topic at replication factor 1."""

    data_dir: Path
    jar_dir: Path
    port: int
    controller_port: int
    heap_mb: int = 512
    host: str = "127.0.0.1"
    # Upper bound a transactional producer (Flink's exactly-once sink) may ask for.
    transaction_max_timeout_ms: int = 3_600_000
    node_id: int = 1
    # (node id, controller port) of every controller in a cluster; empty: this node alone.
    quorum_voters: tuple[tuple[int, int], ...] = ()
    # Of the internal topics (offsets, transactions) and of topics created without one.
    replication_factor: int = 1
    min_insync_replicas: int = 1
    # Shared by every node of a cluster; None: a fresh random id at first format.
    cluster_id: str | None = None
    # The stack component this node is; marks its JVM in `ps` (see process_tag).
    component_name: str = "kafka"
    # Ask the controller to move leadership away before stopping. The last node of a
    # stopping cluster has no quorum left to ask and would wait five minutes for it.
    controlled_shutdown: bool = True
    # SASL_SSL with SCRAM users and ACLs on the client listener; None: plaintext.
    security: BrokerSecurity | None = None

    def __post_init__(self) -> None:
        voters = self.voters()
        if self.security is not None and len(voters) > 1:
            raise KafkaBrokerError("a secured broker runs alone (no quorum_voters)")
        if self.node_id not in dict(voters):
            raise KafkaBrokerError(f"node {self.node_id} is not among the voters {voters}")
        if not 1 <= self.min_insync_replicas <= self.replication_factor <= len(voters):
            raise KafkaBrokerError(
                f"need 1 <= min.insync.replicas ({self.min_insync_replicas}) <= replication "
                f"factor ({self.replication_factor}) <= nodes ({len(voters)})"
            )

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def access(self) -> KafkaAccess:
        """How the stack's own probes reach the broker: plaintext, or as the admin."""
        if self.security is None:
            return KafkaAccess(self.bootstrap)
        return self.security.client_access(self.bootstrap)

    @property
    def client_listener(self) -> str:
        return "PLAINTEXT" if self.security is None else CLIENT_LISTENER

    @property
    def process_tag(self) -> str:
        """Marks the process in `ps`, so `feedrank down` never kills a recycled pid."""
        return f"-Dfeedrank.component={self.component_name}"

    def voters(self) -> tuple[tuple[int, int], ...]:
        return self.quorum_voters or ((self.node_id, self.controller_port),)

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "logs"

    def server_properties(self) -> str:
        replicas, min_isr = str(self.replication_factor), str(self.min_insync_replicas)
        voters = ",".join(f"{node}@{self.host}:{port}" for node, port in self.voters())
        listener = self.client_listener
        lines = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": (
                f"{listener}://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
            ),
            "advertised.listeners": f"{listener}://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": listener,
            "listener.security.protocol.map": f"{listener}:{listener},CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dirs.resolve()),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            # Internal topics never ask for more replicas than there are nodes: a single
            # broker keeps replication factor 1 and min ISR 1, or consumer-group commits
            # and transactions hang; a cluster replicates them like its own topics.
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            "min.insync.replicas": min_isr,
            "default.replication.factor": replicas,
            "transaction.max.timeout.ms": str(self.transaction_max_timeout_ms),
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.check.interval.ms": "60000",
            "controlled.shutdown.enable": str(self.controlled_shutdown).lower(),
        }
        if self.security is not None:
            lines.update(self.security.server_properties(self.data_dir))
        return "".join(f"{key}={value}\n" for key, value in lines.items())


class KafkaBroker:
    """Formats, starts, probes and stops one local KRaft broker."""

    def __init__(self, config: BrokerConfig, log_file: Path) -> None:
        self.config = config
        self.log_file = log_file

    @property
    def bootstrap(self) -> str:
        return self.config.bootstrap

    @property
    def access(self) -> KafkaAccess:
        """The bootstrap and, on a secured broker, the admin's credentials."""
        return self.config.access

    def is_formatted(self) -> bool:
        return (self.config.log_dirs / "meta.properties").is_file()

    def format_storage(self) -> None:
        """Write server.properties and format the storage directory once."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        security = self.config.security
        properties = self.config.properties_file
        properties.touch(mode=0o600, exist_ok=True)  # a secured one holds the admin's password
        properties.write_text(self.config.server_properties())
        if security is not None:
            security.write_keystore(self.config.data_dir)
        if self.is_formatted():
            return
        command = [
            *self._java_command(STORAGE_TOOL_CLASS),
            "format",
            # One argument: a random id may start with "-", which argparse would misread.
            f"--cluster-id={self.config.cluster_id or new_cluster_id()}",
            "--config",
            str(properties),
            *(security.format_arguments() if security is not None else []),
        ]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            raise KafkaBrokerError(
                f"formatting Kafka storage in {self.config.log_dirs} failed:\n"
                f"{(completed.stdout + completed.stderr)[-3000:]}"
            )

    def start(self, *, tie_to_parent: bool) -> ManagedProcess:
        """Launch the broker JVM; with ``tie_to_parent`` it dies with this process."""
        self.format_storage()
        command = [*self._java_command(BROKER_MAIN_CLASS), str(self.config.properties_file)]
        return ManagedProcess.launch(
            command,
            log_file=self.log_file,
            tie_to_parent=tie_to_parent,
            tag=self.config.process_tag,
        )

    def wait_ready(self, process: ManagedProcess | None, timeout_s: float) -> None:
        """Block until the broker answers a metadata request, or fail with its log tail."""
        deadline = time.monotonic() + timeout_s
        admin = AdminClient(admin_config(self.access, log_level=0))
        while time.monotonic() < deadline:
            if process is not None and not process.is_running():
                raise KafkaBrokerError(
                    f"Kafka exited during start-up; last log lines:\n{self.log_tail()}"
                )
            if probe_broker(admin, timeout_s=2.0):
                return
        raise KafkaBrokerError(
            f"Kafka at {self.bootstrap} not ready after {timeout_s:.0f}s; log:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_file.is_file():
            return "(no log yet)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def _java_command(self, main_class: str) -> list[str]:
        log_config = resources.files("feedrank.stack") / "kafka-log4j2.properties"
        return [
            java_executable(),
            f"-Xmx{self.config.heap_mb}m",
            f"-Xms{min(self.config.heap_mb, 256)}m",
            "-XX:+UseG1GC",
            # C1 only: this broker idled at 9-10 % of a core with C2 recompiling all the
            # while, 3.5 % without, and produced and served 150k 2.5 KB records as fast
            # (docs/benchmarks.md, "Logging on and off, session 23"): on a box the broker
            # shares with Rank workers, its compiler's CPU is theirs.
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            self.config.process_tag,
            f"-Dlog4j2.configurationFile={log_config}",
            "-cp",
            f"{self.config.jar_dir.resolve()}/*",
            main_class,
        ]


def probe_broker(admin: AdminClient, timeout_s: float) -> bool:
    """True when the broker answers a cluster-metadata request with a controller."""
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except Exception:  # noqa: BLE001 - any client error means "not ready yet"
        return False
    return bool(metadata.brokers) and metadata.controller_id >= 0


def new_cluster_id() -> str:
    """A fresh Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
