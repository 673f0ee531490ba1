"""The streaming join on the real mini-cluster and broker, in event time.

The reward window is shrunk to seconds of event time; bounded sources end with a
final watermark, which closes every window, so no test waits on the wall clock.
"""

from __future__ import annotations

import json
import uuid

from confluent_kafka import Producer

from feedrank.core import codecs
from feedrank.core.metrics_kinds import AGGREGATE_KIND, METRICS_KIND_HEADER
from feedrank.core.settings import Settings
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.streaming.flink_environment import FlinkJobOptions, create_stream_environment
from feedrank.streaming.join_job import JoinJobConfig, JoinTopics, build_join_job
from feedrank.streaming.join_logic import JoinConfig
from feedrank.v1 import events_pb2
from tests.support.kafka import CommittedReader, TopicFactory

T0 = 1_764_000_000_000
WINDOW_MS = 10_000


def decision(index: int, time_ms: int, items: int = 2) -> events_pb2.Decision:
    return events_pb2.Decision(
        decision_id=f"d{index}",
        user_id=f"u{index}",
        event_time_ms=time_ms,
        model_version="v1",
        arm="stable",
        items=[
            events_pb2.ShownItem(post_id=f"p{i}", position=i, score=0.5, propensity=0.5)
            for i in range(items)
        ],
    )


def reward(decision_id: str, post: str, kind: str, ts: int) -> bytes:
    return json.dumps(
        {
            "decision_id": decision_id,
            "post_id": post,
            "user_id": "u",
            "type": kind,
            "value": 1.0,
            "ts_ms": ts,
        }
    ).encode()


def test_join_labels_every_shown_item_exactly_once(
    kafka: KafkaBroker,
    settings_for_kafka: Settings,
    new_topic: TopicFactory,
    consume: CommittedReader,
) -> None:
    topics = JoinTopics(
        new_topic("decisions", 2),
        new_topic("rewards", 2),
        new_topic("examples", 2),
        new_topic("dlq"),
        new_topic("metrics"),
    )
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    for index in range(4):
        producer.produce(
            topics.decisions,
            key=f"u{index}".encode(),
            value=codecs.encode(decision(index, T0 + index * 1000)),
        )
    producer.produce(topics.decisions, value=b"\xff\xffnot a decision")
    producer.produce(topics.rewards, value=b"{broken json")  # intake's DLQ
    # The clock moves on past every window, so the watermark closes them.
    producer.produce(topics.decisions, value=codecs.encode(decision(99, T0 + 60_000, items=1)))
    for value in (
        reward("d0", "p0", "like", T0 + 500),  # positive
        reward("d1", "p1", "view", T0 + 1_100),  # breakdown only...
        reward("d1", "p1", "comment", T0 + 1_200),  # ...then positive with both
        reward("d2", "p0", "like", T0 + 2_000 + WINDOW_MS + 1),  # late
        reward("d3", "p0", "save", T0 + 3_000 - 500),  # before its decision: joins
        reward("nope", "p0", "like", T0 + 4_000),  # dangling
        reward("d99", "p0", "view", T0 + 60_000),
    ):
        producer.produce(topics.rewards, key=b"u", value=value)
    assert producer.flush(30) == 0

    stream_env, table_env = create_stream_environment(
        settings_for_kafka,
        FlinkJobOptions(parallelism=1, checkpoint_interval_s=1.0),
        extra={"restart-strategy.type": "none"},  # fail the test, do not retry forever
    )
    run_id = uuid.uuid4().hex[:8]
    config = JoinJobConfig(
        bootstrap=kafka.bootstrap,
        topics=topics,
        join=JoinConfig(
            reward_window_ms=WINDOW_MS,
            max_skew_ms=1_000,
            dangling_wait_ms=5_000,
            tombstone_ms=30_000,
            prompt_horizon_ms=300,
        ),
        group_id=f"join-{run_id}",
        transactional_id_prefix=f"join-{run_id}",
        bounded=True,
        out_of_orderness_ms=1_000,
    )
    build_join_job(stream_env, table_env, config)
    stream_env.execute("join-test")

    examples = [
        codecs.decode(events_pb2.LabelledExample, record.value())
        for record in consume.read(topics.examples, at_most=50, timeout_s=30, idle_s=3)
    ]
    by_item = {(e.decision_id, e.post_id): e for e in examples}
    assert len(by_item) == len(examples) == 9, "one example per shown item, none twice"
    assert by_item[("d0", "p0")].engaged
    assert not by_item[("d0", "p1")].engaged
    both = by_item[("d1", "p1")]
    assert both.engaged
    assert (both.breakdown.views, both.breakdown.comments) == (1, 1)
    assert not by_item[("d2", "p0")].engaged  # its like came after the window
    assert by_item[("d3", "p0")].engaged
    assert by_item[("d99", "p0")].breakdown.views == 1

    letters = consume.read(topics.dlq, at_most=10, timeout_s=30, idle_s=3)
    errors = sorted(
        codecs.header_value(r.headers(), codecs.DLQ_HEADER_ERROR) or "" for r in letters
    )
    assert len(errors) == 4
    assert any(e.startswith("dangling reward") for e in errors)
    assert any(e.startswith("late reward") for e in errors)
    assert any("not a protobuf Decision" in e for e in errors)
    assert any("not valid JSON" in e for e in errors)

    # The 5-minute aggregates count every joined engagement, and as prompt those within
    # 300 ms of their impression: d1's comment (200 ms) and d3's early save, not d0's
    # like (500 ms) nor d2's late one (not joined).
    assert topics.metrics is not None
    aggregates = [
        codecs.decode(events_pb2.EngagementAggregate, record.value())
        for record in consume.read(topics.metrics, at_most=50, timeout_s=30, idle_s=3)
        if codecs.header_value(record.headers(), METRICS_KIND_HEADER) == AGGREGATE_KIND
    ]
    attributed = [a for a in aggregates if a.model_version == "v1"]
    assert sum(a.engagements for a in attributed) == 3
    assert sum(a.prompt_engagements for a in attributed) == 2
