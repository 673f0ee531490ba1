"""Bringing the catalogue and engagement to feedrank: a typed Kafka producer for apps.

Posts go to ``feedrank.posts`` (keyed by post_id), users to ``feedrank.users`` and the
social graph to ``feedrank.graph`` (keyed by user_id), rewards to ``feedrank.rewards``
(keyed by user_id), all as protobuf with the header ``content-type:
application/x-protobuf``. Every event is validated before it is produced: an invalid
one raises :class:`~feedrank.client.errors.InvalidEvent` at once and nothing is sent.
Sends are batched and asynchronous; :meth:`EventProducer.flush` waits for the broker
and raises :class:`~feedrank.client.errors.DeliveryFailed` if anything was lost.

Example::

    from feedrank.client import EventProducer

    with EventProducer("127.0.0.1:9092") as producer:
        producer.upsert_post("p1", creator_id="c1", created_ms=1764000000000,
                             language="en", topics=["cats"], features={"quality": 0.9})
        producer.upsert_user("u1", language="en", country="US", age_bucket="25-34")
        producer.follow("u1", "c1")
        producer.send_reward(decision_id=feed.decision_id, post_id="p1", user_id="u1",
                             type="like")
    # leaving the block flushes: DeliveryFailed if a record was not acknowledged

On a secured cluster, say how to authenticate (SASL/SCRAM over TLS here)::

    from pathlib import Path
    from feedrank.client import KafkaSecurity

    security = KafkaSecurity.sasl_ssl("my-app", password, ca_file=Path("ca.pem"))
    with EventProducer("kafka.example:9093", security=security) as producer:
        ...
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from confluent_kafka import KafkaError, Message, Producer

from feedrank.client import entities
from feedrank.client.entities import FeatureInput
from feedrank.client.errors import DeliveryFailed
from feedrank.core import codecs, entity_codecs
from feedrank.core.clock import SystemClock
from feedrank.core.kafka_clients import (
    DEFAULT_LINGER_MS,
    KafkaAccess,
    KafkaSecurity,
    idempotent_producer_config,
)
from feedrank.v1 import catalogue_pb2

__all__ = ["DEFAULT_BOOTSTRAP", "EventProducer", "TopicNames"]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
"""The local stack's Kafka."""

_FULL_QUEUE_WAIT_S = 0.1
_HEADERS: list[tuple[str, str | bytes | None]] = [
    (codecs.CONTENT_TYPE_HEADER, codecs.PROTOBUF_CONTENT_TYPE.encode())
]


@dataclass(frozen=True)
class TopicNames:
    """The topics apps produce to (the contract's defaults; all configurable)."""

    posts: str = "feedrank.posts"
    users: str = "feedrank.users"
    graph: str = "feedrank.graph"
    rewards: str = "feedrank.rewards"


