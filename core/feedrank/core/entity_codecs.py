"""Catalogue event codecs: the posts, users and social graph that apps bring.

``feedrank.posts`` (key post_id), ``feedrank.users`` (key user_id) and ``feedrank.graph``
(key user_id) carry :mod:`feedrank.v1.catalogue_pb2` events as protobuf or as JSON
(header ``content-type: application/json``, or auto-detected as for rewards; the JSON
forms live in :mod:`feedrank.core.entity_json`). Both are validated by the same rules,
and anything that breaks them raises :class:`~feedrank.core.codecs.EventDecodeError`
naming the field at fault. Apps validate with ``validate_*`` before producing; consumers
decode with ``decode_*`` and dead-letter what fails, or what :func:`check_key` refuses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TypeAlias, TypeVar

from google.protobuf.message import Message

from feedrank.core import codecs
from feedrank.core.codecs import EventDecodeError, Headers, _require_event_time
from feedrank.core.entity_json import (
    ENTITY_OP_NAMES,
    ENTITY_OPS,
    GRAPH_OP_NAMES,
    GRAPH_OPS,
    EntityOpValue,
    FeatureMap,
    delete_error,
    encode_graph_event_json,
    encode_post_event_json,
    encode_user_event_json,
    graph_event_from_json,
    post_event_from_json,
    user_event_from_json,
)
from feedrank.core.feature_schema import CONTENT_DIM
from feedrank.v1 import catalogue_pb2

__all__ = [
    "AGE_BUCKET_NAMES",
    "ENTITY_OPS",
    "GRAPH_OPS",
    "MAX_FEATURES",
    "MAX_FEATURE_NAME_LENGTH",
    "MAX_FEATURE_TEXT_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_TOPICS",
    "MAX_TOPIC_LENGTH",
    "CatalogueEvent",
    "check_key",
    "decode_graph_event",
    "decode_post_event",
    "decode_user_event",
    "encode_graph_event_json",
    "encode_post_event_json",
    "encode_user_event_json",
    "entity_key",
    "validate_graph_event",
    "validate_post_event",
    "validate_user_event",
]

MAX_ID_LENGTH = 256
MAX_TOPICS = 64
MAX_TOPIC_LENGTH = 256
MAX_FEATURES = 256
MAX_FEATURE_NAME_LENGTH = 256
MAX_FEATURE_TEXT_LENGTH = 1024
AGE_BUCKET_NAMES: tuple[str, ...] = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")
"""Index i is the schema's age bucket i (``schema.AGE_BUCKETS`` of them)."""

CatalogueEvent: TypeAlias = (
    catalogue_pb2.PostEvent | catalogue_pb2.UserEvent | catalogue_pb2.GraphEvent
)
EventT = TypeVar(
    "EventT", catalogue_pb2.PostEvent, catalogue_pb2.UserEvent, catalogue_pb2.GraphEvent
)

LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")
COUNTRY_TAG = re.compile(r"[A-Za-z]{2}")
_SELF_EDGE_OPS = frozenset({catalogue_pb2.GRAPH_OP_FOLLOW, catalogue_pb2.GRAPH_OP_BLOCK})
_DELETE = catalogue_pb2.ENTITY_OP_DELETE


def decode_post_event(payload: bytes | None, headers: Headers = None) -> catalogue_pb2.PostEvent:
    """Decode a post event from protobuf or JSON; validate and normalise it."""
    return _decode(payload, headers, catalogue_pb2.PostEvent, post_event_from_json, _check_post)


def decode_user_event(payload: bytes | None, headers: Headers = None) -> catalogue_pb2.UserEvent:
    """Decode a user event from protobuf or JSON; validate and normalise it."""
    return _decode(payload, headers, catalogue_pb2.UserEvent, user_event_from_json, _check_user)


def decode_graph_event(payload: bytes | None, headers: Headers = None) -> catalogue_pb2.GraphEvent:
    """Decode a graph event from protobuf or JSON and validate it."""
    return _decode(payload, headers, catalogue_pb2.GraphEvent, graph_event_from_json, _check_graph)


def validate_post_event(event: catalogue_pb2.PostEvent) -> catalogue_pb2.PostEvent:
    """A validated copy of ``event``, language lower-case and country upper-case."""
    return _validated(event, _check_post)


def validate_user_event(event: catalogue_pb2.UserEvent) -> catalogue_pb2.UserEvent:
    """A validated copy of ``event``, language lower-case and country upper-case."""
    return _validated(event, _check_user)


