"""The online learner's Kafka consumers: assign, poll and commit, through broker outages.

One read-committed consumer per topic read, polled together (see :class:`TopicReaders`).
Nothing here raises when the broker goes away: assigning waits and retries with backoff,
polls return nothing, and offset commits are asynchronous, their failures noted and the
latest offsets committed again once the broker answers. A :class:`BrokerLink` holds
whether Kafka is reachable (the learner's ``feedrank_learner_kafka_up`` gauge).

Commits only feed lag monitoring: the learner's checkpoint holds the offsets it resumes
from (:mod:`feedrank.learners.online.checkpoint`), so a commit that fails or arrives late
never loses an example nor applies one twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from feedrank.core.kafka_clients import KafkaTarget, consumer_config
from feedrank.core.kafka_link import BrokerLink

SHOWN_ITEMS_PER_DECISION = 16  # about a feed's length: decisions polled per example record
PROBE_TIMEOUT_S = 2.0  # a metadata request while the broker is unreachable
ASSIGN_TIMEOUT_S = 5.0  # the metadata request that finds a topic's partitions
COMMIT_WAIT_MS = 6_000  # longest wait of a commit for the group coordinator


class TopicReaders:
    """One read-committed consumer per topic read, polled together.

    With fake negatives a micro-batch should hold impressions and engagements of about
    the same period: one consumer over both topics returns whole fetches of one topic at
    a time (hundreds of decisions, i.e. thousands of negatives, then hundreds of
    examples), and steps alternate between all-negative and mostly-positive batches,
    which swings the model. So each poll takes up to a micro-batch of examples and a
    proportional number of decisions (each stands for a feed of shown items).
    """

    def __init__(
        self,
        *,
        bootstrap: KafkaTarget,
        group_id: str,
        topics: list[str],
        decisions_topic: str | None,
        micro_batch_size: int,
        poll_timeout_s: float,
        link: BrokerLink,
    ) -> None:
        self.decisions_topic = decisions_topic
        self.micro_batch_size = micro_batch_size
        self.poll_timeout_s = poll_timeout_s
        self.link = link
        self._uncommitted: dict[str, int] = {}  # offsets whose commit has not succeeded yet
        config = consumer_config(
            bootstrap,
            group_id,
            log_level=0,  # the link logs an outage once, not each reconnection
            error_cb=link.on_client_error,
            on_commit=self._on_commit,
        )
        # The group is never joined (partitions are assigned): the session timeout only
        # bounds how long a commit waits for a coordinator, and so how long closing
        # waits for a commit in flight (librdkafka's default: 45 s).
        config["session.timeout.ms"] = COMMIT_WAIT_MS
        self.consumers = {topic: Consumer(config) for topic in topics}

    def assign(self, offsets: dict[str, int], stop: threading.Event) -> bool:
        """Every partition of each topic, from ``offsets`` (else the beginning). Waits,
        retrying with backoff, while Kafka or a topic is unavailable; False when ``stop``
        was set first."""
        for topic, consumer in self.consumers.items():
            partitions = self._retry(partial(_partitions, consumer, topic), stop)
            if partitions is None:
                return False
            consumer.assign(
                [
                    TopicPartition(
                        topic, partition, offsets.get(f"{topic}:{partition}", OFFSET_BEGINNING)
                    )
                    for partition in partitions
                ]
            )
        return True

    def poll(self) -> list[Message]:
        """Records of every topic (possibly none); while Kafka is unreachable, a probe
        now and then, and the pending commit once it answers again."""
        was_up = self.link.up
        timeout = self.poll_timeout_s / len(self.consumers)
        messages: list[Message] = []
        for topic, consumer in self.consumers.items():
            count = self.micro_batch_size
            if topic == self.decisions_topic:
                count = max(1, count // SHOWN_ITEMS_PER_DECISION)
            messages += consumer.consume(num_messages=count, timeout=timeout)
        # Records alone prove nothing: librdkafka hands out what it fetched before the
        # broker went away. A metadata request that succeeds does.
        if self.link.probe_due():
            topic, consumer = next(iter(self.consumers.items()))
            self.link.attempt(
                partial(consumer.list_topics, topic, timeout=PROBE_TIMEOUT_S), "metadata request"
            )
        if self.link.up and not was_up and self._uncommitted:
            self._send_commits(asynchronous=True)
        return messages

    def commit(self, offsets: dict[str, int]) -> None:
        """Commit ``offsets`` asynchronously (for lag monitoring); one that fails is
        committed again, with the newest offsets, once the broker answers."""
        self._uncommitted = dict(offsets)
        if self.link.up:  # else they go once a probe finds the broker again
            self._send_commits(asynchronous=True)

    def close(self) -> None:
        """Commit what is still uncommitted (synchronously, if the broker answers), close."""
        if self._uncommitted and self.link.up:
            self._send_commits(asynchronous=False)
        for consumer in self.consumers.values():
            consumer.close()

    def _send_commits(self, *, asynchronous: bool) -> None:
        """The uncommitted offsets to each topic's consumer. An asynchronous commit's
        outcome comes to :meth:`_on_commit`; a synchronous one's is known at once."""
        for topic, consumer in self.consumers.items():
            mine = _partitions_of(self._uncommitted, topic)
            if not mine:
                continue
            try:
                if asynchronous:
                    consumer.commit(offsets=mine, asynchronous=True)
                    continue
                consumer.commit(offsets=mine, asynchronous=False)
            except KafkaException as error:
                self.link.lost(f"offset commit failed: {error.args[0] if error.args else error}")
                return
            self._committed(mine)
            self.link.found()

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        failed = [part.error for part in partitions if part.error is not None]
        if error is not None or failed:
            self.link.lost(f"offset commit failed: {error or failed[0]}")
            return
        self._committed(partitions)
        self.link.found()

    def _committed(self, partitions: list[TopicPartition]) -> None:
        """Forget the pending offsets these commits brought to the broker."""
        for part in partitions:
            key = f"{part.topic}:{part.partition}"
            if self._uncommitted.get(key) == part.offset:
                del self._uncommitted[key]

    def _retry(self, request: Callable[[], Any], stop: threading.Event) -> Any:
        while not stop.is_set():
            result = self.link.attempt(request, "metadata request")
            if result is not None:
                return result
            stop.wait(self.link.seconds_to_next_try())
        return None


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    """The topic's partitions; KafkaException when Kafka does not answer or the topic
    is missing or has no leader (yet)."""
    metadata = consumer.list_topics(topic, timeout=ASSIGN_TIMEOUT_S)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        error = described.error if described is not None else "no such topic"
        raise KafkaException(f"topic {topic!r} is not available: {error}")
    return sorted(described.partitions)


def _partitions_of(offsets: dict[str, int], topic: str) -> list[TopicPartition]:
    parts = []
    for key, offset in sorted(offsets.items()):
        name, partition = key.rsplit(":", 1)
        if name == topic:
            parts.append(TopicPartition(name, int(partition), offset))
    return parts
