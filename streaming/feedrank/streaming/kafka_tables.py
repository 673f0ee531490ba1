"""Flink SQL DDL for Kafka-backed tables, built in one place for every job.

A table's ``bootstrap`` is a bootstrap string (plaintext) or a
:class:`~feedrank.core.kafka_clients.KafkaAccess`, whose security becomes the
connector's ``properties.*`` (SSL, SASL/SCRAM) for the Java Kafka client inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from feedrank.core.kafka_clients import KafkaTarget, kafka_access

DeliveryGuarantee = Literal["exactly-once", "at-least-once", "none"]
# Kafka's broker default transaction.max.timeout.ms is 15 minutes; stay under it.
SINK_TRANSACTION_TIMEOUT_MS = 10 * 60 * 1000
# Every sink's producer batches for throughput: a transactional sink's records become
# visible when its checkpoint commits (1 s and up), so waiting 20 ms to fill batches of
# up to 256 KiB, lz4-compressed, costs no latency anyone sees. Kafka's defaults (16 KiB,
# 5 ms, uncompressed) cut the join's examples (~180 bytes each) into small requests that
# cost the broker and the job more than the records: 86k-103k shown items/s with the
# defaults against 132k-141k with these (docs/benchmarks.md, streaming "Runs 25-27").
SINK_PRODUCER_PROPERTIES = {"batch.size": "262144", "linger.ms": "20", "compression.type": "lz4"}
# flink-sql-connector-kafka relocates the Kafka clients under this package; a JAAS
# config names its login module by class, so it must name the relocated one.
SHADED_KAFKA_PREFIX = "org.apache.flink.kafka.shaded."


@dataclass(frozen=True)
class KafkaSource:
    topic: str
    bootstrap: KafkaTarget
    group_id: str
    # Stop at the offsets that were latest when the job started (for bounded jobs).
    bounded: bool = False
    startup_mode: Literal["earliest-offset", "latest-offset", "group-offsets"] = "earliest-offset"


@dataclass(frozen=True)
class KafkaSink:
    topic: str
    bootstrap: KafkaTarget
    delivery: DeliveryGuarantee = "exactly-once"
    transactional_id_prefix: str = "feedrank"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connection_options(bootstrap: KafkaTarget) -> dict[str, str]:
    """``properties.bootstrap.servers`` and the security properties of the connector's
    Kafka client (none for plaintext)."""
    properties = kafka_access(bootstrap).java_properties(SHADED_KAFKA_PREFIX)
    return {f"properties.{key}": value for key, value in properties.items()}


def _with_clause(options: dict[str, str]) -> str:
    return ",\n  ".join(f"{_quote(key)} = {_quote(value)}" for key, value in options.items())


RAW_RECORD_COLUMNS = """
  `key` BYTES,
  `value` BYTES,
  `headers` MAP<STRING, BYTES> METADATA
"""


def raw_source_options(source: KafkaSource) -> dict[str, str]:
    options = {
        "connector": "kafka",
        "topic": source.topic,
        **connection_options(source.bootstrap),
        "properties.group.id": source.group_id,
        # Never read aborted or open transactions of upstream exactly-once producers.
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": source.startup_mode,
        "key.format": "raw",
        "key.fields": "key",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
    }
    if source.bounded:
        options["scan.bounded.mode"] = "latest-offset"
    return options


def raw_sink_options(sink: KafkaSink) -> dict[str, str]:
    options = {
        "connector": "kafka",
        "topic": sink.topic,
        **connection_options(sink.bootstrap),
        "key.format": "raw",
        "key.fields": "key",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        "sink.delivery-guarantee": sink.delivery,
        **{f"properties.{key}": value for key, value in SINK_PRODUCER_PROPERTIES.items()},
    }
    if sink.delivery == "exactly-once":
        options["sink.transactional-id-prefix"] = sink.transactional_id_prefix
        options["properties.transaction.timeout.ms"] = str(SINK_TRANSACTION_TIMEOUT_MS)
    return options


# Where each record is on its topic: read-only metadata of a source table.
POSITION_COLUMNS = """,
  `partition` INT METADATA VIRTUAL,
  `offset` BIGINT METADATA VIRTUAL
"""


def raw_table_ddl(table: str, options: dict[str, str], *, positions: bool = False) -> str:
    """A table of raw Kafka records (key, value, headers), byte for byte; with
    ``positions`` (sources only) also each record's partition and offset."""
    columns = RAW_RECORD_COLUMNS + (POSITION_COLUMNS if positions else "")
    return f"CREATE TEMPORARY TABLE `{table}` ({columns}) WITH (\n  {_with_clause(options)}\n)"
