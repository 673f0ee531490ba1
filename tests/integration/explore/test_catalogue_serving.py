"""An app's own catalogue served by Rank, against the real broker and a real gRPC server.

The app (``feedrank.client.EventProducer``) sends posts with string ids in a language no
simulated post has, a user, blocks, deletes and an erasure; the explore service replays
the entity topics, tails them, and its Rank answers show each change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import pytest
from confluent_kafka import Producer

from feedrank.client.events import EventProducer, TopicNames
from feedrank.client.ranking import rank_request
from feedrank.core import codecs
from feedrank.core.clock import ManualClock
from feedrank.core.settings import Settings, load_settings
from feedrank.core.time_units import HOUR_MS
from feedrank.explore.app import ServingState, build_serving_state, explore_service, worker_backend
from feedrank.explore.catalogue_source import replay_catalogue
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.v1 import ranking_pb2_grpc
from tests.support.kafka import CommittedReader, TopicFactory
from tests.support.serving import served

NOW_MS = 1_764_000_000_000
LANGUAGE = "sw"  # Swahili: not one of the schema's languages
CREATORS = [f"studio-{index}" for index in range(12)]
READER = "reader/ké-1"


def post_id(index: int) -> str:
    return f"article/été-{index}"


@dataclass
class App:
    settings: Settings
    producer: EventProducer

    def publish_catalogue(self, posts: int) -> None:
        self.producer.upsert_user(READER, language=LANGUAGE, country="KE", ts_ms=NOW_MS - HOUR_MS)
        for index in range(posts):
            self.producer.upsert_post(
                post_id(index),
                creator_id=CREATORS[index % len(CREATORS)],
                created_ms=NOW_MS - (index % 48) * HOUR_MS,
                language=LANGUAGE,
                topics=[f"topic_{index % 7}", "swahili-news"],
                embedding=[((index * 7 + dim) % 11) / 11.0 for dim in range(32)],
                features={"creator_followers": 1_000 + index},
                ts_ms=NOW_MS - HOUR_MS,
            )
        self.producer.flush()


@pytest.fixture
def app(kafka: KafkaBroker, new_topic: TopicFactory) -> Iterator[App]:
    settings = load_settings(
        kafka={"bootstrap_servers": kafka.bootstrap},
        topics={
            "posts": new_topic("posts", partitions=3),
            "users": new_topic("users", partitions=2),
            "graph": new_topic("graph", partitions=2),
            "dlq": new_topic("dlq"),
        },
        explore={"feature_updates": False},
    )
    topics = settings.topics
    names = TopicNames(posts=topics.posts, users=topics.users, graph=topics.graph)
    with EventProducer(kafka.bootstrap, topics=names, clock=lambda: NOW_MS) as producer:
        yield App(settings, producer)


def serving(app: App) -> ServingState:
    clock = ManualClock(NOW_MS)
    replayed = replay_catalogue(app.settings, clock)
    return build_serving_state(
        app.settings, clock, replayed.state, positions=replayed.positions, show_progress=False
    )


@dataclass
class Ranking:
    stub: ranking_pb2_grpc.RankingStub

    def post_ids(self, user_id: str, limit: int = 40) -> list[str]:
        """A feed; users without a profile ask for the catalogue's language."""
        language = None if user_id == READER else LANGUAGE
        request = rank_request(user_id, limit, language=language, request_time_ms=NOW_MS)
        return [item.post_id for item in self.stub.Rank(request, timeout=10).items]


ServeRanking = Callable[[ServingState], AbstractContextManager[Ranking]]


@pytest.fixture
def ranking(app: App) -> ServeRanking:
    @contextmanager
    def serve(state: ServingState) -> Iterator[Ranking]:
        clock = ManualClock(NOW_MS)
        service = explore_service(app.settings, clock, state, log_decisions=False)
        backend = worker_backend(app.settings, clock, state, service)
        with served(backend, app.settings, clock) as stub:
            yield Ranking(stub)

    return serve


