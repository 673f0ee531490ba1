"""Feature updates from the event topics, fed by a fake source (no broker)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from confluent_kafka import KafkaError, KafkaException, Message
from prometheus_client import REGISTRY

from feedrank.core import codecs
from feedrank.core.clock import ManualClock
from feedrank.core.feature_schema import post_id
from feedrank.core.time_units import HOUR_MS
from feedrank.explore.feature_updates import (
    DECISION,
    REWARD,
    FeatureEvents,
    FeatureUpdater,
    KafkaSourceConfig,
    UpdaterTiming,
    kafka_feature_updater,
    replay_start_ms,
)
from feedrank.features.store import InMemoryFeatureStore
from feedrank.simulate.world.catalogue import catalogue_from_world
from feedrank.v1 import events_pb2
from tests.support.kafka import free_port
from tests.support.model_versions import small_world

START_MS = 1_764_000_000_000
REWARDS, DECISIONS = "test.rewards", "test.decisions"
USER = "u3"


@pytest.fixture(scope="module")
def world_store() -> Callable[[], InMemoryFeatureStore]:
    world = small_world(num_posts=500, num_users=50, start_ms=START_MS)
    return lambda: InMemoryFeatureStore(catalogue_from_world(world))


@pytest.fixture
def store(world_store: Callable[[], InMemoryFeatureStore]) -> InMemoryFeatureStore:
    return world_store()


@pytest.fixture
def events(store: InMemoryFeatureStore) -> FeatureEvents:
    return FeatureEvents(store, rewards_topic=REWARDS, decisions_topic=DECISIONS)


def reward(
    kind: events_pb2.RewardType.ValueType, post: int, ts_ms: int = START_MS, user: str = USER
) -> Message:
    event = events_pb2.Reward(
        decision_id="d1", post_id=post_id(post), user_id=user, type=kind, ts_ms=ts_ms
    )
    return Message(topic=REWARDS, value=codecs.encode(event))


def decision(posts: list[str], event_time_ms: int = START_MS) -> Message:
    event = events_pb2.Decision(
        decision_id="d1",
        event_time_ms=event_time_ms,
        user_id=USER,
        items=[
            events_pb2.ShownItem(post_id=post, position=position, propensity=0.5)
            for position, post in enumerate(posts)
        ],
    )
    return Message(topic=DECISIONS, value=codecs.encode(event))


def impressions(store: InMemoryFeatureStore, posts: list[int], at_ms: int) -> list[float]:
    batch = store.post_features(np.asarray(posts, dtype=np.int64), at_ms)
    counts: list[float] = np.rint(np.expm1(batch.impressions.astype(np.float64))).tolist()
    return counts


def test_a_block_removes_the_creator_for_that_user_only(
    events: FeatureEvents, store: InMemoryFeatureStore
) -> None:
    events.apply([reward(events_pb2.REWARD_TYPE_BLOCK, 7)])

    creator = store.creator_of(7)
    assert store.user_state(USER, START_MS).blocked_creators == {creator}
    assert store.user_state("u4", START_MS).blocked_creators == frozenset()
    assert events.status.applied == {REWARD: 1}


def test_hides_reports_and_json_engagements_reach_the_store(
    events: FeatureEvents, store: InMemoryFeatureStore
) -> None:
    like = events_pb2.Reward(
        decision_id="d2",
        post_id="p9",
        user_id=USER,
        type=events_pb2.REWARD_TYPE_LIKE,
        ts_ms=START_MS,
    )
    json_like = Message(
        topic=REWARDS,
        value=codecs.encode_reward_json(like),
        headers=[(codecs.CONTENT_TYPE_HEADER, codecs.JSON_CONTENT_TYPE.encode())],
    )
    before = store.post_features(np.array([9]), START_MS).engagement_rate[0]

    events.apply(
        [
            reward(events_pb2.REWARD_TYPE_HIDE, 3),
            reward(events_pb2.REWARD_TYPE_REPORT, 4),
            json_like,
            reward(events_pb2.REWARD_TYPE_VIEW, 9),  # changes nothing, still applied
        ]
    )

    state = store.user_state(USER, START_MS)
    assert state.rejected_posts == {3, 4}
    assert store.user_features(USER, START_MS).engagements_7d == pytest.approx(np.log1p(1))
    assert store.post_features(np.array([9]), START_MS).engagement_rate[0] > before
    assert events.status.applied == {REWARD: 4}
    assert not events.status.skipped


def test_a_decision_counts_one_impression_per_shown_post_at_its_event_time(
    events: FeatureEvents, store: InMemoryFeatureStore
) -> None:
    events.apply([decision(["p1", "p2", "p2"], event_time_ms=START_MS + HOUR_MS)])
    events.apply([decision(["p1"], event_time_ms=START_MS + 2 * HOUR_MS)])

    assert impressions(store, [1, 2, 3], START_MS + 2 * HOUR_MS) == [2, 2, 0]
    assert impressions(store, [1, 2], START_MS + HOUR_MS) == [1, 2]  # point in time
    assert impressions(store, [1, 2], START_MS) == [0, 0]
    assert events.status.applied == {DECISION: 2}
    assert events.status.latest_event_ms == {DECISION: START_MS + 2 * HOUR_MS}


def test_a_reward_dated_after_now_waits_until_lookups_reach_it(
    events: FeatureEvents, store: InMemoryFeatureStore
) -> None:
    later = START_MS + 6 * HOUR_MS
    events.apply(
        [
            reward(events_pb2.REWARD_TYPE_BLOCK, 7, ts_ms=later),
            reward(events_pb2.REWARD_TYPE_LIKE, 8, ts_ms=later),
        ]
    )

    assert store.user_state(USER, START_MS).blocked_creators == frozenset()
    assert store.user_features(USER, START_MS).engagements_7d == 0.0
    assert store.user_state(USER, later).blocked_creators == {store.creator_of(7)}
    assert store.user_features(USER, later).engagements_7d == pytest.approx(np.log1p(1))


def test_undecodable_records_are_counted_and_skipped(
    events: FeatureEvents, store: InMemoryFeatureStore
) -> None:
    bad_type = events_pb2.Reward(decision_id="d", post_id="p1", user_id=USER, ts_ms=START_MS)
    before = REGISTRY.get_sample_value(
        "feedrank_explore_feature_events_skipped_total",
        {"kind": REWARD, "reason": "undecodable"},
    )

    events.apply(
        [
            Message(topic=REWARDS, value=b"{not json"),
            Message(topic=REWARDS, value=codecs.encode(bad_type)),  # type unspecified
            Message(topic=REWARDS, value=None),
            Message(topic=DECISIONS, value=b"\xff\xff\xff"),
            reward(events_pb2.REWARD_TYPE_HIDE, 5),  # the stream goes on after them
        ]
    )

    assert events.status.skipped == {(REWARD, "undecodable"): 3, (DECISION, "undecodable"): 1}
    assert events.status.applied == {REWARD: 1}
    assert store.user_state(USER, START_MS).hidden_posts == {5}
    after = REGISTRY.get_sample_value(
        "feedrank_explore_feature_events_skipped_total",
        {"kind": REWARD, "reason": "undecodable"},
    )
    assert after == (before or 0.0) + 3


def test_posts_outside_the_catalogue_are_ignored_and_counted(
    events: FeatureEvents, store: InMemoryFeatureStore
) -> None:
    events.apply(
        [
            reward(events_pb2.REWARD_TYPE_BLOCK, 10_000),  # past the 500 posts
            decision(["p1", "p777777", "x12"]),  # the known post still counts
            decision(["p900"]),  # nothing known: skipped
        ]
    )

    assert events.status.skipped == {(REWARD, "unknown_post"): 1, (DECISION, "unknown_post"): 1}
    assert events.status.unknown_posts == 4
    assert events.status.applied == {DECISION: 1}
    assert impressions(store, [1], START_MS) == [1]
    assert store.user_state(USER, START_MS).blocked_creators == frozenset()


def test_an_unexpected_failure_skips_one_record_only(
    events: FeatureEvents, store: InMemoryFeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(post_indices: object, at_ms: int) -> None:
        raise RuntimeError("broken store")

    monkeypatch.setattr(store, "record_impressions", broken)

    events.apply([decision(["p1"]), reward(events_pb2.REWARD_TYPE_HIDE, 5)])

    assert events.status.skipped == {(DECISION, "error"): 1}
    assert events.status.applied == {REWARD: 1}
    assert events.status.last_error == "broken store"


def test_kafka_errors_in_place_of_records_are_counted(events: FeatureEvents) -> None:
    failed = Message(topic=DECISIONS, error=KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))

    events.apply([failed, Message(topic="someone.else", value=b"x")])

    assert events.status.skipped == {(DECISION, "consumer_error"): 1}
    assert "decision stream" in events.status.last_error


def test_replay_starts_by_the_earlier_of_the_service_clock_and_the_wall_clock() -> None:
    day = 24 * HOUR_MS
    # An accelerated clock days ahead of the records' (wall-clock) stamps still replays.
    assert replay_start_ms(START_MS + 30 * day, START_MS, 7 * day) == START_MS - 7 * day
    assert replay_start_ms(START_MS, START_MS + day, 7 * day) == START_MS - 7 * day
    assert replay_start_ms(5, 5, 7 * day) == 0


class FakeSource:
    """Topics that appear late, a Kafka that answers on the third try, records on demand."""

    def __init__(self, batches: list[list[Message]]) -> None:
        self.batches = batches
        self.attach_answers: list[Exception | list[str]] = [
            KafkaException(KafkaError(KafkaError._TRANSPORT)),
            [DECISIONS],
            [],
        ]
        self.attempts = 0
        self.fail_next_poll = False
        self.closed = threading.Event()
        self.lock = threading.Lock()

    def attach(self) -> list[str]:
        self.attempts += 1
        answer = self.attach_answers.pop(0) if len(self.attach_answers) > 1 else []
        if isinstance(answer, Exception):
            raise answer
        return answer

    def poll(self, max_records: int, timeout_s: float) -> list[Message]:
        with self.lock:
            if self.fail_next_poll:
                self.fail_next_poll = False
                raise RuntimeError("poll broke")
            if self.batches:
                return self.batches.pop(0)[:max_records]
        time.sleep(timeout_s)
        return []

    def lag(self) -> dict[str, int]:
        return {REWARDS: 0, DECISIONS: 0}

    def close(self) -> None:
        self.closed.set()


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_updater_retries_kafka_applies_batches_and_closes_on_stop(
    events: FeatureEvents, store: InMemoryFeatureStore
) -> None:
    source = FakeSource([[reward(events_pb2.REWARD_TYPE_BLOCK, 7)], [decision(["p1"])]])
    timing = UpdaterTiming(batch_size=10, poll_timeout_s=0.01, retry_s=0.02)
    updater = FeatureUpdater(events, source, timing)

    updater.start()
    try:
        wait_for(lambda: events.status.applied == {REWARD: 1, DECISION: 1})
        wait_for(lambda: source.attempts >= 3 and not updater.status.missing_topics)
        assert "Kafka unavailable" in updater.status.last_error
        with source.lock:  # an unexpected error: logged, the thread goes on
            source.fail_next_poll = True
            source.batches.append([reward(events_pb2.REWARD_TYPE_HIDE, 4)])
        wait_for(lambda: events.status.applied[REWARD] == 2)
    finally:
        updater.stop(timeout_s=5)
    assert source.closed.is_set()
    assert store.user_state(USER, START_MS).blocked_creators == {store.creator_of(7)}
    assert impressions(store, [1], START_MS) == [1]


def test_without_a_broker_start_returns_at_once_and_stop_is_prompt(
    store: InMemoryFeatureStore,
) -> None:
    config = KafkaSourceConfig(
        bootstrap=f"127.0.0.1:{free_port()}",  # nothing listens there
        rewards_topic=REWARDS,
        decisions_topic=DECISIONS,
        replay_ms=HOUR_MS,
        timeout_s=0.5,
    )
    updater = kafka_feature_updater(
        store, config, ManualClock(START_MS), UpdaterTiming(poll_timeout_s=0.1, retry_s=0.2)
    )

    started = time.monotonic()
    updater.start()
    assert time.monotonic() - started < 0.5
    try:
        wait_for(lambda: "Kafka unavailable" in updater.status.last_error)
    finally:
        stopping = time.monotonic()
        updater.stop(timeout_s=10)
    assert time.monotonic() - stopping < 5
    assert updater._thread is not None
    assert not updater._thread.is_alive()


def test_stop_without_start_closes_the_source(events: FeatureEvents) -> None:
    source = FakeSource([])
    FeatureUpdater(events, source).stop()
    assert source.closed.is_set()
