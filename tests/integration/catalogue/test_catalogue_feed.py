"""The catalogue feed against the real broker: replay, dead letters, tailing, replicas."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from confluent_kafka import KafkaError, Message, Producer

from feedrank.catalogue.kafka_feed import CatalogueEvents, CatalogueFeed, CatalogueTopics
from feedrank.catalogue.state import CatalogueState
from feedrank.client.entities import post_upsert
from feedrank.client.events import EventProducer, TopicNames
from feedrank.core import codecs, entity_codecs
from feedrank.core.feature_schema import LANGUAGE_VOCABULARY
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.v1 import events_pb2
from tests.support.kafka import CommittedReader, TopicFactory

T0 = 1_764_000_000_000
Headers = list[tuple[str, str | bytes | None]] | None
JSON_POST_ID = "🎬 clip/été #1"


@dataclass(frozen=True)
class Scenario:
    """Catalogue topics holding good events and three bad records (all produced)."""

    topics: CatalogueTopics
    app: EventProducer
    bad_records: set[tuple[str, int]]  # (topic, offset) of each record to dead-letter


def new_feed(topics: CatalogueTopics) -> tuple[CatalogueState, CatalogueFeed]:
    state = CatalogueState()
    return state, CatalogueFeed(CatalogueEvents(state, topics))


def alive_ids(state: CatalogueState) -> set[str]:
    return set(state.post_ids(state.live_rows().tolist()))


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def header(record: Message, name: str) -> str:
    value = codecs.header_value(record.headers(), name)
    assert value is not None, f"{name} missing"
    return value


class RawProducer:
    """A plain producer that says at which offset each record landed."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})

    def send(
        self, topic: str, key: bytes, value: bytes, headers: Headers = None
    ) -> tuple[str, int]:
        landed: list[Message] = []

        def delivered(error: KafkaError | None, message: Message) -> None:
            assert error is None, error
            landed.append(message)

        self._producer.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered)
        assert self._producer.flush(10) == 0
        return topic, landed[0].offset() or 0


@pytest.fixture
def scenario(kafka: KafkaBroker, new_topic: TopicFactory) -> Scenario:
    topics = CatalogueTopics(
        kafka.bootstrap,
        posts=new_topic("posts"),
        users=new_topic("users", partitions=2),
        graph=new_topic("graph"),
        dlq=new_topic("dlq"),
    )
    app = EventProducer(
        kafka.bootstrap,
        topics=TopicNames(posts=topics.posts, users=topics.users, graph=topics.graph),
        linger_ms=0,
    )
    raw = RawProducer(kafka.bootstrap)
    created = T0 - 3_600_000
    for index, language in enumerate(("en", "pt", "en")):
        app.upsert_post(
            f"p{index}",
            creator_id=f"c{index}",
            created_ms=created,
            language=language,
            topics=["topic_3", "cats"],
            ts_ms=T0 + index,
        )
    app.upsert_user("u1", language="sv", country="SE", age_bucket="25-34", ts_ms=T0)
    app.block("u1", "c1", ts_ms=T0)
    app.follow("u1", "c0", ts_ms=T0)
    app.upsert_post("stale", creator_id="c0", created_ms=created, language="en", ts_ms=T0 + 10)
    app.flush(10)

    json_post = post_upsert(
        JSON_POST_ID, creator_id="c9", created_ms=created, language="sv", ts_ms=T0, topics=["x"]
    )
    raw.send(
        topics.posts,
        JSON_POST_ID.encode(),
        entity_codecs.encode_post_event_json(json_post),
        [(codecs.CONTENT_TYPE_HEADER, codecs.JSON_CONTENT_TYPE.encode())],
    )
    misfiled = post_upsert("p-real", creator_id="c0", created_ms=created, language="en", ts_ms=T0)
    stale = post_upsert("stale", creator_id="c0", created_ms=created, language="fr", ts_ms=T0)
    bad_records = {
        raw.send(topics.users, b"u-garbage", b"\x00\xff not an event \xfe"),
        raw.send(topics.posts, b"p-other-key", codecs.encode(misfiled)),
        raw.send(topics.posts, b"stale", codecs.encode(stale)),  # older than its state
    }
    return Scenario(topics, app, bad_records)


