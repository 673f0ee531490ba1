"""The shared gRPC server builder: health and reflection beside the services, clear binds.

The servers listen on loopback only, on a port the kernel picks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from feedrank.core.grpc_server import build_grpc_server

NO_REUSE_PORT = [("grpc.so_reuseport", 0)]


@pytest.fixture
def served() -> Iterator[tuple[grpc.Server, int, health.HealthServicer]]:
    health_servicer = health.HealthServicer()
    server, port = build_grpc_server(
        {}, health_servicer, address="127.0.0.1:0", max_workers=2, options=NO_REUSE_PORT
    )
    server.start()
    try:
        yield server, port, health_servicer
    finally:
        server.stop(None).wait()


def test_the_server_binds_a_free_port_and_serves_health(
    served: tuple[grpc.Server, int, health.HealthServicer],
) -> None:
    _, port, health_servicer = served
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert port > 0
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_given_services_health_and_itself() -> None:
    added: list[grpc.Server] = []
    server, port = build_grpc_server(
        {"feedrank.v1.Example": added.append},
        health.HealthServicer(),
        address="127.0.0.1:0",
        max_workers=2,
    )
    assert added == [server], "each service's adder is called with the server"
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            responses = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    finally:
        server.stop(None).wait()
    names = {service.name for service in responses[0].list_services_response.service}
    assert names == {"feedrank.v1.Example", health.SERVICE_NAME, reflection.SERVICE_NAME}


def test_a_taken_port_is_a_clear_os_error(
    served: tuple[grpc.Server, int, health.HealthServicer],
) -> None:
    _, port, _ = served
    with pytest.raises(OSError, match=rf"could not bind the Example gRPC server to .*:{port}"):
        build_grpc_server(
            {},
            health.HealthServicer(),
            address=f"127.0.0.1:{port}",
            max_workers=2,
            options=NO_REUSE_PORT,
            label="Example",
        )
