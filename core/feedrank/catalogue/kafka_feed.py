"""The catalogue topics into a :class:`CatalogueState`: replay from the start, then tail.

Every process that serves from the catalogue reads all of ``feedrank.posts``,
``feedrank.users`` and ``feedrank.graph`` itself (all partitions assigned, from the
beginning, nothing committed): the topics are the state, so a restarted worker or a new
replica on another host reaches the same state from Kafka alone. :meth:`CatalogueFeed.replay`
reads up to the high watermarks taken when it starts (what existed at start-up) and
returns; :meth:`CatalogueFeed.start` then tails on a thread, so an upsert is servable as
soon as it is read. A process that forks its workers replays once, hands each worker
:meth:`CatalogueFeed.positions` and closes its consumer (:meth:`CatalogueFeed.detach`);
each worker's feed then tails from those positions (``start_at``) over its copy of the
state. ``after_batch`` runs on the feed's thread after each batch of records is applied
(explore indexes the batch's new posts there).

A record that does not decode, whose key is not its id, or that is older than the state
it would replace goes to ``feedrank.dlq`` with the usual headers (stage ``catalogue``)
and changes nothing; every good event is applied. With several replicas each one
dead-letters the same bad record: ``feedrank.dlq.source-offset`` tells the copies apart
from new failures.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from feedrank.catalogue.state import CatalogueState, ConflictingEvent
from feedrank.core import codecs, entity_codecs
from feedrank.core.kafka_clients import KafkaTarget, consumer_config, idempotent_producer_config
from feedrank.v1 import events_pb2

log = logging.getLogger(__name__)
DLQ_STAGE = "catalogue"


@dataclass(frozen=True)
class CatalogueTopics:
    bootstrap: KafkaTarget  # a bootstrap string (plaintext), or one with its security
    posts: str = "feedrank.posts"
    users: str = "feedrank.users"
    graph: str = "feedrank.graph"
    dlq: str = "feedrank.dlq"

    def entity_topics(self) -> list[str]:
        return [self.posts, self.users, self.graph]


@dataclass
class FeedStatus:
    """What the feed has done so far (read by health and metrics)."""

    applied: Counter[str] = field(default_factory=Counter)  # by topic
    rejected: Counter[str] = field(default_factory=Counter)  # by topic
    replayed: bool = False
    last_error: str | None = None


class CatalogueEvents:
    """Decode, check and apply one record; say why when it is refused."""

    def __init__(
        self,
        state: CatalogueState,
        topics: CatalogueTopics,
        on_user_erased: Callable[[str], None] | None = None,
    ) -> None:
        self.state = state
        self.topics = topics
        self.on_user_erased = on_user_erased

    def apply(
        self, topic: str, key: bytes | None, value: bytes | None, headers: codecs.Headers
    ) -> None:
        """Apply the record; EventDecodeError or ConflictingEvent when it is refused."""
        if topic == self.topics.posts:
            post = entity_codecs.decode_post_event(value, headers)
            entity_codecs.check_key(key, post.post_id, field="post_id")
            self.state.apply_post(post)
        elif topic == self.topics.users:
            user = entity_codecs.decode_user_event(value, headers)
            entity_codecs.check_key(key, user.user_id, field="user_id")
            if self.state.apply_user(user) and self.on_user_erased is not None:
                self.on_user_erased(user.user_id)
        elif topic == self.topics.graph:
            edge = entity_codecs.decode_graph_event(value, headers)
            entity_codecs.check_key(key, edge.user_id, field="user_id")
            self.state.apply_graph(edge)
        else:
            raise ValueError(f"{topic!r} is not a catalogue topic")


class CatalogueFeed:
    """One consumer over the three topics (from the beginning) and a dead-letter producer."""

    def __init__(
        self,
        events: CatalogueEvents,
        *,
        poll_timeout_s: float = 0.2,
        batch_size: int = 2_000,
        clock_ms: Callable[[], int] | None = None,
        start_at: Mapping[tuple[str, int], int] | None = None,
        after_batch: Callable[[], None] | None = None,
    ) -> None:
        self.events = events
        self.start_at = dict(start_at or {})  # (topic, partition) -> offset; else the start
        self.after_batch = after_batch
        self.topics = events.topics
        self.status = FeedStatus()
        self.poll_timeout_s = poll_timeout_s
        self.batch_size = batch_size
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._consumer: Consumer | None = None
        self._ends_at_attach: dict[tuple[str, int], int] = {}  # high watermarks, per partition
        self._producer: Producer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def replay(
        self, timeout_s: float = 300.0, progress: Callable[[int], None] | None = None
    ) -> int:
        """Apply everything the topics held when this was called; the records read.

        Users and the graph are replayed before posts, so a post's creator profile (its
        country) is known when the post is applied, whatever order the topics were
        written in: every replica reaches the same state. Raises TimeoutError when the
        end is not reached in ``timeout_s`` (Kafka down, a topic missing)."""
        deadline = time.monotonic() + timeout_s
        consumer = self._attach(deadline)
        ends = self._ends_at_attach
        posts = [TopicPartition(*part) for part in ends if part[0] == self.topics.posts]
        consumer.pause(posts)
        first = {part: end for part, end in ends.items() if part[0] != self.topics.posts}
        read = self._replay_to(consumer, first, deadline, progress, 0)
        consumer.resume(posts)
        rest = {part: end for part, end in ends.items() if part[0] == self.topics.posts}
        read = self._replay_to(consumer, rest, deadline, progress, read)
        self.flush()
        self.status.replayed = True
        return read

    def _replay_to(
        self,
        consumer: Consumer,
        ends: dict[tuple[str, int], int],
        deadline: float,
        progress: Callable[[int], None] | None,
        read: int,
    ) -> int:
        """Consume until every partition in ``ends`` reached its end; records read so far."""
        pending = {part for part, end in ends.items() if end > 0}
        pending = {part for part in pending if not self._reached(consumer, part, ends[part])}
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError("catalogue replay did not reach the topics' ends in time")
            records = consumer.consume(self.batch_size, timeout=self.poll_timeout_s)
            self._apply(records)
            read += len(records)
            for record in records:
                part = (record.topic() or "", record.partition() or 0)
                if part in pending and (record.offset() or 0) + 1 >= ends[part]:
                    pending.discard(part)
            if progress is not None and records:
                progress(read)
            pending = {part for part in pending if not self._reached(consumer, part, ends[part])}
        return read

    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset to read per partition read so far (hand them to ``start_at``)."""
        if self._consumer is None:
            return dict(self.start_at)
        positions = self._consumer.position(self._consumer.assignment())
        return {(tp.topic, tp.partition): tp.offset for tp in positions if tp.offset >= 0}

    def detach(self) -> None:
        """Close the consumer and producer (before a fork: they must not cross it)."""
        self._close()
        if self._producer is not None:
            self._producer = None

    def start(self) -> None:
        """Tail the topics on a thread (after :meth:`replay`, or from ``start_at``)."""
        self._thread = threading.Thread(target=self._tail, name="feedrank-catalogue", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        else:
            self._close()

    def flush(self, timeout_s: float = 10.0) -> None:
        if self._producer is not None:
            self._producer.flush(timeout_s)

    def _tail(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    consumer = self._attach(time.monotonic() + 30.0)
                    self._apply(consumer.consume(self.batch_size, timeout=self.poll_timeout_s))
                    if self._producer is not None:
                        self._producer.poll(0)
                except Exception as error:  # noqa: BLE001 - serving goes on; the thread retries
                    self._note(f"catalogue feed failed, retrying: {error}")
                    self._stop.wait(2.0)
        finally:
            self._close()

    def _apply(self, records: list[Message]) -> None:
        self._apply_records(records)
        if records and self.after_batch is not None:
            self.after_batch()

    def _apply_records(self, records: list[Message]) -> None:
        for record in records:
            error = record.error()
            if error is not None:
                self._note(f"consumer error: {error}")  # partition EOF is off
                continue
            topic = record.topic() or ""
            try:
                self.events.apply(topic, record.key(), record.value(), record.headers())
            except (codecs.EventDecodeError, ConflictingEvent) as refused:
                self._dead_letter(record, str(refused))
                self.status.rejected[topic] += 1
                continue
            except Exception as error:  # a bug here must not drop the record silently
                log.exception("catalogue event at %s offset %s failed", topic, record.offset())
                self._dead_letter(record, f"internal error: {error!r}")
                self.status.rejected[topic] += 1
                continue
            self.status.applied[topic] += 1

    def _dead_letter(self, record: Message, error: str) -> None:
        topic, partition, offset = (
            record.topic() or "",
            record.partition() or 0,
            record.offset() or 0,
        )
        letter = events_pb2.DeadLetter(
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            key=record.key() or b"",
            value=record.value() or b"",
            error=error,
            failed_at_ms=self._clock_ms(),
            stage=DLQ_STAGE,
        )
        producer = self._producer_or_new()
        producer.produce(
            self.topics.dlq,
            key=record.key(),
            value=codecs.encode(letter),
            headers=list[tuple[str, str | bytes | None]](
                codecs.dead_letter_headers(topic, partition, offset, error, DLQ_STAGE)
            ),
        )
        producer.poll(0)

    def _attach(self, deadline: float) -> Consumer:
        if self._consumer is not None:
            return self._consumer
        begin = OFFSET_BEGINNING
        # The group is never joined (partitions are assigned) and never committed:
        # every process reads the whole state, from the offsets it assigns.
        consumer = Consumer(
            consumer_config(
                self.topics.bootstrap,
                f"feedrank-catalogue-{socket.gethostname()}-{os.getpid()}",
                isolation_level=None,
                offset_reset=None,
                partition_eof=False,
            )
        )
        while True:
            try:
                metadata = consumer.list_topics(timeout=5.0)
                missing = [t for t in self.topics.entity_topics() if t not in metadata.topics]
                if not missing:
                    break
                self._note(f"catalogue topics {missing} not found, retrying")
            except KafkaException as error:
                self._note(f"Kafka unavailable, retrying: {error}")
            if time.monotonic() > deadline or self._stop.is_set():
                consumer.close()
                raise TimeoutError(f"catalogue topics unreachable: {self.status.last_error}")
            self._stop.wait(1.0)
        parts = [
            (topic, partition)
            for topic in self.topics.entity_topics()
            for partition in metadata.topics[topic].partitions
        ]
        # The ends are read before the assignment: once assigned, the consumer's fetch
        # long-polls (fetch.wait.max.ms) and each offset query would wait behind it.
        self._ends_at_attach = {
            part: consumer.get_watermark_offsets(TopicPartition(*part), timeout=10.0)[1]
            for part in parts
        }
        consumer.assign([TopicPartition(*part, self.start_at.get(part, begin)) for part in parts])
        self._consumer = consumer
        return consumer

    @staticmethod
    def _reached(consumer: Consumer, part: tuple[str, int], end: int) -> bool:
        position = consumer.position([TopicPartition(*part)])[0].offset
        return position >= end

    def _producer_or_new(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(idempotent_producer_config(self.topics.bootstrap))
        return self._producer

    def _note(self, error: str) -> None:
        if error != self.status.last_error:
            log.warning("%s", error)
        self.status.last_error = error

    def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self.flush()
