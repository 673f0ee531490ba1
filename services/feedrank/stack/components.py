"""Components of the local stack: each knows how to start, await and probe itself.

Kafka is the first; later components (explore, join, learner, deploy) implement the
same small protocol and join the supervisor's list.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import grpc
from confluent_kafka.admin import AdminClient
from grpc_health.v1 import health_pb2, health_pb2_grpc

from feedrank.core.settings import Settings, settings_to_environment
from feedrank.stack.jars import require_jars
from feedrank.stack.kafka_broker import BrokerConfig, KafkaBroker, probe_broker
from feedrank.stack.process import ManagedProcess
from feedrank.stack.topics import ensure_topics, standard_topics

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
        return AdminClient({"bootstrap.servers": self.endpoint, "log_level": 0})


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


class ExploreComponent:
    """``feedrank serve``: the Ranking gRPC workers, ready once health says SERVING."""

    name = "explore"
    # Python accepts any -X option, which makes the tag visible in the command line.
    TAG = "feedrank.component=explore"
    ready_timeout_s = 300.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.settings.ports.ranking_grpc}"

    def start(self, *, tie_to_parent: bool) -> ManagedProcess:
        ensure_port_free(self.settings.ports.ranking_grpc, owner="the Ranking service")
        ensure_port_free(self.settings.ports.explore_metrics, owner="the explore metrics")
        command = [sys.executable, "-X", self.TAG, "-m", "feedrank.cli.main", "serve"]
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("FEEDRANK_")
        }
        environment.update(settings_to_environment(self.settings))
        return ManagedProcess.launch(
            command,
            log_file=self.settings.paths.log_dir / "explore.log",
            tie_to_parent=tie_to_parent,
            tag=self.TAG,
            environment=environment,
        )

    def wait_ready(self, process: ManagedProcess) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if not process.is_running():
                raise StackError(
                    "the explore service exited during start-up; see "
                    f"{self.settings.paths.log_dir / 'explore.log'}"
                )
            if self.probe().state == "healthy":
                return
            time.sleep(0.25)
        raise StackError(f"the explore service was not SERVING after {self.ready_timeout_s}s")

    def probe(self) -> Health:
        with grpc.insecure_channel(self.endpoint) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)
            try:
                response = stub.Check(
                    health_pb2.HealthCheckRequest(service="feedrank.v1.Ranking"), timeout=2
                )
            except grpc.RpcError as error:
                return Health("unhealthy", f"health check failed: {error.code().name}")
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            return Health("unhealthy", "NOT_SERVING")
        return Health("healthy", f"SERVING, metrics :{self.settings.ports.explore_metrics}")


class DeployComponent:
    """``feedrank deploy``: the deploy control service, ready once health says SERVING."""

    name = "deploy"
    TAG = "feedrank.component=deploy"
    ready_timeout_s = 60.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.settings.ports.deploy_grpc}"

    def start(self, *, tie_to_parent: bool) -> ManagedProcess:
        ensure_port_free(self.settings.ports.deploy_grpc, owner="the Deploy service")
        ensure_port_free(self.settings.ports.deploy_metrics, owner="the deploy metrics")
        command = [sys.executable, "-X", self.TAG, "-m", "feedrank.cli.main", "deploy"]
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("FEEDRANK_")
        }
        environment.update(settings_to_environment(self.settings))
        return ManagedProcess.launch(
            command,
            log_file=self.settings.paths.log_dir / "deploy.log",
            tie_to_parent=tie_to_parent,
            tag=self.TAG,
            environment=environment,
        )

    def wait_ready(self, process: ManagedProcess) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if not process.is_running():
                raise StackError(
                    "the deploy service exited during start-up; see "
                    f"{self.settings.paths.log_dir / 'deploy.log'}"
                )
            if self.probe().state == "healthy":
                return
            time.sleep(0.25)
        raise StackError(f"the deploy service was not SERVING after {self.ready_timeout_s}s")

    def probe(self) -> Health:
        with grpc.insecure_channel(self.endpoint) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)
            try:
                response = stub.Check(
                    health_pb2.HealthCheckRequest(service="feedrank.v1.Deploy"), timeout=2
                )
            except grpc.RpcError as error:
                return Health("unhealthy", f"health check failed: {error.code().name}")
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            return Health("unhealthy", "NOT_SERVING")
        return Health("healthy", f"SERVING, metrics :{self.settings.ports.deploy_metrics}")


def default_components(settings: Settings) -> list[Component]:
    # Deploy before explore: explore workers follow its serving plan.
    return [KafkaComponent(settings), DeployComponent(settings), ExploreComponent(settings)]
