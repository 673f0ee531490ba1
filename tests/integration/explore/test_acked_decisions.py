"""``explore.decision_delivery = "acked"``: a Rank answer means its decision is on the
topic; with the broker down, calls still answer (after one timeout) and are counted,
and their decisions reach the topic once the broker is back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY

from feedrank.core import codecs
from feedrank.core.clock import ManualClock
from feedrank.core.kafka_clients import consumer_config
from feedrank.core.kafka_topics import TopicSpec, ensure_topics
from feedrank.core.settings import Settings, load_settings
from feedrank.explore.app import ServingState, explore_service
from feedrank.explore.decision_log import DecisionLogger
from feedrank.explore.service import ExploreService
from feedrank.stack.jars import JarLocations
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.v1 import ranking_pb2, ranking_pb2_grpc
from tests.integration.explore.conftest import START_MS
from tests.support.kafka import CommittedReader, TopicFactory
from tests.support.restartable_broker import RestartableBroker, started_broker
from tests.support.serving import served

ACK_TIMEOUT_MS = 1_000


def acked_settings(bootstrap: str, topic: str) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": bootstrap},
        topics={"decisions": topic},
        explore={"decision_delivery": "acked", "decision_ack_timeout_ms": ACK_TIMEOUT_MS},
    )


def rank(stub: ranking_pb2_grpc.RankingStub, index: int) -> str:
    request = ranking_pb2.RankRequest(
        user_id=f"u{index}",
        limit=10,
        context=ranking_pb2.RankContext(request_time_ms=START_MS, surface="explore"),
    )
    response: ranking_pb2.RankResponse = stub.Rank(request, timeout=30)
    assert len(response.items) == 10
    return response.decision_id


def readable_records(consumer: Consumer, topic: str, partitions: int) -> int:
    """Records a read-committed consumer can read now: the partitions' end offsets,
    asked of the broker (not cached)."""
    ends = 0
    for partition in range(partitions):
        _, end = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=10, cached=False
        )
        ends += end
    return ends


def logged_ids(reader: CommittedReader, topic: str, count: int) -> list[str]:
    return [
        codecs.decode_decision(record.value()).decision_id
        for record in reader(topic, count, timeout_s=60)
    ]


def unacked(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "feedrank_decision_log_answered_unacked_total", {"reason": reason}
    )
    return value or 0.0


def decision_log_of(service: ExploreService) -> DecisionLogger:
    assert service.decision_log is not None
    return service.decision_log


def test_an_acked_answer_means_the_decision_is_readable_when_the_call_returns(
    kafka: KafkaBroker,
    serving_state: ServingState,
    clock: ManualClock,
    new_topic: TopicFactory,
    consume: CommittedReader,
) -> None:
    partitions, calls = 3, 12
    topic = new_topic("decisions", partitions=partitions)
    settings = acked_settings(kafka.bootstrap, topic)
    service = explore_service(settings, clock, serving_state)
    log = decision_log_of(service)
    watermarks = Consumer(consumer_config(kafka.bootstrap, "acked-decisions-test"))
    answered = []
    try:
        with served(service, settings, clock) as stub:
            for index in range(calls):
                answered.append(rank(stub, index))
                assert readable_records(watermarks, topic, partitions) == index + 1
            assert log.stats.answered_unacked == 0
    finally:
        watermarks.close()
    assert sorted(logged_ids(consume, topic, calls)) == sorted(answered)


@pytest.fixture
def broker(tmp_path: Path, jars: JarLocations) -> Iterator[RestartableBroker]:
    with started_broker(tmp_path / "kafka", jars) as running:
        yield running


def test_with_the_broker_down_calls_answer_after_one_timeout_and_are_counted(
    broker: RestartableBroker, serving_state: ServingState, clock: ManualClock
) -> None:
    topic = "feedrank.decisions.acked-outage"
    ensure_topics(
        AdminClient({"bootstrap.servers": broker.bootstrap}), [TopicSpec(topic, 1, 1, -1)]
    )
    settings = acked_settings(broker.bootstrap, topic)
    service = explore_service(settings, clock, serving_state)
    log = decision_log_of(service)
    answered = []
    with served(service, settings, clock) as stub:
        answered.append(rank(stub, 0))
        # The first decision meets a cold producer (metadata, the new topic's leader): on
        # a busy box its ack can take longer than the timeout. It is delivered all the
        # same; what follows counts from here.
        wait_for(lambda: log.stats.delivered == 1, timeout_s=60, what="the first decision")
        unacked_before = log.stats.answered_unacked
        timeouts, stalls = unacked("timeout"), unacked("stalled")

        broker.crash()
        durations = []
        for index in range(1, 6):
            started = time.perf_counter()
            answered.append(rank(stub, index))
            durations.append(time.perf_counter() - started)
        assert durations[0] >= ACK_TIMEOUT_MS / 1000, durations
        assert max(durations[1:]) < ACK_TIMEOUT_MS / 1000, durations  # stalled: no wait
        assert log.stats.answered_unacked - unacked_before == 5
        assert unacked("timeout") - timeouts == 1
        assert unacked("stalled") - stalls == 4
        assert log.queue_depth() == 5  # queued, not lost

        broker.start()
        wait_for(lambda: log.stats.delivered == 6, timeout_s=120, what="the queued decisions")
        answered.append(rank(stub, 6))  # acks flow again: this one waits for its own
        assert log.stats.delivered == 7
        assert log.stats.answered_unacked - unacked_before == 5
    assert sorted(logged_ids(CommittedReader(broker.bootstrap), topic, 7)) == sorted(answered)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s}s"
        time.sleep(0.1)
