"""Reward intake: raw ``feedrank.rewards`` records -> valid rewards + dead letters.

Every record is decoded by :func:`feedrank.core.codecs.decode_reward` (the one codec
every component shares) inside a vectorised pandas UDF that returns one ROW per record.
Well-formed rewards come out of :func:`register_reward_intake` as a table with an
event-time attribute; malformed ones go, exactly once, to the dead-letter topic as a
``DeadLetter`` protobuf carrying the original key and value, with ``feedrank.dlq.*``
headers naming the original topic, partition, offset and error. Nothing is dropped:
each record is either valid or dead, and a record that trips the codec in an
unexpected way is dead-lettered too instead of failing the job.

Event time: ``reward_time`` is a computed column of the Kafka source table,
``TO_TIMESTAMP_LTZ(ts_ms, 3)``, with a bounded-out-of-orderness watermark declared on
it, so it stays a rowtime attribute through the valid-rewards view. Dead records get the
epoch as their rowtime so they never advance the watermark. Because the watermark
expression calls a Python UDF, Flink cannot push it into the Kafka source: it is
assigned right after decoding, per source subtask rather than per Kafka partition, so
the delay must also cover disorder between the partitions one subtask reads. Idle
subtasks are excluded after ``table.exec.source.idle-timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the venv
from pyflink.table import DataTypes, StatementSet, Table, TableEnvironment
from pyflink.table.udf import udf

from feedrank.core import codecs
from feedrank.streaming.kafka_tables import (
    KafkaSink,
    KafkaSource,
    raw_sink_options,
    raw_source_options,
    raw_table_ddl,
)
from feedrank.v1 import events_pb2

STAGE = "reward-intake"

# The columns of the valid-rewards table, in order (reward_time is the rowtime).
VALID_REWARD_COLUMNS = (
    "decision_id",
    "post_id",
    "user_id",
    "reward_type",
    "reward_value",
    "ts_ms",
    "reward_time",
)


class DecodedReward(NamedTuple):
    """One decoded record: either the reward's fields or an error and its dead letter."""

    error: str | None
    decision_id: str | None
    post_id: str | None
    user_id: str | None
    reward_type: str | None
    reward_value: float | None
    ts_ms: int | None
    dead_letter: bytes | None


DECODED_REWARD_TYPE = DataTypes.ROW(
    [
        DataTypes.FIELD("error", DataTypes.STRING()),
        DataTypes.FIELD("decision_id", DataTypes.STRING()),
        DataTypes.FIELD("post_id", DataTypes.STRING()),
        DataTypes.FIELD("user_id", DataTypes.STRING()),
        DataTypes.FIELD("reward_type", DataTypes.STRING()),
        DataTypes.FIELD("reward_value", DataTypes.DOUBLE()),
        DataTypes.FIELD("ts_ms", DataTypes.BIGINT()),
        DataTypes.FIELD("dead_letter", DataTypes.BYTES()),
    ]
)


