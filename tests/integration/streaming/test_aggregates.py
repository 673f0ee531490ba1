"""Window aggregates on the real mini-cluster and broker, then their Prometheus export.

The input is rows shaped like the join's output (``join_out``) over three 5-minute
windows, two arms and unattributed late and dangling rewards, in two runs:

* an unbounded job whose input comes, like the join's, out of Python operators with
  event-time watermarks (the default, ``SOURCE_WATERMARK``): windows close while it
  runs, and a dangling reward sent after its window closed (as the join's timer emits
  them) is counted in the window open at the time;
* a bounded job whose watermarks the aggregates derive from the rows themselves.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Message, Producer
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pyflink.common import Duration, Row, WatermarkStrategy
from pyflink.common.typeinfo import Types

from feedrank.core import codecs
from feedrank.core.arms import POSITION_SEGMENTS
from feedrank.core.metrics_kinds import (
    AGGREGATE_KIND,
    METRICS_KIND_HEADER,
    SEGMENT_KIND,
    TOP_POSTS_KIND,
)
from feedrank.core.settings import Settings, load_settings
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.streaming.aggregate_records import TopPost, parse_top_post
from feedrank.streaming.aggregates import (
    TOP_POSTS_KEY,
    join_out_table,
    register_aggregates,
)
from feedrank.streaming.flink_environment import FlinkJobOptions, create_stream_environment
from feedrank.streaming.join_operator import OUTPUT_FIELDS, EventTimeOf
from feedrank.streaming.kafka_tables import (
    KafkaSink,
    KafkaSource,
    raw_source_options,
    raw_table_ddl,
)
from feedrank.streaming.metrics_exporter import (
    GAUGES,
    UNATTRIBUTED,
    MetricsExporter,
    serve_metrics,
)
from feedrank.v1 import events_pb2
from tests.support.kafka import CommittedReader, TopicFactory, free_port

W0 = 1_764_000_000_000  # a whole 5 minutes
WINDOW_MS = 300_000
W1 = W0 + WINDOW_MS
W2 = W1 + WINDOW_MS
W3 = W2 + WINDOW_MS
SECOND = 1000
TOP_N = 2
# The columns of join_out: the join operator's own (post_id last, for the top-N posts).
JOIN_OUT_FIELDS = list(OUTPUT_FIELDS)
JOIN_OUT_ROW = Types.ROW_NAMED([n for n, _ in JOIN_OUT_FIELDS], [t for _, t in JOIN_OUT_FIELDS])


def _row(
    kind: str, at: int, model: str = "", arm: str = "", post: str = "", **counts: float
) -> Row:
    """A join_out row; ``counts`` names impressions/engagements/dwell_seconds/... and
    ``segment`` (the user's position segment: 3 on the canary, 7 on stable, else -1)."""
    segment = {"canary": 3, "stable": 7}.get(arm, -1)
    return Row(
        kind,
        b"user",
        b"",
        model,
        arm,
        at,
        int(counts.get("impressions", 0)),
        int(counts.get("engagements", 0)),
        float(counts.get("dwell_seconds", 0.0)),
        int(counts.get("reports", 0)),
        int(counts.get("blocks", 0)),
        int(counts.get("hides", 0)),
        int(counts.get("prompt", 0)),
        "",
        post,
        int(counts.get("segment", segment)),
        (),
    )


JOIN_OUT = [
    _row("impressions", W0 + 1 * SECOND, "v1", "stable", impressions=3),
    _row("impressions", W0 + 2 * SECOND, "v1", "stable", impressions=2),
    _row("impressions", W0 + 3 * SECOND, "v2", "canary", impressions=4),
    # Examples and malformed records are never aggregated, whatever they carry.
    _row("example", W0 + 4 * SECOND, "v1", "stable", impressions=100, engagements=100),
    _row("malformed", W0 + 4 * SECOND, impressions=100),
    _row("reward", W0 + 10 * SECOND, "v1", "stable", "p1", engagements=1, prompt=1),
    _row("reward", W0 + 11 * SECOND, "v1", "stable", "p1", engagements=1),
    _row("reward", W0 + 12 * SECOND, "v1", "stable", "p2", dwell_seconds=7.5),
    _row("reward", W0 + 13 * SECOND, "v2", "canary", "p4", engagements=1, prompt=1),
    _row("reward", W0 + 14 * SECOND, "v2", "canary", "p2", engagements=1),
    _row("reward", W0 + 15 * SECOND, "v2", "canary", "p3", reports=1, prompt=1),
    _row("reward", W0 + 16 * SECOND, "v2", "canary", "p3", blocks=1),
    _row("reward", W0 + 17 * SECOND, "v2", "canary", "p3", hides=1),
    _row("late", W0 + 20 * SECOND),
    _row("dangling", W0 + 21 * SECOND),
    _row("dangling", W0 + 22 * SECOND),
    _row("impressions", W1 + 1 * SECOND, "v1", "stable", impressions=5),
    _row("reward", W1 + 2 * SECOND, "v1", "stable", "p9", engagements=1),
    _row("late", W1 + 3 * SECOND),
    _row("reward", W1 + 4 * SECOND, "v2", "canary", "p1", engagements=1, dwell_seconds=2.0),
]

# A decision with nothing shown moves event time past W1's end: W0 and W1 close.
CLOSE_W1 = [_row("impressions", W2 + 10 * SECOND, "v1", "stable")]
# Then a dangling reward of W0 arrives, and event time moves past W2's end.
LATE_THEN_CLOSE_W2 = [
    _row("dangling", W0 + 30 * SECOND),
    _row("impressions", W3 + 10 * SECOND, "v1", "stable"),
]
# Derived watermarks lag 5 s and two subtasks each see one of these rows: both move past
# W1's start, so the dangling reward that follows is behind the watermark.
PAST_W1 = [_row("impressions", W1 + 10 * SECOND, "v1", "stable")] * 2
BEHIND_THE_WATERMARK = [_row("dangling", W0 + 30 * SECOND)]

# (window start, model version, arm) -> (impressions, engagements, rate, dwell,
# reports, blocks, hides, late, dangling, prompt engagements, reports, blocks, hides)
EXPECTED = {
    (W0, "v1", "stable"): (5, 2, 0.4, 7.5, 0, 0, 0, 0, 0, 1, 0, 0, 0),
    (W0, "v2", "canary"): (4, 2, 0.5, 0.0, 1, 1, 1, 0, 0, 1, 1, 0, 0),
    (W0, "", ""): (0, 0, 0.0, 0.0, 0, 0, 0, 1, 2, 0, 0, 0, 0),
    (W1, "v1", "stable"): (5, 1, 0.2, 0.0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    (W1, "v2", "canary"): (0, 1, 0.0, 2.0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    (W1, "", ""): (0, 0, 0.0, 0.0, 0, 0, 0, 1, 0, 0, 0, 0, 0),
}
NOTHING = (0, 0, 0.0, 0.0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
# The late dangling reward is counted in the window open when it arrived, not dropped.
EXPECTED_UNBOUNDED = EXPECTED | {
    (W2, "v1", "stable"): NOTHING,
    (W2, "", ""): (0, 0, 0.0, 0.0, 0, 0, 0, 0, 1, 0, 0, 0, 0),
}
EXPECTED_BOUNDED = EXPECTED | {(W1, "", ""): (0, 0, 0.0, 0.0, 0, 0, 0, 1, 1, 0, 0, 0, 0)}
# (window start, segment) -> (impressions, prompt engagements, reports, blocks, hides):
# impressions and attributed rewards of the segment's users, whatever version served them.
EXPECTED_SEGMENTS = {
    (W0, 7): (5, 1, 0, 0, 0),
    (W0, 3): (4, 1, 1, 0, 0),
    (W1, 7): (5, 0, 0, 0, 0),
    (W1, 3): (0, 0, 0, 0, 0),
}
# window start -> [(rank, post id, engagements)]: ties in engagements go by post id.
EXPECTED_TOP = {W0: [(1, "p1", 2), (2, "p2", 1)], W1: [(1, "p1", 1), (2, "p9", 1)]}
# How each run gets its watermarks: the input's own (as from the join) or derived here.
SOURCE, DERIVED = "source-watermarks", "derived-watermarks"


def _values(aggregate: events_pb2.EngagementAggregate) -> tuple[float, ...]:
    a = aggregate
    return (
        a.impressions,
        a.engagements,
        round(a.engagement_rate, 9),
        a.dwell_seconds,
        a.reports,
        a.blocks,
        a.hides,
        a.late_rewards,
        a.dangling_rewards,
        a.prompt_engagements,
        a.prompt_reports,
        a.prompt_blocks,
        a.prompt_hides,
    )


def _kind(record: Message) -> str | None:
    return codecs.header_value(record.headers(), METRICS_KIND_HEADER)


BYTES_FIELDS = ("key", "payload")  # not needed by the aggregates: not sent


def _as_json(row: Row) -> bytes:
    document = dict(zip(JOIN_OUT_ROW.get_field_names(), row, strict=True))
    return json.dumps({k: v for k, v in document.items() if k not in BYTES_FIELDS}).encode()


def _join_out_from_kafka(stream_env: Any, table_env: Any, source: KafkaSource) -> Any:
    """join_out rows out of Python operators, with bounded-out-of-orderness watermarks."""

    names = tuple(JOIN_OUT_ROW.get_field_names())

    def decode(record: Row) -> Row:
        document = json.loads(bytes(record[1]))
        row = Row(*(document.get(name, b"") for name in names))
        row.set_field_names(list(names))  # the watermark assigner reads fields by name
        return row

    table_env.execute_sql(raw_table_ddl("join_out_json", raw_source_options(source)))
    return (
        table_env.to_data_stream(table_env.from_path("join_out_json"))
        .map(decode, output_type=JOIN_OUT_ROW)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy.for_bounded_out_of_orderness(
                Duration.of_seconds(1)
            ).with_timestamp_assigner(EventTimeOf("event_time_ms"))
        )
    )


def _environments(settings: Settings, parallelism: int) -> tuple[Any, Any]:
    return create_stream_environment(
        settings,
        FlinkJobOptions(parallelism=parallelism, checkpoint_interval_s=1.0),
        extra={"restart-strategy.type": "none"},  # fail the test, do not retry forever
    )


def _aggregates_into(
    table_env: Any, join_out: Any, bootstrap: str, topic: str, **options: Any
) -> None:
    """Register the aggregates over the ``join_out`` table, attached to the stream env."""
    table_env.create_temporary_view("join_out", join_out)
    statements = table_env.create_statement_set()
    sink = KafkaSink(topic, bootstrap, transactional_id_prefix=f"agg-{uuid.uuid4().hex[:8]}")
    register_aggregates(
        table_env, sink=sink, statements=statements, top_n=TOP_N, segments=True, **options
    )
    statements.attach_as_datastream()


def _run_unbounded(settings: Settings, topics: TopicFactory, metrics: str) -> None:
    """The default mode, while the job runs: windows close as event time passes them."""
    source_topic = topics("join-out")
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap})

    def send(rows: list[Row]) -> None:
        for row in rows:
            producer.produce(source_topic, value=_as_json(row))
        assert producer.flush(30) == 0

    send(JOIN_OUT + CLOSE_W1)
    stream_env, table_env = _environments(settings, parallelism=1)
    source = KafkaSource(source_topic, settings.kafka.bootstrap, f"agg-{uuid.uuid4().hex}")
    rows = _join_out_from_kafka(stream_env, table_env, source)
    # As the join job registers join_out: a table that keeps the join's watermarks.
    join_out = join_out_table(table_env, rows)
    _aggregates_into(table_env, join_out, settings.kafka.bootstrap, metrics)
    job = stream_env.execute_async("aggregates-test-unbounded")
    try:
        consume = CommittedReader(settings.kafka.bootstrap)
        top = sum(len(posts) for posts in EXPECTED_TOP.values())
        w0_w1 = len(EXPECTED) + top + len(EXPECTED_SEGMENTS)
        consume(metrics, w0_w1, timeout_s=60)  # both windows closed and committed
        send(LATE_THEN_CLOSE_W2)
        consume(metrics, w0_w1 + 3, timeout_s=60)  # and W2's two rows and one segment
    finally:
        job.cancel().result()


def _run_bounded(settings: Settings, metrics: str) -> None:
    """Watermarks derived from the rows, 5 s behind; the input's end closes every window."""
    stream_env, table_env = _environments(settings, parallelism=2)
    rows = stream_env.from_collection(
        JOIN_OUT + PAST_W1 + BEHIND_THE_WATERMARK, type_info=JOIN_OUT_ROW
    )
    join_out = table_env.from_data_stream(rows)  # no watermarks: the aggregates derive them
    _aggregates_into(
        table_env, join_out, settings.kafka.bootstrap, metrics, watermark_delay_ms=5_000
    )
    stream_env.execute("aggregates-test-bounded")


@pytest.fixture(scope="module")
def metrics_topics(kafka: KafkaBroker, settings_for_kafka: Settings) -> Iterator[dict[str, str]]:
    """Per watermark mode, the metrics topic after one run of the aggregates."""
    topics = TopicFactory(AdminClient({"bootstrap.servers": kafka.bootstrap}), "aggregates")
    try:
        runs = {mode: topics("metrics", 3) for mode in (SOURCE, DERIVED)}
        _run_unbounded(settings_for_kafka, topics, runs[SOURCE])
        _run_bounded(settings_for_kafka, runs[DERIVED])
        yield runs
    finally:
        topics.delete_all()


@pytest.fixture(scope="module")
def metrics_records(metrics_topics: dict[str, str], kafka: KafkaBroker) -> dict[str, list[Message]]:
    """Per watermark mode, every committed record of its metrics topic."""
    consume = CommittedReader(kafka.bootstrap)
    return {
        mode: consume.read(topic, at_most=100, timeout_s=30, idle_s=2)
        for mode, topic in metrics_topics.items()
    }


@pytest.mark.parametrize(
    ("mode", "expected"), [(SOURCE, EXPECTED_UNBOUNDED), (DERIVED, EXPECTED_BOUNDED)]
)
def test_one_aggregate_per_window_and_arm(
    metrics_records: dict[str, list[Message]],
    mode: str,
    expected: dict[tuple[int, str, str], tuple[float, ...]],
) -> None:
    records = metrics_records[mode]
    aggregates = [
        (record, codecs.decode(events_pb2.EngagementAggregate, record.value()))
        for record in records
        if _kind(record) == AGGREGATE_KIND
    ]
    by_window = {(a.window_start_ms, a.model_version, a.arm): a for _, a in aggregates}
    assert len(by_window) == len(aggregates), "one aggregate per window and arm, none twice"
    assert {key: _values(a) for key, a in by_window.items()} == expected
    for record, aggregate in aggregates:
        assert aggregate.window_end_ms == aggregate.window_start_ms + WINDOW_MS
        assert record.key() == aggregate.model_version.encode()
        content_type = codecs.header_value(record.headers(), codecs.CONTENT_TYPE_HEADER)
        assert content_type == codecs.PROTOBUF_CONTENT_TYPE


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(SOURCE, EXPECTED_SEGMENTS | {(W2, 7): (0, 0, 0, 0, 0)}), (DERIVED, EXPECTED_SEGMENTS)],
)
def test_one_segment_aggregate_per_window_and_segment(
    metrics_records: dict[str, list[Message]],
    mode: str,
    expected: dict[tuple[int, int], tuple[int, ...]],
) -> None:
    records = [record for record in metrics_records[mode] if _kind(record) == SEGMENT_KIND]
    segments = [codecs.decode(events_pb2.SegmentAggregate, r.value()) for r in records]
    by_window = {(a.window_start_ms, a.segment): a for a in segments}
    assert len(by_window) == len(segments), "one aggregate per window and segment"
    values = {
        key: (
            a.impressions,
            a.prompt_engagements,
            a.prompt_reports,
            a.prompt_blocks,
            a.prompt_hides,
        )
        for key, a in by_window.items()
    }
    assert values == expected
    for record, aggregate in zip(records, segments, strict=True):
        assert aggregate.segments == POSITION_SEGMENTS
        assert aggregate.window_end_ms == aggregate.window_start_ms + WINDOW_MS
        assert record.key() == str(aggregate.segment).encode()


