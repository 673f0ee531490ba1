"""Components of the local stack: each knows how to start, await and probe itself.

Kafka is the first; later components (explore, join, learner, deploy) implement the
same small protocol and join the supervisor's list.
"""

from __future__ import annotations

import http.client
import socket
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import grpc
from confluent_kafka.admin import AdminClient
from grpc_health.v1 import health_pb2, health_pb2_grpc

from feedrank.core.kafka_clients import admin_config
from feedrank.core.kafka_topics import ensure_topics
from feedrank.core.settings import Settings, child_environment
from feedrank.stack.jars import require_jars
from feedrank.stack.kafka_broker import BrokerConfig, KafkaBroker, probe_broker
from feedrank.stack.process import ManagedProcess
from feedrank.stack.topics import standard_topics

HealthState = Literal["healthy", "unhealthy", "stopped"]


@dataclass(frozen=True)
class Health:
    state: HealthState
    detail: str


class StackError(RuntimeError):
    """The local stack could not be brought up, probed or stopped."""


class Component(Protocol):
    name: str

    @property
    def endpoint(self) -> str: ...

    def start(self, *, tie_to_parent: bool) -> ManagedProcess: ...

    def wait_ready(self, process: ManagedProcess) -> None: ...

    def probe(self) -> Health: ...


class KafkaComponent:
    """The single-node KRaft broker plus the feedrank topics."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._broker: KafkaBroker | None = None

    @property
    def endpoint(self) -> str:
        return self.settings.kafka.bootstrap

    @property
    def broker(self) -> KafkaBroker:
        if self._broker is None:
            config = BrokerConfig(
                data_dir=self.settings.paths.kafka_data_dir,
                jar_dir=require_jars(self.settings).kafka_dir,
                port=self.settings.kafka.broker_port,
                controller_port=self.settings.kafka.controller_port,
                heap_mb=self.settings.kafka.broker_heap_mb,
            )
            self._broker = KafkaBroker(config, self.settings.paths.log_dir / "kafka.log")
        return self._broker

    def start(self, *, tie_to_parent: bool) -> ManagedProcess:
        for port in (self.settings.kafka.broker_port, self.settings.kafka.controller_port):
            ensure_port_free(port, owner="Kafka")
        return self.broker.start(tie_to_parent=tie_to_parent)

    def wait_ready(self, process: ManagedProcess) -> None:
        self.broker.wait_ready(process, timeout_s=self.settings.kafka.ready_timeout_s)
        ensure_topics(self._admin(), standard_topics(self.settings.topics))

    def probe(self) -> Health:
        admin = self._admin()
        if not probe_broker(admin, timeout_s=3.0):
            return Health("unhealthy", f"no metadata from {self.endpoint}")
        topics = set(admin.list_topics(timeout=3.0).topics)
        missing = [name for name in self.settings.topics.names() if name not in topics]
        if missing:
            return Health("unhealthy", f"missing topics: {', '.join(missing)}")
        return Health("healthy", f"{len(self.settings.topics.names())} feedrank topics")

    def _admin(self) -> AdminClient:
        return AdminClient(admin_config(self.settings.kafka.access, log_level=0))


def ensure_port_free(port: int, *, owner: str, host: str = "127.0.0.1") -> None:
    """Fail clearly when another process already listens where ``owner`` must."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise StackError(
                f"{owner} needs {host}:{port}, but it is in use ({error.strerror}); "
                "stop the other process or choose another port in the settings"
            ) from error


class SubcommandComponent:
    """A ``feedrank <subcommand>`` child process with this stack's settings in its env.

    Subclasses say which subcommand, which ports it needs free, and how to probe it.
    """

    name = ""
    subcommand = ""
    ready_timeout_s = 60.0
    poll_s = 0.25

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def tag(self) -> str:
        # Python accepts any -X option, which makes the tag visible in the command line.
        return f"feedrank.component={self.name}"

    @property
    def endpoint(self) -> str:
        raise NotImplementedError

    def ports(self) -> dict[int, str]:
        """Ports the process will listen on, and whose they are (for clear errors)."""
        raise NotImplementedError

    def probe(self) -> Health:
        raise NotImplementedError

    def start(self, *, tie_to_parent: bool) -> ManagedProcess:
        for port, owner in self.ports().items():
            ensure_port_free(port, owner=owner)
        command = [sys.executable, "-X", self.tag, "-m", "feedrank.cli.main", self.subcommand]
        return ManagedProcess.launch(
            command,
            log_file=self.log_file,
            tie_to_parent=tie_to_parent,
            tag=self.tag,
            environment=child_environment(self.settings),
        )

    @property
    def log_file(self) -> Path:
        return self.settings.paths.log_dir / f"{self.name}.log"

    def wait_ready(self, process: ManagedProcess) -> None:
        wait_until_healthy(
            self,
            process,
            log_file=self.log_file,
            timeout_s=self.ready_timeout_s,
            poll_s=self.poll_s,
        )


