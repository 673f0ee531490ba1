"""The JSON twins of the catalogue events: JSON documents to protobuf events and back.

This module checks a document's shape only (known fields, JSON types, the ids and times
it must carry); :mod:`feedrank.core.entity_codecs` then validates the event it builds
by the same rules as a protobuf one. A key whose value is ``null`` counts as absent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeAlias, TypeVar

from google.protobuf.internal.containers import MessageMap

from feedrank.core.codecs import EventDecodeError, _require_event_time, load_json_object
from feedrank.v1 import catalogue_pb2

EntityOpValue: TypeAlias = catalogue_pb2.EntityOp.ValueType
GraphOpValue: TypeAlias = catalogue_pb2.GraphOp.ValueType
FeatureMap: TypeAlias = MessageMap[str, catalogue_pb2.FeatureValue]
OpT = TypeVar("OpT", bound=int)

ENTITY_OPS: dict[str, EntityOpValue] = {
    name.removeprefix("ENTITY_OP_").lower(): number
    for name, number in catalogue_pb2.EntityOp.items()
    if number != catalogue_pb2.ENTITY_OP_UNSPECIFIED
}
ENTITY_OP_NAMES: dict[EntityOpValue, str] = {number: name for name, number in ENTITY_OPS.items()}
GRAPH_OPS: dict[str, GraphOpValue] = {
    name.removeprefix("GRAPH_OP_").lower(): number
    for name, number in catalogue_pb2.GraphOp.items()
    if number != catalogue_pb2.GRAPH_OP_UNSPECIFIED
}
GRAPH_OP_NAMES: dict[GraphOpValue, str] = {number: name for name, number in GRAPH_OPS.items()}

_POST_FIELDS = frozenset(
    {
        *("op", "post_id", "creator_id", "created_ms", "language", "country"),
        *("topics", "sensitive", "embedding", "features", "ts_ms"),
    }
)
_USER_FIELDS = frozenset(
    {"op", "user_id", "language", "country", "age_bucket", "features", "ts_ms"}
)
_GRAPH_FIELDS = frozenset({"op", "user_id", "target_id", "ts_ms"})

_DELETE = catalogue_pb2.ENTITY_OP_DELETE


def delete_error(id_field: str, extra: list[str]) -> EventDecodeError:
    """The error for a delete that carries more than its id and ts_ms."""
    return EventDecodeError(
        f"a delete carries only {id_field} and ts_ms; it also sets {extra}", field=extra[0]
    )


def post_event_from_json(payload: bytes) -> catalogue_pb2.PostEvent:
    document = load_json_object(payload, "post event", _POST_FIELDS)
    op = _op(document, ENTITY_OPS)
    event = catalogue_pb2.PostEvent(
        op=op, post_id=_text(document, "post_id"), ts_ms=_time(document, "ts_ms")
    )
    if op == _DELETE:
        _require_bare_delete(document, "post_id")
        return event
    event.creator_id = _text(document, "creator_id")
    event.created_ms = _time(document, "created_ms")
    event.language = _text(document, "language")
    event.country = _text(document, "country", required=False)
    sensitive = document.get("sensitive")
    if sensitive is not None and not isinstance(sensitive, bool):
        raise EventDecodeError(
            f"'sensitive' must be true or false, got {sensitive!r}", field="sensitive"
        )
    event.sensitive = bool(sensitive)
    _read_topics(document.get("topics"), event)
    embedding = document.get("embedding")
    if embedding is not None:
        if not isinstance(embedding, list):
            raise EventDecodeError(
                f"'embedding' must be a list of numbers, got {embedding!r}", field="embedding"
            )
        event.embedding.extend(_number(value, "embedding") for value in embedding)
    _read_features(document.get("features"), event.features)
    return event


def user_event_from_json(payload: bytes) -> catalogue_pb2.UserEvent:
    document = load_json_object(payload, "user event", _USER_FIELDS)
    op = _op(document, ENTITY_OPS)
    event = catalogue_pb2.UserEvent(
        op=op, user_id=_text(document, "user_id"), ts_ms=_time(document, "ts_ms")
    )
    if op == _DELETE:
        _require_bare_delete(document, "user_id")
        return event
    event.language = _text(document, "language", required=False)
    event.country = _text(document, "country", required=False)
    event.age_bucket = _text(document, "age_bucket", required=False)
    _read_features(document.get("features"), event.features)
    return event


def graph_event_from_json(payload: bytes) -> catalogue_pb2.GraphEvent:
    document = load_json_object(payload, "graph event", _GRAPH_FIELDS)
    return catalogue_pb2.GraphEvent(
        op=_op(document, GRAPH_OPS),
        user_id=_text(document, "user_id"),
        target_id=_text(document, "target_id"),
        ts_ms=_time(document, "ts_ms"),
    )


def encode_post_event_json(event: catalogue_pb2.PostEvent) -> bytes:
    """The JSON form of a (valid) post event, as apps may produce it (see MISSION.md)."""
    document: dict[str, Any] = {"op": ENTITY_OP_NAMES.get(event.op, "unspecified")}
    document["post_id"] = event.post_id
    if event.op != _DELETE:
        document["creator_id"] = event.creator_id
        document["created_ms"] = event.created_ms
        document["language"] = event.language
        if event.country:
            document["country"] = event.country
        topics = list(event.topics)
        weights = list(event.topic_weights)
        document["topics"] = dict(zip(topics, weights, strict=False)) if weights else topics
        document["sensitive"] = event.sensitive
        if event.embedding:
            document["embedding"] = list(event.embedding)
        document["features"] = _features_json(event.features)
    document["ts_ms"] = event.ts_ms
    return _dumps(document)


def encode_user_event_json(event: catalogue_pb2.UserEvent) -> bytes:
    """The JSON form of a (valid) user event; empty optional fields are left out."""
    document: dict[str, Any] = {"op": ENTITY_OP_NAMES.get(event.op, "unspecified")}
    document["user_id"] = event.user_id
    if event.op != _DELETE:
        for name in ("language", "country", "age_bucket"):
            if getattr(event, name):
                document[name] = getattr(event, name)
        document["features"] = _features_json(event.features)
    document["ts_ms"] = event.ts_ms
    return _dumps(document)


def encode_graph_event_json(event: catalogue_pb2.GraphEvent) -> bytes:
    """The JSON form of a (valid) graph event."""
    document = {
        "op": GRAPH_OP_NAMES.get(event.op, "unspecified"),
        "user_id": event.user_id,
        "target_id": event.target_id,
        "ts_ms": event.ts_ms,
    }
    return _dumps(document)


def _dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _features_json(features: FeatureMap) -> dict[str, float | str]:
    return {
        name: value.text if value.WhichOneof("value") == "text" else value.number
        for name, value in features.items()
    }


def _op(document: dict[str, Any], ops: Mapping[str, OpT]) -> OpT:
    value = document.get("op")
    if value is None:
        raise EventDecodeError(f"missing 'op'; expected one of {sorted(ops)}", field="op")
    if not isinstance(value, str) or value.lower() not in ops:
        raise EventDecodeError(f"unknown op {value!r}; expected one of {sorted(ops)}", field="op")
    return ops[value.lower()]


def _require_bare_delete(document: dict[str, Any], id_field: str) -> None:
    extra = sorted(
        name
        for name, value in document.items()
        if value is not None and name not in {"op", id_field, "ts_ms"}
    )
    if extra:
        raise delete_error(id_field, extra)


def _text(document: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = document.get(name)
    if value is None:
        if required:
            raise EventDecodeError(f"missing {name!r}", field=name)
        return ""
    if not isinstance(value, str):
        raise EventDecodeError(f"{name!r} must be a string, got {value!r}", field=name)
    return _unicode(value, name)


def _unicode(value: str, field: str) -> str:
    """``value`` when it can be stored (JSON may escape lone surrogates; UTF-8 cannot)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise EventDecodeError(f"{field!r} holds invalid unicode: {error}", field=field) from error
    return value


