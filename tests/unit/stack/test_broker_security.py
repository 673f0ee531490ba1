"""The secured local broker's configuration and the roles' ACLs (no broker started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from feedrank.core.settings import TopicSettings
from feedrank.stack.broker_security import BrokerSecurity, BrokerSecurityError
from feedrank.stack.kafka_acls import role_acls
from feedrank.stack.kafka_broker import BrokerConfig, KafkaBrokerError

ADMIN_PASSWORD = "admin-Secret1"
APP_PASSWORD = "app-Secret2"


def parse(properties: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in properties.splitlines() if line)


def security(tmp_path: Path) -> BrokerSecurity:
    return BrokerSecurity(
        ca_file=tmp_path / "ca.pem",
        server_cert=tmp_path / "server.pem",
        server_key=tmp_path / "server.key",
        admin_password=ADMIN_PASSWORD,
        users={"app": APP_PASSWORD},
    )


def secured_config(tmp_path: Path) -> BrokerConfig:
    """A broker on 19092 (controller 19093) with :func:`security`'s listener and users."""
    return BrokerConfig(
        data_dir=tmp_path,
        jar_dir=tmp_path,
        port=19092,
        controller_port=19093,
        security=security(tmp_path),
    )


def test_the_client_listener_is_sasl_ssl_and_the_controller_stays_plaintext(
    tmp_path: Path,
) -> None:
    config = secured_config(tmp_path)
    properties = parse(config.server_properties())
    assert properties["listeners"] == "SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert properties["advertised.listeners"] == "SASL_SSL://127.0.0.1:19092"
    assert properties["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
    assert properties["inter.broker.listener.name"] == "SASL_SSL"
    assert properties["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert properties["ssl.keystore.type"] == properties["ssl.truststore.type"] == "PEM"
    assert properties["authorizer.class.name"].endswith("StandardAuthorizer")
    assert properties["super.users"] == "User:admin;User:ANONYMOUS"
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    assert config.access.security.describe() == "SASL_SSL as admin (SCRAM-SHA-512)"


def test_every_user_is_created_at_format_time(tmp_path: Path) -> None:
    assert security(tmp_path).format_arguments() == [
        "--add-scram",
        f"SCRAM-SHA-512=[name=admin,password={ADMIN_PASSWORD}]",
        "--add-scram",
        f"SCRAM-SHA-512=[name=app,password={APP_PASSWORD}]",
    ]


def test_no_repr_shows_a_password(tmp_path: Path) -> None:
    config = secured_config(tmp_path)
    for text in (repr(config), repr(config.access), repr(security(tmp_path).client_access("x:1"))):
        assert ADMIN_PASSWORD not in text
        assert APP_PASSWORD not in text


def test_a_password_the_format_tool_would_misread_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BrokerSecurityError, match="letters, digits"):
        BrokerSecurity(
            ca_file=tmp_path, server_cert=tmp_path, server_key=tmp_path, admin_password="a,b]"
        )


def test_a_secured_broker_runs_alone(tmp_path: Path) -> None:
    with pytest.raises(KafkaBrokerError, match="alone"):
        BrokerConfig(
            data_dir=tmp_path,
            jar_dir=tmp_path,
            port=19092,
            controller_port=19093,
            quorum_voters=((1, 19093), (2, 19094)),
            security=security(tmp_path),
        )


TOPIC, READ, WRITE = ResourceType.TOPIC, AclOperation.READ, AclOperation.WRITE


def _allowed(users: dict[str, str]) -> set[tuple[object, ...]]:
    return {
        (b.principal, b.restype, b.name, b.operation) for b in role_acls(TopicSettings(), users)
    }


def test_apps_write_rewards_and_entities_only() -> None:
    allowed = _allowed({"app": "app-user"})
    assert allowed == {
        ("User:app-user", TOPIC, topic, WRITE)
        for topic in ("feedrank.rewards", "feedrank.posts", "feedrank.users", "feedrank.graph")
    }


def test_the_join_reads_decisions_and_rewards_and_writes_examples_in_transactions() -> None:
    bindings = role_acls(TopicSettings(), {"join": "join"})
    allowed = _allowed({"join": "join"})
    assert ("User:join", TOPIC, "feedrank.decisions", READ) in allowed
    assert ("User:join", TOPIC, "feedrank.rewards", READ) in allowed
    assert ("User:join", TOPIC, "feedrank.examples", WRITE) in allowed
    assert ("User:join", TOPIC, "feedrank.decisions", WRITE) not in allowed
    transactional = [b for b in bindings if b.restype == ResourceType.TRANSACTIONAL_ID]
    assert [(b.name, b.resource_pattern_type) for b in transactional] == [
        ("feedrank-join", ResourcePatternType.PREFIXED)
    ]
    assert any(b.operation == AclOperation.IDEMPOTENT_WRITE for b in bindings)


def test_the_learner_reads_examples_and_never_writes_them() -> None:
    allowed = _allowed({"learner": "learner"})
    assert ("User:learner", TOPIC, "feedrank.examples", READ) in allowed
    assert not any(
        topic == "feedrank.examples" and operation == WRITE for _, _, topic, operation in allowed
    )
