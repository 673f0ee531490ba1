"""Producing replayed decisions and rewards to Kafka.

The producer is idempotent (``acks=all``: the shared
:func:`~feedrank.core.kafka_clients.idempotent_producer_config`, with its own delivery
timeout), keys every event by user id (so a decision and its rewards share a partition
and stay in order), and leaves the record timestamp to the broker: replayed events may
be weeks old, and an old record timestamp would let retention delete them at once.
Their event time travels in the payload. :func:`publish_replay` sends a whole validated
file, decision by decision, and waits for the acknowledgements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient

from feedrank.core.kafka_clients import KafkaTarget, admin_config, idempotent_producer_config
from feedrank.core.kafka_topics import TopicSpec, ensure_topics
from feedrank.core.settings import TopicSettings
from feedrank.core.time_units import DAY_MS
from feedrank.learners.replay.events import ReplayEvents, to_events
from feedrank.learners.replay.reader import ReplayLog

_FULL_QUEUE_WAIT_S = 0.1

SENDING = "producing decisions"
WAITING = "waiting for acknowledgements"
ACKNOWLEDGED = "acknowledged"

ReplayProgress = Callable[[str, int], None]
"""Told the stage (:data:`SENDING`, :data:`WAITING`, :data:`ACKNOWLEDGED`) and how many
decisions have been sent so far."""


@dataclass(frozen=True)
class ReplayTopics:
    """Where replayed events go."""

    decisions: str
    rewards: str

    @classmethod
    def from_settings(cls, topics: TopicSettings, prefix: str | None = None) -> ReplayTopics:
        """The configured topics; with ``prefix`` ``<prefix>decisions`` and ``<prefix>rewards``."""
        if prefix is None:
            return cls(decisions=topics.decisions, rewards=topics.rewards)
        return cls(decisions=f"{prefix}decisions", rewards=f"{prefix}rewards")

    def specs(self, topics: TopicSettings) -> list[TopicSpec]:
        retention_ms = int(topics.event_retention_days * DAY_MS)
        return [
            TopicSpec(name, topics.partitions, topics.replication_factor, retention_ms)
            for name in (self.decisions, self.rewards)
        ]


@dataclass
class DeliveryReport:
    """What the broker acknowledged."""

    decisions: int = 0
    rewards: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def ensure_replay_topics(
    bootstrap: KafkaTarget, topics: ReplayTopics, settings: TopicSettings
) -> None:
    """Create the two topics when they do not exist yet (partitions and retention from
    settings, as ``feedrank up`` would)."""
    ensure_topics(AdminClient(admin_config(bootstrap, log_level=None)), topics.specs(settings))


class ReplayProducer:
    """Sends :class:`ReplayEvents` and counts what the broker acknowledged."""

    def __init__(
        self, bootstrap: KafkaTarget, topics: ReplayTopics, delivery_timeout_s: float = 60.0
    ):
        self.topics = topics
        self.report = DeliveryReport()
        self._producer = Producer(
            idempotent_producer_config(
                bootstrap, **{"message.timeout.ms": int(delivery_timeout_s * 1000)}
            )
        )

    def send(self, events: ReplayEvents) -> None:
        """Queue a decision, then its rewards; waits only while the local queue is full."""
        self._produce(self.topics.decisions, events.key, events.decision, "decisions")
        for reward in events.rewards:
            self._produce(self.topics.rewards, events.key, reward, "rewards")
        self._producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> DeliveryReport:
        """Wait for every queued event; unacknowledged ones count as failed."""
        left = self._producer.flush(timeout_s)
        if left:
            self.report.failed += left
            self.report.errors.append(f"{left} events not acknowledged within {timeout_s:.0f}s")
        return self.report

    def _produce(self, topic: str, key: bytes, value: bytes, counter: str) -> None:
        callback = self._on_delivery(counter)
        while True:
            try:
                self._producer.produce(topic, key=key, value=value, on_delivery=callback)
                return
            except BufferError:
                self._producer.poll(_FULL_QUEUE_WAIT_S)

    def _on_delivery(self, counter: str) -> Callable[[KafkaError | None, Message], None]:
        def record(error: KafkaError | None, _message: Message) -> None:
            if error is None:
                setattr(self.report, counter, getattr(self.report, counter) + 1)
            else:
                self.report.failed += 1
                if len(self.report.errors) < 10:
                    self.report.errors.append(str(error))

        return record


class ReplaySender(Protocol):
    """What :func:`publish_replay` sends through: a :class:`ReplayProducer`."""

    def send(self, events: ReplayEvents) -> None: ...

    def flush(self, timeout_s: float = ...) -> DeliveryReport: ...


def _no_progress(stage: str, sent: int) -> None:
    """Progress nobody watches."""


def publish_replay(
    log: ReplayLog, producer: ReplaySender, progress: ReplayProgress = _no_progress
) -> DeliveryReport:
    """Send every decision of ``log`` with its rewards, then wait for the broker; what it
    acknowledged. ``progress`` hears of each decision sent and of each stage."""
    for sent, decision in enumerate(log.decisions, start=1):
        producer.send(to_events(decision))
        progress(SENDING, sent)
    sent = len(log.decisions)
    progress(WAITING, sent)
    report = producer.flush()
    progress(ACKNOWLEDGED, sent)
    return report
