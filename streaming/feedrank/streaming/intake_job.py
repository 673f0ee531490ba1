"""A job that only does reward intake: valid rewards to a topic as JSON, the rest to the DLQ.

Valid rewards are written in the JSON form apps produce (``decision_id, post_id,
user_id, type, value, ts_ms``, with the value's default applied), keyed by ``user_id``
and tagged ``content-type: application/json``, so ``codecs.decode_reward`` reads them
back. Both inserts run in one statement set, i.e. one Flink job, exactly once.
"""

from __future__ import annotations

from pyflink.table import TableEnvironment, TableResult

from feedrank.core import codecs
from feedrank.streaming.kafka_tables import KafkaSink, KafkaSource, raw_sink_options
from feedrank.streaming.reward_intake import RewardIntakeOptions, register_reward_intake

VALID_SINK_TABLE = "intake_valid_rewards_sink"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def valid_sink_ddl(table: str, sink: KafkaSink) -> str:
    """A Kafka table of rewards as JSON values keyed (raw, UTF-8) by user_id."""
    options = raw_sink_options(sink) | {
        "key.fields": "user_id",
        "value.format": "json",
        # user_id is both the key and a field of the JSON document.
        "value.fields-include": "ALL",
    }
    with_clause = ",\n  ".join(f"{_literal(k)} = {_literal(v)}" for k, v in options.items())
    return f"""CREATE TEMPORARY TABLE `{table}` (
  `decision_id` STRING,
  `post_id` STRING,
  `user_id` STRING,
  `type` STRING,
  `value` DOUBLE,
  `ts_ms` BIGINT,
  `headers` MAP<STRING, BYTES> METADATA
) WITH (
  {with_clause}
)"""


def valid_insert(table: str, valid_view: str) -> str:
    """INSERT of the valid rewards into the JSON sink, tagged with their content type."""
    content_type = (
        f"MAP[{_literal(codecs.CONTENT_TYPE_HEADER)}, "
        f"CAST({_literal(codecs.JSON_CONTENT_TYPE)} AS BYTES)]"
    )
    return f"""INSERT INTO `{table}`
SELECT `decision_id`, `post_id`, `user_id`, `reward_type`, `reward_value`, `ts_ms`,
  {content_type}
FROM `{valid_view}`"""


def run_intake(
    table_env: TableEnvironment,
    source: KafkaSource,
    valid_sink: KafkaSink,
    dlq: KafkaSink,
    options: RewardIntakeOptions | None = None,
) -> TableResult:
    """Submit the intake job; the caller waits on (or cancels) the returned result."""
    options = options or RewardIntakeOptions()
    statements = table_env.create_statement_set()
    register_reward_intake(table_env, source, dlq, statements, options)
    table_env.execute_sql(valid_sink_ddl(VALID_SINK_TABLE, valid_sink))
    statements.add_insert_sql(valid_insert(VALID_SINK_TABLE, options.valid_view))
    return statements.execute()
