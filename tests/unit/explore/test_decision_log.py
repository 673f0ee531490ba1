"""The decision logger never blocks and counts what it cannot deliver.

These run a real librdkafka producer against a port where no broker listens, which
is exactly "Kafka is down".
"""

from __future__ import annotations

import time

from feedrank.explore.decision_log import DecisionLogConfig, DecisionLogger
from feedrank.v1 import events_pb2
from tests.support.kafka import free_port


def decision(index: int) -> events_pb2.Decision:
    return events_pb2.Decision(decision_id=f"d-{index}", user_id=f"u-{index}", event_time_ms=1)


def test_full_queue_drops_and_counts_without_blocking() -> None:
    logger = DecisionLogger(
        DecisionLogConfig(
            bootstrap=f"127.0.0.1:{free_port()}",
            topic="t",
            max_queued_decisions=100,
            delivery_timeout_ms=1_000,
        )
    )
    try:
        started = time.perf_counter()
        accepted = [logger.log(decision(index)) for index in range(1_000)]
        elapsed = time.perf_counter() - started
        assert sum(accepted) == 100
        assert logger.stats.produced == 100
        assert logger.stats.dropped_queue_full == 900
        assert elapsed < 1.0, f"logging 1,000 decisions with Kafka down took {elapsed:.2f}s"
        assert logger.queue_depth() == 100
    finally:
        logger.close(timeout_s=5)
    assert logger.stats.delivery_errors == 100
    assert logger.stats.delivered == 0
