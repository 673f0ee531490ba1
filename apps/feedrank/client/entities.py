"""Building catalogue events from plain Python values, and checking them before they leave.

Every builder returns a protobuf event of ``feedrank.v1.catalogue_pb2`` that has passed
:mod:`feedrank.core.entity_codecs`' validation (the rules every consumer applies), or
raises :class:`~feedrank.client.errors.InvalidEvent` naming the field at fault. Both the
:class:`~feedrank.client.events.EventProducer` and the file loader
(:mod:`feedrank.client.catalogue_rows`) build through here.

Example::

    from feedrank.client.entities import graph_event, post_upsert

    post = post_upsert("p1", creator_id="c1", created_ms=1764000000000, language="en",
                       topics=["cats"], features={"quality": 0.9}, ts_ms=1764000000000)
    edge = graph_event("follow", "u1", "c1", ts_ms=1764000000000)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias, TypeVar

from google.protobuf.message import Message

from feedrank.client.errors import InvalidEvent
from feedrank.core import codecs, entity_codecs
from feedrank.core.codecs import EventDecodeError
from feedrank.v1 import catalogue_pb2, events_pb2

__all__ = [
    "ENTITY_OPS",
    "GRAPH_OPS",
    "FeatureInput",
    "checked",
    "graph_event",
    "post_delete",
    "post_upsert",
    "reward",
    "user_delete",
    "user_upsert",
]

FeatureInput: TypeAlias = Mapping[str, float | int | bool | str | None]
"""App-defined features: name → number (bools count as 1 or 0) or text; None is skipped."""

ENTITY_OPS = entity_codecs.ENTITY_OPS
"""Post and user ops by their contract name: ``upsert``, ``delete``."""

GRAPH_OPS = entity_codecs.GRAPH_OPS
"""Graph ops by their contract name: ``follow``, ``unfollow``, ``block``, …"""

EventT = TypeVar("EventT", bound=Message)
_PROTOBUF_HEADERS = [(codecs.CONTENT_TYPE_HEADER, codecs.PROTOBUF_CONTENT_TYPE)]

_VALIDATORS: dict[type[Message], Callable[[Any], Message]] = {
    catalogue_pb2.PostEvent: entity_codecs.validate_post_event,
    catalogue_pb2.UserEvent: entity_codecs.validate_user_event,
    catalogue_pb2.GraphEvent: entity_codecs.validate_graph_event,
}


def checked(event: EventT) -> EventT:
    """The normalised, validated copy of a catalogue event, or :class:`InvalidEvent`."""
    validator = _VALIDATORS.get(type(event))
    if validator is None:
        raise TypeError(f"not a catalogue event: {type(event).__name__}")
    try:
        validated = validator(event)
    except EventDecodeError as error:
        raise InvalidEvent(error.field, str(error)) from error
    assert isinstance(validated, type(event))
    return validated


def post_upsert(
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
    ts_ms: int,
) -> catalogue_pb2.PostEvent:
    """A post's whole new state (``op: upsert``), validated."""
    event = catalogue_pb2.PostEvent(op=catalogue_pb2.ENTITY_OP_UPSERT)
    assign(event, "post_id", post_id)
    assign(event, "creator_id", creator_id)
    assign(event, "created_ms", created_ms)
    assign(event, "language", language)
    assign(event, "country", country or "")
    _extend(event, "topics", topics)
    _extend(event, "topic_weights", topic_weights)
    assign(event, "sensitive", sensitive)
    _extend(event, "embedding", embedding or ())
    _set_features(event.features, features)
    assign(event, "ts_ms", ts_ms)
    return checked(event)


def post_delete(post_id: str, *, ts_ms: int) -> catalogue_pb2.PostEvent:
    """A post's takedown (``op: delete``): never served again; validated."""
    event = catalogue_pb2.PostEvent(op=catalogue_pb2.ENTITY_OP_DELETE)
    assign(event, "post_id", post_id)
    assign(event, "ts_ms", ts_ms)
    return checked(event)


