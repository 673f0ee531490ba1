"""Event-time window aggregates of the join's output, to ``feedrank.metrics``.

Per tumbling event-time window (5 minutes by default) and per (model version, arm), one
:class:`EngagementAggregate` protobuf: impressions (``impressions`` rows, at decision
time), engagements, dwell, reports, blocks and hides (``reward`` rows, at reward time),
the prompt engagements, reports, blocks and hides among them (rewards within the join's
prompt horizon of their impression) and the engagement rate ``engagements /
impressions`` (0 without impressions; both are counted when they happen, so the rate is
a flow ratio and may exceed 1). Late and dangling rewards carry no model version or arm:
they are counted in a row of their own with ``model_version = ''`` and ``arm = ''``. A
window yields a row for a (model version, arm) only when it saw at least one of its
records.

Per window also the ``top_n`` most engaged posts (Flink window Top-N over the
``reward`` rows; ties broken by post id), one JSON record per ranked post, on the
same topic, told apart by the ``content-type`` header (see :func:`parse_top_post`).

Every record carries ``content-type`` and ``feedrank.metrics.kind`` headers:

* ``application/x-protobuf`` / ``engagement-aggregate``: key = model version (UTF-8),
  value = ``EngagementAggregate``.
* ``application/json`` / ``top-posts``: key = ``top-posts``, value =
  ``{"window_start_ms": …, "window_end_ms": …, "rank": 1, "post_id": "…",
  "engagements": …}`` (rank is 1-based).

Event time: Python operators drop record timestamps, so the event-time attribute is
rebuilt from the ``event_time_ms`` column (``TO_TIMESTAMP_LTZ``) on a Table →
DataStream → Table round trip that stays inside the JVM. By default the watermarks are
those that come with ``join_out`` (the join operator's: its inputs' bounded
out-of-orderness and idleness), so windows close as the join's event time passes them.
``from_data_stream`` drops them unless asked not to, so ``join_out`` must be made with
:func:`join_out_table` (or the join's DataStream passed instead); a ``join_out`` without
watermarks is refused. ``watermark_delay_ms`` instead derives watermarks from the rows,
per parallel subtask, with no idleness: a subtask without rows holds windows open.

A row already behind the watermark when it reaches the aggregates (a dangling reward
the join's timer emits ``dangling_wait_ms`` after the reward, or an early reward
replayed when its decision arrives) is counted in the window open at that moment,
never dropped: its own window may have fired already.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from pyflink.datastream import DataStream
from pyflink.table import Schema, StatementSet, StreamTableEnvironment, Table
from pyflink.table.expressions import col

from feedrank.core import codecs
from feedrank.core.metrics_kinds import (
    AGGREGATE_KIND,
    METRICS_KIND_HEADER,
    SEGMENT_KIND,
    TOP_POSTS_KIND,
)
from feedrank.core.time_units import MINUTE_MS
from feedrank.streaming.aggregate_records import (
    WINDOW_ROW_FIELDS,
    aggregate_encoder,
)
from feedrank.streaming.kafka_tables import KafkaSink, raw_sink_options, raw_table_ddl
from feedrank.streaming.segment_aggregates import (
    SEGMENT_ENCODER,
    segment_encoder,
    segments_select,
)

TOP_POSTS_KEY = TOP_POSTS_KIND
EVENT_TIME = "event_time"
# The join output kinds the aggregates read (examples and malformed records are not).
AGGREGATED_KINDS = ("impressions", "reward", "late", "dangling")
# The join output columns the aggregates read.
INPUT_COLUMNS = (
    "kind",
    "model_version",
    "arm",
    "event_time_ms",
    "impressions",
    "engagements",
    "dwell_seconds",
    "reports",
    "blocks",
    "hides",
    "prompt",
    "post_id",
)


# The join's output: a table, the name of a view, or the join operator's DataStream.
JoinOut: TypeAlias = Table | str | DataStream


@dataclass(frozen=True)
class AggregateOptions:
    """Names and tunables of the aggregates; defaults suit one set per job."""

    window_minutes: int = 5
    top_n: int = 10
    # None: the watermarks that come with ``join_out`` (the join's); else a watermark
    # this many ms behind the largest event time seen (for inputs without watermarks).
    watermark_delay_ms: int | None = None
    events_view: str = "aggregate_events"
    input_view: str = "aggregate_input"
    windows_view: str = "engagement_windows"
    sink_table: str = "metrics_sink"
    encode_function: str = "feedrank_encode_aggregate"
    segments: bool = False  # also per segment of users (segment_aggregates)

    @property
    def window_ms(self) -> int:
        return self.window_minutes * MINUTE_MS

    @property
    def columns(self) -> tuple[str, ...]:
        """The join_out columns read: ``post_id`` only for the top posts (``top_n`` > 0),
        ``segment`` only for the segment aggregates."""
        columns = INPUT_COLUMNS if self.top_n > 0 else INPUT_COLUMNS[:-1]
        return (*columns, "segment") if self.segments else columns


def _event_time_schema(watermark_delay_ms: int | None) -> Any:
    """``event_time`` from ``event_time_ms``, with the upstream's or a bounded-delay watermark."""
    if watermark_delay_ms is None:
        watermark = "SOURCE_WATERMARK()"
    else:
        watermark = f"{EVENT_TIME} - INTERVAL '{watermark_delay_ms / 1000:.3f}' SECOND"
    return (
        Schema.new_builder()
        .column_by_expression(EVENT_TIME, "TO_TIMESTAMP_LTZ(event_time_ms, 3)")
        .watermark(EVENT_TIME, watermark)
        .build()
    )


