"""Kafka client plumbing: the one place for producer, consumer and admin configs, and
for how a client authenticates (SSL, SASL/SCRAM).

A client is told where Kafka is either by a plain bootstrap string (plaintext) or by a
:class:`KafkaAccess`: the bootstrap string and a :class:`KafkaSecurity`. Settings build
theirs in one place (``settings.kafka.access``). The password is a pydantic
``SecretStr``: no repr, str or log line of these types shows it; only the client
configs built for a connection hold it in clear.

Example::

    from pathlib import Path
    from confluent_kafka import Consumer, Producer
    from feedrank.core.kafka_clients import (
        KafkaAccess, KafkaSecurity, consumer_config, idempotent_producer_config,
    )

    producer = Producer(idempotent_producer_config("127.0.0.1:9092", linger_ms=50))
    secured = KafkaAccess(
        "kafka.example:9093",
        KafkaSecurity.sasl_ssl("app", "app-secret", ca_file=Path("ca.pem")),
    )
    consumer = Consumer(consumer_config(secured, "feedrank-example"))
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import SecretStr

DEFAULT_LINGER_MS = 20
"""How long a record waits to share a produce request with others (ms)."""

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]
SECURITY_PROTOCOLS: tuple[str, ...] = get_args(SecurityProtocol)
SASL_MECHANISMS: tuple[str, ...] = get_args(SaslMechanism)

# The JAAS login module of each SASL mechanism, under the Kafka clients' package.
_LOGIN_MODULES = {
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
}


def security_problem(
    protocol: str,
    mechanism: str,
    *,
    username: str | None,
    password: SecretStr | None,
    ca_file: Path | None,
    cert_file: Path | None,
    key_file: Path | None,
) -> str | None:
    """What is inconsistent in these security options, or None when they fit together.

    The names are the settings' (``kafka.sasl_username`` ...), which the dataclass
    fields mirror.
    """
    if protocol not in SECURITY_PROTOCOLS:
        return f"security_protocol {protocol!r} is not one of {', '.join(SECURITY_PROTOCOLS)}"
    if mechanism not in SASL_MECHANISMS:
        return f"sasl_mechanism {mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}"
    return _sasl_problem(protocol, username, password) or _ssl_problem(
        protocol, ca_file, cert_file, key_file
    )


def _sasl_problem(protocol: str, username: str | None, password: SecretStr | None) -> str | None:
    if protocol.startswith("SASL_"):
        if not username or password is None or not password.get_secret_value():
            return (
                f"security_protocol {protocol} needs sasl_username and sasl_password "
                "(FEEDRANK_KAFKA__SASL_USERNAME, FEEDRANK_KAFKA__SASL_PASSWORD)"
            )
    elif username is not None or password is not None:
        return (
            f"sasl_username/sasl_password are set but security_protocol is {protocol}: "
            "use SASL_SSL (or SASL_PLAINTEXT) to authenticate with them, or unset them"
        )
    return None


def _ssl_problem(
    protocol: str, ca_file: Path | None, cert_file: Path | None, key_file: Path | None
) -> str | None:
    if not protocol.endswith("SSL") and any(p is not None for p in (ca_file, cert_file, key_file)):
        return (
            f"ssl_ca_file/ssl_cert_file/ssl_key_file are set but security_protocol is "
            f"{protocol}: use SSL or SASL_SSL, or unset them"
        )
    if (cert_file is None) != (key_file is None):
        return "ssl_cert_file and ssl_key_file go together: set both (client auth) or neither"
    return None


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client proves who it is to Kafka and which brokers it trusts.

    ``protocol`` is Kafka's ``security.protocol``: the SASL ones need ``sasl_username``
    and ``sasl_password`` (``sasl_mechanism`` SCRAM-SHA-512 by default); the SSL ones
    trust ``ssl_ca_file`` (a PEM CA; unset: the system's trust store) and, for SSL
    client authentication, present ``ssl_cert_file`` with ``ssl_key_file`` (PEM).
    The default is plaintext with no identity. Inconsistent combinations are refused.
    """

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = field(default=None, repr=False)
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None

    def __post_init__(self) -> None:
        problem = security_problem(
            self.protocol,
            self.sasl_mechanism,
            username=self.sasl_username,
            password=self.sasl_password,
            ca_file=self.ssl_ca_file,
            cert_file=self.ssl_cert_file,
            key_file=self.ssl_key_file,
        )
        if problem is not None:
            raise ValueError(problem)

    @classmethod
    def sasl_ssl(
        cls,
        username: str,
        password: str,
        *,
        ca_file: Path | None = None,
        mechanism: SaslMechanism = "SCRAM-SHA-512",
    ) -> KafkaSecurity:
        """SASL over TLS (the usual secured listener): ``username`` and ``password`` by
        ``mechanism``, trusting the brokers ``ca_file`` signed."""
        return cls(
            protocol="SASL_SSL",
            sasl_mechanism=mechanism,
            sasl_username=username,
            sasl_password=SecretStr(password),
            ssl_ca_file=ca_file,
        )

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.protocol.endswith("SSL")

    def as_user(self, username: str, password: str) -> KafkaSecurity:
        """The same connection as another SASL identity (one per role)."""
        return replace(self, sasl_username=username, sasl_password=SecretStr(password))

    def librdkafka_config(self) -> dict[str, str]:
        """librdkafka (confluent_kafka) keys for this security; empty for plaintext, so
        a plaintext client's config is exactly what it was before security existed."""
        if self.protocol == "PLAINTEXT":
            return {}
        config: dict[str, str] = {"security.protocol": self.protocol}
        if self.uses_sasl:
            config["sasl.mechanisms"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username or ""
            config["sasl.password"] = _reveal(self.sasl_password)
        if self.uses_ssl:
            if self.ssl_ca_file is not None:
                config["ssl.ca.location"] = str(self.ssl_ca_file)
            if self.ssl_cert_file is not None and self.ssl_key_file is not None:
                config["ssl.certificate.location"] = str(self.ssl_cert_file)
                config["ssl.key.location"] = str(self.ssl_key_file)
        return config

    def java_properties(self, package_prefix: str = "") -> dict[str, str]:
        """Java Kafka client properties for this security (the Flink Kafka connector's
        ``properties.*``); empty for plaintext.

        ``package_prefix`` is where a shaded jar relocated the Kafka clients (the Flink
        SQL connector: ``org.apache.flink.kafka.shaded.``): the JAAS login module is
        named by class, so it must be the relocated one.
        """
        if self.protocol == "PLAINTEXT":
            return {}
        properties: dict[str, str] = {"security.protocol": self.protocol}
        if self.uses_sasl:
            module = package_prefix + _LOGIN_MODULES[self.sasl_mechanism]
            properties["sasl.mechanism"] = self.sasl_mechanism
            properties["sasl.jaas.config"] = (
                f"{module} required username={_jaas_quote(self.sasl_username or '')} "
                f"password={_jaas_quote(_reveal(self.sasl_password))};"
            )
        if self.uses_ssl:
            if self.ssl_ca_file is not None:
                properties["ssl.truststore.type"] = "PEM"
                properties["ssl.truststore.location"] = str(self.ssl_ca_file)
            if self.ssl_cert_file is not None and self.ssl_key_file is not None:
                # A PEM keystore holds key and chain in one file; Java reads the
                # client's own key and certificate from these two entries instead.
                properties["ssl.keystore.type"] = "PEM"
                properties["ssl.keystore.key"] = self.ssl_key_file.read_text()
                properties["ssl.keystore.certificate.chain"] = self.ssl_cert_file.read_text()
        return properties

    def describe(self) -> str:
        """A line for logs and status: the protocol and the identity, never a secret."""
        if not self.uses_sasl:
            return self.protocol
        return f"{self.protocol} as {self.sasl_username} ({self.sasl_mechanism})"


PLAINTEXT = KafkaSecurity()
"""No encryption, no identity: the default local stack."""


@dataclass(frozen=True)
class KafkaAccess:
    """Where Kafka is (``bootstrap``) and how to reach it (``security``).

    ``str()`` is the bootstrap string, so messages that name the broker stay as they
    were; the repr never shows the password.
    """

    bootstrap: str
    security: KafkaSecurity = PLAINTEXT

    def __str__(self) -> str:
        return self.bootstrap

    def librdkafka_config(self) -> dict[str, str]:
        """``bootstrap.servers`` and the security keys of a librdkafka client."""
        return {"bootstrap.servers": self.bootstrap, **self.security.librdkafka_config()}

    def java_properties(self, package_prefix: str = "") -> dict[str, str]:
        """``bootstrap.servers`` and the security properties of a Java Kafka client."""
        return {
            "bootstrap.servers": self.bootstrap,
            **self.security.java_properties(package_prefix),
        }

    def as_user(self, username: str, password: str) -> KafkaAccess:
        """The same brokers and protocol as another SASL identity."""
        return KafkaAccess(self.bootstrap, self.security.as_user(username, password))


KafkaTarget = str | KafkaAccess
"""What a client is given: a plaintext bootstrap string, or a :class:`KafkaAccess`."""


def kafka_access(target: KafkaTarget) -> KafkaAccess:
    """``target`` as a :class:`KafkaAccess` (a bare string: plaintext)."""
    return target if isinstance(target, KafkaAccess) else KafkaAccess(target)


def _reveal(secret: SecretStr | None) -> str:
    return "" if secret is None else secret.get_secret_value()


def _jaas_quote(value: str) -> str:
    """A JAAS option value: double-quoted, with backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def idempotent_producer_config(
    bootstrap: KafkaTarget, *, linger_ms: int = DEFAULT_LINGER_MS, **overrides: Any
) -> dict[str, Any]:
    """The config of an idempotent, batched librdkafka producer talking to ``bootstrap``
    (a bootstrap string, or a :class:`KafkaAccess` with its security keys).

    Idempotence with ``acks=all`` means a retried send is never written twice and
    records of one partition stay in order; ``lz4`` compresses each batch; ``log_level``
    3 keeps librdkafka to errors. ``overrides`` are librdkafka keys that replace or add
    to these, dotted names passed as a mapping (``**{"message.timeout.ms": 60_000}``).
    """
    if linger_ms < 0:
        raise ValueError(f"linger_ms must be >= 0, got {linger_ms}")
    config: dict[str, Any] = {
        **kafka_access(bootstrap).librdkafka_config(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": linger_ms,
        "compression.type": "lz4",
        "log_level": 3,
    }
    config.update(overrides)
    return config


def consumer_config(
    bootstrap: KafkaTarget,
    group_id: str,
    *,
    auto_commit: bool = False,
    isolation_level: str | None = "read_committed",
    offset_reset: str | None = "earliest",
    log_level: int | None = 3,
    auto_offset_store: bool | None = None,
    partition_eof: bool | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The config of a librdkafka consumer of ``bootstrap`` (a bootstrap string, or a
    :class:`KafkaAccess`) in group ``group_id``.

    By default a consumer reads only committed records (never one of an aborted
    transaction), commits its offsets itself (``auto_commit`` False), starts at the
    beginning of a partition with no usable offset (``offset_reset`` "earliest") and
    logs only errors (``log_level`` 3). ``auto_offset_store`` False stops librdkafka
    storing the offset of each record handed out; ``partition_eof`` asks for (True) or
    refuses (False) an event at each partition's end. ``None`` for any of these leaves
    the key out: librdkafka's default applies. ``overrides`` are librdkafka keys that
    replace or add to these, dotted names passed as a mapping.
    """
    config: dict[str, Any] = {
        **kafka_access(bootstrap).librdkafka_config(),
        "group.id": group_id,
        "enable.auto.commit": auto_commit,
    }
    if isolation_level is not None:
        config["isolation.level"] = isolation_level
    if offset_reset is not None:
        config["auto.offset.reset"] = offset_reset
    if log_level is not None:
        config["log_level"] = log_level
    if auto_offset_store is not None:
        config["enable.auto.offset.store"] = auto_offset_store
    if partition_eof is not None:
        config["enable.partition.eof"] = partition_eof
    config.update(overrides)
    return config


def admin_config(bootstrap: KafkaTarget, *, log_level: int | None = 3) -> dict[str, Any]:
    """The config of a librdkafka admin client of ``bootstrap`` (a bootstrap string, or
    a :class:`KafkaAccess`); ``log_level`` 3 keeps it to errors, 0 silences it (probes
    of a broker that may be down), ``None`` leaves librdkafka's default."""
    config: dict[str, Any] = kafka_access(bootstrap).librdkafka_config()
    if log_level is not None:
        config["log_level"] = log_level
    return config
