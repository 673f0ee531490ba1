"""Reading labelled examples from Kafka for evaluation: everything up to the end offsets
the topic had when reading started, read committed."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition

from feedrank.core import codecs
from feedrank.v1 import events_pb2

_POLL_S = 0.5


@dataclass
class ExampleBatch:
    examples: list[events_pb2.LabelledExample] = field(default_factory=list)
    undecodable: int = 0
    complete: bool = True  # False when the deadline came before the end offsets


def read_examples(bootstrap: str, topic: str, timeout_s: float = 60.0) -> ExampleBatch:
    """Every example on ``topic`` from the beginning to the end offsets at the start."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"feedrank-evaluate-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    batch = ExampleBatch()
    try:
        ends = _end_offsets(consumer, topic, timeout_s)
        consumer.assign([TopicPartition(topic, partition, 0) for partition in ends])
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            message = consumer.poll(_POLL_S)
            if message is not None and message.error() is None:
                _add(batch, message.value())
            ends = _unfinished(consumer, topic, ends)
        batch.complete = not ends
    finally:
        consumer.close()
    return batch


def _end_offsets(consumer: Consumer, topic: str, timeout_s: float) -> dict[int, int]:
    """End offset of every non-empty partition of ``topic``."""
    metadata = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
    if metadata.error is not None:
        raise ValueError(f"cannot read topic {topic!r}: {metadata.error}")
    ends = {}
    for partition in metadata.partitions:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s
        )
        if high > low:
            ends[partition] = high
    return ends


def _unfinished(consumer: Consumer, topic: str, ends: dict[int, int]) -> dict[int, int]:
    """The partitions whose position has not reached its end offset yet."""
    positions = consumer.position([TopicPartition(topic, partition) for partition in ends])
    return {tp.partition: ends[tp.partition] for tp in positions if tp.offset < ends[tp.partition]}


def _add(batch: ExampleBatch, payload: bytes | None) -> None:
    try:
        batch.examples.append(codecs.decode(events_pb2.LabelledExample, payload))
    except codecs.EventDecodeError:
        batch.undecodable += 1
