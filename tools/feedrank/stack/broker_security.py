"""A secured client listener for the local Kafka broker: SASL/SCRAM over TLS, with ACLs.

With a :class:`BrokerSecurity` in its :class:`~feedrank.stack.kafka_broker.BrokerConfig`,
the broker's client listener speaks ``SASL_SSL`` instead of plaintext:

* TLS from PEM files (the dev stack's CA, :mod:`feedrank.stack.certificates`): the
  server key and certificate chain in one PEM keystore, the CA as the PEM truststore;
* SCRAM-SHA-512 users, created when the storage is formatted (``--add-scram``), among
  them an admin that is a super user (the broker's own inter-broker identity too);
* the KRaft ``StandardAuthorizer``: a principal may do only what an ACL allows
  (:mod:`feedrank.stack.kafka_acls` writes the roles' ACLs).

The controller listener stays PLAINTEXT on loopback; the broker reaches its controller
there as ``User:ANONYMOUS``, which must therefore be a super user too. Anything that can
connect to the loopback controller port is trusted, as on any single-host dev stack.

Example::

    issued = make_certificates(Path(".feedrank/certs"))
    security = BrokerSecurity.from_certificates(
        issued, admin_password="…", users={"app": "…", "join": "…"}
    )
    config = BrokerConfig(..., security=security)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from feedrank.core.kafka_clients import KafkaAccess, KafkaSecurity, SaslMechanism
from feedrank.stack.certificates import IssuedCertificates

SCRAM_MECHANISM: SaslMechanism = "SCRAM-SHA-512"
AUTHORIZER_CLASS = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
CLIENT_LISTENER = "SASL_SSL"
# Names Kafka's --add-scram parser and a JAAS line take without quoting trouble.
_SAFE_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class BrokerSecurityError(ValueError):
    """A user name or password the broker's tools cannot carry."""


@dataclass(frozen=True)
class BrokerSecurity:
    """TLS files, the SCRAM users (name to password) and the super user of a secured
    local broker. ``repr`` shows no password."""

    ca_file: Path  # PEM CA: the broker's truststore, and what clients trust
    server_cert: Path  # PEM certificate of the broker (SAN 127.0.0.1, localhost)
    server_key: Path  # its PKCS#8 PEM key, unencrypted
    admin_password: str = field(repr=False)
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    admin_user: str = "admin"

    def __post_init__(self) -> None:
        for name, secret in ((self.admin_user, self.admin_password), *self.users.items()):
            for what, text in (("user name", name), ("password", secret)):
                if not text or not set(text) <= _SAFE_CHARACTERS:
                    raise BrokerSecurityError(
                        f"a SCRAM {what} of the local broker must be letters, digits, "
                        f"'-', '_' or '.' (user {name!r})"
                    )

    @classmethod
    def from_certificates(
        cls, issued: IssuedCertificates, *, admin_password: str, users: Mapping[str, str]
    ) -> BrokerSecurity:
        """The broker's TLS from the local CA's files, with these SCRAM users."""
        return cls(
            ca_file=issued.ca_cert,
            server_cert=issued.server_cert,
            server_key=issued.server_key,
            admin_password=admin_password,
            users=dict(users),
        )

    def keystore_file(self, data_dir: Path) -> Path:
        """Where the PEM keystore (key, then certificate chain) is written."""
        return data_dir / "keystore.pem"

    def write_keystore(self, data_dir: Path) -> Path:
        """One PEM file with the server key and its chain (server, then CA), mode 0600:
        Kafka's PEM keystore reads both from ``ssl.keystore.location``."""
        path = self.keystore_file(data_dir)
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(
            self.server_key.read_text() + self.server_cert.read_text() + self.ca_file.read_text()
        )
        return path

    def server_properties(self, data_dir: Path) -> dict[str, str]:
        """The security lines of server.properties (listeners are the caller's)."""
        admin_login = (
            f'{SCRAM_LOGIN_MODULE} required username="{self.admin_user}" '
            f'password="{self.admin_password}";'
        )
        return {
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
            f"listener.name.{CLIENT_LISTENER.lower()}.{SCRAM_MECHANISM.lower()}"
            ".sasl.jaas.config": admin_login,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore_file(data_dir).resolve()),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file.resolve()),
            "ssl.client.auth": "none",  # clients prove who they are by SCRAM
            "authorizer.class.name": AUTHORIZER_CLASS,
            "super.users": f"User:{self.admin_user};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        }

    def format_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create every SCRAM user."""
        everyone = {self.admin_user: self.admin_password, **self.users}
        return [
            argument
            for name, secret in everyone.items()
            for argument in ("--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={secret}]")
        ]

    def client_access(self, bootstrap: str, user: str | None = None) -> KafkaAccess:
        """How a client reaches this broker as ``user`` (default: the admin)."""
        name = user or self.admin_user
        secret = self.admin_password if name == self.admin_user else self.users.get(name)
        if secret is None:
            raise BrokerSecurityError(f"the local broker has no user {name!r}")
        return KafkaAccess(
            bootstrap,
            KafkaSecurity.sasl_ssl(name, secret, ca_file=self.ca_file, mechanism=SCRAM_MECHANISM),
        )
