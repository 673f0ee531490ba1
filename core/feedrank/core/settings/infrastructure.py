"""Infrastructure settings: Kafka, topics, ports, local paths and Flink."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from feedrank.core.kafka_clients import (
    KafkaAccess,
    KafkaSecurity,
    SaslMechanism,
    SecurityProtocol,
)
from feedrank.core.settings.group import SettingsGroup

LOOPBACK = "127.0.0.1"


class KafkaSettings(SettingsGroup):
    """Where clients find Kafka, and how the embedded local broker runs."""

    bootstrap_servers: str | None = Field(
        default=None,
        description="Kafka bootstrap servers; unset means the embedded local broker (in the "
        "cluster topology: every local node).",
    )
    broker_port: int = Field(default=9092, ge=1, le=65535, description="Local broker client port.")
    controller_port: int = Field(
        default=9093, ge=1, le=65535, description="Local broker KRaft controller port."
    )
    broker_heap_mb: int = Field(default=512, ge=128, description="Local broker JVM heap (MiB).")
    kafka_version: str = Field(default="4.1.1", description="Apache Kafka release (kafka_2.13).")
    ready_timeout_s: float = Field(
        default=90.0, gt=0, description="How long to wait for the broker to answer metadata."
    )
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description="How every client talks to Kafka: PLAINTEXT (the local stack), SSL, "
        "SASL_PLAINTEXT or SASL_SSL.",
    )
    sasl_mechanism: SaslMechanism = Field(
        default="SCRAM-SHA-512",
        description="The SASL mechanism of the SASL protocols: SCRAM-SHA-512, SCRAM-SHA-256 "
        "or PLAIN.",
    )
    sasl_username: str | None = Field(
        default=None, description="The SASL user of this process (SASL protocols only)."
    )
    sasl_password: SecretStr | None = Field(
        default=None,
        description="The SASL user's password (SASL protocols only); never printed or "
        "logged. Prefer the environment: FEEDRANK_KAFKA__SASL_PASSWORD.",
    )
    ssl_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA the clients trust for the brokers' certificates "
        "(SSL protocols only); unset: the system's trust store.",
    )
    ssl_cert_file: Path | None = Field(
        default=None,
        description="PEM client certificate, for brokers that authenticate clients by SSL "
        "(SSL protocols only; with ssl_key_file).",
    )
    ssl_key_file: Path | None = Field(
        default=None, description="PEM private key of ssl_cert_file (unencrypted)."
    )

    @model_validator(mode="after")
    def _security_fits_together(self) -> Self:
        try:
            self.security  # noqa: B018 - KafkaSecurity refuses what does not fit together
        except ValueError as error:
            raise ValueError(f"kafka settings: {error}") from None
        return self

    @property
    def bootstrap(self) -> str:
        """The bootstrap string every client uses."""
        return self.bootstrap_servers or f"{LOOPBACK}:{self.broker_port}"

    @property
    def security(self) -> KafkaSecurity:
        """How every client authenticates and what it trusts (plaintext by default)."""
        return KafkaSecurity(
            protocol=self.security_protocol,
            sasl_mechanism=self.sasl_mechanism,
            sasl_username=self.sasl_username,
            sasl_password=self.sasl_password,
            ssl_ca_file=self.ssl_ca_file,
            ssl_cert_file=self.ssl_cert_file,
            ssl_key_file=self.ssl_key_file,
        )

    @property
    def access(self) -> KafkaAccess:
        """The bootstrap string and the security: what every client is built from."""
        return KafkaAccess(self.bootstrap, self.security)


class TopicSettings(SettingsGroup):
    """Topic names (the public contract), partitions and retention."""

    decisions: str = Field(default="feedrank.decisions", description="One event per Rank call.")
    rewards: str = Field(default="feedrank.rewards", description="Engagement events from apps.")
    examples: str = Field(default="feedrank.examples", description="Labelled examples (join).")
    metrics: str = Field(default="feedrank.metrics", description="5-minute aggregates.")
    dlq: str = Field(default="feedrank.dlq", description="Dead letters.")
    posts: str = Field(
        default="feedrank.posts", description="The catalogue from apps (compacted by post_id)."
    )
    users: str = Field(default="feedrank.users", description="Users from apps (compacted).")
    graph: str = Field(
        default="feedrank.graph",
        description="Follows, blocks and hidden creators from apps (kept whole, keyed by user).",
    )
    partitions: int = Field(default=3, ge=1, description="Partitions of every feedrank topic.")
    replication_factor: int = Field(default=1, ge=1, description="1 on the local broker.")
    event_retention_days: float = Field(
        default=15.0,
        ge=15.0,
        description="Retention of decisions and rewards: the 14-day reward window plus a day.",
    )
    derived_retention_days: float = Field(
        default=7.0, gt=0, description="Retention of examples, metrics and dead letters."
    )

    def names(self) -> list[str]:
        return [
            self.decisions,
            self.rewards,
            self.examples,
            self.metrics,
            self.dlq,
            *self.entities(),
        ]

    def entities(self) -> list[str]:
        """The catalogue topics apps produce to: posts, users, graph."""
        return [self.posts, self.users, self.graph]


class PortSettings(SettingsGroup):
    """gRPC and Prometheus ports, all bound on 127.0.0.1 by default."""

    bind_host: str = Field(
        default=LOOPBACK, description="Interface servers bind; 0.0.0.0 inside a container."
    )
    ranking_grpc: int = Field(default=50051, ge=1, le=65535, description="Ranking gRPC.")
    deploy_grpc: int = Field(default=50052, ge=1, le=65535, description="Deploy control gRPC.")
    explore_metrics: int = Field(default=9100, ge=1, le=65535, description="Explore /metrics.")
    learner_metrics: int = Field(default=9101, ge=1, le=65535, description="Learner /metrics.")
    deploy_metrics: int = Field(default=9102, ge=1, le=65535, description="Deploy /metrics.")
    streaming_metrics: int = Field(default=9103, ge=1, le=65535, description="Join /metrics.")


class PathSettings(SettingsGroup):
    """Where the local stack keeps its state and where fetched jars are cached."""

    state_dir: Path = Field(
        default=Path(".feedrank"),
        description="Project-owned state: Kafka data, pid files, logs.",
    )
    jar_cache: Path = Field(
        default=Path.home() / ".cache" / "feedrank" / "jars",
        description="Jars fetched through Maven (outside git).",
    )

    registry_dir: Path | None = Field(
        default=None,
        description="Model registry root (default: <state_dir>/registry).",
    )

    @property
    def registry(self) -> Path:
        return self.registry_dir or self.state_dir / "registry"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def kafka_data_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def flink_checkpoint_dir(self) -> Path:
        return self.state_dir / "flink" / "checkpoints"

    @property
    def flink_savepoint_dir(self) -> Path:
        return self.state_dir / "flink" / "savepoints"


class FlinkSettings(SettingsGroup):
    """The PyFlink mini-cluster and its Kafka connector."""

    connector_version: str = Field(
        default="5.0.0-2.2", description="org.apache.flink:flink-sql-connector-kafka version."
    )
    parallelism: int = Field(default=2, ge=1, description="Default job parallelism.")
    checkpoint_interval_s: float = Field(default=5.0, gt=0, description="Checkpoint interval.")
    state_backend: Literal["rocksdb", "hashmap"] = Field(
        default="rocksdb",
        description="Keyed state and timers: 'rocksdb' (on disk, incremental checkpoints: "
        "a two-week join window) or 'hashmap' (on the JVM heap).",
    )