def validate_graph_event(event: catalogue_pb2.GraphEvent) -> catalogue_pb2.GraphEvent:
    """A validated copy of ``event``."""
    return _validated(event, _check_graph)


def check_key(key: bytes | None, entity_id: str, *, field: str) -> None:
    """Refuse a record whose Kafka key is not its entity's id (``field``).

    Such an event conflicts with itself: compaction would file it under another entity.
    A record without a key (None) is accepted.
    """
    if key is None or key == entity_id.encode("utf-8", "surrogatepass"):
        return
    raise EventDecodeError(
        f"record key {_brief(key.decode('utf-8', 'replace'))} differs from "
        f"{field}={_brief(entity_id)}; the key must be the event's {field}, "
        "or compaction keeps it under the wrong entity",
        field=field,
    )


def entity_key(event: CatalogueEvent) -> bytes:
    """The Kafka key of ``event``: post_id for a post, user_id for a user or graph edge."""
    entity_id = event.post_id if isinstance(event, catalogue_pb2.PostEvent) else event.user_id
    return entity_id.encode("utf-8")


def _decode(
    payload: bytes | None,
    headers: Headers,
    event_type: type[EventT],
    from_json: Callable[[bytes], EventT],
    check: Callable[[EventT], None],
) -> EventT:
    if not payload:
        raise EventDecodeError(f"empty record where a {event_type.__name__} was expected")
    if codecs.is_json_payload(payload, headers):
        event = from_json(payload)
    else:
        event = codecs.decode(event_type, payload)
    check(event)
    return event


def _validated(event: EventT, check: Callable[[EventT], None]) -> EventT:
    normalised = type(event)()
    normalised.CopyFrom(event)
    check(normalised)
    return normalised


def _check_post(event: catalogue_pb2.PostEvent) -> None:
    op = _require_entity_op(event.op)
    _require_id(event.post_id, "post_id")
    _require_event_time(event.ts_ms, "ts_ms")
    if op == _DELETE:
        _require_bare_delete(event, "post_id")
        return
    _require_id(event.creator_id, "creator_id")
    _require_event_time(event.created_ms, "created_ms")
    if not event.language:
        raise EventDecodeError(
            "a post upsert needs its 'language': a BCP-47 tag such as 'en' or 'pt-BR'",
            field="language",
        )
    event.language = _language(event.language)
    event.country = _country(event.country)
    _check_topics(event)
    _check_embedding(event)
    _check_features(event.features)


def _check_user(event: catalogue_pb2.UserEvent) -> None:
    op = _require_entity_op(event.op)
    _require_id(event.user_id, "user_id")
    _require_event_time(event.ts_ms, "ts_ms")
    if op == _DELETE:
        _require_bare_delete(event, "user_id")
        return
    event.language = _language(event.language) if event.language else ""
    event.country = _country(event.country)
    if event.age_bucket and event.age_bucket not in AGE_BUCKET_NAMES:
        raise EventDecodeError(
            f"age_bucket {_brief(event.age_bucket)} is not one of {list(AGE_BUCKET_NAMES)}; "
            "leave it empty when unknown",
            field="age_bucket",
        )
    _check_features(event.features)


def _check_graph(event: catalogue_pb2.GraphEvent) -> None:
    if event.op not in GRAPH_OP_NAMES:
        state = "is not set" if event.op == catalogue_pb2.GRAPH_OP_UNSPECIFIED else "is unknown"
        raise EventDecodeError(
            f"graph op {event.op} {state}; expected one of {sorted(GRAPH_OPS)}", field="op"
        )
    _require_id(event.user_id, "user_id")
    _require_id(event.target_id, "target_id")
    if event.op in _SELF_EDGE_OPS and event.user_id == event.target_id:
        raise EventDecodeError(
            f"a user cannot {GRAPH_OP_NAMES[event.op]} themselves "
            f"(user_id and target_id are both {_brief(event.user_id)})",
            field="target_id",
        )
    _require_event_time(event.ts_ms, "ts_ms")


def _require_entity_op(op: EntityOpValue) -> EntityOpValue:
    if op not in ENTITY_OP_NAMES:
        state = "is not set" if op == catalogue_pb2.ENTITY_OP_UNSPECIFIED else "is unknown"
        raise EventDecodeError(f"op {op} {state}; expected one of {sorted(ENTITY_OPS)}", field="op")
    return op


