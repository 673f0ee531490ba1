"""The Kafka client configs: each caller's config is exactly the one it wrote by hand."""

from __future__ import annotations

from typing import Any

import pytest

from feedrank.core.kafka_clients import consumer_config, idempotent_producer_config


def test_the_producer_config_is_idempotent_batched_and_quiet() -> None:
    assert idempotent_producer_config("kafka:9092") == {
        "bootstrap.servers": "kafka:9092",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "compression.type": "lz4",
        "log_level": 3,
    }


def test_producer_overrides_replace_and_add_keys() -> None:
    config = idempotent_producer_config(
        "kafka:9092",
        linger_ms=200,
        **{"queue.buffering.max.messages": 100_000, "message.timeout.ms": 120_000},
    )
    assert config == {
        "bootstrap.servers": "kafka:9092",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 200,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 100_000,
        "message.timeout.ms": 120_000,
        "log_level": 3,
    }


def test_a_negative_linger_is_refused() -> None:
    with pytest.raises(ValueError, match="linger_ms"):
        idempotent_producer_config("kafka:9092", linger_ms=-1)


def test_the_default_consumer_reads_committed_from_the_start_and_commits_itself() -> None:
    # The training source, the online learner and the deploy aggregate feed.
    assert consumer_config("kafka:9092", "group") == {
        "bootstrap.servers": "kafka:9092",
        "group.id": "group",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "log_level": 3,
    }


def test_the_feature_update_consumer_stores_no_offsets() -> None:
    config = consumer_config("kafka:9092", "group", auto_offset_store=False)
    assert config == {
        "bootstrap.servers": "kafka:9092",
        "group.id": "group",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "log_level": 3,
    }


def test_the_catalogue_consumer_leaves_isolation_and_reset_to_librdkafka() -> None:
    config = consumer_config(
        "kafka:9092",
        "group",
        isolation_level=None,
        offset_reset=None,
        partition_eof=False,
    )
    assert config == {
        "bootstrap.servers": "kafka:9092",
        "group.id": "group",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "log_level": 3,
    }


def test_the_metrics_exporter_commits_automatically_at_librdkafkas_log_level() -> None:
    config = consumer_config("kafka:9092", "group", auto_commit=True, log_level=None)
    assert config == {
        "bootstrap.servers": "kafka:9092",
        "group.id": "group",
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
    }


def test_consumer_overrides_replace_and_add_keys() -> None:
    overrides: dict[str, Any] = {"auto.offset.reset": "latest", "security.protocol": "SSL"}
    config = consumer_config("kafka:9092", "group", **overrides)
    assert config["auto.offset.reset"] == "latest"
    assert config["security.protocol"] == "SSL"
