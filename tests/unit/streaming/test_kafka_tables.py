from __future__ import annotations

from pathlib import Path

from feedrank.core.kafka_clients import KafkaAccess, KafkaSecurity
from feedrank.streaming.kafka_tables import (
    SINK_PRODUCER_PROPERTIES,
    SINK_TRANSACTION_TIMEOUT_MS,
    KafkaSink,
    KafkaSource,
    raw_sink_options,
    raw_source_options,
    raw_table_ddl,
)


def test_source_reads_committed_and_can_be_bounded() -> None:
    options = raw_source_options(KafkaSource("t", "127.0.0.1:1", "g", bounded=True))
    assert options["properties.isolation.level"] == "read_committed"
    assert options["scan.bounded.mode"] == "latest-offset"
    assert "scan.bounded.mode" not in raw_source_options(KafkaSource("t", "h:1", "g"))


def test_exactly_once_sink_is_transactional_within_the_broker_maximum() -> None:
    options = raw_sink_options(KafkaSink("t", "h:1", transactional_id_prefix="job-1"))
    assert options["sink.delivery-guarantee"] == "exactly-once"
    assert options["sink.transactional-id-prefix"] == "job-1"
    assert int(options["properties.transaction.timeout.ms"]) == SINK_TRANSACTION_TIMEOUT_MS
    assert SINK_TRANSACTION_TIMEOUT_MS <= 15 * 60 * 1000
    at_least_once = raw_sink_options(KafkaSink("t", "h:1", delivery="at-least-once"))
    assert "sink.transactional-id-prefix" not in at_least_once


def test_every_sink_producer_batches_and_compresses() -> None:
    for delivery in ("exactly-once", "at-least-once"):
        options = raw_sink_options(KafkaSink("t", "h:1", delivery=delivery))
        assert int(options["properties.batch.size"]) >= 64 * 1024
        assert 0 < int(options["properties.linger.ms"]) <= 100  # far under a checkpoint
        assert options["properties.compression.type"] == "lz4"
    assert {f"properties.{key}" for key in SINK_PRODUCER_PROPERTIES} <= set(options)


def test_ddl_quotes_option_values() -> None:
    ddl = raw_table_ddl("src", {"topic": "it's"})
    assert "CREATE TEMPORARY TABLE `src`" in ddl
    assert "'topic' = 'it''s'" in ddl


def test_a_secured_table_gives_the_connector_its_security_properties() -> None:
    access = KafkaAccess(
        "kafka:9093",
        KafkaSecurity.sasl_ssl("join", "it's-secret", ca_file=Path("/certs/ca.pem")),
    )
    source = raw_source_options(KafkaSource("t", access, "g"))
    sink = raw_sink_options(KafkaSink("t", access))
    for options in (source, sink):
        assert options["properties.bootstrap.servers"] == "kafka:9093"
        assert options["properties.security.protocol"] == "SASL_SSL"
        assert options["properties.sasl.mechanism"] == "SCRAM-SHA-512"
        assert options["properties.sasl.jaas.config"].startswith(
            "org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram."
            'ScramLoginModule required username="join"'
        )
        assert options["properties.ssl.truststore.type"] == "PEM"
        assert options["properties.ssl.truststore.location"] == "/certs/ca.pem"
    # The DDL quotes the password's apostrophe like any other value.
    assert "it''s-secret" in raw_table_ddl("t", source)
    plaintext = raw_source_options(KafkaSource("t", "h:1", "g"))
    assert not any(key.startswith("properties.s") for key in plaintext)