def counted_at_sql(options: AggregateOptions) -> str:
    """Each row's time for the windows: its event time, or just past the watermark if behind.

    A row behind the watermark belongs to a window that may have fired already; it is
    counted in the window open when it arrives rather than dropped.
    """
    columns = ", ".join(f"`{name}`" for name in options.columns)
    watermark = f"CURRENT_WATERMARK({EVENT_TIME})"
    return f"""SELECT {columns},
  CASE WHEN {watermark} IS NOT NULL AND {EVENT_TIME} <= {watermark}
    THEN {watermark} + INTERVAL '0.001' SECOND ELSE {EVENT_TIME} END AS rowtime
FROM `{options.events_view}`"""


def join_out_table(table_env: StreamTableEnvironment, joined: DataStream) -> Table:
    """The join operator's output as a table that keeps the join's watermarks.

    ``from_data_stream`` drops a DataStream's watermarks unless the schema asks for
    ``SOURCE_WATERMARK()``; this one does, on ``event_time`` (``TO_TIMESTAMP_LTZ`` of
    ``event_time_ms``), so the aggregates can close windows as the join's event time
    moves on. Register it as ``join_out``.
    """
    return table_env.from_data_stream(joined, _event_time_schema(None))


def _join_out(
    table_env: StreamTableEnvironment, join_out: JoinOut, options: AggregateOptions
) -> Table:
    """``join_out`` as a table, checked for the columns and watermarks the aggregates need."""
    if isinstance(join_out, DataStream):
        table = join_out_table(table_env, join_out)
    else:
        table = table_env.from_path(join_out) if isinstance(join_out, str) else join_out
    schema = table.get_resolved_schema()
    missing = set(options.columns) - set(schema.get_column_names())
    if missing:
        raise ValueError(f"join_out lacks the columns {sorted(missing)} the aggregates read")
    if options.watermark_delay_ms is None and not schema.get_watermark_specs():
        raise ValueError(
            "join_out carries no watermarks: make it with join_out_table(), pass the "
            "join's DataStream, or set watermark_delay_ms"
        )
    return table


