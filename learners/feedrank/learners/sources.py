"""Where labelled examples come from: a Kafka range, or a Parquet/CSV export.

**Kafka**: every example on the topic from the beginning (or given start offsets) up to
the end offsets the topic had when reading started, read committed; the offsets reached
travel with the examples as provenance.

**Files** (``.parquet`` or ``.csv``): one row per example. Columns: ``decision_id``,
``user_id``, ``post_id``, ``decision_time_ms``, ``label_time_ms``, ``position``,
``score``, ``propensity``, ``model_version``, ``arm``, ``reward``, ``engaged``; the
impression-time features as ``user.<name>`` / ``post.<name>`` (numbers, or the
``language`` / ``country`` codes), and ``post.embedding`` as a JSON list of numbers.
Features a row lacks (e.g. the zero ``post.topic_<i>`` weights) are empty cells or nulls.
:func:`write_examples` writes exactly this format.
"""

from __future__ import annotations

import csv
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from confluent_kafka import Consumer, TopicPartition
from google.protobuf.message import Message

from feedrank.core import codecs
from feedrank.core.compact_features import is_compact_user
from feedrank.core.kafka_clients import KafkaTarget, consumer_config
from feedrank.v1 import events_pb2

_SCALARS = (
    "decision_id",
    "user_id",
    "post_id",
    "decision_time_ms",
    "label_time_ms",
    "position",
    "score",
    "propensity",
    "model_version",
    "arm",
    "reward",
    "engaged",
)
_TEXT = frozenset({"decision_id", "user_id", "post_id", "model_version", "arm"})
_INTEGER = frozenset({"decision_time_ms", "label_time_ms", "position"})
_CATEGORICAL = ("language", "country")


class ExampleSourceError(ValueError):
    """A file or topic that does not hold labelled examples."""


@dataclass
class KafkaRange:
    examples: list[events_pb2.LabelledExample] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> next offset
    undecodable: int = 0
    complete: bool = True  # False when the deadline or max_examples came before the end


Record = TypeVar("Record", bound=Message)


@dataclass
class RecordRange(Generic[Record]):
    """The records of a topic range, decoded, and how far reading got."""

    records: list[Record] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> next offset
    undecodable: int = 0
    complete: bool = True  # False when the deadline or max_records came before the end


@dataclass(frozen=True)
class Share:
    """One process's share of a source read by ``size`` processes (data parallelism):
    the topic partitions ``p`` with ``p % size == index``, or every ``size``-th row of a
    file starting at row ``index``."""

    index: int = 0
    size: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.size:
            raise ValueError(f"share {self.index} of {self.size} does not exist")

    def holds(self, number: int) -> bool:
        return number % self.size == self.index


WHOLE = Share()


def read_kafka_range(
    bootstrap: KafkaTarget,
    topic: str,
    *,
    timeout_s: float = 120.0,
    max_examples: int | None = None,
    share: Share = WHOLE,
    since_ms: int | None = None,
) -> KafkaRange:
    """Examples from the start of ``topic`` (or from the first written at ``since_ms``)
    to its end offsets as of now (read committed); of ``share``'s partitions only."""
    read = read_records(
        bootstrap,
        topic,
        events_pb2.LabelledExample,
        since_ms=since_ms,
        timeout_s=timeout_s,
        max_records=max_examples,
        share=share,
    )
    return KafkaRange(read.records, read.offsets, read.undecodable, read.complete)


