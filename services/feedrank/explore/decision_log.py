"""Decision logging: one ``Decision`` per Rank call to ``feedrank.decisions``.

The producer is idempotent (no duplicates on retries) and never blocks a request:
``produce`` only appends to librdkafka's bounded in-memory queue. When Kafka is slow
or down and the queue is full, the decision is dropped **and counted**; delivery
failures are counted too. A background thread serves delivery reports.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message, Producer

from feedrank.core import codecs
from feedrank.core.kafka_clients import idempotent_producer_config
from feedrank.explore import metrics
from feedrank.v1 import events_pb2


@dataclass
class DecisionLogStats:
    """Counters a metrics exporter reads (monotonic, per process)."""

    produced: int = 0
    delivered: int = 0
    dropped_queue_full: int = 0
    delivery_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, amount: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + amount)


@dataclass(frozen=True)
class DecisionLogConfig:
    bootstrap: str
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


class DecisionLogger:
    def __init__(self, config: DecisionLogConfig) -> None:
        self.config = config
        self.stats = DecisionLogStats()
        self._producer = Producer(
            idempotent_producer_config(
                config.bootstrap,
                linger_ms=config.linger_ms,
                **{
                    "queue.buffering.max.messages": config.max_queued_decisions,
                    "message.timeout.ms": config.delivery_timeout_ms,
                },
            )
        )
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._serve_delivery_reports, daemon=True)
        self._poller.start()

    def log(self, decision: events_pb2.Decision) -> bool:
        """Queue one decision without blocking; False (and counted) when it was dropped."""
        return self.log_encoded(decision.user_id, codecs.encode(decision))

    def log_encoded(self, user_id: str, decision: bytes) -> bool:
        """:meth:`log` for a decision already encoded as protobuf (keyed by its user)."""
        try:
            self._producer.produce(
                self.config.topic,
                key=user_id.encode(),
                value=decision,
                on_delivery=self._on_delivery,
            )
        except BufferError:
            self.stats.add("dropped_queue_full")
            metrics.DECISIONS_DROPPED.inc()
            return False
        self.stats.add("produced")
        metrics.DECISIONS_LOGGED.inc()
        return True

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
