"""The explore replicas' settings and the balancer's configuration: each replica on its
own ports and state dir, a configuration HAProxy accepts, and a health check whose raw
HTTP/2 bytes a real gRPC server answers (SERVING or not)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from feedrank.core.settings import Settings, load_settings, settings_to_environment
from feedrank.stack.balancer import RANKING_SERVICE, haproxy_executable, render_config
from feedrank.stack.explore_replicas import (
    ExploreReplicaComponent,
    explore_cluster_components,
    explore_replicas,
)
from feedrank.stack.grpc_health_frames import (
    call_end_marker,
    health_check_request,
    serving_response_message,
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        paths={"state_dir": tmp_path / "state"},
        cluster={"explore_replicas": 3, "explore_first_grpc_port": 40061},
    )


def test_each_replica_has_its_own_ports_and_state_dir_and_reads_the_stack_registry(
    settings: Settings,
) -> None:
    replicas = explore_replicas(settings)
    assert [replica.name for replica in replicas] == ["explore-1", "explore-2", "explore-3"]
    assert [replica.grpc_port() for replica in replicas] == [40061, 40062, 40063]
    assert [replica.metrics_port() for replica in replicas] == [9111, 9112, 9113]
    state_dirs = {replica.settings.paths.state_dir for replica in replicas}
    assert len(state_dirs) == 3
    assert all(path.parent == settings.paths.state_dir / "explore-replicas" for path in state_dirs)
    assert {replica.settings.paths.registry for replica in replicas} == {settings.paths.registry}
    assert replicas[1].log_file == settings.paths.log_dir / "explore-2.log"


def test_a_replica_process_rebuilds_its_settings_from_the_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    replica = explore_replicas(settings)[1].settings
    for key, value in settings_to_environment(replica).items():
        monkeypatch.setenv(key, value)
    rebuilt = load_settings()
    assert (rebuilt.ports.ranking_grpc, rebuilt.ports.explore_metrics) == (40062, 9112)
    assert rebuilt.paths.state_dir == replica.paths.state_dir
    assert rebuilt.paths.registry == settings.paths.registry


def test_replicas_come_first_then_the_balancer(settings: Settings) -> None:
    names = [component.name for component in explore_cluster_components(settings)]
    assert names == ["explore-1", "explore-2", "explore-3", "balancer"]
    with pytest.raises(ValueError, match=r"outside 1\.\.3"):
        ExploreReplicaComponent(settings, 4)


def test_haproxy_accepts_the_rendered_configuration(settings: Settings, tmp_path: Path) -> None:
    components = explore_cluster_components(settings)
    replicas = [c.address() for c in components if isinstance(c, ExploreReplicaComponent)]
    config = tmp_path / "haproxy.cfg"
    config.write_text(render_config(settings, replicas))
    check = subprocess.run(
        [haproxy_executable(), "-c", "-f", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "server explore-3 127.0.0.1:40063" in config.read_text()


@pytest.fixture
def health_server() -> Iterator[tuple[health.HealthServicer, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(grace=None)


def answer_to_check(port: int, service: str) -> bytes:
    """What the server sends back to the raw check, up to the frame that ends the call."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(health_check_request(service))
        deadline = time.monotonic() + 5
        while call_end_marker() not in received and time.monotonic() < deadline:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
    assert call_end_marker() in received, f"the call never ended: {received!r}"
    return received


@pytest.mark.parametrize(
    ("status", "passes"),
    [
        (health_pb2.HealthCheckResponse.SERVING, True),
        (health_pb2.HealthCheckResponse.NOT_SERVING, False),
        (None, False),  # the service is unknown: NOT_FOUND, no message
    ],
)
def test_the_raw_http2_check_passes_only_on_serving(
    health_server: tuple[health.HealthServicer, int], status: int | None, passes: bool
) -> None:
    servicer, port = health_server
    if status is not None:
        servicer.set(RANKING_SERVICE, status)
    answer = answer_to_check(port, RANKING_SERVICE)
    assert (serving_response_message() in answer) is passes
