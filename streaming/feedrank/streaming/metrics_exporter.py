"""Prometheus export of the window aggregates on ``feedrank.metrics`` (port 9103).

A read-committed consumer in its own group reads the ``EngagementAggregate`` records
the aggregates job writes (see ``feedrank.streaming.aggregates``) and keeps, per
(model version, arm), the latest complete window; a collector exposes it as gauges
labelled ``model_version`` and ``arm`` only (never user or post ids). Late and
dangling rewards, which belong to no model version or arm, are exposed under the
label value ``unattributed``. ``feedrank_window_end_timestamp_seconds`` tells how old
each series is: a (model version, arm) with no traffic keeps its last window.

Top-posts records (JSON) on the same topic are counted but not exported: post ids
must not become label values. After a restart the group resumes from its committed
offsets, so the gauges fill in again with the next window.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from feedrank.core import codecs
from feedrank.core.kafka_clients import KafkaTarget, consumer_config
from feedrank.core.metrics_kinds import AGGREGATE_KIND, METRICS_KIND_HEADER, TOP_POSTS_KIND
from feedrank.core.settings import Settings
from feedrank.v1 import events_pb2

log = logging.getLogger(__name__)

GROUP_ID = "feedrank-metrics-exporter"
LABELS = ("model_version", "arm")
UNATTRIBUTED = "unattributed"
INVALID_KIND = "invalid"
BATCH_SIZE = 500
POLL_TIMEOUT_S = 1.0
MS_PER_SECOND = 1000.0

Aggregate = events_pb2.EngagementAggregate
SeriesKey = tuple[str, str]


@dataclass(frozen=True)
class GaugeSpec:
    name: str
    documentation: str
    value: Callable[[Aggregate], float]


GAUGES = (
    GaugeSpec(
        "feedrank_window_impressions",
        "Items shown in the latest complete window.",
        lambda a: a.impressions,
    ),
    GaugeSpec(
        "feedrank_window_engagements",
        "Likes, comments, shares and saves in the latest complete window.",
        lambda a: a.engagements,
    ),
    GaugeSpec(
        "feedrank_window_engagement_rate",
        "Engagements per impression in the latest complete window (0 without impressions).",
        lambda a: a.engagement_rate,
    ),
    GaugeSpec(
        "feedrank_window_dwell_seconds",
        "Dwell time reported in the latest complete window.",
        lambda a: a.dwell_seconds,
    ),
    GaugeSpec(
        "feedrank_window_reports", "Reports in the latest complete window.", lambda a: a.reports
    ),
    GaugeSpec(
        "feedrank_window_blocks", "Blocks in the latest complete window.", lambda a: a.blocks
    ),
    GaugeSpec("feedrank_window_hides", "Hides in the latest complete window.", lambda a: a.hides),
    GaugeSpec(
        "feedrank_window_prompt_engagements",
        "Engagements within the prompt horizon of their impression, latest complete window.",
        lambda a: a.prompt_engagements,
    ),
    GaugeSpec(
        "feedrank_window_late_rewards",
        "Rewards after their reward window closed, in the latest complete window.",
        lambda a: a.late_rewards,
    ),
    GaugeSpec(
        "feedrank_window_dangling_rewards",
        "Rewards that joined no decision, in the latest complete window.",
        lambda a: a.dangling_rewards,
    ),
    GaugeSpec(
        "feedrank_window_end_timestamp_seconds",
        "End of the latest complete window (Unix time).",
        lambda a: a.window_end_ms / MS_PER_SECOND,
    ),
)


def series_key(aggregate: Aggregate) -> SeriesKey:
    """The label values of an aggregate; no model version or arm reads ``unattributed``."""
    return aggregate.model_version or UNATTRIBUTED, aggregate.arm or UNATTRIBUTED


class LatestWindows(Collector):
    """The latest complete window per (model version, arm), as gauge families."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[SeriesKey, Aggregate] = {}

    def update(self, aggregate: Aggregate) -> bool:
        """Hold ``aggregate`` unless a later window of its series is held already."""
        key = series_key(aggregate)
        with self._lock:
            held = self._latest.get(key)
            if held is not None and held.window_end_ms > aggregate.window_end_ms:
                return False
            self._latest[key] = aggregate
            return True

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            latest = sorted(self._latest.items())
        for spec in GAUGES:
            family = GaugeMetricFamily(spec.name, spec.documentation, labels=LABELS)
            for key, aggregate in latest:
                family.add_metric(key, spec.value(aggregate))
            yield family


