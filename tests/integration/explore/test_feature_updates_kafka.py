"""A worker's feature store follows the real rewards and decisions topics, seen through Rank."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from feedrank.core import codecs
from feedrank.core.clock import ManualClock
from feedrank.core.feature_schema import post_index
from feedrank.core.settings import load_settings
from feedrank.explore.app import ServingState, explore_service, worker_backend
from feedrank.explore.feature_updates import (
    DECISION,
    REWARD,
    FeatureUpdater,
    KafkaSourceConfig,
    kafka_feature_updater,
    replay_start_ms,
)
from feedrank.features.store import InMemoryFeatureStore
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.v1 import events_pb2, ranking_pb2, ranking_pb2_grpc
from tests.integration.explore.conftest import START_MS
from tests.support.kafka import TopicFactory
from tests.support.serving import served

USER = "u17"


@dataclass
class UpdatingServer:
    updater: FeatureUpdater
    store: InMemoryFeatureStore
    clock: ManualClock
    stub: ranking_pb2_grpc.RankingStub
    produce: Callable[[str, bytes], None]
    rewards_topic: str
    decisions_topic: str


@pytest.fixture
def updating_server(
    kafka: KafkaBroker, serving_state: ServingState, new_topic: TopicFactory
) -> Iterator[UpdatingServer]:
    rewards, decisions = new_topic("rewards", partitions=3), new_topic("decisions", partitions=3)
    settings = load_settings(
        kafka={"bootstrap_servers": kafka.bootstrap},
        topics={"rewards": rewards, "decisions": decisions},
    )
    # A store of its own: the session's serving state stays as other tests expect it.
    state = dataclasses.replace(serving_state, store=InMemoryFeatureStore(serving_state.catalogue))
    clock = ManualClock(START_MS)  # Rank calls without a request time are served at now
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})

    def produce(topic: str, value: bytes) -> None:
        producer.produce(topic, value=value)
        assert producer.flush(10) == 0

    backend = worker_backend(settings, clock, state, explore_service(settings, clock, state))
    assert backend.updater is not None
    with served(backend, settings, clock) as stub:
        yield UpdatingServer(backend.updater, state.store, clock, stub, produce, rewards, decisions)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def impressions(store: InMemoryFeatureStore, posts: list[int], at_ms: int) -> list[float]:
    batch = store.post_features(np.asarray(posts, dtype=np.int64), at_ms)
    counts: list[float] = np.rint(np.expm1(batch.impressions.astype(np.float64))).tolist()
    return counts


def blocked_drops() -> float:
    value = REGISTRY.get_sample_value(
        "feedrank_rank_rule_dropped_candidates_total", {"rule": "blocked_creator"}
    )
    return value or 0.0


def test_a_block_and_a_decision_from_kafka_change_what_rank_serves(
    updating_server: UpdatingServer,
) -> None:
    server, store = updating_server, updating_server.store
    status, now_ms = server.updater.status, server.clock.now_ms()
    first = server.stub.Rank(ranking_pb2.RankRequest(user_id=USER, limit=50), timeout=10)
    assert first.items
    shown = [post_index(item.post_id) for item in first.items]
    creator = store.creator_of(shown[0])

    block = events_pb2.Reward(
        decision_id=first.decision_id,
        post_id=first.items[0].post_id,
        user_id=USER,
        type=events_pb2.REWARD_TYPE_BLOCK,
        ts_ms=now_ms,
    )
    server.produce(server.rewards_topic, codecs.encode(block))
    elsewhere = [post for post in range(store.num_posts) if post not in shown][:3]
    decision = events_pb2.Decision(
        decision_id="from-another-worker",
        event_time_ms=now_ms,
        user_id="u18",
        items=[
            events_pb2.ShownItem(post_id=f"p{post}", position=position, propensity=1.0)
            for position, post in enumerate(elsewhere)
        ],
    )
    server.produce(server.decisions_topic, codecs.encode(decision))
    server.produce(server.rewards_topic, b"not a reward")

    wait_for(lambda: status.applied[REWARD] >= 1, "the block")
    wait_for(lambda: status.skipped[(REWARD, "undecodable")] >= 1, "the undecodable reward")
    # The decision above and the one the first Rank call logged itself.
    wait_for(lambda: status.applied[DECISION] >= 2, "both decisions")
    assert impressions(store, elsewhere, now_ms) == [1, 1, 1]
    assert impressions(store, [shown[0]], now_ms) == [1]

    dropped_before = blocked_drops()
    again = server.stub.Rank(ranking_pb2.RankRequest(user_id=USER, limit=50), timeout=10)
    assert again.items
    assert creator not in {store.creator_of(post_index(item.post_id)) for item in again.items}
    assert blocked_drops() > dropped_before  # the creator's posts were candidates, dropped
    other = server.stub.Rank(ranking_pb2.RankRequest(user_id="u18", limit=50), timeout=10)
    assert other.items  # another user is not affected by the block
    assert store.user_state("u18", now_ms).blocked_creators == frozenset()
    assert store.user_state(USER, now_ms).blocked_creators == {creator}


def test_a_worker_replays_the_window_by_record_time_then_tails(
    kafka: KafkaBroker, serving_state: ServingState, new_topic: TopicFactory
) -> None:
    """Partition 0 holds a record from before the window and one inside it: reading
    starts at the second. Partition 1 holds only an old record: Kafka names no offset
    for the window there, and reading starts at its beginning (more, never less)."""
    rewards, decisions = new_topic("rewards", partitions=2), new_topic("decisions")
    store = InMemoryFeatureStore(serving_state.catalogue)
    clock = ManualClock(START_MS)
    window_ms = 7 * 24 * 3_600_000
    since_ms = replay_start_ms(clock.now_ms(), time.time_ns() // 1_000_000, window_ms)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})

    def block(post: int, partition: int, record_ms: int) -> None:
        reward = events_pb2.Reward(
            decision_id="d",
            post_id=f"p{post}",
            user_id=USER,
            type=events_pb2.REWARD_TYPE_BLOCK,
            ts_ms=START_MS,
        )
        producer.produce(
            rewards, value=codecs.encode(reward), partition=partition, timestamp=record_ms
        )

    posts = [1, 2, 3, 4]
    block(posts[0], 0, since_ms - 3_600_000)  # before the window: not replayed
    block(posts[1], 0, since_ms + 3_600_000)
    block(posts[2], 1, since_ms - 3_600_000)  # all of partition 1 is older: from its start
    assert producer.flush(10) == 0
    updater = kafka_feature_updater(
        store,
        KafkaSourceConfig(
            bootstrap=kafka.bootstrap,
            rewards_topic=rewards,
            decisions_topic=decisions,
            replay_ms=window_ms,
        ),
        clock,
    )
    updater.start()
    try:
        wait_for(lambda: updater.status.applied[REWARD] >= 2, "the replay")
        block(posts[3], 1, time.time_ns() // 1_000_000)  # after start: tailed
        assert producer.flush(10) == 0
        wait_for(lambda: updater.status.applied[REWARD] >= 3, "the tail")
    finally:
        updater.stop()
    blocked = store.user_state(USER, START_MS).blocked_creators
    assert blocked == {store.creator_of(post) for post in posts[1:]}
    assert updater.status.applied == {REWARD: 3}
