"""Each worker keeps its feature store fresh from ``feedrank.rewards`` and ``feedrank.decisions``.

The store built from the world knows only the catalogue's priors; what users did since
arrives as events. A background thread per worker process reads both topics and
applies them to the worker's own (process-local) store:

* a reward goes through ``apply_reward``: likes, comments, shares and saves count as
  engagements (post ``engagement_rate``, user ``engagements_7d``), hides and reports
  mark the post for that user, a block blocks the post's creator for that user;
* a decision counts one impression for each shown item at the decision's event time
  (post ``impressions`` and the denominator of ``engagement_rate``).

Every event is applied at its own event time (``ts_ms``, ``event_time_ms``): the store
answers point in time, so a reward dated after "now" (the simulator writes some) is
held until lookups reach it. Kafka record timestamps serve only to find where to start:
each worker has its own consumer group (it must see every event, not a share of
them) and assigns all partitions itself, starting ``explore.feature_replay_days``
before now, then tails. Nothing is committed: a restarted worker replays the window.

Nothing here stops serving: Kafka down or a topic missing is logged (once per distinct
error) and retried from the thread; a record that does not decode or names a post
outside the catalogue is counted (``feedrank_explore_feature_events_skipped_total``)
and skipped. The streaming join owns the dead-letter topic, so nothing is written
there. The store takes its lock per update, so a Rank request waits for one event at
most; events are applied in small batches and the thread yields between full batches
while it catches up.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)

from feedrank.core import codecs
from feedrank.core.clock import Clock
from feedrank.core.kafka_clients import KafkaTarget, consumer_config
from feedrank.explore import metrics
from feedrank.features import FeatureStore, apply_reward

log = logging.getLogger(__name__)

REWARD = "reward"
DECISION = "decision"


class EventSource(Protocol):
    """Records of the rewards and decisions topics, for one worker (Kafka or a fake)."""

    def attach(self) -> list[str]:
        """Start reading the topics not read yet; returns those still unavailable.
        Raises KafkaException when Kafka does not answer (the caller retries)."""
        ...

    def poll(self, max_records: int, timeout_s: float) -> list[Message]:
        """Up to ``max_records`` records, waiting at most ``timeout_s`` for the first."""
        ...

    def lag(self) -> dict[str, int]:
        """Records not read yet, by topic (topics read so far only)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class KafkaSourceConfig:
    bootstrap: KafkaTarget  # a bootstrap string (plaintext), or one with its security
    rewards_topic: str
    decisions_topic: str
    replay_ms: int  # how far before now reading starts (by Kafka record timestamp)
    group_prefix: str = "feedrank-explore-features"
    timeout_s: float = 3.0  # metadata and offsets-for-times requests


def replay_start_ms(clock_ms: int, wall_ms: int, replay_ms: int) -> int:
    """Where reading starts, in Kafka timestamp terms.

    Producers stamp records with their wall clock, while the service clock may run
    ahead of it (an accelerated demo clock): seeking from a clock ahead of the records
    would skip them all. The earlier of the two never skips; starting earlier only
    replays more, which the point-in-time store absorbs.
    """
    return max(min(clock_ms, wall_ms) - replay_ms, 0)


