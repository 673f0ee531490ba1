"""Kafka security options: how they become client configs, and that no secret leaks."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from pydantic import SecretStr

from feedrank.core.kafka_clients import (
    KafkaAccess,
    KafkaSecurity,
    admin_config,
    consumer_config,
    idempotent_producer_config,
    kafka_access,
)

PASSWORD = "s3cret-Passw0rd"
CA = Path("/etc/feedrank/ca.pem")


def secured() -> KafkaAccess:
    return KafkaAccess("kafka:9093", KafkaSecurity.sasl_ssl("app", PASSWORD, ca_file=CA))


def test_a_plain_bootstrap_string_is_plaintext_and_adds_no_security_keys() -> None:
    assert kafka_access("kafka:9092") == KafkaAccess("kafka:9092")
    assert admin_config("kafka:9092") == {"bootstrap.servers": "kafka:9092", "log_level": 3}
    assert "security.protocol" not in idempotent_producer_config("kafka:9092")


def test_sasl_ssl_gives_librdkafka_its_mechanism_credentials_and_ca() -> None:
    expected = {
        "bootstrap.servers": "kafka:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "app",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(CA),
    }
    for config in (
        idempotent_producer_config(secured()),
        consumer_config(secured(), "group"),
        admin_config(secured()),
    ):
        assert expected.items() <= config.items()
    assert consumer_config(secured(), "group")["group.id"] == "group"


def test_the_java_properties_name_the_scram_login_module_and_a_pem_truststore() -> None:
    properties = secured().java_properties("org.apache.flink.kafka.shaded.")
    assert properties == {
        "bootstrap.servers": "kafka:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": "org.apache.flink.kafka.shaded.org.apache.kafka.common.security"
        f'.scram.ScramLoginModule required username="app" password="{PASSWORD}";',
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(CA),
    }


def test_a_jaas_password_with_quotes_and_backslashes_is_escaped() -> None:
    security = KafkaSecurity.sasl_ssl("app", 'a"b\\c', mechanism="PLAIN")
    jaas = security.java_properties()["sasl.jaas.config"]
    assert jaas.startswith("org.apache.kafka.common.security.plain.PlainLoginModule required")
    assert 'password="a\\"b\\\\c";' in jaas


def test_a_client_certificate_goes_to_both_clients(tmp_path: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("CERT\n")
    key.write_text("KEY\n")
    security = KafkaSecurity(protocol="SSL", ssl_ca_file=CA, ssl_cert_file=cert, ssl_key_file=key)
    assert security.librdkafka_config() == {
        "security.protocol": "SSL",
        "ssl.ca.location": str(CA),
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
    }
    java = security.java_properties()
    assert (java["ssl.keystore.type"], java["ssl.keystore.key"]) == ("PEM", "KEY\n")
    assert java["ssl.keystore.certificate.chain"] == "CERT\n"


def test_no_repr_str_or_description_shows_the_password() -> None:
    access = secured()
    for text in (repr(access), str(access), repr(access.security), access.security.describe()):
        assert PASSWORD not in text
    assert str(access) == "kafka:9093"
    assert access.security.describe() == "SASL_SSL as app (SCRAM-SHA-512)"


def test_access_survives_pickling_for_flink_workers() -> None:
    access = secured()
    assert pickle.loads(pickle.dumps(access)) == access


def test_as_user_keeps_the_brokers_and_protocol() -> None:
    other = secured().as_user("join", "other-secret")
    assert other.bootstrap == "kafka:9093"
    assert other.security.librdkafka_config()["sasl.username"] == "join"
    assert other.security.ssl_ca_file == CA


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"protocol": "SASL_SSL"}, "needs sasl_username and sasl_password"),
        (
            {"protocol": "SASL_PLAINTEXT", "sasl_username": "app", "sasl_password": SecretStr("")},
            "needs sasl_username and sasl_password",
        ),
        ({"sasl_username": "app"}, "security_protocol is PLAINTEXT"),
        (
            {
                "protocol": "SASL_PLAINTEXT",
                "sasl_username": "a",
                "sasl_password": SecretStr("b"),
                "ssl_ca_file": CA,
            },
            "use SSL or SASL_SSL",
        ),
        ({"protocol": "SSL", "ssl_cert_file": CA}, "go together"),
    ],
)
def test_inconsistent_security_is_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KafkaSecurity(**options)  # type: ignore[arg-type]
