"""Engagement totals per model version, from the 5-minute aggregates on ``feedrank.metrics``.

:class:`AggregateBook` keeps one record per (model version, arm, window) — a record read
twice replaces itself, so replays after a restart count once — and sums a version's
windows that start at or after a given event time (the rollout's start).
:class:`KafkaAggregateFeed` fills it from the topic, from the earliest retained record,
in a background thread; a restarted service so rebuilds the same totals. A broker
outage stops nothing: librdkafka reconnects by itself, the feed probes now and then
(with backoff) and ``feedrank_deploy_kafka_up`` reads 0 until Kafka answers again.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Callable
from functools import partial

from confluent_kafka import Consumer, KafkaError, Message

from feedrank.core import codecs
from feedrank.core.kafka_clients import KafkaTarget, consumer_config
from feedrank.core.kafka_link import BrokerLink
from feedrank.core.metrics_kinds import AGGREGATE_KIND, METRICS_KIND_HEADER, SEGMENT_KIND
from feedrank.deploy import metrics
from feedrank.deploy.analysis import ArmTotals
from feedrank.deploy.pre_period import SegmentBook
from feedrank.v1 import events_pb2

_POLL_S = 0.5
_PROBE_TIMEOUT_S = 2.0
log = logging.getLogger(__name__)


class AggregateBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str, int], tuple[int, ArmTotals]] = {}
        self._latest_event_ms = 0

    def add(self, aggregate: events_pb2.EngagementAggregate) -> None:
        if not aggregate.model_version:
            return  # late and dangling rewards belong to no version
        key = (aggregate.model_version, aggregate.arm, aggregate.window_start_ms)
        totals = ArmTotals(
            impressions=aggregate.impressions,
            prompt_engagements=aggregate.prompt_engagements,
            prompt_reports=aggregate.prompt_reports,
            prompt_blocks=aggregate.prompt_blocks,
            prompt_hides=aggregate.prompt_hides,
        )
        with self._lock:
            self._windows[key] = (aggregate.window_start_ms, totals)
            self._latest_event_ms = max(self._latest_event_ms, aggregate.window_end_ms)

    def latest_event_ms(self) -> int:
        """The end of the latest window seen (event time; 0 before any)."""
        with self._lock:
            return self._latest_event_ms

    def totals(self, model_version: str, since_ms: int, until_ms: int | None = None) -> ArmTotals:
        """Sum of the windows of ``model_version`` (any arm) starting at ``since_ms`` or
        later (and before ``until_ms``, when given)."""
        end = until_ms if until_ms is not None else math.inf
        result = ArmTotals()
        with self._lock:
            for (version, _, _), (window_start_ms, totals) in self._windows.items():
                if version == model_version and since_ms <= window_start_ms < end:
                    result = result.plus(totals)
        return result


class KafkaAggregateFeed:
    """Reads EngagementAggregate records into a book until stopped."""

    def __init__(
        self,
        book: AggregateBook,
        bootstrap: KafkaTarget,
        topic: str,
        *,
        segments: SegmentBook | None = None,
    ) -> None:
        self.book = book
        self.segments = segments  # the segment aggregates, when given
        self.topic = topic
        self.link = BrokerLink("deploy's aggregate feed", on_change=metrics.KAFKA_UP.set)
        self._consumer = Consumer(
            consumer_config(
                bootstrap,
                f"feedrank-deploy-{uuid.uuid4().hex[:12]}",
                log_level=0,  # the link logs an outage once, not each reconnection
                error_cb=self.link.on_client_error,
            )
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deploy-aggregates", daemon=True)

    def start(self) -> None:
        self._consumer.subscribe([self.topic])
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.link.probe_due():  # down (or not known up yet): does Kafka answer?
                metadata = partial(self._consumer.list_topics, self.topic, _PROBE_TIMEOUT_S)
                self.link.attempt(metadata, "metadata request")
            message = self._consumer.poll(_POLL_S)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("reading %s: %s", self.topic, error)
                continue
            self._read(message)

    def _read(self, message: Message) -> None:
        kind = codecs.header_value(message.headers(), METRICS_KIND_HEADER)
        if kind is None or kind == AGGREGATE_KIND:
            self._add(message, events_pb2.EngagementAggregate, self.book.add)
        elif kind == SEGMENT_KIND and self.segments is not None:
            self._add(message, events_pb2.SegmentAggregate, self.segments.add)
        # else top-posts records, which share the topic

    @staticmethod
    def _add(
        message: Message, record_type: type[codecs.EventT], add: Callable[[codecs.EventT], None]
    ) -> None:
        """Decode ``message`` as ``record_type`` and ``add`` it; count it either way."""
        try:
            record = codecs.decode(record_type, message.value())
        except codecs.EventDecodeError:
            metrics.AGGREGATES_REJECTED.inc()
            return
        add(record)
        metrics.AGGREGATES_READ.inc()
