"""The real KRaft broker: topics, protobuf events, JSON rewards and transactions."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from feedrank.core import codecs
from feedrank.core.codecs import EventDecodeError
from feedrank.core.kafka_topics import ensure_topics
from feedrank.core.settings import Settings
from feedrank.core.time_units import DAY_MS
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.stack.topics import describe_retention, standard_topics
from feedrank.v1 import events_pb2
from tests.support.kafka import CommittedReader, TopicFactory

TS = 1_764_000_000_000


def producer(kafka: KafkaBroker, **config: object) -> Producer:
    return Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True, **config})


def test_feedrank_topics_are_created_with_partitions_and_retention(
    settings_for_kafka: Settings, kafka_admin: AdminClient
) -> None:
    suffix = uuid.uuid4().hex[:6]
    topics = settings_for_kafka.topics.model_copy(
        update={
            name: f"{name}-{suffix}"
            for name in ("decisions", "rewards", "examples", "metrics", "dlq")
        }
    )
    created = ensure_topics(kafka_admin, standard_topics(topics))
    assert sorted(created) == sorted(topics.names())
    assert ensure_topics(kafka_admin, standard_topics(topics)) == []  # idempotent
    metadata = kafka_admin.list_topics(timeout=10).topics
    assert len(metadata[topics.decisions].partitions) == topics.partitions
    retention = describe_retention(kafka_admin, [topics.decisions, topics.rewards, topics.dlq])
    assert retention[topics.decisions] >= 15 * DAY_MS
    assert retention[topics.rewards] >= 15 * DAY_MS
    assert retention[topics.dlq] == 7 * DAY_MS


def test_protobuf_decision_round_trips_through_the_broker(
    kafka: KafkaBroker, new_topic: TopicFactory, consume: CommittedReader
) -> None:
    topic = new_topic("decisions", partitions=3)
    decision = events_pb2.Decision(
        decision_id="d-1",
        event_time_ms=TS,
        user_id="u-1",
        model_version="v7",
        arm="canary",
        exploration_policy=events_pb2.EXPLORATION_POLICY_PLACKETT_LUCE,
        user_features=events_pb2.FeatureVector(numeric={"activity": 0.4}, embedding=[0.5, -0.25]),
        items=[
            events_pb2.ShownItem(post_id=f"p-{i}", position=i, score=1 / (i + 1), propensity=0.5)
            for i in range(5)
        ],
    )
    kafka_producer = producer(kafka)
    kafka_producer.produce(topic, key=b"u-1", value=codecs.encode(decision))
    assert kafka_producer.flush(30) == 0
    [record] = consume(topic, 1)
    assert record.key() == b"u-1"
    assert codecs.decode_decision(record.value()) == decision


def test_json_and_protobuf_rewards_decode_and_malformed_ones_are_rejected(
    kafka: KafkaBroker, new_topic: TopicFactory, consume: CommittedReader
) -> None:
    topic = new_topic("rewards")
    as_json = {
        "decision_id": "d-1",
        "post_id": "p-1",
        "user_id": "u-1",
        "type": "dwell",
        "value": 7.5,
        "ts_ms": TS,
    }
    as_protobuf = events_pb2.Reward(
        decision_id="d-1", post_id="p-2", user_id="u-1", type=events_pb2.REWARD_TYPE_LIKE, ts_ms=TS
    )
    kafka_producer = producer(kafka)
    kafka_producer.produce(
        topic,
        key=b"u-1",
        value=json.dumps(as_json).encode(),
        headers=[("content-type", b"application/json")],
    )
    kafka_producer.produce(topic, key=b"u-1", value=codecs.encode(as_protobuf))
    kafka_producer.produce(topic, key=b"u-1", value=b'{"decision_id": "d-1", "type": "like"}')
    assert kafka_producer.flush(30) == 0

    json_record, protobuf_record, malformed = consume(topic, 3)
    from_json = codecs.decode_reward(json_record.value(), json_record.headers())
    assert from_json.type == events_pb2.REWARD_TYPE_DWELL
    assert codecs.reward_value(from_json) == 7.5
    assert codecs.decode_reward(protobuf_record.value(), protobuf_record.headers()) == as_protobuf
    with pytest.raises(EventDecodeError, match="missing 'post_id'"):
        codecs.decode_reward(malformed.value(), malformed.headers())


def test_transactions_commit_on_a_single_broker(
    kafka: KafkaBroker, new_topic: TopicFactory, consume: CommittedReader
) -> None:
    """Needs the transaction-state topic at replication factor 1, or this hangs."""
    topic = new_topic("txn")
    transactional = producer(kafka, **{"transactional.id": f"test-{uuid.uuid4().hex}"})
    transactional.init_transactions(30)
    transactional.begin_transaction()
    transactional.produce(topic, value=b"aborted")
    transactional.abort_transaction(30)
    transactional.begin_transaction()
    transactional.produce(topic, value=b"committed")
    transactional.commit_transaction(30)
    [record] = consume(topic, 1)
    assert record.value() == b"committed"
