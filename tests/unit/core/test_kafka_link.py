"""Backoff between retries, and a broker link that goes down and up once per outage."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException

from feedrank.core.backoff import Backoff
from feedrank.core.kafka_link import BrokerLink


def test_backoff_doubles_up_to_its_ceiling_and_starts_over_after_a_reset() -> None:
    backoff = Backoff(initial_s=0.5, max_s=3.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5
    assert backoff.delay(10_000) == 3.0  # no overflow after very many failures
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(initial_s=2.0, max_s=1.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def failing() -> None:
    raise KafkaException(KafkaError(KafkaError._WAIT_COORD, "Waiting for coordinator"))


def test_a_link_reports_each_outage_once_and_retries_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, changes = FakeClock(), list[bool]()
    link = BrokerLink("the test", on_change=changes.append, backoff=Backoff(1.0, 8.0), clock=clock)
    assert link.probe_due()
    assert not link.up
    assert link.attempt(lambda: "metadata", "metadata request") == "metadata"
    assert link.up
    assert changes == [True]

    caplog.set_level(logging.WARNING, logger="feedrank.kafka")
    for _ in range(3):  # the same failure again and again: one line in the log
        assert link.attempt(failing, "offset commit") is None
    assert not link.up
    assert changes == [True, False]
    assert len(caplog.records) == 1
    assert "the test cannot reach Kafka (offset commit failed" in caplog.text
    assert link.seconds_to_next_try() == 4.0  # 1, 2, 4: the third failure's wait
    assert not link.probe_due()
    clock.now += 4.0
    assert link.probe_due()

    link.on_client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert not link.up
    clock.now += 60
    link.found()
    assert link.up
    assert changes == [True, False, True]
    assert "the test reaches Kafka again after" in caplog.text
    assert link.seconds_to_next_try() == 0.0

    link.on_client_error(KafkaError(KafkaError._TRANSPORT, "one connection dropped"))
    assert link.up  # librdkafka reconnects a single broker by itself