def user_upsert(
    user_id: str,
    *,
    language: str | None = None,
    country: str | None = None,
    age_bucket: str | None = None,
    features: FeatureInput | None = None,
    ts_ms: int,
) -> catalogue_pb2.UserEvent:
    """A user's whole new state (``op: upsert``), validated. ``age_bucket`` is one of
    ``entity_codecs.AGE_BUCKET_NAMES`` ("13-17", …, "55+") or None when unknown."""
    event = catalogue_pb2.UserEvent(op=catalogue_pb2.ENTITY_OP_UPSERT)
    assign(event, "user_id", user_id)
    assign(event, "language", language or "")
    assign(event, "country", country or "")
    assign(event, "age_bucket", age_bucket or "")
    _set_features(event.features, features)
    assign(event, "ts_ms", ts_ms)
    return checked(event)


def user_delete(user_id: str, *, ts_ms: int) -> catalogue_pb2.UserEvent:
    """A user's erasure (``op: delete``), validated."""
    event = catalogue_pb2.UserEvent(op=catalogue_pb2.ENTITY_OP_DELETE)
    assign(event, "user_id", user_id)
    assign(event, "ts_ms", ts_ms)
    return checked(event)


def graph_event(op: str, user_id: str, target_id: str, *, ts_ms: int) -> catalogue_pb2.GraphEvent:
    """An edge from ``user_id`` to ``target_id`` (a user or creator) or its removal;
    ``op`` is one of :data:`GRAPH_OPS` (``follow``, ``unfollow``, ``block``, ``unblock``,
    ``hide_creator``, ``unhide_creator``). Validated."""
    number = GRAPH_OPS.get(op.lower()) if isinstance(op, str) else None
    if number is None:
        raise InvalidEvent("op", f"unknown graph op {op!r}; expected one of {sorted(GRAPH_OPS)}")
    event = catalogue_pb2.GraphEvent(op=number)
    assign(event, "user_id", user_id)
    assign(event, "target_id", target_id)
    assign(event, "ts_ms", ts_ms)
    return checked(event)


def reward(
    *,
    decision_id: str,
    post_id: str,
    user_id: str,
    type: str,  # the contract's field name
    value: float | None = None,
    ts_ms: int,
) -> events_pb2.Reward:
    """An engagement event for ``feedrank.rewards``, checked by the consumers' own rules
    (:func:`feedrank.core.codecs.decode_reward` on its encoded bytes). ``type`` is one of
    ``codecs.REWARD_TYPES``; ``value`` None means the contract's default of 1."""
    number = codecs.REWARD_TYPES.get(type.lower()) if isinstance(type, str) else None
    if number is None:
        raise InvalidEvent(
            "type", f"unknown reward type {type!r}; expected one of {sorted(codecs.REWARD_TYPES)}"
        )
    event = events_pb2.Reward(type=number)
    for field, text in (("decision_id", decision_id), ("post_id", post_id), ("user_id", user_id)):
        assign(event, field, text)
    if value is not None:
        assign(event, "value", value)
    assign(event, "ts_ms", ts_ms)
    try:
        codecs.decode_reward(codecs.encode(event), _PROTOBUF_HEADERS)
    except EventDecodeError as error:
        raise InvalidEvent(error.field, str(error)) from error
    return event


def assign(event: Message, field: str, value: object) -> None:
    """``event.field = value``, a value of the wrong type reported as InvalidEvent."""
    if isinstance(value, bool) and field != "sensitive":
        raise InvalidEvent(field, f"must not be a boolean, got {value!r}")
    try:
        setattr(event, field, value)
    except (TypeError, ValueError) as error:
        raise InvalidEvent(field, f"cannot hold {value!r}: {error}") from error


def _extend(event: Message, field: str, values: Iterable[object]) -> None:
    if isinstance(values, str | bytes):
        raise InvalidEvent(field, f"must be a list, got the string {values!r}")
    try:
        getattr(event, field).extend(values)
    except (TypeError, ValueError) as error:
        raise InvalidEvent(field, f"cannot hold {values!r}: {error}") from error


def _set_features(into: Any, features: FeatureInput | None) -> None:
    for name, value in (features or {}).items():
        if value is None:
            continue
        if not isinstance(name, str):
            raise InvalidEvent("features", f"feature names are strings, got {name!r}")
        if not isinstance(value, str | bool | int | float):
            raise InvalidEvent(
                "features", f"feature {name!r} must be a number or a text, got {value!r}"
            )
        try:
            if isinstance(value, str):
                into[name].text = value
            else:
                into[name].number = float(value)
        except (OverflowError, TypeError, ValueError) as error:
            raise InvalidEvent("features", f"feature {name!r} cannot hold {value!r}") from error