def _time(document: dict[str, Any], name: str) -> int:
    value = document.get(name)
    if value is None:
        raise EventDecodeError(f"missing {name!r}", field=name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise EventDecodeError(f"{name!r} must be an integer (ms), got {value!r}", field=name)
    _require_event_time(value, name)  # before protobuf sees it: int64 overflows raise
    return value


def _number(value: Any, field: str, *, allow_bool: bool = False) -> float:
    if (isinstance(value, bool) and not allow_bool) or not isinstance(value, int | float):
        raise EventDecodeError(f"{field!r} takes numbers, got {value!r}", field=field)
    try:
        return float(value)
    except OverflowError as error:
        raise EventDecodeError(f"{field!r} holds a number too large", field=field) from error


def _read_topics(topics: Any, event: catalogue_pb2.PostEvent) -> None:
    """``topics`` is a list of names or an object of name: weight (in the document's order)."""
    if topics is None:
        return
    if isinstance(topics, dict):
        for name, weight in topics.items():
            event.topics.append(_unicode(name, "topics"))
            event.topic_weights.append(_number(weight, "topics"))
        return
    if not isinstance(topics, list) or not all(isinstance(name, str) for name in topics):
        raise EventDecodeError(
            f"'topics' must be a list of names or an object of name: weight, got {topics!r}",
            field="topics",
        )
    event.topics.extend(_unicode(name, "topics") for name in topics)


def _read_features(features: Any, into: FeatureMap) -> None:
    if features is None:
        return
    if not isinstance(features, dict):
        raise EventDecodeError(
            f"'features' must be an object of name: number or text, got {features!r}",
            field="features",
        )
    for name, value in features.items():
        feature = into[_unicode(name, "features")]
        if isinstance(value, str):
            feature.text = _unicode(value, "features")
        elif isinstance(value, int | float):  # bool included: true is 1.0, false 0.0
            feature.number = _number(value, "features", allow_bool=True)
        else:
            raise EventDecodeError(
                f"feature {name!r} must be a number or a string, got {value!r}", field="features"
            )
