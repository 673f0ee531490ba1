"""Reward intake on the real mini-cluster and broker: valid rewards out, the rest dead-lettered."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from pyflink.table import TableEnvironment

from feedrank.core import codecs
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.streaming.intake_job import run_intake
from feedrank.streaming.kafka_tables import KafkaSink, KafkaSource
from feedrank.streaming.reward_intake import STAGE, VALID_REWARD_COLUMNS, register_reward_intake
from feedrank.v1 import events_pb2
from tests.support.kafka import CommittedReader, TopicFactory

TS = 1_764_000_000_000  # a whole minute
Headers = list[tuple[str, str | bytes | None]]
JSON_HEADER: Headers = [(codecs.CONTENT_TYPE_HEADER, codecs.JSON_CONTENT_TYPE.encode())]
PROTOBUF_HEADER: Headers = [(codecs.CONTENT_TYPE_HEADER, codecs.PROTOBUF_CONTENT_TYPE.encode())]


@dataclass(frozen=True)
class Case:
    key: bytes | None
    value: bytes | None
    headers: Headers
    # For a malformed record: a fragment its dead letter's error must contain.
    error: str = ""


def _pb(type_name: str = "like", **fields: Any) -> bytes:
    document: dict[str, Any] = {"decision_id": "d", "post_id": "p", "user_id": "u", "ts_ms": TS}
    document |= fields
    reward = events_pb2.Reward(**document)
    reward.type = codecs.REWARD_TYPES.get(type_name, codecs.RewardTypeValue(42))
    return codecs.encode(reward)


def _json(**fields: object) -> bytes:
    document = {"decision_id": "d", "post_id": "p", "user_id": "u", "type": "like", "ts_ms": TS}
    return json.dumps(document | fields).encode()


def _reward(index: int) -> events_pb2.Reward:
    reward = events_pb2.Reward(
        decision_id=f"d-{index}",
        post_id=f"p-{index}",
        user_id=f"u-{index % 7}",
        type=codecs.REWARD_TYPES[("like", "dwell", "share")[index % 3]],
        ts_ms=TS + index * 1000,
    )
    if index % 5:
        reward.value = index / 2
    return reward


def _app_json(reward: events_pb2.Reward) -> bytes:
    """JSON as apps write it: the type in capitals, the value left out when it is 1."""
    document = json.loads(codecs.encode_reward_json(reward))
    document["type"] = document["type"].upper()
    if not reward.HasField("value"):
        del document["value"]
    return json.dumps(document).encode()


def _valid_cases(count: int) -> dict[str, tuple[Case, events_pb2.Reward]]:
    """Protobuf with and without content-type, JSON with and without it."""
    cases = {}
    for index in range(count):
        reward = _reward(index)
        value, headers = [
            (codecs.encode(reward), []),
            (codecs.encode(reward), PROTOBUF_HEADER),
            (codecs.encode_reward_json(reward), JSON_HEADER),
            (_app_json(reward), []),
        ][index % 4]
        cases[reward.decision_id] = (Case(reward.user_id.encode(), value, headers), reward)
    return cases


def _malformed_cases() -> list[Case]:
    nan_json = _json().replace(b'"ts_ms"', b'"value": NaN, "ts_ms"')
    bad: list[tuple[bytes | None, Headers, str]] = [
        (_json()[:-3], JSON_HEADER, "not valid JSON"),
        (_json(type="superlike"), [], "type"),
        (_json(post_id=None), [], "post_id"),
        (_json(decision_id="  "), JSON_HEADER, "decision_id"),
        (_json(value=-1.0), [], "value"),
        (nan_json, [], "value"),
        (_pb(value=float("nan")), [], "value"),
        (_json(ts_ms=5), [], "ts_ms"),
        (_pb(ts_ms=10**15), PROTOBUF_HEADER, "ts_ms"),
        (_pb(type_name="superlike"), [], "type"),
        (b"\xff\x00\x13garbage\x07", [], "protobuf"),
        (b"", [], "empty"),
        (None, [], "empty"),
        (_json(ts_ms=10**30), [], "unexpected ValueError"),
        (b"[" * 5000 + b"]" * 5000, [], "unexpected RecursionError"),
        (_pb(), JSON_HEADER, "not valid JSON"),
    ]
    return [
        Case(None if index == 0 else f"bad-{index}".encode(), value, headers, error=error)
        for index, (value, headers, error) in enumerate(bad)
    ]


class Located:
    """Delivery reports: where each produced case landed."""

    def __init__(self) -> None:
        self.where: dict[tuple[int, int], Case] = {}

    def report(self, case: Case) -> Callable[[KafkaError | None, Message], None]:
        def delivered(error: KafkaError | None, message: Message) -> None:
            assert error is None, error
            self.where[(message.partition() or 0, message.offset() or 0)] = case

        return delivered


def _produce(bootstrap: str, topic: str, cases: list[Case], partitions: int) -> Located:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    located = Located()
    for index, case in enumerate(cases):
        producer.produce(
            topic,
            key=case.key,
            value=case.value,
            headers=case.headers,
            partition=index % partitions,
            on_delivery=located.report(case),
        )
    assert producer.flush(30) == 0
    assert len(located.where) == len(cases)
    return located


def _sink(topic: str, bootstrap: str) -> KafkaSink:
    return KafkaSink(topic, bootstrap, transactional_id_prefix=f"intake-{uuid.uuid4().hex}")


def _source(topic: str, bootstrap: str) -> KafkaSource:
    return KafkaSource(topic, bootstrap, group_id=f"intake-{uuid.uuid4().hex}", bounded=True)


def _text_headers(record: Message) -> dict[str, str]:
    headers = record.headers() or []
    assert isinstance(headers, list)
    return {
        name: value.decode() if isinstance(value, bytes) else value or "" for name, value in headers
    }


def _assert_valid(records: list[Message], expected: dict[str, events_pb2.Reward]) -> None:
    decoded = {}
    for record in records:
        assert _text_headers(record) == {codecs.CONTENT_TYPE_HEADER: codecs.JSON_CONTENT_TYPE}
        reward = codecs.decode_reward(record.value(), record.headers())
        assert record.key() == reward.user_id.encode()
        decoded[reward.decision_id] = reward
    assert decoded.keys() == expected.keys()
    for decision_id, reward in decoded.items():
        sent = expected[decision_id]
        assert (reward.post_id, reward.user_id, reward.type, reward.ts_ms) == (
            sent.post_id,
            sent.user_id,
            sent.type,
            sent.ts_ms,
        )
        assert codecs.reward_value(reward) == codecs.reward_value(sent)


def _assert_dead(records: list[Message], topic: str, located: Located) -> set[tuple[int, int]]:
    """Every dead letter names its original record; returns where those records were."""
    seen = set()
    for record in records:
        headers = _text_headers(record)
        where = (int(headers[codecs.DLQ_HEADER_PARTITION]), int(headers[codecs.DLQ_HEADER_OFFSET]))
        case = located.where[where]
        assert headers[codecs.DLQ_HEADER_TOPIC] == topic
        assert headers[codecs.DLQ_HEADER_STAGE] == STAGE
        assert case.error, f"valid record {case} was dead-lettered"
        assert case.error in headers[codecs.DLQ_HEADER_ERROR]
        assert record.key() == case.key
        letter = codecs.decode(events_pb2.DeadLetter, record.value())
        assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
            topic,
            *where,
        )
        assert (letter.key, letter.value) == (case.key or b"", case.value or b"")
        assert letter.error == headers[codecs.DLQ_HEADER_ERROR]
        assert letter.stage == STAGE
        assert letter.failed_at_ms > TS
        seen.add(where)
    return seen


def test_every_reward_is_either_decoded_or_dead_lettered_exactly_once(
    kafka: KafkaBroker,
    table_env: TableEnvironment,
    new_topic: TopicFactory,
    consume: CommittedReader,
) -> None:
    rewards_topic = new_topic("rewards", partitions=3)
    valid_topic = new_topic("valid", partitions=3)
    dlq_topic = new_topic("dlq")
    valid = _valid_cases(40)
    malformed = _malformed_cases()
    cases = [case for case, _ in valid.values()]
    for position, case in enumerate(malformed):
        cases.insert(position * 3, case)
    located = _produce(kafka.bootstrap, rewards_topic, cases, partitions=3)

    job = run_intake(
        table_env,
        _source(rewards_topic, kafka.bootstrap),
        _sink(valid_topic, kafka.bootstrap),
        _sink(dlq_topic, kafka.bootstrap),
    )
    job.wait(120_000)

    valid_out = consume.read(valid_topic, at_most=len(cases) * 2, timeout_s=60, idle_s=5)
    dead_out = consume.read(dlq_topic, at_most=len(cases) * 2, timeout_s=60, idle_s=5)
    _assert_valid(valid_out, {decision_id: reward for decision_id, (_, reward) in valid.items()})
    dead_at = _assert_dead(dead_out, rewards_topic, located)
    assert len(dead_out) == len(dead_at) == len(malformed), "each malformed record once"
    assert len(valid_out) + len(dead_out) == len(cases), "nothing lost, nothing doubled"


def test_valid_rewards_have_an_event_time_attribute_and_decode_once(
    kafka: KafkaBroker, table_env: TableEnvironment, new_topic: TopicFactory
) -> None:
    rewards_topic = new_topic("rewards", partitions=2)
    # Three, three and two rewards in consecutive minutes, plus dead records.
    minutes = [Case(b"u", _pb(decision_id=f"d-{i}", ts_ms=TS + i * 20_000), []) for i in range(8)]
    _produce(kafka.bootstrap, rewards_topic, minutes + _malformed_cases(), partitions=2)
    statements = table_env.create_statement_set()
    valid = register_reward_intake(
        table_env,
        _source(rewards_topic, kafka.bootstrap),
        _sink(new_topic("dlq"), kafka.bootstrap),
        statements,
    )
    schema = valid.get_resolved_schema()
    assert list(schema.get_column_names()) == list(VALID_REWARD_COLUMNS)
    assert "`reward_time` TIMESTAMP_LTZ(3) *ROWTIME*" in str(schema)
    plan = statements.explain()
    execution_plan = plan[plan.index("== Optimized Execution Plan ==") :]
    assert execution_plan.count("feedrank_decode_reward(") == 1, "one decode per record"

    windows = table_env.execute_sql(
        "SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE valid_rewards, "
        "DESCRIPTOR(reward_time), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end"
    )
    with windows.collect() as rows:
        counts = [row[1] for row in sorted(rows, key=lambda row: row[0])]
    assert counts == [3, 3, 2]
