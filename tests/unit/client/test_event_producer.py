"""EventProducer checks every event before producing it; no broker is needed to see that.

The bootstrap address points at a closed port: an invalid event must fail before
anything is queued, so nothing ever tries to reach it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from feedrank.client import (
    DeliveryFailed,
    EventProducer,
    InvalidEvent,
    KafkaAccess,
    KafkaSecurity,
    TopicNames,
)
from feedrank.client.entities import graph_event, post_upsert
from feedrank.core.kafka_clients import idempotent_producer_config
from feedrank.v1 import catalogue_pb2
from tests.support.kafka import free_port

TS = 1_764_000_000_000


@pytest.fixture
def producer() -> Iterator[EventProducer]:
    events = EventProducer(
        f"127.0.0.1:{free_port()}",
        clock=lambda: TS,
        producer_config={"message.timeout.ms": 300, "log_level": 0},
    )
    yield events
    assert events.pending == 0


POST: dict[str, Any] = {"creator_id": "c1", "created_ms": TS, "language": "en"}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda p: p.upsert_post("", **POST), "post_id"),
        (lambda p: p.upsert_post("p1", **{**POST, "language": "english!"}), "language"),
        (lambda p: p.upsert_post("p1", **{**POST, "created_ms": 5}), "created_ms"),
        (lambda p: p.upsert_post("p1", **{**POST, "created_ms": "soon"}), "created_ms"),
        (lambda p: p.upsert_post("p1", **POST, embedding=[0.1, 0.2]), "embedding"),
        (lambda p: p.upsert_post("p1", **POST, topics="cats"), "topics"),
        (lambda p: p.upsert_post("p1", **POST, features={"x": [1]}), "features"),
        (lambda p: p.upsert_post("p1", **POST, features={"x": float("nan")}), "features"),
        (lambda p: p.upsert_post("p1", **POST, ts_ms=-1), "ts_ms"),
        (lambda p: p.delete_post(" "), "post_id"),
        (lambda p: p.upsert_user("u1", age_bucket="old"), "age_bucket"),
        (lambda p: p.upsert_user("u1", country="USA"), "country"),
        (lambda p: p.delete_user("x" * 300), "user_id"),
        (lambda p: p.follow("u1", "u1"), "target_id"),
        (lambda p: p.block("u1", ""), "target_id"),
        (lambda p: p.hide_creator("", "c1"), "user_id"),
        (
            lambda p: p.send_reward(decision_id="d", post_id="p", user_id="u", type="love"),
            "type",
        ),
        (
            lambda p: p.send_reward(
                decision_id="d", post_id="p", user_id="u", type="dwell", value=-3.0
            ),
            "value",
        ),
        (
            lambda p: p.send_reward(decision_id="", post_id="p", user_id="u", type="like"),
            "decision_id",
        ),
        (lambda p: p.produce_post(catalogue_pb2.PostEvent(post_id="p1", ts_ms=TS)), "op"),
        (
            lambda p: p.produce_graph(
                catalogue_pb2.GraphEvent(op=99, user_id="u", target_id="t", ts_ms=TS)  # type: ignore[arg-type]
            ),
            "op",
        ),
    ],
)
def test_invalid_events_raise_before_anything_is_produced(
    producer: EventProducer, call: Any, field: str
) -> None:
    with pytest.raises(InvalidEvent) as raised:
        call(producer)
    assert raised.value.field == field
    assert raised.value.code is None
    assert producer.pending == 0


def test_a_valid_event_is_queued_and_an_unreachable_broker_fails_the_flush(
    producer: EventProducer,
) -> None:
    producer.upsert_post("p1", **POST, topics=["cats"], features={"quality": 0.5})
    assert producer.pending == 1
    with pytest.raises(DeliveryFailed) as raised:
        producer.flush(10)
    assert raised.value.count == 1
    assert "timed out" in raised.value.first_error.lower()
    assert producer.failed == 0  # reported once
    producer.flush(1)  # nothing new to report


def test_builders_normalise_as_the_consumers_will() -> None:
    post = post_upsert("p1", creator_id="c1", created_ms=TS, language="EN", country="us", ts_ms=TS)
    assert (post.language, post.country) == ("en", "US")
    edge = graph_event("FOLLOW", "u1", "c1", ts_ms=TS)
    assert edge.op == catalogue_pb2.GRAPH_OP_FOLLOW


def test_topic_names_default_to_the_contract() -> None:
    assert TopicNames() == TopicNames(
        posts="feedrank.posts",
        users="feedrank.users",
        graph="feedrank.graph",
        rewards="feedrank.rewards",
    )


def test_idempotent_producer_config() -> None:
    config = idempotent_producer_config("h:1", linger_ms=5, **{"message.timeout.ms": 1000})
    assert config == {
        "bootstrap.servers": "h:1",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "log_level": 3,
        "message.timeout.ms": 1000,
    }
    with pytest.raises(ValueError, match="linger_ms"):
        idempotent_producer_config("h:1", linger_ms=-1)


def test_security_is_given_with_a_bootstrap_string_or_inside_an_access() -> None:
    security = KafkaSecurity.sasl_ssl("app", "app-secret")
    EventProducer("kafka:9093", security=security)  # nothing contacts the broker yet
    EventProducer(KafkaAccess("kafka:9093", security))
    with pytest.raises(ValueError, match="KafkaAccess has its own"):
        EventProducer(KafkaAccess("kafka:9093", security), security=security)
