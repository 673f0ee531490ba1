"""The learner's readers ride out a broker that is down: nothing raises, the link says
Kafka is unreachable, and waiting ends when the learner is stopped. A real librdkafka
client against a port where no broker listens is exactly "Kafka is down"."""

from __future__ import annotations

import threading
import time

from feedrank.core.backoff import Backoff
from feedrank.core.kafka_link import BrokerLink
from feedrank.learners.online.readers import TopicReaders
from tests.support.kafka import free_port


def test_readers_wait_for_a_broker_that_is_down_without_raising() -> None:
    changes: list[bool] = []
    link = BrokerLink("the test", on_change=changes.append, backoff=Backoff(0.1, 0.5))
    readers = TopicReaders(
        bootstrap=f"127.0.0.1:{free_port()}",
        group_id="feedrank-test-readers",
        topics=["examples", "decisions"],
        decisions_topic="decisions",
        micro_batch_size=10,
        poll_timeout_s=0.1,
        link=link,
    )
    stop = threading.Event()
    timer = threading.Timer(3.0, stop.set)
    timer.start()
    try:
        started = time.monotonic()
        assert readers.assign({"examples:0": 5}, stop) is False  # stopped while waiting
        assert 2.5 < time.monotonic() - started < 20
        assert not link.up
        assert "metadata request failed" in link.last_error
        readers.commit({"examples:0": 5, "decisions:0": 1})  # queued, never raises
        assert readers.poll() == []
    finally:
        timer.cancel()
        readers.close()  # no final commit while Kafka is unreachable: returns at once
    assert changes == []  # never up, so never a transition
