"""The streaming join job: decisions ⋈ rewards → labelled examples, dead letters.

Sources and sinks are Kafka SQL tables (raw bytes, read committed, transactional
exactly-once sinks); the join in between is a keyed operator fed one record per
decision (not per shown item) and one per reward: the Java engine's (``java_join``)
or the Python one of ``join_operator``, the same semantics. Event time comes from the
events themselves, with bounded out-of-orderness and idle sources excluded from the
watermark after ``idleness_ms``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from pyflink.common import Duration, WatermarkStrategy
from pyflink.common.typeinfo import TypeInformation, Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.data_stream import ConnectedStreams, KeyedStream
from pyflink.java_gateway import get_gateway
from pyflink.table import StreamTableEnvironment, Table
from pyflink.table.expressions import col, row
from pyflink.util.java_utils import get_j_env_configuration

from feedrank.core import codecs
from feedrank.core.kafka_clients import KafkaTarget
from feedrank.streaming.aggregates import join_out_table, register_aggregates
from feedrank.streaming.decision_log import DecisionLogConfig
from feedrank.streaming.java_join import java_joined_stream
from feedrank.streaming.join_logic import JoinConfig
from feedrank.streaming.join_operator import (
    DECISION_ROW,
    DECISION_SOURCE_COLUMNS,
    KEYED_DECISION_ROW,
    OUTPUT_ROW,
    DecisionRewardJoin,
    EventTimeOf,
    decode_decision_row,
)
from feedrank.streaming.kafka_tables import (
    KafkaSink,
    KafkaSource,
    raw_sink_options,
    raw_source_options,
    raw_table_ddl,
)
from feedrank.streaming.reward_intake import register_reward_intake


@dataclass(frozen=True)
class JoinTopics:
    decisions: str
    rewards: str
    examples: str
    dlq: str
    metrics: str | None = None  # the 5-minute aggregates' topic; None: no aggregates


@dataclass(frozen=True)
class JoinJobConfig:
    bootstrap: KafkaTarget  # a bootstrap string (plaintext), or one with its security
    topics: JoinTopics
    join: JoinConfig
    group_id: str
    transactional_id_prefix: str
    out_of_orderness_ms: int = 5_000
    idleness_ms: int = 10_000
    bounded: bool = False  # stop at the offsets that were latest at start (tests)
    aggregate_window_minutes: int = 5
    top_posts: int = 10
    # Bytes of recent decisions each join subtask keeps in memory, so that prompt
    # positives need not re-read their decision from the log.
    decision_cache_bytes: int = 64 * 1024 * 1024
    # The join's keyed operator: the Java engine built into this jar (``java_join``), or
    # with None the Python operator (``join_operator``), the same semantics and state.
    java_engine_jar: Path | None = None


def event_time(field: str | int, config: JoinJobConfig) -> WatermarkStrategy:
    """Bounded out-of-orderness on ``field`` of the join's keyed rows (``Row(key,
    value)``: a field of the value), idle inputs excluded after ``idleness_ms``.

    The timestamp assigner must come last: PyFlink's ``with_idleness`` returns a new
    strategy without the Python assigner, and records would keep no timestamp at all
    (every watermark stuck at Long.MIN_VALUE: no window would close until the end of a
    bounded input).
    """
    return (
        WatermarkStrategy.for_bounded_out_of_orderness(
            Duration.of_millis(config.out_of_orderness_ms)
        )
        .with_idleness(Duration.of_millis(config.idleness_ms))
        .with_timestamp_assigner(EventTimeOf(field, keyed=True))
    )


def run_python_operators_in_threads(stream_env: StreamExecutionEnvironment) -> None:
    """The join's Python DataStream operators run embedded ("thread" mode), not in Beam.

    In "process" mode a keyed Python operator's timers reach the JVM asynchronously,
    as mailbox mails, and the checkpoint barrier that ends a bundle snapshots the keyed
    state that bundle wrote *without* the timers it registered (PyFlink 2.2's
    ``prepareSnapshotPreBarrier`` finishes the bundle but never drains
    ``unregisteredTimers``). A job restored from such a checkpoint holds decisions
    whose window never closes: their negatives are silently lost (issue 4). Embedded,
    the operator registers its timers synchronously on the task thread, so state and
    timers are snapshotted together. Table UDFs are unaffected: the reward intake's
    pandas UDF keeps its Beam worker.

    The embedded interpreter (pemja) does not read the venv's ``.pth`` files, so unless
    ``python.pythonpath`` is set (on a real cluster: the TaskManagers' venv), it is
    given this interpreter's ``sys.path`` (the mini-cluster runs on this machine).
    """
    configuration = get_j_env_configuration(stream_env._j_stream_execution_environment)
    configuration.setString("python.execution-mode", "thread")
    if not configuration.getString("python.pythonpath", ""):
        paths = [path for path in sys.path if path and Path(path).is_dir()]
        configuration.setString("python.pythonpath", os.pathsep.join(paths))


REWARD_FIELDS = ["decision_id", "post_id", "user_id", "reward_type", "reward_value", "ts_ms"]
# The valid rewards out of the intake (reward_intake), as the join operator reads them.
REWARD_ROW = Types.ROW_NAMED(
    REWARD_FIELDS,
    [Types.STRING(), Types.STRING(), Types.STRING(), Types.STRING(), Types.DOUBLE(), Types.LONG()],
)


def keyed_in_the_jvm(stream: DataStream, value_type: TypeInformation) -> KeyedStream:
    """``stream`` of ``Row(key, value)`` keyed by its key, without Python per record.

    PyFlink's ``key_by`` runs the key selector as one more Python operator per record
    (its output is this same ``Row(key, value)``); here the rows already carry their
    key (the decoder wrote it, or SQL did), so the JVM's ``KeyByKeySelector`` (the one
    ``key_by`` itself uses after its Python operator) keys them. Every record crossing
    from the JVM into the embedded Python costs more than the join's own logic.
    """
    key_type = Types.ROW([Types.STRING()]).get_java_type_info()
    selector = get_gateway().jvm.KeyByKeySelector()
    return KeyedStream(stream._j_data_stream.keyBy(selector, key_type), value_type, stream)


def joined_stream(
    stream_env: StreamExecutionEnvironment,
    table_env: StreamTableEnvironment,
    rewards: Table,
    config: JoinJobConfig,
) -> DataStream:
    """The join operator's output (OUTPUT_ROW), timestamped in event time; on the Java
    engine without the examples, which it writes to their topic itself."""
    source = KafkaSource(
        config.topics.decisions,
        config.bootstrap,
        f"{config.group_id}-decisions",
        bounded=config.bounded,
    )
    table_env.execute_sql(
        raw_table_ddl("decisions_raw", raw_source_options(source), positions=True)
    )
    raw = table_env.from_path("decisions_raw").select(
        *(col(name) for name in DECISION_SOURCE_COLUMNS)
    )
    log = DecisionLogConfig(
        config.bootstrap, config.topics.decisions, cache_bytes=config.decision_cache_bytes
    )
    if config.java_engine_jar is not None:
        return java_joined_stream(
            stream_env,
            table_env,
            raw_decisions=raw,
            reward_rows=rewards.select(*(col(name) for name in REWARD_FIELDS)),
            join=config.join,
            log=log,
            out_of_orderness_ms=config.out_of_orderness_ms,
            idleness_ms=config.idleness_ms,
            engine_jar=config.java_engine_jar,
            examples=examples_sink(config),
        )
    decisions = (
        table_env.to_data_stream(raw)
        .map(decode_decision_row, output_type=KEYED_DECISION_ROW)
        .uid("decode-decisions")
        .assign_timestamps_and_watermarks(event_time("event_time_ms", config))
    )
    # Only plain columns cross into Python, keyed by decision in SQL: event time is
    # re-assigned from ts_ms below, and the TIMESTAMP_LTZ rowtime stays on the SQL side.
    keyed_rewards = rewards.select(
        col("decision_id"), row(*(col(name) for name in REWARD_FIELDS)).alias("reward")
    )
    # The nested row SQL hands over has no field names in Python: ts_ms by position.
    reward_rows = table_env.to_data_stream(keyed_rewards).assign_timestamps_and_watermarks(
        event_time(REWARD_FIELDS.index("ts_ms"), config)
    )
    return (
        ConnectedStreams(
            keyed_in_the_jvm(decisions, DECISION_ROW),
            keyed_in_the_jvm(reward_rows, REWARD_ROW),
        )
        .process(DecisionRewardJoin(config.join, log), output_type=OUTPUT_ROW)
        # The label state's format is version 2 (label_state): a checkpoint of the
        # version-1 join (whole decisions as JSON) does not restore into this one.
        .uid("decision-reward-join-v2")
    )


def examples_sink(config: JoinJobConfig) -> KafkaSink:
    """The examples topic's exactly-once sink (its transactional ids keep the prefix of
    the SQL table sink they came from, ``examples_sink``)."""
    return KafkaSink(
        config.topics.examples,
        config.bootstrap,
        transactional_id_prefix=f"{config.transactional_id_prefix}-examples_sink",
    )


def build_join_job(
    stream_env: StreamExecutionEnvironment,
    table_env: StreamTableEnvironment,
    config: JoinJobConfig,
) -> None:
    """Attach reward intake, the join and its sinks to ``stream_env``; run with ``execute``.

    Malformed rewards go to the DLQ from the intake, late and dangling rewards and
    malformed decisions from the join. With ``topics.metrics`` set, the window
    aggregates (and top posts) of the join's output go there, all in one job.
    """
    run_python_operators_in_threads(stream_env)
    statements = table_env.create_statement_set()
    rewards = register_reward_intake(
        table_env,
        KafkaSource(
            config.topics.rewards,
            config.bootstrap,
            f"{config.group_id}-rewards",
            bounded=config.bounded,
        ),
        KafkaSink(
            config.topics.dlq,
            config.bootstrap,
            transactional_id_prefix=f"{config.transactional_id_prefix}-intake-dlq",
        ),
        statements,
    )
    # Python operators do not forward record timestamps; event time travels as a column
    # (and the join's watermarks with the records, for the aggregates' windows).
    joined = join_out_table(table_env, joined_stream(stream_env, table_env, rewards, config))
    table_env.create_temporary_view("join_out", joined)
    dlq = KafkaSink(
        config.topics.dlq,
        config.bootstrap,
        transactional_id_prefix=f"{config.transactional_id_prefix}-join_dlq_sink",
    )
    table_env.execute_sql(raw_table_ddl("join_dlq_sink", raw_sink_options(dlq)))
    if config.java_engine_jar is None:  # the Java engine has written the examples already
        examples = examples_sink(config)
        table_env.execute_sql(raw_table_ddl("examples_sink", raw_sink_options(examples)))
        statements.add_insert_sql(
            "INSERT INTO examples_sink SELECT `key`, example, "
            "MAP['content-type', CAST('application/x-protobuf' AS BYTES)] "
            "FROM join_out CROSS JOIN UNNEST(payloads) AS batch (example) "
            "WHERE kind = 'examples'"
        )
    statements.add_insert_sql(
        "INSERT INTO join_dlq_sink SELECT `key`, payload, MAP["
        f"'{codecs.DLQ_HEADER_TOPIC}', CAST(CASE kind WHEN 'malformed' "
        f"THEN '{config.topics.decisions}' ELSE '{config.topics.rewards}' END AS BYTES), "
        f"'{codecs.DLQ_HEADER_PARTITION}', CAST('-1' AS BYTES), "
        f"'{codecs.DLQ_HEADER_OFFSET}', CAST('-1' AS BYTES), "
        f"'{codecs.DLQ_HEADER_ERROR}', CAST(detail AS BYTES), "
        f"'{codecs.DLQ_HEADER_STAGE}', CAST('join' AS BYTES)] "
        "FROM join_out WHERE kind IN ('late', 'dangling', 'malformed')"
    )
    if config.topics.metrics is not None:
        metrics = KafkaSink(
            config.topics.metrics,
            config.bootstrap,
            transactional_id_prefix=f"{config.transactional_id_prefix}-metrics",
        )
        register_aggregates(
            table_env,
            "join_out",
            sink=metrics,
            statements=statements,
            window_minutes=config.aggregate_window_minutes,
            top_n=config.top_posts,
            segments=config.join.segment_salt is not None,
        )
    statements.attach_as_datastream()