def _require_id(value: str, name: str) -> None:
    if not value.strip():
        raise EventDecodeError(f"{name!r} must be a non-empty id, not only whitespace", field=name)
    if len(value) > MAX_ID_LENGTH:
        raise EventDecodeError(
            f"{name!r} is {len(value)} characters long; ids have at most {MAX_ID_LENGTH}",
            field=name,
        )


def _require_bare_delete(event: Message, id_field: str) -> None:
    extra = [
        descriptor.name
        for descriptor, _ in event.ListFields()
        if descriptor.name not in {"op", id_field, "ts_ms"}
    ]
    if extra:
        raise delete_error(id_field, extra)


def _language(tag: str) -> str:
    if not LANGUAGE_TAG.fullmatch(tag):
        raise EventDecodeError(
            f"language {_brief(tag)} is not a BCP-47 tag: 2-8 letters, then '-'-separated "
            "parts of 1-8 letters or digits (e.g. 'en', 'pt-BR', 'zh-Hant')",
            field="language",
        )
    return tag.lower()


def _country(code: str) -> str:
    if code and not COUNTRY_TAG.fullmatch(code):
        raise EventDecodeError(
            f"country {_brief(code)} is not a two-letter ISO 3166 code (e.g. 'US'); "
            "leave it empty for everywhere",
            field="country",
        )
    return code.upper()


def _check_topics(event: catalogue_pb2.PostEvent) -> None:
    topics, weights = event.topics, event.topic_weights
    if len(topics) > MAX_TOPICS:
        raise EventDecodeError(
            f"{len(topics)} topics; a post has at most {MAX_TOPICS}", field="topics"
        )
    seen: set[str] = set()
    for topic in topics:
        if not topic.strip() or len(topic) > MAX_TOPIC_LENGTH:
            raise EventDecodeError(
                f"topic {_brief(topic)} must be non-empty and at most {MAX_TOPIC_LENGTH} "
                "characters",
                field="topics",
            )
        if topic in seen:
            raise EventDecodeError(
                f"topic {_brief(topic)} appears twice; topics are distinct", field="topics"
            )
        seen.add(topic)
    if weights and len(weights) != len(topics):
        raise EventDecodeError(
            f"{len(weights)} topic weights for {len(topics)} topics; give one weight per "
            "topic, or none for equal weights",
            field="topic_weights",
        )
    for topic, weight in zip(topics, weights, strict=False):
        if not (math.isfinite(weight) and weight > 0):
            raise EventDecodeError(
                f"weight {weight} of topic {_brief(topic)} must be finite and > 0",
                field="topic_weights",
            )


def _check_embedding(event: catalogue_pb2.PostEvent) -> None:
    embedding = event.embedding
    if embedding and len(embedding) != CONTENT_DIM:
        raise EventDecodeError(
            f"embedding has {len(embedding)} values; it has exactly {CONTENT_DIM} or is left out",
            field="embedding",
        )
    values = list(embedding)
    # One C loop: a NaN or an infinity makes the sum non-finite, and 32 float32 values
    # cannot overflow a float64 sum, so a finite sum means every value is finite.
    if math.isfinite(sum(values)):
        return
    for index, value in enumerate(values):
        if not math.isfinite(value):
            raise EventDecodeError(
                f"embedding[{index}] is {value}; values must be finite", field="embedding"
            )


def _check_features(features: FeatureMap) -> None:
    if len(features) > MAX_FEATURES:
        raise EventDecodeError(
            f"{len(features)} features; at most {MAX_FEATURES} are accepted", field="features"
        )
    for name, feature in features.items():
        if not name.strip() or len(name) > MAX_FEATURE_NAME_LENGTH:
            raise EventDecodeError(
                f"feature name {_brief(name)} must be non-empty and at most "
                f"{MAX_FEATURE_NAME_LENGTH} characters",
                field="features",
            )
        kind = feature.WhichOneof("value")
        if kind is None:
            raise EventDecodeError(
                f"feature {_brief(name)} has no value; set a number or a text", field="features"
            )
        if kind == "number" and not math.isfinite(feature.number):
            raise EventDecodeError(
                f"feature {_brief(name)} is {feature.number}; numbers must be finite",
                field="features",
            )
        if kind == "text" and len(feature.text) > MAX_FEATURE_TEXT_LENGTH:
            raise EventDecodeError(
                f"feature {_brief(name)} is a text of {len(feature.text)} characters; "
                f"texts have at most {MAX_FEATURE_TEXT_LENGTH}",
                field="features",
            )


def _brief(text: str, limit: int = 64) -> str:
    """``text`` quoted for an error message, cut short so a huge value cannot flood it."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "…"
