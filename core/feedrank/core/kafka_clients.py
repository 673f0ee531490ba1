"""Kafka client plumbing: the one place for producer and consumer configs.

Example::

    from confluent_kafka import Consumer, Producer
    from feedrank.core.kafka_clients import consumer_config, idempotent_producer_config

    producer = Producer(idempotent_producer_config("127.0.0.1:9092", linger_ms=50))
    consumer = Consumer(consumer_config("127.0.0.1:9092", "feedrank-example"))
"""

from __future__ import annotations

from typing import Any

DEFAULT_LINGER_MS = 20
"""How long a record waits to share a produce request with others (ms)."""


def idempotent_producer_config(
    bootstrap: str, *, linger_ms: int = DEFAULT_LINGER_MS, **overrides: Any
) -> dict[str, Any]:
    """The config of an idempotent, batched librdkafka producer talking to ``bootstrap``.

    Idempotence with ``acks=all`` means a retried send is never written twice and
    records of one partition stay in order; ``lz4`` compresses each batch; ``log_level``
    3 keeps librdkafka to errors. ``overrides`` are librdkafka keys that replace or add
    to these, dotted names passed as a mapping (``**{"message.timeout.ms": 60_000}``),
    e.g. for SSL or SASL (``**{"security.protocol": "SASL_SSL", ...}``).
    """
    if linger_ms < 0:
        raise ValueError(f"linger_ms must be >= 0, got {linger_ms}")
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": linger_ms,
        "compression.type": "lz4",
        "log_level": 3,
    }
    config.update(overrides)
    return config


def consumer_config(
    bootstrap: str,
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
    """The config of a librdkafka consumer of ``bootstrap`` in group ``group_id``.

    By default a consumer reads only committed records (never one of an aborted
    transaction), commits its offsets itself (``auto_commit`` False), starts at the
    beginning of a partition with no usable offset (``offset_reset`` "earliest") and
    logs only errors (``log_level`` 3). ``auto_offset_store`` False stops librdkafka
    storing the offset of each record handed out; ``partition_eof`` asks for (True) or
    refuses (False) an event at each partition's end. ``None`` for any of these leaves
    the key out: librdkafka's default applies. ``overrides`` are librdkafka keys that
    replace or add to these, dotted names passed as a mapping, e.g. for SSL or SASL
    (``**{"security.protocol": "SASL_SSL", ...}``).
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
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
