"""Kafka client plumbing shared by every producer: one place for the producer config.

Example::

    from confluent_kafka import Producer
    from feedrank.core.kafka_clients import idempotent_producer_config

    producer = Producer(idempotent_producer_config("127.0.0.1:9092", linger_ms=50))
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
