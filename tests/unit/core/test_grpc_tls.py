"""TLS on a real gRPC server on loopback: TLS and mutual TLS answer, plaintext and
certificate-less clients are refused, a rotated certificate is served without a restart,
and plaintext beyond loopback is refused unless allowed."""

from __future__ import annotations

import shutil
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from feedrank.core.grpc_server import build_grpc_server
from feedrank.core.grpc_tls import (
    PlaintextRefused,
    ReloadingServerCertificates,
    check_plaintext_bind,
    is_loopback,
    open_channel,
)
from feedrank.core.settings import TlsSettings
from feedrank.stack.certificates import (
    IssuedCertificates,
    make_certificates,
    renew_server_certificate,
)


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> IssuedCertificates:
    return make_certificates(tmp_path_factory.mktemp("certs"), clients=("local-operator",))


def serve(tls: TlsSettings) -> tuple[grpc.Server, int]:
    server, port = build_grpc_server(
        {}, health.HealthServicer(), address="127.0.0.1:0", max_workers=2, tls=tls
    )
    server.start()
    return server, port


def healthy(port: int, tls: TlsSettings) -> bool:
    """One health check over a fresh channel; False when the connection is refused."""
    with open_channel(f"127.0.0.1:{port}", tls) as channel:
        try:
            stub: Any = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            if code != grpc.StatusCode.UNAVAILABLE:
                raise
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture
def tls_server(issued: IssuedCertificates, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS server whose certificate files are copies it may rotate."""
    directory = tmp_path / "served"
    shutil.copytree(issued.directory, directory)
    copy = IssuedCertificates(directory)
    server, port = serve(TlsSettings(cert_file=copy.server_cert, key_file=copy.server_key))
    yield port, directory
    server.stop(None)


def test_tls_answers_clients_that_trust_the_ca_and_refuses_plaintext(
    tls_server: tuple[int, Path], issued: IssuedCertificates
) -> None:
    port, _ = tls_server
    assert healthy(port, TlsSettings(ca_file=issued.ca_cert))
    assert not healthy(port, TlsSettings())  # plaintext against TLS


def test_mutual_tls_needs_a_client_certificate(issued: IssuedCertificates) -> None:
    server, port = serve(
        TlsSettings(
            cert_file=issued.server_cert,
            key_file=issued.server_key,
            client_ca_file=issued.ca_cert,
        )
    )
    try:
        operator = issued.client("local-operator")
        assert healthy(
            port,
            TlsSettings(
                ca_file=issued.ca_cert,
                client_cert_file=operator.cert,
                client_key_file=operator.key,
            ),
        )
        assert not healthy(port, TlsSettings(ca_file=issued.ca_cert))
    finally:
        server.stop(None)


def served_certificate(port: int, ca_file: Path) -> bytes:
    """The DER certificate the server presents to a new connection (ALPN h2, as gRPC)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as wrapped,
    ):
        certificate = wrapped.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def test_a_rotated_certificate_is_served_without_a_restart(
    tls_server: tuple[int, Path], issued: IssuedCertificates
) -> None:
    port, directory = tls_server
    before = served_certificate(port, issued.ca_cert)
    assert before == ssl.PEM_cert_to_DER_cert((directory / "server.pem").read_text())
    renewed = renew_server_certificate(directory)
    after = served_certificate(port, issued.ca_cert)
    assert after != before
    assert after == ssl.PEM_cert_to_DER_cert(renewed.cert.read_text())
    assert healthy(port, TlsSettings(ca_file=issued.ca_cert))


def test_a_pair_that_does_not_load_keeps_the_old_one(
    issued: IssuedCertificates, tmp_path: Path
) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(issued.server_cert, cert)
    shutil.copy(issued.server_key, key)
    certificates = ReloadingServerCertificates(cert, key, None)
    assert certificates.fetch() is None  # unchanged
    shutil.copy(issued.client("local-operator").key, key)  # a key of another certificate
    assert certificates.fetch() is None  # refused: the old pair keeps serving
    shutil.copy(issued.server_key, key)
    assert certificates.fetch() is not None
    assert certificates.reloads == 1


def test_plaintext_beyond_loopback_is_refused_unless_allowed() -> None:
    with pytest.raises(PlaintextRefused, match="--insecure"):
        build_grpc_server(
            {}, health.HealthServicer(), address="0.0.0.0:0", max_workers=1, label="Test"
        )
    check_plaintext_bind("0.0.0.0:50051", TlsSettings(insecure=True), "Test")
    check_plaintext_bind("127.0.0.1:50051", TlsSettings(), "Test")
    check_plaintext_bind("[::1]:50051", TlsSettings(), "Test")
    assert is_loopback("localhost")
    assert is_loopback("127.0.0.2")
    assert not is_loopback("10.0.0.1")


def test_settings_refuse_half_a_pair(issued: IssuedCertificates) -> None:
    with pytest.raises(ValueError, match="go together"):
        TlsSettings(cert_file=issued.server_cert)
    with pytest.raises(ValueError, match="go together"):
        TlsSettings(client_cert_file=issued.server_cert)
    with pytest.raises(ValueError, match="mutual TLS"):
        TlsSettings(client_ca_file=issued.ca_cert)