class KafkaEventSource:
    """Both topics from the replay window's start, every partition, in one consumer."""

    def __init__(self, config: KafkaSourceConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.group_id = f"{config.group_prefix}-{socket.gethostname()}-{os.getpid()}"
        self._consumer: Consumer | None = None  # made in the updater's thread, after fork
        self._attached: set[str] = set()
        self._starts: dict[tuple[str, int], int] = {}  # where each partition started

    def attach(self) -> list[str]:
        consumer = self._consumer_or_new()
        metadata = consumer.list_topics(timeout=self.config.timeout_s)
        missing = []
        for topic in (self.config.rewards_topic, self.config.decisions_topic):
            if topic in self._attached:
                continue
            found = metadata.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                missing.append(topic)
                continue
            consumer.incremental_assign(self._start_offsets(consumer, topic, found.partitions))
            self._attached.add(topic)
        return missing

    def poll(self, max_records: int, timeout_s: float) -> list[Message]:
        if self._consumer is None:
            time.sleep(timeout_s)
            return []
        return self._consumer.consume(num_messages=max_records, timeout=timeout_s)

    def lag(self) -> dict[str, int]:
        """From the high watermarks of the latest fetch responses (no request: this
        never blocks, whatever the broker does); partitions not fetched yet count 0."""
        if self._consumer is None:
            return {}
        consumer = self._consumer
        behind: Counter[str] = Counter()
        for position in consumer.position(consumer.assignment()):
            topic, partition = position.topic, position.partition
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            read = position.offset if position.offset >= 0 else self._starts.get((topic, partition))
            if read is not None and high >= 0:
                behind[topic] += max(high - read, 0)
        return dict(behind)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _consumer_or_new(self) -> Consumer:
        if self._consumer is None:
            # The group is never joined (partitions are assigned); "earliest" is where a
            # start that retention deleted resumes.
            self._consumer = Consumer(
                consumer_config(self.config.bootstrap, self.group_id, auto_offset_store=False)
            )
        return self._consumer

    def _start_offsets(
        self, consumer: Consumer, topic: str, partitions: dict[int, object]
    ) -> list[TopicPartition]:
        """Each partition's first record stamped at or after the replay start; the
        partition's beginning where Kafka names none (every record is older, or the
        broker has no time index for it): replaying more is safe, skipping is not."""
        if self.config.replay_ms == 0:  # no replay: what is produced from now on
            return [TopicPartition(topic, partition, OFFSET_END) for partition in partitions]
        since = replay_start_ms(
            self.clock.now_ms(), time.time_ns() // 1_000_000, self.config.replay_ms
        )
        wanted = [TopicPartition(topic, partition, since) for partition in sorted(partitions)]
        found = consumer.offsets_for_times(wanted, timeout=self.config.timeout_s)
        starts = []
        for answer in found:
            known = answer.error is None and answer.offset >= 0
            offset = answer.offset if known else OFFSET_BEGINNING
            starts.append(TopicPartition(topic, answer.partition, offset))
            self._starts[(topic, answer.partition)] = max(offset, 0)
        return starts


@dataclass
class UpdaterStatus:
    """What the updater did, per process; read by tests and operators (metrics carry it)."""

    applied: Counter[str] = field(default_factory=Counter)  # by kind
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, reason)
    unknown_posts: int = 0
    latest_event_ms: dict[str, int] = field(default_factory=dict)  # by kind
    missing_topics: list[str] = field(default_factory=list)
    last_error: str = ""


class FeatureEvents:
    """Decodes records and applies them to a store, counting what it skips (no Kafka)."""

    def __init__(self, store: FeatureStore, *, rewards_topic: str, decisions_topic: str) -> None:
        self.store = store
        self.kinds = {rewards_topic: REWARD, decisions_topic: DECISION}
        self.status = UpdaterStatus()

    def apply(self, records: list[Message]) -> None:
        for record in records:
            kind = self.kinds.get(record.topic() or "")
            if kind is None:
                continue  # not ours: only the two topics are assigned
            if record.error() is not None:
                self._skip(kind, "consumer_error")
                self.note_error(f"{kind} stream: {record.error()}")
                continue
            try:
                event_ms = (self._reward if kind == REWARD else self._decision)(record)
            except codecs.EventDecodeError:
                self._skip(kind, "undecodable")  # the join dead-letters it; we only count
                continue
            except (ValueError, IndexError) as error:  # the store refused it
                self._skip(kind, "rejected")
                self.note_error(f"{kind} not applied: {error}")
                continue
            except Exception as error:  # a bug: count it, log it once, go on with the rest
                self._skip(kind, "error")
                if str(error) != self.status.last_error:
                    log.exception("feature updates: applying a %s failed", kind)
                self.status.last_error = str(error)
                continue
            if event_ms is None:
                self._skip(kind, "unknown_post")
                continue
            self.status.applied[kind] += 1
            metrics.FEATURE_EVENTS_APPLIED.labels(kind=kind).inc()
            latest = max(event_ms, self.status.latest_event_ms.get(kind, event_ms))
            self.status.latest_event_ms[kind] = latest
            metrics.FEATURE_EVENT_TIME.labels(kind=kind).set(latest / 1000)

    def _reward(self, record: Message) -> int | None:
        reward = codecs.decode_reward(record.value(), record.headers())
        if self._row(reward.post_id, REWARD) is None:
            return None
        apply_reward(self.store, reward)
        return reward.ts_ms

    def _decision(self, record: Message) -> int | None:
        decision = codecs.decode_decision(record.value())
        shown = [self._row(item.post_id, DECISION) for item in decision.items]
        rows = [row for row in shown if row is not None]
        if not rows and shown:
            return None  # every shown post is unknown here
        if rows:
            indices = np.asarray(rows, dtype=np.int64)
            self.store.record_impressions(indices, decision.event_time_ms)
        return decision.event_time_ms

    def _row(self, identifier: str, kind: str) -> int | None:
        """The post's row in this catalogue; None (and counted) for a post we lack, e.g.
        from a world with another size or seed."""
        row = self.store.post_row(identifier)
        if row is None:
            self.status.unknown_posts += 1
            metrics.FEATURE_UNKNOWN_POSTS.labels(kind=kind).inc()
            return None
        return row

    def _skip(self, kind: str, reason: str) -> None:
        self.status.skipped[(kind, reason)] += 1
        metrics.FEATURE_EVENTS_SKIPPED.labels(kind=kind, reason=reason).inc()

    def note_error(self, error: str) -> None:
        if error != self.status.last_error:
            log.warning("feature updates: %s", error)
        self.status.last_error = error