def record_kind(headers: codecs.Headers) -> str:
    """``engagement-aggregate`` or ``top-posts``, from the headers (protobuf by default)."""
    kind = codecs.header_value(headers, METRICS_KIND_HEADER)
    if kind is not None:
        return kind
    content_type = codecs.header_value(headers, codecs.CONTENT_TYPE_HEADER) or ""
    json_type = content_type.startswith(codecs.JSON_CONTENT_TYPE)
    return TOP_POSTS_KIND if json_type else AGGREGATE_KIND


class WindowMetrics:
    """The exported state: :class:`LatestWindows` and a count of records by kind."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.windows = LatestWindows()
        registry.register(self.windows)
        self.records = Counter(
            "feedrank_metrics_exporter_records",
            "Records read from the metrics topic, by kind (invalid: could not be decoded).",
            ["kind"],
            registry=registry,
        )

    def handle(self, value: bytes | None, headers: codecs.Headers) -> str:
        """Take in one metrics record; returns its kind (``invalid`` when undecodable)."""
        kind = record_kind(headers)
        if kind == AGGREGATE_KIND:
            try:
                self.windows.update(codecs.decode(Aggregate, value))
            except codecs.EventDecodeError as error:
                log.warning("skipping an undecodable aggregate: %s", error)
                kind = INVALID_KIND
        self.records.labels(kind=kind).inc()
        return kind


class MetricsExporter:
    """Consumes the metrics topic into :class:`WindowMetrics` registered on ``registry``."""

    def __init__(
        self,
        bootstrap: KafkaTarget,
        topic: str,
        registry: CollectorRegistry,
        *,
        group_id: str = GROUP_ID,
    ) -> None:
        self.metrics = WindowMetrics(registry)
        # Only committed windows (read committed): never an aggregate of an aborted
        # transaction.
        self._consumer = Consumer(
            consumer_config(bootstrap, group_id, auto_commit=True, log_level=None)
        )
        self._consumer.subscribe([topic])

    def poll_once(self, timeout: float = POLL_TIMEOUT_S) -> int:
        """Handle the records that arrive within ``timeout`` seconds; how many there were."""
        messages = self._consumer.consume(BATCH_SIZE, timeout)
        for message in messages:
            self._handle(message)
        return len(messages)

    def run(self, stop_event: threading.Event) -> None:
        """Poll until ``stop_event`` is set, then close the consumer."""
        try:
            while not stop_event.is_set():
                self.poll_once()
        finally:
            self.close()

    def close(self) -> None:
        self._consumer.close()

    def _handle(self, message: Message) -> None:
        error = message.error()
        if error is None:
            self.metrics.handle(message.value(), message.headers())
        elif error.fatal():
            raise KafkaException(error)
        else:
            log.warning("metrics topic: %s", error)


class JobGauges:
    """The join job's own state, for ``feedrank up`` probes and dashboards."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.running = Gauge(
            "feedrank_join_job_running",
            "1 while the join job is RUNNING (on the mini-cluster or the session cluster), else 0.",
            registry=registry,
        )
        self.last_checkpoint = Gauge(
            "feedrank_join_last_checkpoint",
            "Id of the join's newest completed checkpoint (0: none yet).",
            registry=registry,
        )
        self.checkpoint_age = Gauge(
            "feedrank_join_last_checkpoint_age_seconds",
            "Seconds since the join's newest completed checkpoint (-1: none yet).",
            registry=registry,
        )

        self.resubmissions = Counter(
            "feedrank_join_resubmissions",
            "Times the join was resubmitted to its session cluster from the newest retained "
            "snapshot, after its job was lost (e.g. with the JobManager) or ended by itself.",
            registry=registry,
        )

    def update(self, running: bool, last_checkpoint: int, age_s: float | None) -> None:
        self.running.set(1 if running else 0)
        self.last_checkpoint.set(last_checkpoint)
        self.checkpoint_age.set(-1 if age_s is None else age_s)


def serve_metrics(
    settings: Settings, stop_event: threading.Event, registry: CollectorRegistry | None = None
) -> None:
    """Serve ``/metrics`` on ``ports.streaming_metrics`` from ``topics.metrics`` until stopped.

    ``registry`` may carry more collectors (the join's :class:`JobGauges`). Blocks;
    returns (port closed, consumer closed) within a second of ``stop_event``.
    """
    registry = registry or CollectorRegistry()
    ports = settings.ports
    # The port first: when it is taken, fail before a consumer joins the group.
    server, thread = start_http_server(
        ports.streaming_metrics, addr=ports.bind_host, registry=registry
    )
    log.info("window metrics on http://%s:%d/metrics", ports.bind_host, ports.streaming_metrics)
    try:
        MetricsExporter(settings.kafka.access, settings.topics.metrics, registry).run(stop_event)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
