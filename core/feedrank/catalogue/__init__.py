"""The catalogue an app brings: posts, creators, users and the social graph.

:class:`CatalogueState` is the transport-neutral state that the entity events of
``feedrank.posts``, ``feedrank.users`` and ``feedrank.graph`` build (``apply_*``);
:mod:`feedrank.catalogue.kafka_source` replays and tails those topics into it.
Posts, creators and users are interned: any string id gets a dense row, the row the
feature store, the ANN index and the ranker address them by. Rows are never reused, so
a row read by a request in flight stays the post it was.
"""

from feedrank.catalogue.state import (
    CatalogueChange,
    CatalogueState,
    ConflictingEvent,
)
from feedrank.catalogue.values import UserProfile

__all__ = [
    "CatalogueChange",
    "CatalogueState",
    "ConflictingEvent",
    "UserProfile",
]