@dataclass(frozen=True)
class SourceRecord:
    """Where a Kafka record came from and what it carried, byte for byte."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: codecs.Headers = None


def describe_error(error: Exception) -> str:
    """The error text for the dead letter: the field at fault first, when known."""
    if isinstance(error, codecs.EventDecodeError):
        return f"{error.field}: {error}" if error.field else str(error)
    # The codec let something other than EventDecodeError escape (e.g. an int64
    # overflow or a lone surrogate); still the record's fault, never the job's.
    return f"unexpected {type(error).__name__}: {error}"


def dead_letter(record: SourceRecord, error: str, failed_at_ms: int, stage: str = STAGE) -> bytes:
    """A serialised ``DeadLetter`` carrying the original record and the error."""
    letter = events_pb2.DeadLetter(
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        key=record.key or b"",
        value=record.value or b"",
        error=error,
        failed_at_ms=failed_at_ms,
        stage=stage,
    )
    return codecs.encode(letter)


def decode_record(record: SourceRecord, failed_at_ms: int, stage: str = STAGE) -> DecodedReward:
    """Decode one reward record; any decoding failure becomes a dead letter."""
    try:
        reward = codecs.decode_reward(record.value, record.headers)
        decoded = DecodedReward(
            error=None,
            decision_id=reward.decision_id,
            post_id=reward.post_id,
            user_id=reward.user_id,
            reward_type=codecs.REWARD_TYPE_NAMES[reward.type],
            reward_value=codecs.reward_value(reward),
            ts_ms=reward.ts_ms,
            dead_letter=None,
        )
    except Exception as error:  # noqa: BLE001 - a bad record must never crash the job
        message = describe_error(error)
        letter = dead_letter(record, message, failed_at_ms, stage)
        return DecodedReward(message, None, None, None, None, None, None, letter)
    return decoded


def decode_batch(  # noqa: PLR0917 - the UDF's arguments mirror its SQL call
    values: pd.Series[Any],
    content_types: pd.Series[Any],
    keys: pd.Series[Any],
    topics: pd.Series[Any],
    partitions: pd.Series[Any],
    offsets: pd.Series[Any],
    *,
    stage: str = STAGE,
) -> pd.DataFrame:
    """The pandas UDF body: one ``DecodedReward`` row per input record.

    ``content_types`` holds each record's ``content-type`` header as text, or None: SQL
    picks it out of the headers, so no Kafka header map ever crosses into Arrow (a map
    batch Flink writes with null entries is one pyarrow refuses to read). Columns are
    object-typed so that NULLs stay NULL, not NaN.
    """
    failed_at_ms = int(time.time() * 1000)
    rows = [
        decode_record(
            SourceRecord(
                str(topic), int(partition), int(offset), key, value, _headers(content_type)
            ),
            failed_at_ms,
            stage,
        )
        for value, content_type, key, topic, partition, offset in zip(
            values, content_types, keys, topics, partitions, offsets, strict=True
        )
    ]
    return _frame(rows)


def _headers(content_type: str | None) -> codecs.Headers:
    if content_type is None:
        return None
    return [(codecs.CONTENT_TYPE_HEADER, content_type.encode())]


def _frame(rows: Sequence[DecodedReward]) -> pd.DataFrame:
    """Column by column, object-typed: ``from_records`` would turn NULL ints into NaN floats."""
    columns = list(zip(*rows, strict=True)) or [()] * len(DecodedReward._fields)
    return pd.DataFrame(
        {
            name: pd.Series(column, dtype=object)
            for name, column in zip(DecodedReward._fields, columns, strict=True)
        }
    )


@dataclass(frozen=True)
class RewardIntakeOptions:
    """Names and tunables of the intake; defaults suit one intake per job."""

    source_table: str = "reward_source"
    dlq_table: str = "reward_dlq"
    valid_view: str = "valid_rewards"
    decode_function: str = "feedrank_decode_reward"
    # Bounded out-of-orderness of reward event times (the watermark's lag).
    watermark_delay_ms: int = 5_000
    stage: str = STAGE


def reward_decoder(stage: str = STAGE) -> Any:
    """The vectorised (pandas) UDF: decode_batch over Arrow batches, one ROW per record."""

    def decode(*columns: pd.Series[Any]) -> pd.DataFrame:
        return decode_batch(*columns, stage=stage)

    return udf(decode, result_type=DECODED_REWARD_TYPE, func_type="pandas")


def source_table_ddl(options: RewardIntakeOptions, source: KafkaSource) -> str:
    """The raw rewards table: record metadata, the decoded ROW and the rowtime.

    Metadata columns are declared with exactly the types the UDF receives (Arrow maps
    need non-null keys), so both computed columns make the very same UDF call and the
    planner evaluates it once per record.
    """
    content_type = f"CAST(`headers`[{_literal(codecs.CONTENT_TYPE_HEADER)}] AS STRING)"
    decode = (
        f"{_name(options.decode_function)}"
        f"(`value`, {content_type}, `key`, `topic`, `partition`, `offset`)"
    )
    with_clause = ",\n  ".join(
        f"{_literal(key)} = {_literal(value)}" for key, value in raw_source_options(source).items()
    )
    delay_s = options.watermark_delay_ms / 1000
    return f"""CREATE TEMPORARY TABLE {_name(options.source_table)} (
  `key` BYTES,
  `value` BYTES,
  `headers` MAP<STRING NOT NULL, BYTES> METADATA,
  `topic` STRING NOT NULL METADATA VIRTUAL,
  `partition` INT NOT NULL METADATA VIRTUAL,
  `offset` BIGINT NOT NULL METADATA VIRTUAL,
  `decoded` AS {decode},
  -- Computed columns cannot refer to each other, hence the repeated call. Dead
  -- records get the epoch: they must never advance the watermark.
  `reward_time` AS COALESCE(TO_TIMESTAMP_LTZ(({decode}).`ts_ms`, 3), TO_TIMESTAMP_LTZ(0, 3)),
  WATERMARK FOR `reward_time` AS `reward_time` - INTERVAL '{delay_s:.3f}' SECOND
) WITH (
  {with_clause}
)"""


def dead_letter_insert(options: RewardIntakeOptions) -> str:
    """INSERT of every malformed record into the DLQ, with the feedrank.dlq.* headers."""
    header_values = {
        codecs.DLQ_HEADER_TOPIC: "`topic`",
        codecs.DLQ_HEADER_PARTITION: "CAST(`partition` AS STRING)",
        codecs.DLQ_HEADER_OFFSET: "CAST(`offset` AS STRING)",
        codecs.DLQ_HEADER_ERROR: "`decoded`.`error`",
        codecs.DLQ_HEADER_STAGE: _literal(options.stage),
    }
    entries = ", ".join(
        f"{_literal(name)}, CAST({value} AS BYTES)" for name, value in header_values.items()
    )
    return f"""INSERT INTO {_name(options.dlq_table)}
