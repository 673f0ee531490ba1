"""The feedrank client for apps: ask for feeds over gRPC, bring catalogue and engagement
through Kafka.

It speaks only the public contracts: the ``feedrank.v1.Ranking`` gRPC service, the
Kafka topics ``feedrank.posts``, ``feedrank.users``, ``feedrank.graph`` and
``feedrank.rewards``, and the protobuf messages of ``proto/feedrank/v1``. Addresses and
topic names are arguments, with the local stack's defaults.

Example::

    from feedrank.client import EventProducer, RankingClient

    with EventProducer("127.0.0.1:9092") as producer:
        producer.upsert_post("p1", creator_id="c1", created_ms=1764000000000, language="en")
        producer.upsert_user("u1", language="en", country="US")

    with RankingClient("127.0.0.1:50051") as client:
        feed = client.rank("u1", limit=20)

    with EventProducer("127.0.0.1:9092") as producer:
        producer.send_reward(decision_id=feed.decision_id, post_id=feed.items[0].post_id,
                             user_id="u1", type="like")

Errors are :class:`FeedrankError` subclasses: :class:`InvalidRequest`,
:class:`Unavailable`, :class:`DeadlineExceeded` and :class:`RankFailed` for ``rank``;
:class:`InvalidEvent` (raised before anything is produced) and :class:`DeliveryFailed`
(from ``flush``) for events.
"""

from feedrank.client.catalogue_files import CatalogueFileError, FileFormat, RowSource, open_rows
from feedrank.client.catalogue_rows import (
    CatalogueKind,
    LoadedRow,
    RowError,
    catalogue_events,
    row_event,
)
from feedrank.client.errors import (
    DeadlineExceeded,
    DeliveryFailed,
    FeedrankError,
    InvalidEvent,
    InvalidRequest,
    RankFailed,
    Unavailable,
)
from feedrank.client.events import DEFAULT_BOOTSTRAP, EventProducer, TopicNames
from feedrank.client.ranking import (
    DEFAULT_RANKING_ADDRESS,
    Feed,
    FeedItem,
    RankingClient,
    tls_credentials,
)
from feedrank.core.kafka_clients import KafkaAccess, KafkaSecurity

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_RANKING_ADDRESS",
    "CatalogueFileError",
    "CatalogueKind",
    "DeadlineExceeded",
    "DeliveryFailed",
    "EventProducer",
    "Feed",
    "FeedItem",
    "FeedrankError",
    "FileFormat",
    "InvalidEvent",
    "InvalidRequest",
    "KafkaAccess",
    "KafkaSecurity",
    "LoadedRow",
    "RankFailed",
    "RankingClient",
    "RowError",
    "RowSource",
    "TopicNames",
    "Unavailable",
    "catalogue_events",
    "open_rows",
    "row_event",
    "tls_credentials",
]
