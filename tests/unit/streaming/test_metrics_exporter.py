"""The metrics exporter's state and exposition, fed records without a broker."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from feedrank.core import codecs
from feedrank.core.metrics_kinds import AGGREGATE_KIND, METRICS_KIND_HEADER, TOP_POSTS_KIND
from feedrank.streaming.metrics_exporter import (
    GAUGES,
    INVALID_KIND,
    UNATTRIBUTED,
    WindowMetrics,
    record_kind,
    series_key,
)
from feedrank.v1 import events_pb2

END = 1_764_000_300_000
PROTOBUF = [(codecs.CONTENT_TYPE_HEADER, codecs.PROTOBUF_CONTENT_TYPE.encode())]
JSON = [(codecs.CONTENT_TYPE_HEADER, codecs.JSON_CONTENT_TYPE.encode())]


def _aggregate(end: int, model: str = "v1", arm: str = "stable", **counts: float) -> bytes:
    aggregate = events_pb2.EngagementAggregate(
        window_start_ms=end - 300_000, window_end_ms=end, model_version=model, arm=arm
    )
    for name, value in counts.items():
        setattr(aggregate, name, value)
    return codecs.encode(aggregate)


def _sample(registry: CollectorRegistry, name: str, model: str, arm: str) -> float | None:
    return registry.get_sample_value(name, {"model_version": model, "arm": arm})


def test_records_are_told_apart_by_their_headers() -> None:
    assert record_kind([(METRICS_KIND_HEADER, b"top-posts"), *PROTOBUF]) == TOP_POSTS_KIND
    assert record_kind(PROTOBUF) == AGGREGATE_KIND
    assert record_kind(JSON) == TOP_POSTS_KIND
    assert record_kind(None) == AGGREGATE_KIND


def test_the_latest_window_per_series_wins_and_older_ones_are_ignored() -> None:
    registry = CollectorRegistry()
    metrics = WindowMetrics(registry)
    metrics.handle(_aggregate(END, impressions=10, engagements=2, engagement_rate=0.2), PROTOBUF)
    metrics.handle(_aggregate(END + 300_000, impressions=4, engagement_rate=0.0), PROTOBUF)
    metrics.handle(_aggregate(END, impressions=99), PROTOBUF)  # replayed, older
    assert _sample(registry, "feedrank_window_impressions", "v1", "stable") == 4
    assert _sample(registry, "feedrank_window_engagements", "v1", "stable") == 0
    assert _sample(registry, "feedrank_window_engagement_rate", "v1", "stable") == 0
    assert (
        _sample(registry, "feedrank_window_end_timestamp_seconds", "v1", "stable")
        == (END + 300_000) / 1000
    )


def test_unattributed_rewards_get_a_label_value_of_their_own() -> None:
    registry = CollectorRegistry()
    WindowMetrics(registry).handle(_aggregate(END, "", "", late_rewards=3), PROTOBUF)
    assert series_key(events_pb2.EngagementAggregate()) == (UNATTRIBUTED, UNATTRIBUTED)
    assert _sample(registry, "feedrank_window_late_rewards", UNATTRIBUTED, UNATTRIBUTED) == 3


def test_top_posts_and_garbage_are_counted_not_exported() -> None:
    registry = CollectorRegistry()
    metrics = WindowMetrics(registry)
    assert metrics.handle(b'{"post_id": "p-secret"}', JSON) == TOP_POSTS_KIND
    assert metrics.handle(b"\xff\xff", PROTOBUF) == INVALID_KIND
    exposition = generate_latest(registry).decode()
    assert "p-secret" not in exposition
    counted = "feedrank_metrics_exporter_records_total"
    assert registry.get_sample_value(counted, {"kind": TOP_POSTS_KIND}) == 1
    assert registry.get_sample_value(counted, {"kind": INVALID_KIND}) == 1


def test_every_gauge_is_exposed_with_only_model_version_and_arm_labels() -> None:
    registry = CollectorRegistry()
    WindowMetrics(registry).handle(_aggregate(END, "v2", "canary", impressions=1), PROTOBUF)
    exposition = generate_latest(registry).decode()
    for spec in GAUGES:
        assert f"# TYPE {spec.name} gauge" in exposition
        assert f'{spec.name}{{arm="canary",model_version="v2"}} ' in exposition
