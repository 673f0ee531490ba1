"""The decision logger never blocks for long and counts what it cannot deliver.

These run a real librdkafka producer against a port where no broker listens, which
is exactly "Kafka is down".
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from prometheus_client import REGISTRY

from feedrank.explore.decision_log import ACKED_MAX_LINGER_MS, DecisionLogConfig, DecisionLogger
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


def unacked(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "feedrank_decision_log_answered_unacked_total", {"reason": reason}
    )
    return value or 0.0


def acked_logger(**overrides: Any) -> DecisionLogger:
    """A logger with delivery "acked" whose broker is down (nothing listens)."""
    config = DecisionLogConfig(
        bootstrap=f"127.0.0.1:{free_port()}", topic="t", delivery="acked", **overrides
    )
    return DecisionLogger(config)


def test_acked_lingers_at_most_a_few_ms_and_queued_as_configured() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    queued = DecisionLogConfig(bootstrap=bootstrap, topic="t", linger_ms=200)
    assert queued.effective_linger_ms == 200
    acked = DecisionLogConfig(bootstrap=bootstrap, topic="t", linger_ms=200, delivery="acked")
    assert acked.effective_linger_ms == ACKED_MAX_LINGER_MS
    assert replace(acked, linger_ms=1).effective_linger_ms == 1


def test_acked_answers_after_the_timeout_then_stops_waiting_while_kafka_is_down() -> None:
    logger = acked_logger(ack_timeout_ms=300, delivery_timeout_ms=60_000)
    timeouts, stalls = unacked("timeout"), unacked("stalled")
    try:
        started = time.perf_counter()
        assert logger.log(decision(1))
        first_s = time.perf_counter() - started
        assert 0.3 <= first_s < 2.0, f"the first call waited {first_s:.2f}s"
        started = time.perf_counter()
        assert all(logger.log(decision(index)) for index in range(2, 12))
        later_s = time.perf_counter() - started
        assert later_s < 0.3, f"10 calls took {later_s:.2f}s once acks had stalled"
        assert logger.stats.answered_unacked == 11
        assert unacked("timeout") - timeouts == 1
        assert unacked("stalled") - stalls == 10
        assert logger.queue_depth() == 11  # still queued: delivered once Kafka is back
    finally:
        logger.close(timeout_s=0.1)


def test_acked_counts_a_failed_delivery_without_stalling() -> None:
    logger = acked_logger(ack_timeout_ms=10_000, delivery_timeout_ms=100)
    errors = unacked("error")
    try:
        started = time.perf_counter()
        assert logger.log(decision(1))
        assert time.perf_counter() - started < 5.0  # the delivery report, not the timeout
        assert logger.stats.delivery_errors == 1
        assert logger.stats.answered_unacked == 1
        assert unacked("error") - errors == 1
    finally:
        logger.close(timeout_s=1)


def test_acked_counts_a_decision_dropped_from_a_full_queue() -> None:
    logger = acked_logger(ack_timeout_ms=100, max_queued_decisions=1)
    dropped = unacked("dropped")
    try:
        assert logger.log(decision(1))  # queued, waited 100 ms
        assert not logger.log(decision(2))
        assert logger.stats.dropped_queue_full == 1
        assert unacked("dropped") - dropped == 1
    finally:
        logger.close(timeout_s=0.1)