def aggregate_input(
    table_env: StreamTableEnvironment, join_out: JoinOut, options: AggregateOptions
) -> Table:
    """The aggregated kinds of ``join_out`` with ``rowtime``, the windows' time attribute.

    Two round trips through the DataStream API (inside the JVM): one declares the
    event-time attribute (and with it ``CURRENT_WATERMARK``), the other makes the
    adjusted ``rowtime`` of :func:`counted_at_sql` the time attribute, keeping the
    watermarks that flow with the records.
    """
    kinds = col("kind").in_(*AGGREGATED_KINDS)
    projected = (
        _join_out(table_env, join_out, options)
        .where(kinds)
        .select(*(col(name) for name in options.columns))
    )
    events = table_env.from_data_stream(
        table_env.to_data_stream(projected), _event_time_schema(options.watermark_delay_ms)
    )
    table_env.create_temporary_view(options.events_view, events)
    counted = table_env.sql_query(counted_at_sql(options))
    schema = Schema.new_builder().watermark("rowtime", "SOURCE_WATERMARK()").build()
    return table_env.from_data_stream(table_env.to_data_stream(counted), schema)


def _tumble(options: AggregateOptions) -> str:
    return (
        f"TABLE(TUMBLE(TABLE `{options.input_view}`, DESCRIPTOR(rowtime), "
        f"INTERVAL '{options.window_minutes}' MINUTES))"
    )


def _window_end_ms() -> str:
    """Epoch ms of the window end, whatever the session time zone.

    ``window_time`` (a TIMESTAMP_LTZ, the window end less 1 ms) is an instant, unlike
    ``window_start``/``window_end``, which are wall-clock times in the session zone.
    """
    minutes = "TIMESTAMPDIFF(MINUTE, TO_TIMESTAMP_LTZ(0, 3), window_time)"
    return f"(CAST({minutes} AS BIGINT) + 1) * {MINUTE_MS}"


def _count(kind: str) -> str:
    return f"SUM(CASE WHEN kind = '{kind}' THEN 1 ELSE 0 END)"


def _prompt(column: str) -> str:
    """The sum of ``column`` over prompt rows (rewards within the prompt horizon)."""
    return f"SUM(CASE WHEN prompt = 1 THEN CAST({column} AS BIGINT) ELSE 0 END)"


def windows_view_sql(options: AggregateOptions) -> str:
    """One row per window and (model version, arm): the sums and counts."""
    return f"""CREATE TEMPORARY VIEW `{options.windows_view}` AS
SELECT
  {_window_end_ms()} AS window_end_ms,
  COALESCE(model_version, '') AS model_version,
  COALESCE(arm, '') AS arm,
  SUM(CAST(impressions AS BIGINT)) AS impressions,
  SUM(CAST(engagements AS BIGINT)) AS engagements,
  SUM(CAST(reports AS BIGINT)) AS reports,
  SUM(CAST(blocks AS BIGINT)) AS blocks,
  SUM(CAST(hides AS BIGINT)) AS hides,
  {_count("late")} AS late_rewards,
  {_count("dangling")} AS dangling_rewards,
  SUM(dwell_seconds) AS dwell_seconds,
  {_prompt("engagements")} AS prompt_engagements,
  {_prompt("reports")} AS prompt_reports,
  {_prompt("blocks")} AS prompt_blocks,
  {_prompt("hides")} AS prompt_hides
FROM {_tumble(options)}
GROUP BY window_start, window_end, window_time, model_version, arm"""


def _headers(content_type: str, kind: str) -> str:
    return (
        f"MAP['{codecs.CONTENT_TYPE_HEADER}', CAST('{content_type}' AS BYTES), "
        f"'{METRICS_KIND_HEADER}', CAST('{kind}' AS BYTES)]"
    )


def _encoder_arguments(options: AggregateOptions) -> str:
    """The windows view's columns in ``WindowAggregate`` order (the window size a literal)."""
    return ", ".join(
        f"CAST({options.window_ms} AS BIGINT)" if name == "window_ms" else name
        for name in WINDOW_ROW_FIELDS
    )


def aggregates_select(options: AggregateOptions) -> str:
    """One ``EngagementAggregate`` record per window row, keyed by model version."""
    return f"""SELECT
  CAST(model_version AS BYTES),
  {options.encode_function}({_encoder_arguments(options)}),
  {_headers(codecs.PROTOBUF_CONTENT_TYPE, AGGREGATE_KIND)}
FROM `{options.windows_view}`"""


