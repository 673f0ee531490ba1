"""A single-node Apache Kafka broker in KRaft mode, run as a local JVM process.

Storage is formatted on first start under a project-owned directory; readiness is
awaited by asking the broker for cluster metadata (never by sleeping); stop sends
SIGTERM to the broker's process group and escalates to SIGKILL only after a grace
period, so no JVM is left behind.
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

from feedrank.stack.process import ManagedProcess, java_executable

BROKER_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
# Marks the process in `ps`, so `feedrank down` never kills a recycled pid.
PROCESS_TAG = "-Dfeedrank.component=kafka"


class KafkaBrokerError(RuntimeError):
    """The local broker could not be formatted, started or reached."""


@dataclass(frozen=True)
class BrokerConfig:
    data_dir: Path
    jar_dir: Path
    port: int
    controller_port: int
    heap_mb: int = 512
    host: str = "127.0.0.1"
    # Upper bound a transactional producer (Flink's exactly-once sink) may ask for.
    transaction_max_timeout_ms: int = 3_600_000

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "logs"

    def server_properties(self) -> str:
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dirs.resolve()),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            # A single broker: every internal topic at replication factor 1, min ISR 1,
            # or consumer-group commits and transactions hang.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "default.replication.factor": "1",
            "transaction.max.timeout.ms": str(self.transaction_max_timeout_ms),
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.check.interval.ms": "60000",
        }
        return "".join(f"{key}={value}\n" for key, value in lines.items())


class KafkaBroker:
    """Formats, starts, probes and stops one local KRaft broker."""

    def __init__(self, config: BrokerConfig, log_file: Path) -> None:
        self.config = config
        self.log_file = log_file

    @property
    def bootstrap(self) -> str:
        return self.config.bootstrap

    def is_formatted(self) -> bool:
        return (self.config.log_dirs / "meta.properties").is_file()

    def format_storage(self) -> None:
        """Write server.properties and format the storage directory once."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.config.properties_file.write_text(self.config.server_properties())
        if self.is_formatted():
            return
        command = [
            *self._java_command(STORAGE_TOOL_CLASS),
            "format",
            # One argument: a random id may start with "-", which argparse would misread.
            f"--cluster-id={_kafka_cluster_id()}",
            "--config",
            str(self.config.properties_file),
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
            command, log_file=self.log_file, tie_to_parent=tie_to_parent, tag=PROCESS_TAG
        )

    def wait_ready(self, process: ManagedProcess | None, timeout_s: float) -> None:
        """Block until the broker answers a metadata request, or fail with its log tail."""
        deadline = time.monotonic() + timeout_s
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
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
            "-Djava.awt.headless=true",
            PROCESS_TAG,
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


def _kafka_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
