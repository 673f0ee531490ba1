"""Decisions re-read from the decisions topic by position, for the examples the join writes.

The join's state keeps labels only (``label_state``); an example's features come from
the decision itself, on the log. :class:`DecisionLog` answers "the decision at
partition p, offset o":

* from memory when it is recent: every decision the join sees is remembered in a
  bounded cache (most positives come within minutes of their impression);
* else from Kafka, read committed. Window closes come in event-time order, which is
  (nearly) the log's order per partition, so a read goes on forward from where the
  last one ended, a batch at a time, and every decision it passes is cached for the
  closes that follow.

Nothing here is checkpointed: the log is immutable, so a restored job reads the same
bytes again. A decision the log no longer has (the topic's retention shorter than the
reward window) raises :class:`~feedrank.streaming.join_logic.DecisionUnavailable`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from feedrank.core.kafka_clients import KafkaTarget, consumer_config
from feedrank.streaming.join_logic import DecisionUnavailable
from feedrank.streaming.label_state import LogPosition

READ_BATCH = 500  # records per consume() call when reading the log forward


@dataclass(frozen=True)
class DecisionLogConfig:
    bootstrap: KafkaTarget  # a bootstrap string (plaintext), or one with its security
    topic: str
    # Bytes of decisions kept in memory (recent arrivals and what reads passed).
    cache_bytes: int = 64 * 1024 * 1024
    # How long one read may wait for the broker before it gives up.
    read_timeout_s: float = 60.0


class DecisionLog:
    """Decision bytes by log position: a bounded cache in front of a Kafka reader."""

    def __init__(self, config: DecisionLogConfig) -> None:
        self.config = config
        self._cache: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._cached_bytes = 0
        self._consumer: Any = None
        self._next: dict[int, int] = {}  # assigned partition -> offset of its next record
        self._ever_assigned: set[int] = set()  # partitions this consumer has fetched
        self.reads = 0  # decisions fetched from Kafka (not the cache)
        self.hits = 0

    def remember(self, position: LogPosition, payload: bytes) -> None:
        """Cache a decision the join has just seen."""
        key = (position.partition, position.offset)
        if key in self._cache:
            self._cache.move_to_end(key)
            return
        self._cache[key] = payload
        self._cached_bytes += len(payload)
        while self._cached_bytes > self.config.cache_bytes and self._cache:
            _, evicted = self._cache.popitem(last=False)
            self._cached_bytes -= len(evicted)

    def payload(self, position: LogPosition) -> bytes:
        """The decision's bytes at ``position``."""
        cached = self._cache.get((position.partition, position.offset))
        if cached is not None:
            self.hits += 1
            return cached
        self.reads += 1
        return self._read(position)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _read(self, position: LogPosition) -> bytes:
        """Read forward to ``position``, caching every record on the way (a whole batch
        at a time: what ``consume`` returned is never fetched again)."""
        consumer = self._consumer_at(position)
        deadline = time.monotonic() + self.config.read_timeout_s
        found: bytes | None = None
        passed = False  # the wanted partition was read past the wanted offset
        while found is None and not passed and time.monotonic() < deadline:
            # consume() waits for a whole batch or the timeout: keep the wait short,
            # the wanted record may be among the last on the partition.
            for message in consumer.consume(READ_BATCH, timeout=0.05):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    self._drop(message.partition())
                    raise DecisionUnavailable(f"reading {self.config.topic}: {error.str()}")
                partition, offset = message.partition(), message.offset()
                value = message.value() or b""
                self._next[partition] = offset + 1
                self.remember(LogPosition(partition, offset), value)
                if partition == position.partition:
                    if offset == position.offset:
                        found = value
                    passed = passed or offset > position.offset
        if found is not None:
            return found
        if passed:  # the offset holds a transaction marker, not a decision
            raise DecisionUnavailable(f"no record at offset {position.offset}")
        self._drop(position.partition)
        raise DecisionUnavailable(
            f"timed out after {self.config.read_timeout_s:.0f}s reading {self.config.topic}"
        )

    def _consumer_at(self, position: LogPosition) -> Any:
        """The consumer, reading ``position``'s partition from at or before its offset:
        left where it is when the wanted offset is just ahead, else moved there.

        Moving a partition the consumer already fetched is done with a new consumer:
        records fetched ahead for the old position may still be queued, and one of
        them would pass for the record at the new one. Reads mostly go forward (window
        closes come in log order), so this is rare.
        """
        partition, offset = position.partition, position.offset
        at = self._next.get(partition)
        if at is not None and 0 <= offset - at <= 4 * READ_BATCH:
            return self._consumer
        if self._consumer is None or partition in self._ever_assigned:
            self.close()
            self._next, self._ever_assigned = {}, set()
            # A fetch parked at one partition's end (the broker waits for new records
            # up to this long) must not hold up a read elsewhere.
            parked: dict[str, Any] = {"fetch.wait.max.ms": 10}
            self._consumer = Consumer(
                consumer_config(
                    self.config.bootstrap,
                    "feedrank-join-decision-log",  # never commits: only assigns and reads
                    offset_reset="error",
                    **parked,
                )
            )
        self._consumer.incremental_assign([TopicPartition(self.config.topic, partition, offset)])
        self._next[partition] = offset
        self._ever_assigned.add(partition)
        return self._consumer

    def _drop(self, partition: int) -> None:
        """Forget where ``partition`` is read: the next read of it starts over."""
        self._next.pop(partition, None)
