"""The first Flink SQL job: relay Kafka records from one topic to another, exactly once.

Keys, values and headers travel byte for byte, so any feedrank event (protobuf or
JSON) survives the trip. It proves the Kafka -> Flink -> Kafka path end to end and is
the template the join builds on.
"""

from __future__ import annotations

from pyflink.table import TableEnvironment, TableResult

from feedrank.streaming.kafka_tables import (
    KafkaSink,
    KafkaSource,
    raw_sink_options,
    raw_source_options,
    raw_table_ddl,
)


def relay(table_env: TableEnvironment, source: KafkaSource, sink: KafkaSink) -> TableResult:
    """Submit the relay job; the caller waits on (or cancels) the returned result."""
    table_env.execute_sql(raw_table_ddl("relay_source", raw_source_options(source)))
    table_env.execute_sql(raw_table_ddl("relay_sink", raw_sink_options(sink)))
    return table_env.execute_sql(
        "INSERT INTO relay_sink SELECT `key`, `value`, `headers` FROM relay_source"
    )