def test_replay_dead_letters_bad_records_then_tails(
    scenario: Scenario, consume: CommittedReader
) -> None:
    topics = scenario.topics
    state, feed = new_feed(topics)

    read = feed.replay(timeout_s=60)

    assert read == 11
    assert feed.status.replayed
    assert alive_ids(state) == {"p0", "p1", "p2", "stale", JSON_POST_ID}
    assert state.post_row("p-real") is None
    json_row = state.post_row(JSON_POST_ID)
    assert json_row is not None
    assert LANGUAGE_VOCABULARY.code(int(state.post_column("language")[json_row])) == "sv"
    stale_row = state.post_row("stale")
    assert stale_row is not None
    assert int(state.post_column("updated_ms")[stale_row]) == T0 + 10  # the newer one kept
    profile = state.user("u1")
    assert profile is not None
    assert profile.age_bucket == 2
    assert state.user("u-garbage") is None
    assert state.excluded_creators("u1") == {state.creator_row("c1")}
    assert state.follow_count("u1") == 1
    assert feed.status.rejected == {topics.posts: 2, topics.users: 1}
    assert feed.status.applied == {topics.posts: 5, topics.users: 1, topics.graph: 2}

    letters = consume(topics.dlq, 3)
    assert {
        (header(r, codecs.DLQ_HEADER_TOPIC), int(header(r, codecs.DLQ_HEADER_OFFSET)))
        for r in letters
    } == scenario.bad_records
    for record in letters:
        assert header(record, codecs.DLQ_HEADER_STAGE) == "catalogue"
        assert header(record, codecs.DLQ_HEADER_ERROR)
        letter = codecs.decode(events_pb2.DeadLetter, record.value())
        assert letter.stage == "catalogue"
        assert letter.error
    errors = {r.key(): header(r, codecs.DLQ_HEADER_ERROR) for r in letters}
    assert "differs from post_id" in errors[b"p-other-key"]
    assert "older than its state" in errors[b"stale"]

    feed.start()
    try:
        scenario.app.upsert_post(
            "p-new", creator_id="c3", created_ms=T0, language="en", ts_ms=T0 + 100
        )
        scenario.app.delete_post("p1", ts_ms=T0 + 100)
        scenario.app.flush(10)
        wait_for(
            lambda: alive_ids(state) == {"p0", "p2", "p-new", "stale", JSON_POST_ID},
            "the tailed upsert and delete",
        )
    finally:
        feed.stop()
    assert state.post_row("p1") is not None  # a takedown keeps the row, dead


def test_a_fresh_replica_replays_to_the_same_state(scenario: Scenario) -> None:
    topics = scenario.topics
    first, first_feed = new_feed(topics)
    first_feed.replay(timeout_s=60)
    first_feed.start()
    try:
        scenario.app.delete_user("u1", ts_ms=T0 + 50)
        scenario.app.upsert_user("u2", country="BR", ts_ms=T0 + 50)
        scenario.app.delete_post("p0", ts_ms=T0 + 50)
        scenario.app.flush(10)
        wait_for(lambda: first.user("u2") is not None and first.user("u1") is None, "the tail")
        wait_for(lambda: "p0" not in alive_ids(first), "the takedown")
    finally:
        first_feed.stop()

    replica, replica_feed = new_feed(topics)
    replica_feed.replay(timeout_s=60)
    replica_feed.stop()

    assert alive_ids(replica) == alive_ids(first) == {"p1", "p2", "stale", JSON_POST_ID}
    assert set(replica.user_ids()) == set(first.user_ids()) == {"u2"}
    assert replica.follow_count("u1") == first.follow_count("u1") == 0
    assert replica_feed.status.rejected == first_feed.status.rejected
    assert sum(replica_feed.status.applied.values()) == sum(first_feed.status.applied.values())