SELECT `key`, `decoded`.`dead_letter`, MAP[{entries}]
FROM {_name(options.source_table)}
WHERE `decoded`.`error` IS NOT NULL"""


def valid_rewards_view(options: RewardIntakeOptions) -> str:
    """The well-formed rewards, with ``reward_time`` kept as the rowtime attribute."""
    fields = ",\n  ".join(f"`decoded`.`{name}` AS `{name}`" for name in VALID_REWARD_COLUMNS[:-1])
    return f"""CREATE TEMPORARY VIEW {_name(options.valid_view)} AS
SELECT
  {fields},
  `reward_time`
FROM {_name(options.source_table)}
WHERE `decoded`.`error` IS NULL"""


def register_reward_intake(
    table_env: TableEnvironment,
    source: KafkaSource,
    dlq: KafkaSink,
    statements: StatementSet,
    options: RewardIntakeOptions | None = None,
) -> Table:
    """Declare the reward intake; add its DLQ insert to ``statements``.

    Returns the valid rewards (also registered as the temporary view
    ``options.valid_view``): ``decision_id, post_id, user_id, reward_type STRING``,
    ``reward_value DOUBLE``, ``ts_ms BIGINT`` and ``reward_time TIMESTAMP_LTZ(3)``, the
    rowtime attribute with a watermark ``watermark_delay_ms`` behind the largest
    ``reward_time`` each source subtask has seen (see the module docstring).
    """
    options = options or RewardIntakeOptions()
    table_env.create_temporary_function(options.decode_function, reward_decoder(options.stage))
    table_env.execute_sql(source_table_ddl(options, source))
    table_env.execute_sql(raw_table_ddl(options.dlq_table, raw_sink_options(dlq)))
    statements.add_insert_sql(dead_letter_insert(options))
    table_env.execute_sql(valid_rewards_view(options))
    return table_env.from_path(options.valid_view)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _name(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"