class EventProducer:
    """An idempotent, batched producer of catalogue events and rewards.

    ``bootstrap`` is the Kafka bootstrap string (or a ``KafkaAccess``, bootstrap and
    security together); ``security`` how to authenticate (SSL, SASL/SCRAM; default:
    plaintext), given only with a bootstrap string; ``topics`` the topic names
    (default: :class:`TopicNames`); ``linger_ms`` how long a record waits for others to
    share its batch; ``clock`` gives the ``ts_ms`` of events that do not say (default:
    wall time, ms since the epoch); ``producer_config`` adds or replaces librdkafka
    settings. Nothing contacts the broker until the first event is produced.
    """

    def __init__(
        self,
        bootstrap: str | KafkaAccess = DEFAULT_BOOTSTRAP,
        *,
        security: KafkaSecurity | None = None,
        topics: TopicNames | None = None,
        linger_ms: int = DEFAULT_LINGER_MS,
        clock: Callable[[], int] | None = None,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        if security is not None:
            if isinstance(bootstrap, KafkaAccess):
                raise ValueError("give security with a bootstrap string; a KafkaAccess has its own")
            bootstrap = KafkaAccess(bootstrap, security)
        self.topics = topics or TopicNames()
        self._clock = clock or SystemClock().now_ms
        self._config = idempotent_producer_config(
            bootstrap, linger_ms=linger_ms, **(producer_config or {})
        )
        self._producer: Producer | None = None  # made on the first record
        self._lock = threading.Lock()
        self._in_flight = 0
        self._delivered = 0
        self._failed = 0
        self._first_error: str | None = None

    @property
    def delivered(self) -> int:
        """Records the broker has acknowledged so far."""
        return self._delivered

    @property
    def pending(self) -> int:
        """Records produced and not yet acknowledged or failed."""
        return self._in_flight

    @property
    def failed(self) -> int:
        """Records that could not be delivered and were not yet reported by :meth:`flush`."""
        return self._failed

    # Posts -----------------------------------------------------------------------------

    def upsert_post(
        self,
        post_id: str,
        *,
        creator_id: str,
        created_ms: int,
        language: str,
        country: str | None = None,
        topics: Iterable[str] = (),
        topic_weights: Iterable[float] = (),
        sensitive: bool = False,
        embedding: Iterable[float] | None = None,
        features: FeatureInput | None = None,
        ts_ms: int | None = None,
    ) -> None:
        """Create or replace a post: the event is its whole new state.

        ``country`` set means the post is shown only there; ``topic_weights`` are in
        step with ``topics`` (empty: equal weights); ``embedding`` is the optional
        content embedding; ``features`` maps names to numbers or texts.
        """
        self.produce_post(
            entities.post_upsert(
                post_id,
                creator_id=creator_id,
                created_ms=created_ms,
                language=language,
                country=country,
                topics=topics,
                topic_weights=topic_weights,
                sensitive=sensitive,
                embedding=embedding,
                features=features,
                ts_ms=self._ts(ts_ms),
            )
        )

    def delete_post(self, post_id: str, *, ts_ms: int | None = None) -> None:
        """Take a post down: it is never served again."""
        self.produce_post(entities.post_delete(post_id, ts_ms=self._ts(ts_ms)))

    # Users -----------------------------------------------------------------------------

    def upsert_user(
        self,
        user_id: str,
        *,
        language: str | None = None,
        country: str | None = None,
        age_bucket: str | None = None,
        features: FeatureInput | None = None,
        ts_ms: int | None = None,
    ) -> None:
        """Create or replace a user's profile (``age_bucket``: "13-17", …, "55+")."""
        self.produce_user(
            entities.user_upsert(
                user_id,
                language=language,
                country=country,
                age_bucket=age_bucket,
                features=features,
                ts_ms=self._ts(ts_ms),
            )
        )

    def delete_user(self, user_id: str, *, ts_ms: int | None = None) -> None:
        """Erase a user: their profile and state are removed."""
        self.produce_user(entities.user_delete(user_id, ts_ms=self._ts(ts_ms)))

    # The social graph ------------------------------------------------------------------

    def follow(self, user_id: str, target_id: str, *, ts_ms: int | None = None) -> None:
        """``user_id`` follows ``target_id`` (a user or creator)."""
        self._edge("follow", user_id, target_id, ts_ms)

    def unfollow(self, user_id: str, target_id: str, *, ts_ms: int | None = None) -> None:
        """``user_id`` stops following ``target_id``."""
        self._edge("unfollow", user_id, target_id, ts_ms)

    def block(self, user_id: str, target_id: str, *, ts_ms: int | None = None) -> None:
        """``user_id`` blocks ``target_id``: none of its posts are served to them."""
        self._edge("block", user_id, target_id, ts_ms)

    def unblock(self, user_id: str, target_id: str, *, ts_ms: int | None = None) -> None:
        """``user_id`` lifts a block of ``target_id``."""
        self._edge("unblock", user_id, target_id, ts_ms)

    def hide_creator(self, user_id: str, target_id: str, *, ts_ms: int | None = None) -> None:
        """``user_id`` hides creator ``target_id`` from their feed."""
        self._edge("hide_creator", user_id, target_id, ts_ms)

    def unhide_creator(self, user_id: str, target_id: str, *, ts_ms: int | None = None) -> None:
        """``user_id`` shows creator ``target_id`` again."""
        self._edge("unhide_creator", user_id, target_id, ts_ms)

    # Rewards ---------------------------------------------------------------------------

    def send_reward(
        self,
        *,
        decision_id: str,
        post_id: str,
        user_id: str,
        type: str,  # the contract's field name
        value: float | None = None,
        ts_ms: int | None = None,
    ) -> None:
        """Engagement with a served post: ``type`` is one of ``codecs.REWARD_TYPES``
        (view, like, comment, share, save, dwell, hide, report, block); ``value``
        defaults to 1 (seconds for dwell). ``decision_id`` is the one ``rank`` returned."""
        reward = entities.reward(
            decision_id=decision_id,
            post_id=post_id,
            user_id=user_id,
            type=type,
            value=value,
            ts_ms=self._ts(ts_ms),
        )
        self._produce(self.topics.rewards, reward.user_id.encode(), codecs.encode(reward))

    # Ready-made events -----------------------------------------------------------------

    def produce_post(self, event: catalogue_pb2.PostEvent) -> None:
        """Validate and produce a ready :class:`PostEvent` (keyed by post_id)."""
        self._produce_entity(self.topics.posts, entities.checked(event))

    def produce_user(self, event: catalogue_pb2.UserEvent) -> None:
        """Validate and produce a ready :class:`UserEvent` (keyed by user_id)."""
        self._produce_entity(self.topics.users, entities.checked(event))

    def produce_graph(self, event: catalogue_pb2.GraphEvent) -> None:
        """Validate and produce a ready :class:`GraphEvent` (keyed by user_id)."""
        self._produce_entity(self.topics.graph, entities.checked(event))

    def produce(self, event: entity_codecs.CatalogueEvent) -> None:
        """Validate and produce any ready catalogue event to its topic."""
        if isinstance(event, catalogue_pb2.PostEvent):
            self.produce_post(event)
        elif isinstance(event, catalogue_pb2.UserEvent):
            self.produce_user(event)
        elif isinstance(event, catalogue_pb2.GraphEvent):
            self.produce_graph(event)
        else:
            raise TypeError(f"not a catalogue event: {type(event).__name__}")

    # Delivery --------------------------------------------------------------------------

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every record is acknowledged.

        Raises :class:`DeliveryFailed` (how many, and the first error) when records were
        lost since the last flush or are still unacknowledged after ``timeout_s``.
        """
        if self._producer is not None:
            self._producer.flush(timeout_s)
        with self._lock:
            pending = self._in_flight
            failed, first_error = self._failed, self._first_error
            self._failed, self._first_error = 0, None
        if pending:
            first_error = first_error or f"{pending} still unacknowledged after {timeout_s} s"
        if failed + pending:
            raise DeliveryFailed(failed + pending, first_error or "unknown")

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush (raising :class:`DeliveryFailed` if records were lost)."""
        self.flush(timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        elif self._producer is not None:  # do not hide the error behind a delivery one
            self._producer.flush(5.0)

    # Internals -------------------------------------------------------------------------

    def _ts(self, ts_ms: int | None) -> int:
        return self._clock() if ts_ms is None else ts_ms

    def _edge(self, op: str, user_id: str, target_id: str, ts_ms: int | None) -> None:
        self.produce_graph(entities.graph_event(op, user_id, target_id, ts_ms=self._ts(ts_ms)))

    def _produce_entity(self, topic: str, event: entity_codecs.CatalogueEvent) -> None:
        self._produce(topic, entity_codecs.entity_key(event), codecs.encode(event))

    def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        producer = self._kafka()
        while True:
            try:
                producer.produce(
                    topic, key=key, value=value, headers=_HEADERS, on_delivery=self._on_delivery
                )
                break
            except BufferError:
                producer.poll(_FULL_QUEUE_WAIT_S)  # local queue full: serve deliveries
        with self._lock:
            self._in_flight += 1
        producer.poll(0)

    def _kafka(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = Producer(self._config)
            return self._producer

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        with self._lock:
            self._in_flight -= 1
            if error is None:
                self._delivered += 1
                return
            self._failed += 1
            if self._first_error is None:
                self._first_error = str(error)
