"""DecisionLog re-reads decisions by position from a real broker: forward, back, across
partitions, past transaction markers, with a cache far smaller than what it reads."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer

from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.streaming.decision_log import DecisionLog, DecisionLogConfig
from feedrank.streaming.join_logic import DecisionUnavailable
from feedrank.streaming.label_state import LogPosition
from tests.support.kafka import TopicFactory


def test_every_record_is_read_by_position_in_any_order(
    kafka: KafkaBroker, new_topic: TopicFactory
) -> None:
    topic = new_topic("decisions", partitions=2)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    for index in range(3_000):
        producer.produce(topic, f"decision-{index}".encode(), partition=index % 2)
    assert producer.flush(30) == 0
    # A few records' worth of cache: nearly every read goes to the broker.
    log = DecisionLog(DecisionLogConfig(kafka.bootstrap, topic, cache_bytes=200))
    try:
        # Forward (the window closes), then back and across partitions (positives of
        # older decisions after a restore), then forward again.
        wanted = [(0, 2), (0, 3), (1, 2), (0, 900), (0, 5), (1, 1_499), (1, 0), (0, 1_200)]
        for partition, offset in wanted:
            index = 2 * offset + partition
            assert log.payload(LogPosition(partition, offset)) == f"decision-{index}".encode()
        assert log.reads == len(wanted)
        log.remember(LogPosition(1, 7), b"seen by the join")
        assert log.payload(LogPosition(1, 7)) == b"seen by the join"
        assert log.hits == 1
    finally:
        log.close()


def test_an_offset_without_a_decision_is_unavailable_not_guessed(
    kafka: KafkaBroker, new_topic: TopicFactory
) -> None:
    """A transactional producer's commit marker takes an offset no record has."""
    topic = new_topic("decisions")
    producer = Producer(
        {"bootstrap.servers": kafka.bootstrap, "transactional.id": uuid.uuid4().hex}
    )
    producer.init_transactions(30)
    for batch in range(2):
        producer.begin_transaction()
        producer.produce(topic, f"decision-{batch}".encode())
        producer.commit_transaction(30)
    log = DecisionLog(DecisionLogConfig(kafka.bootstrap, topic, read_timeout_s=10))
    try:
        assert log.payload(LogPosition(0, 0)) == b"decision-0"
        with pytest.raises(DecisionUnavailable, match="no record at offset 1"):
            log.payload(LogPosition(0, 1))  # the first transaction's commit marker
        assert log.payload(LogPosition(0, 2)) == b"decision-1"
    finally:
        log.close()