def read_records(
    bootstrap: KafkaTarget,
    topic: str,
    message_type: type[Record],
    *,
    since_ms: int | None = None,
    timeout_s: float = 120.0,
    max_records: int | None = None,
    share: Share = WHOLE,
) -> RecordRange[Record]:
    """``message_type`` records of ``topic`` from its start (or from the first record
    written at ``since_ms`` or later, by Kafka timestamp) to its end offsets as of now,
    read committed; records that do not decode are counted, not kept. Only ``share``'s
    partitions are read (a topic with fewer partitions than shares is refused)."""
    consumer = Consumer(consumer_config(bootstrap, f"feedrank-read-{uuid.uuid4().hex}"))
    result: RecordRange[Record] = RecordRange()
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise ExampleSourceError(f"topic {topic!r} is not available")
        if len(metadata.partitions) < share.size:
            raise ExampleSourceError(
                f"topic {topic!r} has {len(metadata.partitions)} partitions: too few for "
                f"{share.size} readers (each reads whole partitions)"
            )
        partitions = [p for p in sorted(metadata.partitions) if share.holds(p)]
        starts = _start_offsets(consumer, topic, partitions, since_ms)
        ends: dict[int, int] = {}
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 30)
            if high > max(low, starts[partition]):
                ends[partition] = high
            result.offsets[f"{topic}:{partition}"] = high
        consumer.assign([TopicPartition(topic, p, max(starts[p], 0)) for p in ends])
        reached = {partition: starts[partition] for partition in ends}
        deadline = time.monotonic() + timeout_s
        while any(reached[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            if max_records is not None and len(result.records) >= max_records:
                break
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                if message.error() is not None:
                    continue
                reached[int(message.partition() or 0)] = int(message.offset() or 0) + 1
                try:
                    result.records.append(codecs.decode(message_type, message.value()))
                except codecs.EventDecodeError:
                    result.undecodable += 1
            for partition in ends:  # transaction markers leave gaps: ask where we are
                position = consumer.position([TopicPartition(topic, partition)])[0].offset
                reached[partition] = max(reached[partition], position)
        result.offsets.update({f"{topic}:{p}": reached[p] for p in ends})
        result.complete = all(reached[p] >= ends[p] for p in ends)
    finally:
        consumer.close()
    return result


def _start_offsets(
    consumer: Consumer, topic: str, partitions: Sequence[int], since_ms: int | None
) -> dict[int, int]:
    """Where reading starts in each partition: 0, or the first offset at ``since_ms``
    (the end, -1 from Kafka, where nothing was written since)."""
    if since_ms is None:
        return dict.fromkeys(partitions, 0)
    found = consumer.offsets_for_times(
        [TopicPartition(topic, partition, since_ms) for partition in partitions], timeout=30
    )
    starts = {}
    for position in found:
        offset = int(position.offset)
        if offset < 0:  # nothing at or after since_ms: start at the end
            offset = consumer.get_watermark_offsets(TopicPartition(topic, position.partition), 30)[
                1
            ]
        starts[int(position.partition)] = offset
    return starts


def write_examples(examples: Sequence[events_pb2.LabelledExample], path: Path) -> None:
    """Export examples as Parquet or CSV (by suffix), in the documented format. A compact
    example (``catalogue_version`` set, or a typed user) lacks features the format has
    no place for (its post's static features, its user's names): complete it first
    (``PostFeatureRejoin``)."""
    for example in examples:
        if example.catalogue_version or is_compact_user(example.user_features):
            raise ExampleSourceError(
                f"example {example.decision_id}/{example.post_id} is compact: complete its "
                "features (PostFeatureRejoin.complete) before exporting it"
            )
    rows = [_row(example) for example in examples]
    columns = list(dict.fromkeys(name for row in rows for name in row))
    if path.suffix == ".parquet":  # every column, null where a row lacks it (sparse topics)
        table = pa.table({name: [row.get(name) for row in rows] for name in columns})
        pq.write_table(table, path)
    elif path.suffix == ".csv":
        with path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    else:
        raise ExampleSourceError(f"{path}: want a .parquet or .csv file")


def read_examples(path: Path, share: Share = WHOLE) -> list[events_pb2.LabelledExample]:
    """Examples from a Parquet or CSV export (``share``'s rows); ExampleSourceError naming
    the bad row."""
    if path.suffix == ".parquet":
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        columns = set(rows[0]) if rows else set()
    elif path.suffix == ".csv":
        with path.open(newline="") as file:
            reader = csv.DictReader(file)
            rows = list(reader)
            columns = set(reader.fieldnames or ())
    else:
        raise ExampleSourceError(f"{path}: want a .parquet or .csv file")
    missing = [name for name in (*_SCALARS, "post.embedding") if name not in columns]
    if missing:
        raise ExampleSourceError(f"{path} lacks columns {missing}")
    examples = []
    for number, row in enumerate(rows, start=2):
        if not share.holds(number - 2):
            continue
        try:
            examples.append(_example(row))
        except (ValueError, TypeError, KeyError) as error:
            raise ExampleSourceError(f"{path} line {number}: {error}") from error
    return examples


def _row(example: events_pb2.LabelledExample) -> dict[str, Any]:
    row: dict[str, Any] = {name: getattr(example, name) for name in _SCALARS}
    for side, features in (("user", example.user_features), ("post", example.post_features)):
        row.update({f"{side}.{name}": value for name, value in features.numeric.items()})
        row.update({f"{side}.{name}": value for name, value in features.categorical.items()})
    row["post.embedding"] = json.dumps([round(v, 7) for v in example.post_features.embedding])
    return row


def _example(row: dict[str, Any]) -> events_pb2.LabelledExample:
    example = events_pb2.LabelledExample()
    for name in _SCALARS:
        value = row[name]
        if name in _TEXT:
            setattr(example, name, str(value))
        elif name in _INTEGER:
            setattr(example, name, int(value))
        elif name == "engaged":
            example.engaged = str(value).strip().lower() in ("true", "1", "1.0")
        else:
            setattr(example, name, float(value))
    for column, value in row.items():
        side, _, name = str(column).partition(".")
        if side not in ("user", "post") or name == "embedding" or value in ("", None):
            continue
        features = example.user_features if side == "user" else example.post_features
        if name in _CATEGORICAL:
            features.categorical[name] = str(value)
        else:
            features.numeric[name] = float(value)
    example.post_features.embedding.extend(json.loads(str(row["post.embedding"])))
    return example