@pytest.mark.parametrize("mode", [SOURCE, DERIVED])
def test_top_engaged_posts_per_window(metrics_records: dict[str, list[Message]], mode: str) -> None:
    top_records = [record for record in metrics_records[mode] if _kind(record) == TOP_POSTS_KIND]
    for record in top_records:
        content_type = codecs.header_value(record.headers(), codecs.CONTENT_TYPE_HEADER)
        assert content_type == codecs.JSON_CONTENT_TYPE
        assert record.key() == TOP_POSTS_KEY.encode()
    by_window: dict[int, list[tuple[int, str, int]]] = {}
    for post in sorted((parse_top_post(r.value() or b"") for r in top_records), key=_rank_order):
        assert post.window_end_ms == post.window_start_ms + WINDOW_MS
        by_window.setdefault(post.window_start_ms, []).append(
            (post.rank, post.post_id, post.engagements)
        )
    assert by_window == EXPECTED_TOP


def test_a_join_out_without_watermarks_is_refused(settings_for_kafka: Settings) -> None:
    """Windows would never close in a running job: fail at build time instead."""
    stream_env, table_env = _environments(settings_for_kafka, parallelism=1)
    rows = stream_env.from_collection(JOIN_OUT, type_info=JOIN_OUT_ROW)
    table_env.create_temporary_view("join_out", table_env.from_data_stream(rows))
    sink = KafkaSink("unused", settings_for_kafka.kafka.bootstrap)
    statements = table_env.create_statement_set()
    with pytest.raises(ValueError, match="join_out carries no watermarks"):
        register_aggregates(table_env, sink=sink, statements=statements)