def wait_until_healthy(
    component: Component,
    process: ManagedProcess,
    *,
    log_file: Path,
    timeout_s: float,
    poll_s: float,
) -> None:
    """Probe ``component`` until it is healthy; fail clearly if its process exits first
    or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.is_running():
            raise StackError(f"{component.name} exited during start-up; see {log_file}")
        if component.probe().state == "healthy":
            return
        time.sleep(poll_s)
    raise StackError(f"{component.name} was not ready after {timeout_s:.0f}s; see {log_file}")


class GrpcServiceComponent(SubcommandComponent):
    """A gRPC server, ready once ``grpc.health.v1`` says SERVING for its service."""

    health_service = ""

    def grpc_port(self) -> int:
        raise NotImplementedError

    def metrics_port(self) -> int:
        raise NotImplementedError

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port()}"

    def ports(self) -> dict[int, str]:
        return {
            self.grpc_port(): f"the {self.name} gRPC service",
            self.metrics_port(): f"the {self.name} metrics",
        }

    def probe(self) -> Health:
        health = grpc_service_health(self.endpoint, self.health_service)
        if health.state != "healthy":
            return health
        return Health("healthy", f"SERVING, metrics :{self.metrics_port()}")


def grpc_service_health(endpoint: str, service: str) -> Health:
    """What ``grpc.health.v1.Health/Check`` at ``endpoint`` says of ``service``."""
    with grpc.insecure_channel(endpoint) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        except grpc.RpcError as error:
            return Health("unhealthy", f"health check failed: {error.code().name}")
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        return Health("unhealthy", "NOT_SERVING")
    return Health("healthy", "SERVING")


class MetricsProbedComponent(SubcommandComponent):
    """A worker without an API, ready once its /metrics answers (and shows
    ``ready_sample`` at 1, when it names one)."""

    ready_sample = ""
    not_ready_detail = ""
    poll_s = 0.5

    def metrics_port(self) -> int:
        raise NotImplementedError

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port()}/metrics"

    def ports(self) -> dict[int, str]:
        return {self.metrics_port(): f"the {self.name} metrics"}

    def probe(self) -> Health:
        try:
            with urllib.request.urlopen(self.endpoint, timeout=2) as response:  # noqa: S310
                text = response.read().decode()
        except OSError as error:
            return Health("unhealthy", f"no /metrics: {error}")
        except http.client.HTTPException as error:  # something else holds the port
            return Health("unhealthy", f"{self.endpoint} does not answer HTTP/1.1: {error!r}")
        if self.ready_sample and f"\n{self.ready_sample} 1.0" not in f"\n{text}":
            return Health("unhealthy", self.not_ready_detail)
        return Health("healthy", f"metrics :{self.metrics_port()}")


class DeployComponent(GrpcServiceComponent):
    """``feedrank deploy``: the deploy control service (registry, rollouts, serving plan)."""

    name, subcommand, health_service = "deploy", "deploy", "feedrank.v1.Deploy"

    def grpc_port(self) -> int:
        return self.settings.ports.deploy_grpc

    def metrics_port(self) -> int:
        return self.settings.ports.deploy_metrics


class ExploreComponent(GrpcServiceComponent):
    """``feedrank serve``: the Ranking gRPC workers."""

    name, subcommand, health_service = "explore", "serve", "feedrank.v1.Ranking"
    ready_timeout_s = 300.0  # builds the world and its ANN index first

    def grpc_port(self) -> int:
        return self.settings.ports.ranking_grpc

    def metrics_port(self) -> int:
        return self.settings.ports.explore_metrics


class JoinComponent(MetricsProbedComponent):
    """``feedrank join``: the streaming join, ready once its Flink job is RUNNING."""

    name, subcommand = "join", "join"
    ready_timeout_s = 180.0  # the mini-cluster's JVM and Python workers start first
    ready_sample, not_ready_detail = "feedrank_join_job_running", "the join job is not RUNNING"

    def metrics_port(self) -> int:
        return self.settings.ports.streaming_metrics


class LearnerComponent(MetricsProbedComponent):
    """``feedrank learn``: the online learner, publishing registry versions; unhealthy
    while it cannot reach Kafka (it waits and retries, and resumes where it was)."""

    name, subcommand = "learner", "learn"
    ready_timeout_s = 120.0  # loads or makes its model and post index first
    ready_sample, not_ready_detail = "feedrank_learner_kafka_up", "cannot reach Kafka (retrying)"

    def metrics_port(self) -> int:
        return self.settings.ports.learner_metrics


def default_components(settings: Settings) -> list[Component]:
    # Deploy before explore: explore workers follow its serving plan. The join last.
    return [
        KafkaComponent(settings),
        DeployComponent(settings),
        ExploreComponent(settings),
        JoinComponent(settings),
        LearnerComponent(settings),
    ]
