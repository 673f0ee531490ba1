"""What the chaos run checks once the faults are over: nothing lost, nothing twice.

* Rank calls: from the traffic's call log, per fault window.
* Decisions lost: decisions whose Rank call answered OK (the app holds their id) but
  that never reached ``feedrank.decisions``.
* Examples lost or duplicated: set equality of ``(decision_id, post_id)`` between the
  shown items of the decisions on Kafka (those whose reward window has closed) and
  ``feedrank.examples`` read committed, plus a count of keys seen more than once.
* The join resubmitted after the JobManager's loss: its
  ``feedrank_join_resubmissions_total`` (a JobManager without HA forgets its jobs).
* Learner updates applied exactly once: the learner's last checkpoint
  (``progress.json``) against the examples topic: the offsets it resumed from, how
  many examples it applied and an order-free digest of their keys.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from feedrank.core import codecs
from feedrank.learners.online.checkpoint import CheckpointStore, key_digest
from feedrank.v1 import events_pb2


@dataclass(frozen=True)
class Call:
    t: float
    ok: bool
    code: str
    decision: str


@dataclass
class CallLog:
    calls: list[Call] = field(default_factory=list)
    likes: list[tuple[float, str]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> CallLog:
        log = cls()
        if not path.exists():
            return log
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # the last line, still being written
                continue
            if "like" in record:
                log.likes.append((record["t"], record["like"]))
            else:
                log.calls.append(
                    Call(record["t"], record["ok"], record["code"], record["decision"])
                )
        return log

    def between(self, start: float, end: float) -> list[Call]:
        return [call for call in self.calls if start <= call.t < end]


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    value: bytes


def read_topic(bootstrap: str, topic: str, timeout_s: float = 300.0) -> list[Record]:
    """Every record of ``topic`` up to its end offsets as of now, read committed."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"chaos-ledger-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    values: list[Record] = []
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        ends = {}
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 30)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, partition, 0) for partition in ends])
        reached = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + timeout_s
        while any(reached[p] < ends[p] for p in ends):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{topic}: not read to its end in {timeout_s:.0f}s")
            for message in consumer.consume(num_messages=2000, timeout=0.5):
                if message.error() is not None:
                    continue
                partition, offset = int(message.partition() or 0), int(message.offset() or 0)
                reached[partition] = max(reached[partition], offset + 1)
                if offset < ends[partition] and message.value() is not None:
                    values.append(Record(partition, offset, bytes(message.value() or b"")))
            # read_committed skips transaction markers: the position says how far we are.
            for position in consumer.position([TopicPartition(topic, p) for p in ends]):
                if position.offset >= 0:
                    reached[position.partition] = max(reached[position.partition], position.offset)
    finally:
        consumer.close()
    return values


@dataclass(frozen=True)
class LoggedDecisions:
    """The decisions on Kafka: their ids, event times and shown posts."""

    shown: dict[str, tuple[int, tuple[str, ...]]]  # id -> (event time ms, post ids)
    copies: int  # records of a decision id seen before (a retried log write)

    @classmethod
    def read(cls, bootstrap: str, topic: str) -> LoggedDecisions:
        shown: dict[str, tuple[int, tuple[str, ...]]] = {}
        copies = 0
        for record in read_topic(bootstrap, topic):
            decision = codecs.decode_decision(record.value)
            if decision.decision_id in shown:
                copies += 1
            items = tuple(item.post_id for item in decision.items)
            shown[decision.decision_id] = (decision.event_time_ms, items)
        return cls(shown, copies)


@dataclass(frozen=True)
class ExampleCheck:
    expected: int  # (decision, post) pairs of the decisions whose window closed
    missing: int
    duplicated: int  # of those pairs, how many came out more than once
    unexpected: int  # examples of no logged decision


def example_keys(examples: list[Record]) -> Counter[tuple[str, str]]:
    """How often each ``(decision_id, post_id)`` came out of the join."""
    keys: Counter[tuple[str, str]] = Counter()
    for record in examples:
        example = codecs.decode(events_pb2.LabelledExample, record.value)
        keys[(example.decision_id, example.post_id)] += 1
    return keys


def check_examples(
    decisions: LoggedDecisions, keys: Counter[tuple[str, str]], closed_before_ms: int
) -> ExampleCheck:
    """The examples of ``decisions`` (those before ``closed_before_ms``) against their
    shown items: every pair exactly once."""
    expected = {
        (decision_id, post_id)
        for decision_id, (event_ms, posts) in decisions.shown.items()
        if event_ms < closed_before_ms
        for post_id in posts
    }
    known = set(decisions.shown)
    return ExampleCheck(
        expected=len(expected),
        missing=len(expected - set(keys)),
        duplicated=sum(1 for key in expected if keys.get(key, 0) > 1),
        unexpected=sum(1 for decision_id, _ in keys if decision_id not in known),
    )


@dataclass(frozen=True)
class LearnerCheck:
    """The learner's last checkpoint against the records it says it consumed."""

    expected: int  # examples those records stand for (fake negatives, engaged examples)
    applied: int
    digest_matches: bool
    consumed_all: bool  # its offsets stand past the last record of every partition

    @property
    def exactly_once(self) -> bool:
        """Each example applied once: the same count and the same order-free key digest."""
        return self.applied == self.expected and self.digest_matches


def data_ends(topic: str, records: list[Record]) -> dict[str, int]:
    """``topic:partition`` -> the offset after its last record (markers not counted)."""
    ends: dict[str, int] = {}
    for record in records:
        key = f"{topic}:{record.partition}"
        ends[key] = max(ends.get(key, 0), record.offset + 1)
    return ends


def learner_keys(
    offsets: dict[str, int],
    decisions: tuple[str, list[Record]],
    examples: tuple[str, list[Record]],
) -> list[str]:
    """The example keys an online learner (fake negatives: every shown item of a decision
    as a negative, then every engaged example) applies from the records below
    ``offsets``."""
    keys = []
    topic, records = decisions
    for record in records:
        if record.offset < offsets.get(f"{topic}:{record.partition}", 0):
            decision = codecs.decode_decision(record.value)
            keys += [f"{decision.decision_id}/{item.post_id}" for item in decision.items]
    topic, records = examples
    for record in records:
        if record.offset < offsets.get(f"{topic}:{record.partition}", 0):
            example = codecs.decode(events_pb2.LabelledExample, record.value)
            if example.engaged:
                keys.append(f"{example.decision_id}/{example.post_id}")
    return keys


def check_learner(
    learner_state: Path, decisions: tuple[str, list[Record]], examples: tuple[str, list[Record]]
) -> LearnerCheck:
    """The learner's last checkpoint (it started from an empty state) against the
    decisions and examples on Kafka: every example it consumed applied exactly once."""
    progress = CheckpointStore(learner_state).progress()
    if progress is None:
        raise RuntimeError(f"the learner left no checkpoint under {learner_state}")
    keys = learner_keys(progress.offsets, decisions, examples)
    ends = {**data_ends(*decisions), **data_ends(*examples)}
    return LearnerCheck(
        expected=len(keys),
        applied=progress.examples_applied,
        digest_matches=progress.key_digest == key_digest(keys),
        consumed_all=all(progress.offsets.get(key, 0) >= end for key, end in ends.items()),
    )


def join_resubmissions(metrics_port: int) -> int:
    """How many times ``feedrank join`` resubmitted the job (its /metrics counter)."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        int(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "feedrank_join_resubmissions_total"
    )
