"""Settings of the gRPC servers' and clients' transport security (TLS and mutual TLS)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from feedrank.core.settings.group import SettingsGroup


class TlsSettings(SettingsGroup):
    """TLS for the Ranking and Deploy gRPC servers and every feedrank client of them.

    Servers: ``cert_file`` and ``key_file`` turn TLS on (rotated files are read again
    without a restart); ``client_ca_file`` also requires each client to present a
    certificate that CA signed (mutual TLS). Clients: ``ca_file`` is the CA they trust,
    ``client_cert_file``/``client_key_file`` the certificate they present. ``feedrank
    certs`` makes all of them for the local stack.
    """

    cert_file: Path | None = Field(
        default=None, description="Server certificate chain (PEM); with key_file, turns TLS on."
    )
    key_file: Path | None = Field(default=None, description="Server private key (PEM).")
    client_ca_file: Path | None = Field(
        default=None,
        description="CA (PEM) that signs client certificates: set, every client must present "
        "one (mutual TLS), and the deploy service maps its common name to a role.",
    )
    ca_file: Path | None = Field(
        default=None,
        description="CA (PEM) clients trust for the servers; set, clients connect with TLS.",
    )
    client_cert_file: Path | None = Field(
        default=None, description="Certificate chain (PEM) clients present (mutual TLS)."
    )
    client_key_file: Path | None = Field(
        default=None, description="Private key (PEM) of client_cert_file."
    )
    server_name: str | None = Field(
        default=None,
        description="Name clients check the server certificate against, when the address "
        "they dial is not in it (e.g. 'localhost' for a certificate without the IP).",
    )
    insecure: bool = Field(
        default=False,
        description="Allow a server to listen in plaintext on an address other than loopback "
        "(refused otherwise: anyone on the network could read and call it).",
    )

    @property
    def serves_tls(self) -> bool:
        return self.cert_file is not None

    @property
    def dials_tls(self) -> bool:
        return self.ca_file is not None or self.client_cert_file is not None

    @model_validator(mode="after")
    def _pairs_complete(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file go together: set both or neither")
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError(
                "tls.client_cert_file and tls.client_key_file go together: set both or neither"
            )
        if self.client_ca_file is not None and self.cert_file is None:
            raise ValueError("tls.client_ca_file (mutual TLS) needs tls.cert_file and key_file")
        return self
