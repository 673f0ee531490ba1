"""A local certificate authority for the dev stack: TLS for gRPC and Kafka, client identities.

``feedrank certs`` calls :func:`make_certificates`, which runs the ``openssl`` command
line (no private key ever leaves the directory, and every key file is mode 0600)::

    <directory>/ca.pem  ca.key            the local CA (trust ca.pem; keep ca.key private)
    <directory>/server.pem  server.key    one server certificate for every local service:
                                          SAN localhost and 127.0.0.1 (and any --host)
    <directory>/clients/<name>.pem .key   one client certificate per identity, CN = name
                                          (the deploy service maps a CN to a role)

Existing files are kept: running it again only adds what is missing, so a server that
already trusts the CA keeps working. :func:`renew_server_certificate` issues a fresh
server certificate from the same CA (what a rotation test needs, and what an operator
does before the old one expires); servers reload it without a restart.

Example::

    from pathlib import Path
    from feedrank.stack.certificates import make_certificates

    issued = make_certificates(Path(".feedrank/certs"), clients=("local-operator",))
    issued.server_cert, issued.client("local-operator").cert
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOSTS = ("localhost", "127.0.0.1")
DEFAULT_DAYS = 825  # the longest validity Apple's TLS clients accept for a server certificate
CA_NAME = "feedrank local CA"


class CertificateError(RuntimeError):
    """openssl is missing, or one of its commands failed (its output is in the message)."""


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class IssuedCertificates:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def server(self) -> KeyPair:
        return KeyPair(self.server_cert, self.server_key)

    def client(self, name: str) -> KeyPair:
        return KeyPair(
            self.directory / "clients" / f"{name}.pem", self.directory / "clients" / f"{name}.key"
        )


def make_certificates(
    directory: Path,
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    clients: Sequence[str] = (),
    days: int = DEFAULT_DAYS,
) -> IssuedCertificates:
    """A CA, a server certificate for ``hosts`` and a client certificate per name in
    ``clients`` under ``directory``; files already there are kept."""
    issued = IssuedCertificates(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not issued.ca_cert.exists() or not issued.ca_key.exists():
        _make_ca(issued, days)
    if not issued.server_cert.exists() or not issued.server_key.exists():
        _issue(issued, issued.server, common_name=hosts[0], hosts=hosts, days=days)
    for name in clients:
        pair = issued.client(name)
        if not pair.cert.exists() or not pair.key.exists():
            pair.cert.parent.mkdir(parents=True, exist_ok=True)
            _issue(issued, pair, common_name=name, hosts=(), days=days)
    return issued


def renew_server_certificate(
    directory: Path, *, hosts: Sequence[str] = DEFAULT_HOSTS, days: int = DEFAULT_DAYS
) -> KeyPair:
    """Replace the server certificate and key with fresh ones from the same CA. Both
    files are swapped in by rename, so a server reading them never sees half a file."""
    issued = IssuedCertificates(directory)
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        fresh = KeyPair(Path(scratch) / "server.pem", Path(scratch) / "server.key")
        _issue(issued, fresh, common_name=hosts[0], hosts=hosts, days=days)
        os.replace(fresh.key, issued.server_key)
        os.replace(fresh.cert, issued.server_cert)
    return issued.server


def _make_ca(issued: IssuedCertificates, days: int) -> None:
    _openssl(
        "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", str(issued.ca_key), "-out", str(issued.ca_cert),
        "-days", str(days), "-subj", f"/CN={CA_NAME}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    issued.ca_key.chmod(0o600)


def _issue(
    issued: IssuedCertificates,
    pair: KeyPair,
    *,
    common_name: str,
    hosts: Sequence[str],
    days: int,
) -> None:
    """A key and a certificate signed by the CA: a server's (``hosts`` as its subject
    alternative names) or, with no hosts, a client's."""
    with tempfile.TemporaryDirectory() as scratch:
        request = Path(scratch) / "request.csr"
        extensions = Path(scratch) / "extensions.cnf"
        usage = "serverAuth,clientAuth" if hosts else "clientAuth"
        lines = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={usage}",
        ]
        if hosts:
            lines.append(f"subjectAltName={','.join(_alt_name(host) for host in hosts)}")
        extensions.write_text("\n".join(lines) + "\n")
        _openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(pair.key), "-out", str(request), "-subj", f"/CN={common_name}",
        )  # fmt: skip
        pair.key.chmod(0o600)
        _openssl(
            "x509", "-req", "-in", str(request), "-CA", str(issued.ca_cert),
            "-CAkey", str(issued.ca_key), "-CAcreateserial", "-out", str(pair.cert),
            "-days", str(days), "-sha256", "-extfile", str(extensions),
        )  # fmt: skip
        (issued.directory / "ca.srl").unlink(missing_ok=True)


def _alt_name(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"DNS:{host}"
    return f"IP:{host}"


def _openssl(*arguments: str) -> None:
    executable = shutil.which("openssl")
    if executable is None:
        raise CertificateError(
            "openssl is not installed: install it (Debian: apt-get install openssl)"
        )
    result = subprocess.run(
        [executable, *arguments], capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        raise CertificateError(
            f"openssl {arguments[0]} failed ({result.returncode}): {result.stderr.strip()}"
        )
