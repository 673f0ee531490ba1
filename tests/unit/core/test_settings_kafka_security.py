"""Kafka security settings: validated together, carried to child processes, never shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from feedrank.core.settings import load_settings, settings_to_environment

PASSWORD = "n0t-for-logs"


@pytest.fixture(autouse=True)
def _no_feedrank_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("FEEDRANK_"):
            monkeypatch.delenv(key)


def secured_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDRANK_KAFKA__BOOTSTRAP_SERVERS", "kafka:9093")
    monkeypatch.setenv("FEEDRANK_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FEEDRANK_KAFKA__SASL_USERNAME", "explore")
    monkeypatch.setenv("FEEDRANK_KAFKA__SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("FEEDRANK_KAFKA__SSL_CA_FILE", "/etc/feedrank/ca.pem")


def test_the_default_is_plaintext() -> None:
    access = load_settings().kafka.access
    assert access.security.protocol == "PLAINTEXT"
    assert access.librdkafka_config() == {"bootstrap.servers": "127.0.0.1:9092"}


def test_security_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    secured_environment(monkeypatch)
    access = load_settings().kafka.access
    assert access.librdkafka_config() == {
        "bootstrap.servers": "kafka:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "explore",
        "sasl.password": PASSWORD,
        "ssl.ca.location": "/etc/feedrank/ca.pem",
    }


def test_the_password_is_in_no_repr_or_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    secured_environment(monkeypatch)
    settings = load_settings()
    for text in (
        repr(settings),
        str(settings.kafka),
        repr(settings.kafka.access),
        settings.model_dump_json(),
    ):
        assert PASSWORD not in text


def test_a_child_process_gets_the_password_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    secured_environment(monkeypatch)
    original = load_settings()
    environment = settings_to_environment(original)
    assert environment["FEEDRANK_KAFKA__SASL_PASSWORD"] == PASSWORD
    for key in list(os.environ):
        if key.startswith("FEEDRANK_"):
            monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    assert load_settings() == original


def test_sasl_without_a_password_is_refused_with_the_variable_to_set() -> None:
    with pytest.raises(ValidationError, match="FEEDRANK_KAFKA__SASL_PASSWORD"):
        load_settings(kafka={"security_protocol": "SASL_SSL", "sasl_username": "explore"})


def test_a_ca_file_without_ssl_is_refused() -> None:
    with pytest.raises(ValidationError, match="use SSL or SASL_SSL"):
        load_settings(kafka={"ssl_ca_file": Path("ca.pem")})


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValidationError, match="security_protocol"):
        load_settings(kafka={"security_protocol": "KERBEROS"})