def test_without_post_ids_the_top_posts_can_be_turned_off(settings_for_kafka: Settings) -> None:
    """A join_out without ``post_id`` is refused unless ``top_n=0``; then the plan holds."""
    fields = [(name, kind) for name, kind in JOIN_OUT_FIELDS if name != "post_id"]
    row_type = Types.ROW_NAMED([n for n, _ in fields], [t for _, t in fields])
    stream_env, table_env = _environments(settings_for_kafka, parallelism=1)
    rows = stream_env.from_collection([Row(*row[:-1]) for row in JOIN_OUT], type_info=row_type)
    join_out = table_env.from_data_stream(rows)
    sink = KafkaSink("unused", settings_for_kafka.kafka.bootstrap)
    statements = table_env.create_statement_set()
    with pytest.raises(ValueError, match=r"lacks the columns \['post_id'\]"):
        register_aggregates(
            table_env, join_out, sink=sink, statements=statements, watermark_delay_ms=0
        )
    register_aggregates(
        table_env, join_out, sink=sink, statements=statements, top_n=0, watermark_delay_ms=0
    )
    plan = statements.explain()
    assert "metrics_sink" in plan
    assert "Rank" not in plan


def _rank_order(post: TopPost) -> tuple[int, int]:
    return post.window_start_ms, post.rank


