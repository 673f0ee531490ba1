"""The join's keyed operator on its Java engine, wired from the Python job.

``engine/`` (Java package ``feedrank.streaming.engine``) holds the engine: the
semantics of :mod:`feedrank.streaming.join_logic` and the label state bytes of
:mod:`feedrank.streaming.label_state`, with decoding, event time, keying, the decision
log and the examples' bytes all in the JVM. The Python operator pays for every record,
state read and timer crossing into the embedded interpreter, under one interpreter lock
for the whole job (``docs/streaming.md``); the engine pays none of that. Its input is
the Python operator's (the decisions topic's records, the intake's valid rewards), and
so is its output (``OUTPUT_ROW``) but for the examples, which the engine writes to
their topic itself: the same records, one per shown item, exactly once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import StreamTableEnvironment, Table

from feedrank.core.kafka_clients import kafka_access
from feedrank.streaming.decision_log import DecisionLogConfig
from feedrank.streaming.join_logic import JoinConfig
from feedrank.streaming.join_operator import OUTPUT_ROW
from feedrank.streaming.kafka_tables import (
    SHADED_KAFKA_PREFIX,
    SINK_PRODUCER_PROPERTIES,
    SINK_TRANSACTION_TIMEOUT_MS,
    KafkaSink,
)


def java_joined_stream(
    stream_env: StreamExecutionEnvironment,
    table_env: StreamTableEnvironment,
    *,
    raw_decisions: Table,
    reward_rows: Table,
    join: JoinConfig,
    log: DecisionLogConfig,
    out_of_orderness_ms: int,
    idleness_ms: int,
    engine_jar: Path,
    examples: KafkaSink,
) -> DataStream:
    """The join's output (``OUTPUT_ROW``) but its examples, from ``raw_decisions``
    (value, partition, offset) and ``reward_rows`` (``join_job.REWARD_FIELDS``), joined in
    the JVM. The examples go to ``examples`` (exactly once) through the engine's own Kafka
    sink: one record per shown item, without ever becoming table rows.

    The engine's operator has its own id (``decision-reward-join-java-v1``): its state
    (the same bytes under a Java serializer) does not restore into the Python
    operator's, nor the other way round.
    """
    if examples.delivery != "exactly-once" or examples.bootstrap != log.bootstrap:
        raise ValueError(
            "the engine writes the examples exactly once, to the decision log's cluster"
        )
    stream_env.add_jars(engine_jar.resolve().as_uri())
    gateway = get_gateway()
    engine = gateway.jvm.feedrank.streaming.engine
    properties = java_map(kafka_access(log.bootstrap).java_properties(SHADED_KAFKA_PREFIX))
    config = engine.JoinConfig(
        join.reward_window_ms,
        join.max_skew_ms,
        join.dangling_wait_ms,
        join.tombstone_ms,
        join.prompt_horizon_ms,
        join.segment_salt,
        log.topic,
        properties,
        log.cache_bytes,
        int(log.read_timeout_s * 1000),
    )
    joined = engine.JoinStreams.join(
        table_env.to_data_stream(raw_decisions)._j_data_stream,
        table_env.to_data_stream(reward_rows)._j_data_stream,
        config,
        OUTPUT_ROW.get_java_type_info(),
        out_of_orderness_ms,
        idleness_ms,
        engine.ExamplesTarget(
            examples.topic,
            examples.transactional_id_prefix,
            java_map(
                {
                    "transaction.timeout.ms": str(SINK_TRANSACTION_TIMEOUT_MS),
                    **SINK_PRODUCER_PROPERTIES,
                }
            ),
        ),
    )
    return DataStream(joined)


def java_map(values: dict[str, str]) -> Any:
    """``values`` as a ``java.util.HashMap`` in the gateway's JVM."""
    mapping = get_gateway().jvm.java.util.HashMap()
    for key, value in values.items():
        mapping.put(key, value)
    return mapping
