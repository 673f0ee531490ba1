"""Entity codec tests: decoding JSON and protobuf, round trips and format detection."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from feedrank.core import codecs, entity_codecs
from feedrank.core import feature_schema as schema
from feedrank.core.codecs import EventDecodeError
from feedrank.core.entity_codecs import CatalogueEvent
from feedrank.v1 import catalogue_pb2
from tests.unit.core.entity_events import (
    CREATED,
    DELETE,
    EMBEDDING,
    TS,
    UPSERT,
    features,
    graph_json,
    make_graph,
    make_post,
    make_user,
    post_delete_json,
    post_json,
    user_json,
)

JSON_HEADER = [("content-type", b"application/json")]

# Decoding


def test_json_post_upsert_decodes_every_field() -> None:
    post = entity_codecs.decode_post_event(post_json())
    assert post.op == UPSERT
    assert (post.post_id, post.creator_id) == ("p-1", "c-1")
    assert (post.created_ms, post.ts_ms) == (CREATED, TS)
    assert (post.language, post.country) == ("en", "US")
    assert list(post.topics) == ["cats", "music"]
    assert not post.topic_weights
    assert not post.sensitive
    assert list(post.embedding) == EMBEDDING
    assert post.features["quality"].number == 0.5
    assert post.features["format"].text == "video"


def test_json_topics_object_gives_weights_in_the_same_order() -> None:
    post = entity_codecs.decode_post_event(post_json(topics={"music": 2, "cats": 0.5}))
    assert list(post.topics) == ["music", "cats"]
    assert list(post.topic_weights) == [2.0, 0.5]


def test_json_optional_post_fields_may_be_left_out_or_null() -> None:
    post = entity_codecs.decode_post_event(
        post_json(country=..., embedding=None, topics=..., sensitive=..., features=None)
    )
    assert post.country == ""
    assert not post.embedding
    assert not post.topics
    assert not post.features


def test_json_feature_booleans_count_as_one_and_zero() -> None:
    post = entity_codecs.decode_post_event(post_json(features={"on": True, "off": False}))
    assert post.features["on"].number == 1.0
    assert post.features["off"].number == 0.0
    assert post.features["off"].WhichOneof("value") == "number"


def test_json_user_and_graph_events_decode() -> None:
    user = entity_codecs.decode_user_event(user_json())
    assert (user.user_id, user.language, user.country, user.age_bucket) == (
        "u-1",
        "pt-br",
        "BR",
        "25-34",
    )
    assert user.features["tenure_days"].number == 12.0
    assert user.features["plan"].text == "free"
    edge = entity_codecs.decode_graph_event(graph_json(op="hide_creator"))
    assert edge == make_graph(op=catalogue_pb2.GRAPH_OP_HIDE_CREATOR)


def test_json_deletes_decode() -> None:
    post = entity_codecs.decode_post_event(post_delete_json())
    assert post == catalogue_pb2.PostEvent(op=DELETE, post_id="p-1", ts_ms=TS)
    user = entity_codecs.decode_user_event(b'{"op": "delete", "user_id": "u-1", "ts_ms": %d}' % TS)
    assert user == catalogue_pb2.UserEvent(op=DELETE, user_id="u-1", ts_ms=TS)


@pytest.mark.parametrize(
    ("entity_op", "graph_op"), [("UPSERT", "HIDE_CREATOR"), ("Upsert", "Hide_Creator")]
)
def test_json_ops_are_case_insensitive(entity_op: str, graph_op: str) -> None:
    assert entity_codecs.decode_post_event(post_json(op=entity_op)).op == UPSERT
    assert entity_codecs.decode_user_event(user_json(op=entity_op)).op == UPSERT
    edge = entity_codecs.decode_graph_event(graph_json(op=graph_op))
    assert edge.op == catalogue_pb2.GRAPH_OP_HIDE_CREATOR


@pytest.mark.parametrize("op", sorted(entity_codecs.GRAPH_OPS))
def test_every_graph_op_decodes(op: str) -> None:
    assert entity_codecs.decode_graph_event(graph_json(op=op)).op == entity_codecs.GRAPH_OPS[op]


# Round trips

ROUND_TRIPS: list[tuple[CatalogueEvent, Callable[[bytes], CatalogueEvent]]] = [
    (
        make_post(
            country="FR",
            topics=["cats", "music"],
            topic_weights=[0.75, 0.25],
            sensitive=True,
            embedding=[0.1 * i for i in range(schema.CONTENT_DIM)],
            features=features(quality=0.5, format="video"),
        ),
        entity_codecs.decode_post_event,
    ),
    (make_post(topics=[], features={}), entity_codecs.decode_post_event),
    (catalogue_pb2.PostEvent(op=DELETE, post_id="p-1", ts_ms=TS), entity_codecs.decode_post_event),
    (
        make_user(language="es", country="MX", age_bucket="55+", features=features(x=-1.5, y="")),
        entity_codecs.decode_user_event,
    ),
    (make_user(), entity_codecs.decode_user_event),
    (catalogue_pb2.UserEvent(op=DELETE, user_id="u-1", ts_ms=TS), entity_codecs.decode_user_event),
    *[
        (make_graph(op=number), entity_codecs.decode_graph_event)
        for number in entity_codecs.GRAPH_OPS.values()
    ],
]


def encode_json(event: CatalogueEvent) -> bytes:
    if isinstance(event, catalogue_pb2.PostEvent):
        return entity_codecs.encode_post_event_json(event)
    if isinstance(event, catalogue_pb2.UserEvent):
        return entity_codecs.encode_user_event_json(event)
    return entity_codecs.encode_graph_event_json(event)


@pytest.mark.parametrize(("event", "decode"), ROUND_TRIPS)
def test_events_round_trip_through_json_and_protobuf(
    event: CatalogueEvent, decode: Callable[[bytes], CatalogueEvent]
) -> None:
    assert decode(encode_json(event)) == event
    assert decode(codecs.encode(event)) == event


def test_json_forms_match_the_contract() -> None:
    post = json.loads(entity_codecs.encode_post_event_json(make_post(topic_weights=[2.0])))
    assert post == {
        "op": "upsert",
        "post_id": "p-1",
        "creator_id": "c-1",
        "created_ms": CREATED,
        "language": "en",
        "topics": {"cats": 2.0},
        "sensitive": False,
        "features": {},
        "ts_ms": TS,
    }
    delete = catalogue_pb2.UserEvent(op=DELETE, user_id="u-1", ts_ms=TS)
    assert json.loads(entity_codecs.encode_user_event_json(delete)) == {
        "op": "delete",
        "user_id": "u-1",
        "ts_ms": TS,
    }
    assert json.loads(entity_codecs.encode_graph_event_json(make_graph()))["op"] == "follow"


# Auto-detection and the content-type header


def test_json_is_detected_from_the_payload_or_the_content_type_header() -> None:
    expected = entity_codecs.decode_post_event(post_json())
    assert entity_codecs.decode_post_event(b" \n" + post_json()) == expected
    header = [("Content-Type", b"application/json; charset=utf-8")]
    assert entity_codecs.decode_post_event(post_json(), header) == expected
    assert entity_codecs.decode_user_event(user_json(), {"content-type": "application/json"}).op
    protobuf = codecs.encode(make_graph())
    assert entity_codecs.decode_graph_event(protobuf, {"content-type": None}) == make_graph()


def test_the_content_type_header_overrides_detection() -> None:
    protobuf_header = {"content-type": codecs.PROTOBUF_CONTENT_TYPE}
    with pytest.raises(EventDecodeError, match="not a protobuf PostEvent"):
        entity_codecs.decode_post_event(post_json(), protobuf_header)
    with pytest.raises(EventDecodeError, match="not valid JSON"):
        entity_codecs.decode_user_event(codecs.encode(make_user()), JSON_HEADER)


@pytest.mark.parametrize(
    "decode",
    [
        entity_codecs.decode_post_event,
        entity_codecs.decode_user_event,
        entity_codecs.decode_graph_event,
    ],
)
def test_empty_garbage_and_non_object_records_are_rejected(
    decode: Callable[[bytes | None], CatalogueEvent],
) -> None:
    for empty in (None, b""):
        with pytest.raises(EventDecodeError, match="empty record"):
            decode(empty)
    with pytest.raises(EventDecodeError, match="not a protobuf"):
        decode(b"\xff\xff\xff\xff")
    with pytest.raises(EventDecodeError, match="not valid JSON"):
        decode(b"{not json")
    with pytest.raises(EventDecodeError, match="must be an object, got list"):
        decode(b"[1, 2]")
