"""The first Flink SQL job on the real mini-cluster: Kafka -> Flink -> Kafka, exactly once."""

from __future__ import annotations

import uuid

from confluent_kafka import Producer
from pyflink.table import TableEnvironment

from feedrank.core import codecs
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.streaming.kafka_tables import KafkaSink, KafkaSource
from feedrank.streaming.relay import relay
from feedrank.v1 import events_pb2
from tests.support.kafka import CommittedReader, TopicFactory

TS = 1_764_000_000_000
RECORDS = 500


def test_relay_moves_every_record_byte_for_byte_exactly_once(
    kafka: KafkaBroker,
    table_env: TableEnvironment,
    new_topic: TopicFactory,
    consume: CommittedReader,
) -> None:
    source_topic = new_topic("source", partitions=3)
    sink_topic = new_topic("sink", partitions=3)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    sent: dict[bytes, bytes] = {}
    for index in range(RECORDS):
        decision = events_pb2.Decision(
            decision_id=f"d-{index}",
            event_time_ms=TS + index,
            user_id=f"u-{index % 17}",
            items=[events_pb2.ShownItem(post_id=f"p-{index}", position=0, propensity=1.0)],
        )
        value = codecs.encode(decision)
        sent[decision.decision_id.encode()] = value
        producer.produce(
            source_topic,
            key=decision.decision_id.encode(),
            value=value,
            headers=[("trace", decision.decision_id.encode())],
        )
    assert producer.flush(30) == 0

    job = relay(
        table_env,
        KafkaSource(
            source_topic, kafka.bootstrap, group_id=f"relay-{uuid.uuid4().hex}", bounded=True
        ),
        KafkaSink(sink_topic, kafka.bootstrap, transactional_id_prefix=f"relay-{uuid.uuid4().hex}"),
    )
    job.wait(120_000)

    received = consume.read(sink_topic, at_most=RECORDS * 2, timeout_s=60, idle_s=5)
    assert len(received) == RECORDS, "every record relayed once, none twice"
    by_key = {bytes(record.key() or b""): record for record in received}
    assert by_key.keys() == sent.keys()
    for key, record in by_key.items():
        assert record.value() == sent[key]
        assert record.headers() == [("trace", key)]
        assert codecs.decode_decision(record.value()).decision_id == key.decode()