def top_posts_select(options: AggregateOptions) -> str:
    """The ``top_n`` most engaged posts of each window (window Top-N), one JSON record each."""
    document = ", ".join(
        f"'{name}' VALUE {expression}"
        for name, expression in (
            ("window_start_ms", f"window_end_ms - {options.window_ms}"),
            ("window_end_ms", "window_end_ms"),
            ("rank", "post_rank"),
            ("post_id", "post_id"),
            ("engagements", "engagements"),
        )
    )
    return f"""SELECT
  CAST('{TOP_POSTS_KEY}' AS BYTES),
  CAST(JSON_OBJECT({document}) AS BYTES),
  {_headers(codecs.JSON_CONTENT_TYPE, TOP_POSTS_KIND)}
FROM (
  SELECT *, ROW_NUMBER() OVER (
    PARTITION BY window_start, window_end ORDER BY engagements DESC, post_id ASC
  ) AS post_rank
  FROM (
    SELECT window_start, window_end, {_window_end_ms()} AS window_end_ms, post_id,
      SUM(CAST(engagements AS BIGINT)) AS engagements
    FROM {_tumble(options)}
    WHERE kind = 'reward' AND post_id IS NOT NULL AND post_id <> ''
    GROUP BY window_start, window_end, window_time, post_id
    HAVING SUM(CAST(engagements AS BIGINT)) > 0
  )
)
WHERE post_rank <= {options.top_n}"""


def metrics_insert(options: AggregateOptions) -> str:
    """One INSERT, hence one sink and one transactional id prefix, for both record kinds.

    Two sink operators under one prefix would fence each other's transactions.
    """
    selects = [aggregates_select(options)]
    if options.top_n > 0:
        selects.append(top_posts_select(options))
    if options.segments:
        selects.append(
            segments_select(
                tumble=_tumble(options),
                window_end_ms=_window_end_ms(),
                window_ms=options.window_ms,
                prompt=_prompt,
                headers=_headers(codecs.PROTOBUF_CONTENT_TYPE, SEGMENT_KIND),
            )
        )
    return f"INSERT INTO `{options.sink_table}`\n" + "\nUNION ALL\n".join(selects)


def register_aggregates(
    table_env: StreamTableEnvironment,
    join_out: JoinOut = "join_out",
    *,
    sink: KafkaSink,
    statements: StatementSet,
    window_minutes: int = 5,
    top_n: int = 10,
    watermark_delay_ms: int | None = None,
    segments: bool = False,
) -> None:
    """Declare the window aggregates over ``join_out``; add their INSERT to ``statements``.

    With ``segments``, also the per-segment aggregates (:mod:`segment_aggregates`; the
    join's ``segment`` column is then read).

    ``join_out`` is the join's output with the columns of ``join_operator.OUTPUT_FIELDS``
    (``INPUT_COLUMNS`` at least; ``top_n=0`` turns the top posts off and with them the
    need for ``post_id``): a table or view made by :func:`join_out_table`, so that
    it carries the join's watermarks, or the join operator's DataStream itself. With
    ``watermark_delay_ms`` any table will do (watermarks are then derived from the rows).
    Aggregates and top posts go to ``sink`` (the metrics topic) through one INSERT, so
    one transactional id prefix, exactly once when ``sink`` says so. ``table_env`` must
    be a ``StreamTableEnvironment`` (time attributes are rebuilt on DataStreams).
    """
    if window_minutes < 1 or top_n < 0:
        raise ValueError("window_minutes must be at least 1 and top_n at least 0")
    options = AggregateOptions(window_minutes, top_n, watermark_delay_ms, segments=segments)
    table_env.create_temporary_view(
        options.input_view, aggregate_input(table_env, join_out, options)
    )
    table_env.create_temporary_function(options.encode_function, aggregate_encoder())
    if segments:
        table_env.create_temporary_function(SEGMENT_ENCODER, segment_encoder())
    table_env.execute_sql(raw_table_ddl(options.sink_table, raw_sink_options(sink)))
    table_env.execute_sql(windows_view_sql(options))
    statements.add_insert_sql(metrics_insert(options))
