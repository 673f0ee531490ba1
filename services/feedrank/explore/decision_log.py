"""Decision logging: one ``Decision`` per Rank call to ``feedrank.decisions``.

The producer is idempotent (no duplicates on retries) and ``produce`` never blocks:
it only appends to librdkafka's bounded in-memory queue. When Kafka is slow or down
and the queue is full, the decision is dropped **and counted**; delivery failures are
counted too. A background thread serves delivery reports.

Delivery ``queued`` (the default) returns as soon as the decision is queued: a process
killed before Kafka acknowledged it loses it, though its call was answered. Delivery
``acked`` returns once the broker acknowledged it (``acks=all``), so an answered call's
decision is on the topic; the wait is bounded (``ack_timeout_ms``), since serving beats
logging: past it the call goes on, the decision stays queued, and that is counted
(``feedrank_decision_log_answered_unacked_total``). After such a timeout later calls do
not wait at all until Kafka acknowledges a decision again, so an outage costs the
handler threads one timeout, not one per call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from confluent_kafka import KafkaError, Message, Producer

from feedrank.core import codecs
from feedrank.core.kafka_clients import KafkaTarget, idempotent_producer_config
from feedrank.explore import metrics
from feedrank.v1 import events_pb2

DecisionDelivery = Literal["queued", "acked"]
"""When ``log`` returns: once the decision is queued, or once Kafka acknowledged it."""

ACKED_MAX_LINGER_MS = 5
"""The longest a decision lingers with delivery ``acked``: there the caller waits it out."""

UNACKED_REASONS = ("timeout", "stalled", "error", "dropped")
"""Why an ``acked`` call went on without its acknowledgement (see ``metrics``)."""

DeliveryCallback = Callable[[KafkaError | None, Message], None]


@dataclass
class DecisionLogStats:
    """Counters a metrics exporter reads (monotonic, per process)."""

    produced: int = 0
    delivered: int = 0
    dropped_queue_full: int = 0
    delivery_errors: int = 0
    answered_unacked: int = 0  # delivery "acked" only: calls that went on without an ack
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, amount: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + amount)


@dataclass(frozen=True)
class DecisionLogConfig:
    bootstrap: KafkaTarget  # a bootstrap string (plaintext), or one with its security
    topic: str
    max_queued_decisions: int = 100_000
    # Decisions wait up to this long to share a produce request. The broker's cost is per
    # request: at 5 ms it took 1.4 ms of CPU per decision on the serving cores, at 200 ms
    # 0.38 (benchmarks/rank_load.py). The join waits minutes to days anyway.
    linger_ms: int = 200
    # How long librdkafka keeps retrying a decision before counting it as failed: a
    # broker outage of minutes (a restart, a crash) loses nothing; a longer one fills
    # the bounded queue, and what does not fit is dropped and counted.
    delivery_timeout_ms: int = 600_000
    delivery: DecisionDelivery = "queued"
    # With delivery "acked", the longest ``log`` waits for the acknowledgement.
    ack_timeout_ms: int = 2_000

    @property
    def effective_linger_ms(self) -> int:
        """``linger_ms``, capped at ``ACKED_MAX_LINGER_MS`` with delivery ``acked``."""
        if self.delivery == "acked":
            return min(self.linger_ms, ACKED_MAX_LINGER_MS)
        return self.linger_ms


class _PendingAck:
    """One ``acked`` decision's outcome, set by its delivery report."""

    __slots__ = ("done", "failed")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.failed = False


class DecisionLogger:
    def __init__(self, config: DecisionLogConfig) -> None:
        self.config = config
        self.stats = DecisionLogStats()
        self._producer = Producer(
            idempotent_producer_config(
                config.bootstrap,
                linger_ms=config.effective_linger_ms,
                **{
                    "queue.buffering.max.messages": config.max_queued_decisions,
                    "message.timeout.ms": config.delivery_timeout_ms,
                },
            )
        )
        self._ack_lock = threading.Lock()
        self._last_ack = time.monotonic()
        self._acks_stalled = False  # an ``acked`` wait timed out and nothing acked since
        if config.delivery == "acked":
            for reason in UNACKED_REASONS:  # exported as 0 before the first
                metrics.DECISIONS_ANSWERED_UNACKED.labels(reason=reason)
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._serve_delivery_reports, daemon=True)
        self._poller.start()

    def log(self, decision: events_pb2.Decision) -> bool:
        """Queue one decision (with delivery ``acked``, and wait for its acknowledgement,
        bounded); False (and counted) when it was dropped."""
        return self.log_encoded(decision.user_id, codecs.encode(decision))

    def log_encoded(self, user_id: str, decision: bytes) -> bool:
        """:meth:`log` for a decision already encoded as protobuf (keyed by its user).

        With delivery ``acked`` this returns once Kafka acknowledged the decision, or
        after ``ack_timeout_ms`` (see the module docstring); True means it was queued.
        """
        if self.config.delivery == "queued":
            return self._produce(user_id, decision, self._on_delivery)
        pending = _PendingAck()

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            self._on_delivery(error, message)
            pending.failed = error is not None
            pending.done.set()

        if not self._produce(user_id, decision, on_delivery):
            self._count_unacked("dropped")
            return False
        self._await_ack(pending)
        return True

    def _produce(self, user_id: str, decision: bytes, on_delivery: DeliveryCallback) -> bool:
        try:
            self._producer.produce(
                self.config.topic, key=user_id.encode(), value=decision, on_delivery=on_delivery
            )
        except BufferError:
            self.stats.add("dropped_queue_full")
            metrics.DECISIONS_DROPPED.inc()
            return False
        self.stats.add("produced")
        metrics.DECISIONS_LOGGED.inc()
        return True

    def _await_ack(self, pending: _PendingAck) -> None:
        """Wait for ``pending``'s acknowledgement, unless Kafka has stopped answering."""
        if self._acks_stalled:
            self._count_unacked("stalled")
            return
        waited_from = time.monotonic()
        if not pending.done.wait(self.config.ack_timeout_ms / 1000):
            with self._ack_lock:
                if self._last_ack < waited_from:  # no other decision got through either
                    self._acks_stalled = True
            self._count_unacked("timeout")
        elif pending.failed:
            self._count_unacked("error")

    def _count_unacked(self, reason: str) -> None:
        self.stats.add("answered_unacked")
        metrics.DECISIONS_ANSWERED_UNACKED.labels(reason=reason).inc()

    def queue_depth(self) -> int:
        """Decisions produced but not yet acknowledged (or failed) by the broker.

        Counted from our own bookkeeping: ``len(producer)`` also counts librdkafka's
        internal events (errors, callbacks), which are not decisions.
        """
        stats = self.stats
        with stats.lock:
            return stats.produced - stats.delivered - stats.delivery_errors

    def flush(self, timeout_s: float) -> int:
        """Wait for queued decisions; return how many are still undelivered."""
        return int(self._producer.flush(timeout_s))

    def close(self, timeout_s: float = 10.0) -> int:
        self._stop.set()
        self._poller.join(timeout=5)
        return self.flush(timeout_s)

    def _serve_delivery_reports(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)
            metrics.DECISION_LOG_QUEUE.set(self.queue_depth())

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self.stats.add("delivery_errors")
            metrics.DECISION_LOG_ERRORS.inc()
        else:
            self.stats.add("delivered")
            metrics.DECISIONS_DELIVERED.inc()
            with self._ack_lock:
                self._last_ack = time.monotonic()
                self._acks_stalled = False
