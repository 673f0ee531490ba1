"""Read-committed readers of the join benchmark: drain spans and live latencies.

What a downstream consumer sees: :func:`drain_span` times a backlog by the records'
Kafka timestamps, :func:`live_latencies` times each live record from its produce call
to its visibility.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from benchmarks.join_throughput_workload import PARTITIONS, Sizes, decision_bytes, like_bytes
from feedrank.core import codecs
from feedrank.v1 import events_pb2


def committed_consumer(bootstrap: str, topic: str, *, from_end: bool) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    offset = OFFSET_END if from_end else 0
    consumer.assign([TopicPartition(topic, p, offset) for p in range(PARTITIONS)])
    return consumer


def drain_span(bootstrap: str, topic: str, wanted: Callable[[bytes], bool], count: int) -> float:
    """Seconds between the first and the last of ``count`` wanted records (by the
    record timestamps the sink set when it sent them); waits at most 10 minutes."""
    consumer = committed_consumer(bootstrap, topic, from_end=False)
    stamps: list[int] = []
    deadline = time.monotonic() + 600
    try:
        while len(stamps) < count and time.monotonic() < deadline:
            for record in consumer.consume(1000, timeout=0.5):
                assert record.error() is None, record.error()
                value = record.value()
                if value is not None and wanted(value):
                    stamps.append(record.timestamp()[1])
    finally:
        consumer.close()
    if len(stamps) < count:
        raise RuntimeError(f"only {len(stamps)} of {count} records on {topic} in 10 minutes")
    return max(1, max(stamps) - min(stamps)) / 1000


def backlog_example(value: bytes) -> bool:
    return codecs.decode(events_pb2.LabelledExample, value).decision_id.startswith("b")


def backlog_decision(value: bytes) -> bool:
    return codecs.decode(events_pb2.Decision, value).decision_id.startswith("b")


def live_latencies(
    producer: Producer,
    bootstrap: str,
    produce_to: tuple[str, str | None],
    read_from: str,
    decision_of: Callable[[bytes], str | None],
    sizes: Sizes,
) -> list[float]:
    """Seconds from producing each live decision's reward (or, without a rewards
    topic, the decision itself) to its record being visible read-committed."""
    decisions_topic, rewards_topic = produce_to
    consumer = committed_consumer(bootstrap, read_from, from_end=True)
    consumer.consume(1, timeout=1.0)  # resolve the end offsets before producing
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for record in consumer.consume(500, timeout=0.2):
                value = record.value()
                decision_id = None if value is None else decision_of(value)
                if decision_id is not None and decision_id not in seen:
                    seen[decision_id] = time.monotonic()

    reader = threading.Thread(target=read, name="latency-reader")
    reader.start()
    rng = random.Random(11)
    interval = 1.0 / sizes.live_rate
    count = int(sizes.live_rate * sizes.live_s)
    started = time.monotonic()
    for index in range(count):
        time.sleep(max(0.0, started + index * interval - time.monotonic()))
        decision_id = f"l{index}"
        now_ms = int(time.time() * 1000)
        producer.produce(decisions_topic, decision_bytes(decision_id, now_ms, sizes.items, rng))
        if rewards_topic is not None:
            producer.produce(rewards_topic, like_bytes(decision_id, now_ms + 1))
        producer.poll(0)
        sent[decision_id] = time.monotonic()
    producer.flush(30)
    deadline = time.monotonic() + 60
    while len(seen) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    reader.join()
    consumer.close()
    return sorted(seen[key] - sent[key] for key in seen if key in sent)


def live_positive(value: bytes) -> str | None:
    example = codecs.decode(events_pb2.LabelledExample, value)
    return example.decision_id if example.engaged and example.decision_id[0] == "l" else None


def live_decision(value: bytes) -> str | None:
    decision_id = codecs.decode(events_pb2.Decision, value).decision_id
    return decision_id if decision_id.startswith("l") else None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]