@dataclass(frozen=True)
class UpdaterTiming:
    batch_size: int = 200  # records applied between yields to request threads
    poll_timeout_s: float = 0.5  # also bounds how long stop() waits for the thread
    retry_s: float = 5.0  # between attempts to reach Kafka or a missing topic
    lag_interval_s: float = 10.0


class FeatureUpdater:
    """The per-worker thread: attach to the topics (retrying), then apply what arrives."""

    def __init__(
        self,
        events: FeatureEvents,
        source: EventSource,
        timing: UpdaterTiming | None = None,
    ) -> None:
        self.events = events
        self.source = source
        self.timing = timing or UpdaterTiming()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def status(self) -> UpdaterStatus:
        return self.events.status

    def start(self) -> None:
        """Start the thread and return at once: Kafka is reached from the thread, so a
        broker that is down never delays start-up or health."""
        self._thread = threading.Thread(
            target=self._run, name="feedrank-feature-updater", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread; it closes the consumer itself (a consumer is not shared
        between threads)."""
        self._stop.set()
        if self._thread is None:
            self.source.close()
            return
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("the feature updater did not stop within %ss", timeout_s)

    def _run(self) -> None:
        timing = self.timing
        attached, next_attach, next_lag = False, 0.0, 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if not attached and now >= next_attach:
                    attached = self._attach()
                    next_attach = now + timing.retry_s
                records = self._step()
                if attached and now >= next_lag:
                    self._report_lag()
                    next_lag = now + timing.lag_interval_s
                if len(records) == timing.batch_size:
                    time.sleep(0)  # catching up: let request threads run
        finally:
            self.source.close()

    def _attach(self) -> bool:
        """True once every topic is read; problems are logged (once) and retried."""
        status = self.status
        try:
            missing = self.source.attach()
        except KafkaException as error:
            self.events.note_error(f"Kafka unavailable, retrying: {error}")
            return False
        if missing and missing != status.missing_topics:
            log.warning("feature updates: topics %s not found, retrying", ", ".join(missing))
        status.missing_topics = missing
        return not missing

    def _step(self) -> list[Message]:
        try:
            records = self.source.poll(self.timing.batch_size, self.timing.poll_timeout_s)
            self.events.apply(records)
        except Exception:  # whatever goes wrong, serving goes on and the thread retries
            log.exception("feature updates failed; retrying in %ss", self.timing.retry_s)
            self._stop.wait(self.timing.retry_s)
            return []
        return records

    def _report_lag(self) -> None:
        try:
            behind = self.source.lag()
        except KafkaException as error:
            log.debug("feature updates: lag unknown: %s", error)
            return
        for topic, records in behind.items():
            kind = self.events.kinds.get(topic)
            if kind is not None:
                metrics.FEATURE_LAG.labels(kind=kind).set(records)


def kafka_feature_updater(
    store: FeatureStore,
    config: KafkaSourceConfig,
    clock: Clock,
    timing: UpdaterTiming | None = None,
) -> FeatureUpdater:
    """An updater of ``store`` from the configured topics (not started)."""
    events = FeatureEvents(
        store, rewards_topic=config.rewards_topic, decisions_topic=config.decisions_topic
    )
    return FeatureUpdater(events, KafkaEventSource(config, clock), timing)