def _lint(exposition: str) -> None:
    lint = subprocess.run(
        ["promtool", "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def _records_read(registry: CollectorRegistry, kind: str) -> float:
    value = registry.get_sample_value("feedrank_metrics_exporter_records_total", {"kind": kind})
    return value or 0.0


def test_exporter_holds_the_latest_window_per_arm(
    metrics_topics: dict[str, str], kafka: KafkaBroker
) -> None:
    registry = CollectorRegistry()
    exporter = MetricsExporter(
        kafka.bootstrap, metrics_topics[DERIVED], registry, group_id=f"exp-{uuid.uuid4().hex}"
    )
    top_posts = sum(len(posts) for posts in EXPECTED_TOP.values())
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and (
            _records_read(registry, AGGREGATE_KIND) < len(EXPECTED)
            or _records_read(registry, TOP_POSTS_KIND) < top_posts
        ):
            exporter.poll_once(0.5)
    finally:
        exporter.close()
    assert _records_read(registry, AGGREGATE_KIND) == len(EXPECTED)

    def sample(name: str, model: str, arm: str) -> float | None:
        return registry.get_sample_value(name, {"model_version": model, "arm": arm})

    # The latest windows (W1) only: W0's values were replaced.
    assert sample("feedrank_window_impressions", "v1", "stable") == 5
    assert sample("feedrank_window_engagements", "v1", "stable") == 1
    assert sample("feedrank_window_engagement_rate", "v1", "stable") == pytest.approx(0.2)
    assert sample("feedrank_window_dwell_seconds", "v1", "stable") == 0
    assert sample("feedrank_window_impressions", "v2", "canary") == 0
    assert sample("feedrank_window_engagements", "v2", "canary") == 1
    assert sample("feedrank_window_engagement_rate", "v2", "canary") == 0
    assert sample("feedrank_window_dwell_seconds", "v2", "canary") == 2.0
    assert sample("feedrank_window_reports", "v2", "canary") == 0
    assert sample("feedrank_window_late_rewards", UNATTRIBUTED, UNATTRIBUTED) == 1
    assert sample("feedrank_window_dangling_rewards", UNATTRIBUTED, UNATTRIBUTED) == 1
    for model, arm in (("v1", "stable"), ("v2", "canary"), (UNATTRIBUTED, UNATTRIBUTED)):
        assert sample("feedrank_window_end_timestamp_seconds", model, arm) == W2 / 1000
    exposition = generate_latest(registry).decode()
    assert "post_id" not in exposition
    assert "p1" not in exposition
    _lint(exposition)


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())
    except OSError:  # not listening yet
        return ""


def _gauges(exposition: str) -> dict[tuple[str, str, str], float]:
    """(name, model version, arm) -> value of every window gauge in an exposition."""
    return {
        (sample.name, sample.labels["model_version"], sample.labels["arm"]): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name.startswith("feedrank_window_")
    }


def test_serve_metrics_over_http(
    metrics_topics: dict[str, str], settings_for_kafka: Settings
) -> None:
    port = free_port()
    settings = load_settings(
        kafka={"bootstrap_servers": settings_for_kafka.kafka.bootstrap},
        topics={"metrics": metrics_topics[SOURCE]},
        ports={"streaming_metrics": port},
    )
    stop = threading.Event()
    server = threading.Thread(target=serve_metrics, args=(settings, stop), daemon=True)
    server.start()
    # The unbounded run's latest windows: W2 for v1/stable and the unattributed, W1 else.
    latest_end = {("v1", "stable"): W3, ("v2", "canary"): W2, (UNATTRIBUTED, UNATTRIBUTED): W3}
    try:
        deadline = time.monotonic() + 30
        gauges = _gauges(_scrape(port))
        while len(gauges) < len(GAUGES) * len(latest_end) and time.monotonic() < deadline:
            time.sleep(0.2)
            gauges = _gauges(_scrape(port))
        for (model, arm), end in latest_end.items():
            assert gauges["feedrank_window_end_timestamp_seconds", model, arm] == end / 1000
        assert gauges["feedrank_window_dangling_rewards", UNATTRIBUTED, UNATTRIBUTED] == 1
        assert gauges["feedrank_window_engagements", "v2", "canary"] == 1
        _lint(_scrape(port))
    finally:
        stop.set()
        server.join(timeout=30)
    assert not server.is_alive(), "serve_metrics returns once stopped"
    assert not _scrape(port), "and stops serving"
