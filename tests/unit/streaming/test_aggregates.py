"""The window aggregates' pure parts: the record formats and the SQL they are built from."""

from __future__ import annotations

import json

import pytest

from feedrank.core import codecs
from feedrank.streaming.aggregate_records import (
    WINDOW_ROW_FIELDS,
    TopPost,
    WindowAggregate,
    encode_window_row,
    engagement_rate,
    parse_top_post,
    to_proto,
)
from feedrank.streaming.aggregates import (
    AGGREGATED_KINDS,
    AggregateOptions,
    aggregates_select,
    counted_at_sql,
    metrics_insert,
    top_posts_select,
    windows_view_sql,
)
from feedrank.v1 import events_pb2

END = 1_764_000_300_000
WINDOW_MS = 300_000


def test_engagement_rate_is_per_impression_and_zero_without_impressions() -> None:
    assert engagement_rate(3, 12) == 0.25
    assert engagement_rate(5, 0) == 0.0
    assert engagement_rate(0, 0) == 0.0


def test_a_window_row_becomes_an_engagement_aggregate() -> None:
    row = (END, WINDOW_MS, "v7", "canary", 40, 10, 12.5, 1, 2, 3, 4, 5, 7, 1, 0, 2)
    decoded = codecs.decode(events_pb2.EngagementAggregate, encode_window_row(*row))
    assert decoded == events_pb2.EngagementAggregate(
        window_start_ms=END - WINDOW_MS,
        window_end_ms=END,
        model_version="v7",
        arm="canary",
        impressions=40,
        engagements=10,
        engagement_rate=0.25,
        dwell_seconds=12.5,
        reports=1,
        blocks=2,
        hides=3,
        late_rewards=4,
        dangling_rewards=5,
        prompt_engagements=7,
        prompt_reports=1,
        prompt_blocks=0,
        prompt_hides=2,
    )


def test_sql_nulls_become_zeros_and_empty_labels() -> None:
    """A SUM over no values is NULL in SQL: a window of late rewards only, say."""
    row = WindowAggregate.from_sql(END, WINDOW_MS, None, None, *[None] * 6, 2, 0, *[None] * 4)
    aggregate = to_proto(row)
    assert (aggregate.model_version, aggregate.arm) == ("", "")
    assert (aggregate.impressions, aggregate.dwell_seconds, aggregate.engagement_rate) == (0, 0, 0)
    assert aggregate.late_rewards == 2
    assert aggregate.prompt_engagements == 0
    with pytest.raises(ValueError, match="shorter"):
        WindowAggregate.from_sql(END, WINDOW_MS)


def test_top_posts_records_parse_and_reject_garbage() -> None:
    document = {
        "window_start_ms": END - WINDOW_MS,
        "window_end_ms": END,
        "rank": 1,
        "post_id": "p-1",
        "engagements": 9,
    }
    assert parse_top_post(json.dumps(document).encode()) == TopPost(
        END - WINDOW_MS, END, 1, "p-1", 9
    )
    for garbage in (b"{not json", b"[]", json.dumps({"rank": 1}).encode()):
        with pytest.raises(codecs.EventDecodeError, match="not a top-posts record"):
            parse_top_post(garbage)


def test_the_encoder_gets_the_window_row_in_field_order() -> None:
    options = AggregateOptions(window_minutes=5)
    insert = aggregates_select(options)
    assert WINDOW_ROW_FIELDS[:2] == ("window_end_ms", "window_ms")
    rest = ", ".join(WINDOW_ROW_FIELDS[2:])
    call = f"{options.encode_function}(window_end_ms, CAST(300000 AS BIGINT), {rest})"
    assert call in insert
    assert "CAST(model_version AS BYTES)" in insert
    assert f"'{codecs.PROTOBUF_CONTENT_TYPE}'" in insert


def test_windows_are_tumbling_in_event_time_per_model_version_and_arm() -> None:
    view = windows_view_sql(AggregateOptions(window_minutes=15))
    assert "TUMBLE(TABLE `aggregate_input`, DESCRIPTOR(rowtime), INTERVAL '15' MINUTES)" in view
    assert "GROUP BY window_start, window_end, window_time, model_version, arm" in view
    assert "SUM(CASE WHEN kind = 'late' THEN 1 ELSE 0 END) AS late_rewards" in view
    assert "SUM(CASE WHEN kind = 'dangling' THEN 1 ELSE 0 END) AS dangling_rewards" in view


def test_top_posts_are_a_window_top_n_over_engaged_rewards() -> None:
    insert = top_posts_select(AggregateOptions(top_n=7))
    assert "PARTITION BY window_start, window_end ORDER BY engagements DESC, post_id ASC" in insert
    assert "WHERE post_rank <= 7" in insert
    assert "WHERE kind = 'reward'" in insert
    assert f"'{codecs.JSON_CONTENT_TYPE}'" in insert


def test_both_record_kinds_go_through_one_insert_and_one_sink() -> None:
    options = AggregateOptions()
    insert = metrics_insert(options)
    assert insert.count("INSERT INTO") == 1
    assert insert.startswith(f"INSERT INTO `{options.sink_table}`")
    assert aggregates_select(options) in insert
    assert top_posts_select(options) in insert


def test_top_n_zero_turns_the_top_posts_and_the_post_id_off() -> None:
    options = AggregateOptions(top_n=0)
    assert "post_id" not in options.columns
    assert "post_id" not in counted_at_sql(options)
    assert metrics_insert(options) == (
        f"INSERT INTO `{options.sink_table}`\n{aggregates_select(options)}"
    )
    assert "post_id" in AggregateOptions().columns


def test_rows_behind_the_watermark_are_moved_just_past_it() -> None:
    sql = counted_at_sql(AggregateOptions())
    assert "event_time <= CURRENT_WATERMARK(event_time)" in sql
    assert "CURRENT_WATERMARK(event_time) + INTERVAL '0.001' SECOND ELSE event_time" in sql
    assert set(AGGREGATED_KINDS) == {"impressions", "reward", "late", "dangling"}
