"""The one builder of feedrank's gRPC servers: services, health, reflection, binding.

Every feedrank gRPC service is served the same way: its servicers on a thread pool,
the standard health service beside them (its status set by the caller), reflection over
all of them, and one port bound (or a clear error when it cannot be): with TLS when
``tls`` names a certificate (``feedrank.core.grpc_tls``), in plaintext otherwise, and
never in plaintext beyond loopback unless ``tls.insecure``.

Example::

    from functools import partial

    server, port = build_grpc_server(
        {RANKING_SERVICE: partial(add_RankingServicer_to_server, RankingServicer(...))},
        health.HealthServicer(),
        address="0.0.0.0:50051",
        max_workers=8,
        label="Ranking",
    )
    server.start()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from feedrank.core.grpc_tls import check_plaintext_bind, server_credentials
from feedrank.core.settings import TlsSettings

AddServicer = Callable[[grpc.Server], None]
"""Adds one servicer to a server, e.g. ``partial(add_RankingServicer_to_server, servicer)``."""


def build_grpc_server(
    services: Mapping[str, AddServicer],
    health_servicer: health.HealthServicer,
    *,
    address: str,
    max_workers: int,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    label: str = "",
    tls: TlsSettings | None = None,
) -> tuple[grpc.Server, int]:
    """A gRPC server (not started) serving ``services``, health and reflection; its port.

    ``services`` maps each full service name (for reflection) to what adds its servicer.
    ``address`` is ``host:port`` (port 0 picks a free one: the returned port is the one
    bound). ``options`` are gRPC channel arguments, ``interceptors`` wrap every call, and
    ``label`` names the server in the error raised when the address cannot be bound.
    ``tls`` (default: none, plaintext) are the server's certificate settings.

    Raises:
        OSError: the port is taken (or the address is not one this host can bind);
            ``PlaintextRefused`` for plaintext on a non-loopback address.
    """
    tls = tls or TlsSettings()
    credentials = server_credentials(tls)
    if credentials is None:
        check_plaintext_bind(address, tls, label)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=list(interceptors),
        options=list(options),
    )
    for add_servicer in services.values():
        add_servicer(server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*services, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return server, _bind(server, address, label, credentials)


def _bind(
    server: grpc.Server, address: str, label: str, credentials: grpc.ServerCredentials | None
) -> int:
    """Bind ``address``; grpcio reports a failed bind as port 0 or as a RuntimeError."""
    failure = f"could not bind the {label + ' ' if label else ''}gRPC server to {address}"
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as error:
        raise OSError(f"{failure}: is the port taken by another process?") from error
    if port == 0:
        raise OSError(f"{failure}: is the port taken by another process?")
    return port
