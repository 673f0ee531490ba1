"""TLS for feedrank's gRPC servers and clients, from ``TlsSettings``: the one home.

* :func:`server_credentials`: TLS (and, with ``client_ca_file``, mutual TLS) for a
  server. Each new connection's handshake checks whether the certificate files changed;
  a rotated pair is loaded then, without a restart. A pair that does not load (half
  written, or a key that does not match its certificate) is skipped with a warning and
  the previous one keeps serving until the files are whole.
* :func:`open_channel`: a client channel, with TLS when ``ca_file`` or a client
  certificate is set, else plaintext.
* :func:`check_plaintext_bind`: a server refuses to listen in plaintext on an address
  other than loopback unless ``tls.insecure`` says so.

Example::

    channel = open_channel("127.0.0.1:50051", settings.tls)
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import grpc

from feedrank.core.durable_files import file_stamp
from feedrank.core.settings import TlsSettings

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


class PlaintextRefused(OSError):
    """A server was asked to listen in plaintext where others could reach it."""


class ReloadingServerCertificates:
    """A server's certificate, key and (for mutual TLS) client CA, read again whenever
    one of the files changes (checked at each new connection's handshake)."""

    def __init__(self, cert_file: Path, key_file: Path, client_ca_file: Path | None) -> None:
        self.files = (cert_file, key_file, *((client_ca_file,) if client_ca_file else ()))
        self.cert_file, self.key_file, self.client_ca_file = cert_file, key_file, client_ca_file
        self._lock = threading.Lock()
        self._stamp = self._stamps()
        self.initial = self._read()  # raises: a server with unreadable certificates won't start
        self.reloads = 0

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """The new configuration when the files changed and load, else None (keep the
        current one). gRPC calls this before each handshake."""
        with self._lock:
            stamp = self._stamps()
            if stamp == self._stamp:
                return None
            try:
                configuration = self._read()
            except (OSError, ValueError, ssl.SSLError) as error:
                log.warning("TLS certificate files changed but do not load yet: %s", error)
                return None
            self._stamp = stamp
            self.reloads += 1
            log.info("TLS certificate reloaded from %s", self.cert_file)
            return configuration

    def _stamps(self) -> tuple[tuple[int, int], ...]:
        return tuple(file_stamp(path) for path in self.files)

    def _read(self) -> grpc.ServerCertificateConfiguration:
        # The ssl module checks that the key belongs to the certificate; gRPC would only
        # fail the handshakes.
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            self.cert_file, self.key_file
        )
        chain, key = self.cert_file.read_bytes(), self.key_file.read_bytes()
        client_ca = self.client_ca_file.read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_certificate_configuration([(key, chain)], client_ca)


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials | None:
    """TLS server credentials that follow rotated files, or None (plaintext)."""
    if tls.cert_file is None or tls.key_file is None:
        return None
    certificates = ReloadingServerCertificates(tls.cert_file, tls.key_file, tls.client_ca_file)
    # The stubs miss that the fetcher returns None for "unchanged" (grpc's own docs).
    fetch = cast(Callable[[], grpc.ServerCertificateConfiguration], certificates.fetch)
    return grpc.dynamic_ssl_server_credentials(
        certificates.initial,
        fetch,
        require_client_authentication=tls.client_ca_file is not None,
    )


def channel_credentials(tls: TlsSettings) -> grpc.ChannelCredentials | None:
    """TLS channel credentials (trusting ``ca_file``, presenting the client certificate
    if set), or None for plaintext."""
    if not tls.dials_tls:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=tls.ca_file.read_bytes() if tls.ca_file else None,
        private_key=tls.client_key_file.read_bytes() if tls.client_key_file else None,
        certificate_chain=tls.client_cert_file.read_bytes() if tls.client_cert_file else None,
    )


def channel_options(tls: TlsSettings) -> list[tuple[str, Any]]:
    """Channel arguments TLS needs: the name to check the certificate against."""
    return [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []


def open_channel(
    address: str, tls: TlsSettings, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """A channel to ``address``: TLS when the settings say so, else plaintext."""
    credentials = channel_credentials(tls)
    if credentials is None:
        return grpc.insecure_channel(address, options=list(options))
    return grpc.secure_channel(address, credentials, options=[*options, *channel_options(tls)])


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address, IPv6 possibly in brackets) is this machine only."""
    host = host.strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_plaintext_bind(address: str, tls: TlsSettings, label: str) -> None:
    """Refuse a plaintext server on anything but loopback, unless ``tls.insecure``."""
    host = address.rsplit(":", 1)[0]
    if tls.serves_tls or tls.insecure or is_loopback(host):
        return
    raise PlaintextRefused(
        f"refusing to serve {label or 'gRPC'} in plaintext on {address}: anyone who reaches "
        "it could read and call it. Set tls.cert_file and tls.key_file (`feedrank certs` "
        "makes them), or allow it with --insecure (FEEDRANK_TLS__INSECURE=true)"
    )