def eventually(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> float:
    """Seconds until ``condition`` held; fails after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"timed out waiting until {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_an_apps_catalogue_is_served_and_follows_upserts_deletes_blocks_and_erasure(
    app: App, ranking: ServeRanking
) -> None:
    app.publish_catalogue(posts=300)
    state = serving(app)
    assert state.catalogue.live_rows().size == 300
    with ranking(state) as rank:
        shown = rank.post_ids(READER)
        assert len(shown) == 40
        assert all(identifier.startswith("article/été-") for identifier in shown)

        # A post upserted while serving is servable within seconds.
        app.producer.upsert_post(
            "breaking/🆕",
            creator_id="newsroom",
            created_ms=NOW_MS - 1_000,
            language=LANGUAGE,
            ts_ms=NOW_MS,
        )
        app.producer.flush()
        eventually(lambda: state.catalogue.post_row("breaking/🆕") is not None, "indexed")
        eventually(
            lambda: "breaking/🆕" in rank.post_ids(f"new-reader-{time.monotonic_ns()}", 500),
            "the new post is served",
        )

        # A deleted post is never served again.
        victim = shown[0]
        app.producer.delete_post(victim, ts_ms=NOW_MS + 1)
        app.producer.flush()
        row = state.catalogue.post_row(victim)
        assert row is not None
        assert row in state.model.index
        eventually(lambda: row not in state.model.index, "the delete leaves the index")
        for probe in range(10):
            assert victim not in rank.post_ids(f"probe-after-delete-{probe}", 500)

        # A blocked creator is never served to the blocker; other users still see it.
        app.producer.block(READER, CREATORS[0], ts_ms=NOW_MS + 2)
        app.producer.flush()
        blocked = {post_id(index) for index in range(0, 300, len(CREATORS))}
        eventually(lambda: not blocked & set(rank.post_ids(READER, 500)), "the block is honoured")
        assert blocked & set(rank.post_ids("someone-else", 500))

        # The reader's erasure drops the profile and the graph: the block goes with it.
        app.producer.delete_user(READER, ts_ms=NOW_MS + 3)
        app.producer.flush()
        eventually(lambda: state.catalogue.user(READER) is None, "the erasure is applied")
        assert state.catalogue.excluded_creators(READER) == frozenset()


def test_a_restarted_worker_reaches_the_same_state_from_kafka_alone(app: App) -> None:
    app.publish_catalogue(posts=120)
    app.producer.delete_post(post_id(5), ts_ms=NOW_MS)
    app.producer.block(READER, CREATORS[1], ts_ms=NOW_MS)
    app.producer.flush()
    first, second = serving(app), serving(app)  # a second process replays the same topics

    def summary(state: ServingState) -> tuple[set[str], set[str], tuple[object, ...]]:
        catalogue = state.catalogue
        live = set(catalogue.post_ids(catalogue.live_rows().tolist()))
        blocked = {catalogue.creator_id(row) for row in catalogue.excluded_creators(READER)}
        user = catalogue.user(READER)
        assert user is not None
        return live, blocked, (user.language, user.country, user.updated_ms)

    assert summary(first) == summary(second)
    live, blocked, _ = summary(first)
    assert post_id(5) not in live
    assert len(live) == 119
    assert blocked == {CREATORS[1]}


def test_malformed_catalogue_events_go_to_the_dead_letter_topic(
    app: App, consume: CommittedReader, ranking: ServeRanking
) -> None:
    app.publish_catalogue(posts=60)
    topics = app.settings.topics
    raw = Producer({"bootstrap.servers": app.settings.kafka.bootstrap})
    raw.produce(topics.posts, key=b"not-json", value=b"{not json")
    assert raw.flush(10) == 0
    state = serving(app)
    assert state.catalogue.live_rows().size == 60  # every good event applied
    with ranking(state) as rank:
        raw.produce(topics.posts, key=b"wrong-key", value=b"\x08\x01")  # a second, while tailing
        assert raw.flush(10) == 0
        letters = consume(topics.dlq, 2)
        assert {letter.key() for letter in letters} == {b"not-json", b"wrong-key"}
        for letter in letters:
            assert codecs.header_value(letter.headers(), "feedrank.dlq.stage") == "catalogue"
            source = codecs.header_value(letter.headers(), "feedrank.dlq.source-topic")
            assert source == topics.posts
        assert len(rank.post_ids(READER)) == 40
