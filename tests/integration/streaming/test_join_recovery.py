"""``feedrank join`` running unbounded: a crash mid-stream, and an idle partition.

The join runs as it does in production, a ``feedrank join`` process on the embedded
mini-cluster, against the session broker; the reward window is two seconds of event
time, and a final "clock" decision and reward move the watermark past every window.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, Producer

from feedrank.core import codecs
from feedrank.core.settings import Settings, load_settings
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.v1 import events_pb2
from tests.integration.streaming.conftest import JoinProcess
from tests.support.kafka import TopicFactory, free_port

T0 = 1_764_000_000_000
STEP_MS = 5  # event time between consecutive decisions
CLOCK_MS = T0 + 3_600_000  # far past every window
CLOCK_INDEX = 10_000_000  # decision indices of the clock's decisions


def join_settings(kafka: KafkaBroker, state_dir: Path, topics: dict[str, str]) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": kafka.bootstrap},
        paths={"state_dir": state_dir},
        topics=topics,
        time={"reward_window": 2},
        join={
            "max_skew_s": 1,
            "dangling_wait_s": 2,
            "tombstone_hours": 0.001,
            "out_of_orderness_s": 0.2,
            "idleness_s": 2,
        },
        flink={"parallelism": 2, "checkpoint_interval_s": 1.0},
        ports={"streaming_metrics": free_port()},
    )


def make_topics(new_topic: TopicFactory) -> dict[str, str]:
    return {
        "decisions": new_topic("decisions", 2),
        "rewards": new_topic("rewards", 2),
        "examples": new_topic("examples", 2),
        "dlq": new_topic("dlq"),
        "metrics": new_topic("metrics"),
    }


def decision(index: int, items: int = 2, at_ms: int | None = None) -> bytes:
    return codecs.encode(
        events_pb2.Decision(
            decision_id=f"d{index}",
            user_id=f"u{index}",
            event_time_ms=T0 + index * STEP_MS if at_ms is None else at_ms,
            model_version="v1",
            arm="stable",
            items=[
                events_pb2.ShownItem(post_id=f"p{i}", position=i, score=0.5, propensity=0.5)
                for i in range(items)
            ],
        )
    )


def like(index: int, ts_ms: int | None = None) -> bytes:
    document = {
        "decision_id": f"d{index}",
        "post_id": "p0",
        "user_id": f"u{index}",
        "type": "like",
        "ts_ms": T0 + index * STEP_MS + 1 if ts_ms is None else ts_ms,
    }
    return json.dumps(document).encode()


def move_the_clock(
    producer: Producer,
    topics: dict[str, str],
    partitions: int = 2,
    *,
    at_ms: int = CLOCK_MS,
    first_index: int = CLOCK_INDEX,
) -> list[int]:
    """A decision and a reward far in event time on every partition: closes every window.
    Returns the clock decisions' indices (a later clock closes their windows too)."""
    clocks = [first_index + partition for partition in range(partitions)]
    for partition, clock in enumerate(clocks):
        producer.produce(topics["decisions"], decision(clock, 1, at_ms), partition=partition)
        # For no decision: it joins nothing, and waits for its decision past the test's end.
        producer.produce(topics["rewards"], like(clock + 100, at_ms), partition=partition)
    assert producer.flush(30) == 0
    return clocks


def example_keys(
    bootstrap: str, topic: str, expected: int, *, idle_s: float = 90.0, limit_s: float = 420.0
) -> Counter[tuple[str, str]]:
    """Every (decision, post) a read-committed consumer sees: until ``expected`` arrived,
    then 3 s more, so that a duplicate behind them would show too. It waits on progress,
    not on the clock: it gives up only after ``idle_s`` without a new record (a restarted
    job's start-up included) or ``limit_s`` in all."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen: Counter[tuple[str, str]] = Counter()
    started = last_new = time.monotonic()
    deadline = started + limit_s
    try:
        while time.monotonic() < min(deadline, last_new + idle_s):
            records = consumer.consume(500, timeout=0.5)
            for record in records:
                assert record.error() is None, record.error()
                example = codecs.decode(events_pb2.LabelledExample, record.value())
                seen[example.decision_id, example.post_id] += 1
            if records:
                last_new = time.monotonic()
            if seen.total() >= expected:
                deadline = min(deadline, time.monotonic() + 3)
    finally:
        consumer.close()
    return seen


def test_exactly_once_when_the_join_is_killed_mid_stream(
    kafka: KafkaBroker,
    new_topic: TopicFactory,
    join_process: Callable[[Settings], JoinProcess],
    tmp_path: Path,
) -> None:
    decisions, items = 4_000, 2
    topics = make_topics(new_topic)
    settings = join_settings(kafka, tmp_path / "state", topics)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})

    def produce(indices: range) -> None:
        for index in indices:
            key = f"u{index}".encode()
            producer.produce(topics["decisions"], decision(index, items), key=key)
            if index % 4 == 0:  # a quarter are liked: positives
                producer.produce(topics["rewards"], like(index), key=key)
            if index % 500 == 499:
                producer.flush(10)
        assert producer.flush(30) == 0

    half = decisions // 2
    first = join_process(settings)
    first.start()
    first.wait_running()
    produce(range(half))
    first.wait_checkpoint()
    # Mid-stream: the first half's windows are still open (pending in the join's state),
    # and the second half arrives while no join runs.
    first.kill()
    feeder = threading.Thread(target=produce, args=(range(half, decisions),))
    feeder.start()
    second = join_process(settings)
    second.start()
    second.wait_running()
    feeder.join()
    move_the_clock(producer, topics)

    seen = example_keys(kafka.bootstrap, topics["examples"], decisions * items)
    assert "restored from chk-" in second.log()
    duplicates = {key: count for key, count in seen.items() if count > 1}
    assert not duplicates, f"{len(duplicates)} examples twice, e.g. {list(duplicates)[:3]}"
    expected = {(f"d{i}", f"p{p}") for i in range(decisions) for p in range(items)}
    missing = expected - set(seen)
    assert not missing, (
        f"{len(missing)} examples missing, e.g. {sorted(missing)[:3]}; dead letters: "
        f"{dead_letters(kafka.bootstrap, topics['dlq'])[:5]}\n{second.log()[-3000:]}"
    )
    assert set(seen) == expected


def dead_letters(bootstrap: str, topic: str) -> list[str]:
    """The errors of the records on the dead-letter topic (for failure messages)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    errors: list[str] = []
    try:
        for record in consumer.consume(1000, timeout=5):
            if record.error() is None:
                errors.append(codecs.header_value(record.headers(), codecs.DLQ_HEADER_ERROR) or "")
    finally:
        consumer.close()
    return errors


def test_an_idle_partition_does_not_stall_the_output(
    kafka: KafkaBroker,
    new_topic: TopicFactory,
    join_process: Callable[[Settings], JoinProcess],
    tmp_path: Path,
) -> None:
    """Every record in partition 0: partition 1's readers are idle, yet windows close."""
    topics = make_topics(new_topic)
    settings = join_settings(kafka, tmp_path / "state", topics)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for index in range(20):
        producer.produce(topics["decisions"], decision(index), partition=0)
    producer.produce(topics["rewards"], like(0), partition=0)
    move_the_clock(producer, topics, partitions=1)  # partition 0 only

    join = join_process(settings)
    join.start()
    join.wait_running()
    seen = example_keys(kafka.bootstrap, topics["examples"], 40)
    assert len(seen) == 40, "negatives need the watermark to pass the windows"
    assert set(seen.values()) == {1}
