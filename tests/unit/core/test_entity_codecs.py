from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest

from feedrank.core import codecs, entity_codecs
from feedrank.core import feature_schema as schema
from feedrank.core.codecs import EventDecodeError
from feedrank.core.entity_codecs import CatalogueEvent
from feedrank.v1 import catalogue_pb2

TS = 1_764_000_000_000
CREATED = TS - 3_600_000
UPSERT = catalogue_pb2.ENTITY_OP_UPSERT
DELETE = catalogue_pb2.ENTITY_OP_DELETE
FOLLOW = catalogue_pb2.GRAPH_OP_FOLLOW
EMBEDDING = [0.25] * schema.CONTENT_DIM
JSON_HEADER = [("content-type", b"application/json")]


def dumps(document: dict[str, object], fields: dict[str, object]) -> bytes:
    document.update(fields)
    return json.dumps({k: v for k, v in document.items() if v is not ...}).encode()


def post_json(**fields: object) -> bytes:
    document: dict[str, object] = {
        "op": "upsert",
        "post_id": "p-1",
        "creator_id": "c-1",
        "created_ms": CREATED,
        "language": "en",
        "country": "US",
        "topics": ["cats", "music"],
        "sensitive": False,
        "embedding": EMBEDDING,
        "features": {"quality": 0.5, "format": "video"},
        "ts_ms": TS,
    }
    return dumps(document, fields)


def post_delete_json(**fields: object) -> bytes:
    return dumps({"op": "delete", "post_id": "p-1", "ts_ms": TS}, fields)


def user_json(**fields: object) -> bytes:
    document: dict[str, object] = {
        "op": "upsert",
        "user_id": "u-1",
        "language": "pt-BR",
        "country": "BR",
        "age_bucket": "25-34",
        "features": {"tenure_days": 12, "plan": "free"},
        "ts_ms": TS,
    }
    return dumps(document, fields)


def graph_json(**fields: object) -> bytes:
    document = {"op": "follow", "user_id": "u-1", "target_id": "c-1", "ts_ms": TS}
    return dumps(dict(document), fields)


def make_post(**fields: object) -> catalogue_pb2.PostEvent:
    values: dict[str, object] = {
        "op": UPSERT,
        "post_id": "p-1",
        "creator_id": "c-1",
        "created_ms": CREATED,
        "language": "en",
        "topics": ["cats"],
        "ts_ms": TS,
    }
    values.update(fields)
    return catalogue_pb2.PostEvent(**values)  # type: ignore[arg-type]


def make_user(**fields: object) -> catalogue_pb2.UserEvent:
    values: dict[str, object] = {"op": UPSERT, "user_id": "u-1", "ts_ms": TS}
    values.update(fields)
    return catalogue_pb2.UserEvent(**values)  # type: ignore[arg-type]


def make_graph(**fields: object) -> catalogue_pb2.GraphEvent:
    values: dict[str, object] = {"op": FOLLOW, "user_id": "u-1", "target_id": "c-1", "ts_ms": TS}
    values.update(fields)
    return catalogue_pb2.GraphEvent(**values)  # type: ignore[arg-type]


def features(**values: float | str) -> dict[str, catalogue_pb2.FeatureValue]:
    return {
        name: catalogue_pb2.FeatureValue(text=value)
        if isinstance(value, str)
        else catalogue_pb2.FeatureValue(number=value)
        for name, value in values.items()
    }


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


# Rules, JSON form


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        (post_json(colour="red"), "colour", r"unknown post event fields \['colour'\]; accepted"),
        (post_json(topic_weights=[1.0]), "topic_weights", "unknown post event fields"),
        (post_json(op=...), "op", r"missing 'op'; expected one of \['delete', 'upsert'\]"),
        (post_json(op="create"), "op", r"unknown op 'create'; expected one of \['delete'"),
        (post_json(op=1), "op", "unknown op 1"),
        (post_json(post_id=...), "post_id", "missing 'post_id'"),
        (post_json(post_id=""), "post_id", "non-empty id"),
        (post_json(post_id=" \t "), "post_id", "not only whitespace"),
        (post_json(post_id=7), "post_id", "must be a string"),
        (post_json(post_id="\ud800"), "post_id", "invalid unicode"),
        (post_json(creator_id=...), "creator_id", "missing 'creator_id'"),
        (post_json(creator_id=" "), "creator_id", "non-empty id"),
        (post_json(ts_ms=...), "ts_ms", "missing 'ts_ms'"),
        (post_json(ts_ms=12), "ts_ms", "plausible event time"),
        (post_json(ts_ms=10**30), "ts_ms", "plausible event time"),
        (post_json(ts_ms=1.5e12), "ts_ms", "must be an integer"),
        (post_json(ts_ms=True), "ts_ms", "must be an integer"),
        (post_json(created_ms=...), "created_ms", "missing 'created_ms'"),
        (post_json(created_ms=-1), "created_ms", "plausible event time"),
        (post_json(language=...), "language", "missing 'language'"),
        (post_json(language=""), "language", "needs its 'language'"),
        (post_json(language="english!"), "language", "not a BCP-47 tag"),
        (post_json(language="e"), "language", "not a BCP-47 tag"),
        (post_json(language="en-"), "language", "not a BCP-47 tag"),
        (post_json(language="en-toolongpart"), "language", "not a BCP-47 tag"),
        (post_json(country="USA"), "country", "two-letter ISO 3166"),
        (post_json(country="U1"), "country", "two-letter ISO 3166"),
        (post_json(country=1), "country", "must be a string"),
        (post_json(sensitive="no"), "sensitive", "true or false"),
        (post_json(topics="cats"), "topics", "list of names or an object"),
        (post_json(topics=["cats", 3]), "topics", "list of names or an object"),
        (post_json(topics=[f"t{i}" for i in range(65)]), "topics", "at most 64"),
        (post_json(topics=["cats", ""]), "topics", "non-empty"),
        (post_json(topics=["x" * 257]), "topics", "at most 256"),
        (post_json(topics=["cats", "cats"]), "topics", "appears twice"),
        (post_json(topics={"cats": "1"}), "topics", "takes numbers"),
        (post_json(topics={"cats": True}), "topics", "takes numbers"),
        (post_json(topics={"cats": 0}), "topic_weights", r"finite and > 0"),
        (post_json(topics={"cats": -2.0}), "topic_weights", r"finite and > 0"),
        (post_json(embedding=[0.1] * 31), "embedding", "exactly 32"),
        (post_json(embedding=[0.1] * 33), "embedding", "exactly 32"),
        (post_json(embedding="0.1"), "embedding", "list of numbers"),
        (post_json(embedding=[*EMBEDDING[:-1], "x"]), "embedding", "takes numbers"),
        (post_json(embedding=[*EMBEDDING[:-1], 1e300]), "embedding", "must be finite"),
        (post_json(features=[1.0]), "features", "object of name"),
        (post_json(features={"x": None}), "features", "number or a string"),
        (post_json(features={"x": [1]}), "features", "number or a string"),
        (post_json(features={"": 1.0}), "features", "feature name '' must be non-empty"),
        (post_json(features={"x" * 257: 1.0}), "features", "at most 256"),
        (post_json(features={"x": 10**400}), "features", "too large"),
        (post_json(features={"x": "y" * 1025}), "features", "at most 1024"),
        (post_json(features={f"f{i}": 1 for i in range(257)}), "features", "at most 256"),
        (post_delete_json(creator_id="c-1"), "creator_id", "a delete carries only post_id"),
        (post_delete_json(topics=[]), "topics", "a delete carries only post_id and ts_ms"),
        (post_delete_json(sensitive=False), "sensitive", "a delete carries only"),
        (post_delete_json(post_id=...), "post_id", "missing 'post_id'"),
        (post_delete_json(ts_ms=...), "ts_ms", "missing 'ts_ms'"),
        (post_delete_json(colour="red"), "colour", "unknown post event fields"),
    ],
)
def test_malformed_json_post_is_rejected_with_a_clear_error(
    payload: bytes, field: str, message: str
) -> None:
    with pytest.raises(EventDecodeError, match=message) as raised:
        entity_codecs.decode_post_event(payload)
    assert raised.value.field == field


def test_non_finite_json_numbers_are_rejected() -> None:
    cases = [
        (post_json(features={"x": 0.0}).replace(b"0.0", b"NaN"), "features"),
        (post_json(topics={"cats": 1.0}).replace(b": 1.0", b": Infinity"), "topic_weights"),
    ]
    for payload, field in cases:
        with pytest.raises(EventDecodeError, match="finite") as raised:
            entity_codecs.decode_post_event(payload)
        assert raised.value.field == field


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        (user_json(age=30), "age", r"unknown user event fields \['age'\]; accepted are"),
        (user_json(op="remove"), "op", r"expected one of \['delete', 'upsert'\]"),
        (user_json(user_id=...), "user_id", "missing 'user_id'"),
        (user_json(user_id="u" * 257), "user_id", "257 characters long; ids have at most 256"),
        (user_json(language="x"), "language", "not a BCP-47 tag"),
        (user_json(country="Brasil"), "country", "two-letter"),
        (user_json(age_bucket="30"), "age_bucket", r"not one of \['13-17'"),
        (user_json(age_bucket="25-34 "), "age_bucket", "leave it empty when unknown"),
        (user_json(features={"x": {}}), "features", "number or a string"),
        (user_json(ts_ms=0), "ts_ms", "plausible event time"),
        (user_json(language="en", country=..., age_bucket=..., features=...), None, ""),
    ],
)
def test_malformed_json_user_is_rejected_with_a_clear_error(
    payload: bytes, field: str | None, message: str
) -> None:
    if field is None:  # the control: only language set is a valid upsert
        assert entity_codecs.decode_user_event(payload).language == "en"
        return
    with pytest.raises(EventDecodeError, match=message) as raised:
        entity_codecs.decode_user_event(payload)
    assert raised.value.field == field


def test_json_user_delete_carries_only_its_id() -> None:
    payload = b'{"op": "delete", "user_id": "u-1", "language": "en", "ts_ms": %d}' % TS
    with pytest.raises(EventDecodeError, match="a delete carries only user_id and ts_ms") as raised:
        entity_codecs.decode_user_event(payload)
    assert raised.value.field == "language"
    nulls = b'{"op": "delete", "user_id": "u-1", "language": null, "ts_ms": %d}' % TS
    assert entity_codecs.decode_user_event(nulls).op == DELETE


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        (graph_json(weight=1), "weight", "unknown graph event fields"),
        (graph_json(op="like"), "op", r"expected one of \['block', 'follow', 'hide_creator'"),
        (graph_json(op=...), "op", "missing 'op'"),
        (graph_json(op="upsert"), "op", "unknown op 'upsert'"),
        (graph_json(user_id=""), "user_id", "non-empty id"),
        (graph_json(target_id=...), "target_id", "missing 'target_id'"),
        (graph_json(target_id="t" * 257), "target_id", "at most 256"),
        (graph_json(target_id="u-1"), "target_id", "cannot follow themselves"),
        (graph_json(op="block", target_id="u-1"), "target_id", "cannot block themselves"),
        (graph_json(ts_ms="now"), "ts_ms", "must be an integer"),
    ],
)
def test_malformed_json_graph_event_is_rejected_with_a_clear_error(
    payload: bytes, field: str, message: str
) -> None:
    with pytest.raises(EventDecodeError, match=message) as raised:
        entity_codecs.decode_graph_event(payload)
    assert raised.value.field == field


@pytest.mark.parametrize("op", ["unfollow", "unblock", "hide_creator", "unhide_creator"])
def test_other_graph_ops_may_name_the_user_themselves(op: str) -> None:
    edge = entity_codecs.decode_graph_event(graph_json(op=op, target_id="u-1"))
    assert edge.user_id == edge.target_id == "u-1"


# Rules, protobuf form (the same validation, via decode and validate)

UNKNOWN_OP = catalogue_pb2.EntityOp.ValueType(9)

PROTOBUF_CASES: list[tuple[CatalogueEvent, str, str]] = [
    (make_post(op=catalogue_pb2.ENTITY_OP_UNSPECIFIED), "op", r"op 0 is not set; expected one"),
    (make_post(op=UNKNOWN_OP), "op", "op 9 is unknown"),
    (make_post(post_id=""), "post_id", "non-empty"),
    (make_post(creator_id=""), "creator_id", "non-empty"),
    (make_post(created_ms=0), "created_ms", "plausible"),
    (make_post(ts_ms=5_000_000_000_000), "ts_ms", "plausible"),
    (make_post(language=""), "language", "needs its 'language'"),
    (make_post(language="en_US"), "language", "BCP-47"),
    (make_post(country="u"), "country", "two-letter"),
    (make_post(topics=["a", " "]), "topics", "non-empty"),
    (make_post(topics=["a", "a"]), "topics", "appears twice"),
    (make_post(topics=["a", "b"], topic_weights=[1.0]), "topic_weights", "one weight per topic"),
    (make_post(topics=["a"], topic_weights=[math.nan]), "topic_weights", "finite and > 0"),
    (make_post(embedding=[1.0]), "embedding", "exactly 32"),
    (make_post(embedding=[*EMBEDDING[:-1], math.inf]), "embedding", r"embedding\[31\] is inf"),
    (make_post(features={"x": catalogue_pb2.FeatureValue()}), "features", "has no value"),
    (make_post(features=features(x=math.inf)), "features", "numbers must be finite"),
    (make_post(features=features(**{" ": 1.0})), "features", "non-empty"),
    (
        catalogue_pb2.PostEvent(op=DELETE, post_id="p", ts_ms=TS, embedding=[1.0]),
        "embedding",
        "a delete carries only post_id and ts_ms",
    ),
    (
        catalogue_pb2.PostEvent(op=DELETE, post_id="p", ts_ms=TS, features=features(x=1.0)),
        "features",
        "a delete carries only",
    ),
    (make_user(op=catalogue_pb2.ENTITY_OP_UNSPECIFIED), "op", "not set"),
    (make_user(user_id="u" * 257), "user_id", "at most 256"),
    (make_user(language="1234"), "language", "BCP-47"),
    (make_user(country="ÜS"), "country", "two-letter"),
    (make_user(age_bucket="65+"), "age_bucket", "not one of"),
    (make_user(features=features(t="t" * 1025)), "features", "at most 1024"),
    (
        catalogue_pb2.UserEvent(op=DELETE, user_id="u", ts_ms=TS, age_bucket="55+"),
        "age_bucket",
        "a delete carries only user_id and ts_ms",
    ),
    (make_graph(op=catalogue_pb2.GRAPH_OP_UNSPECIFIED), "op", r"graph op 0 is not set"),
    (make_graph(op=catalogue_pb2.GraphOp.ValueType(42)), "op", r"graph op 42 is unknown"),
    (make_graph(target_id=""), "target_id", "non-empty"),
    (make_graph(target_id="u-1"), "target_id", "themselves"),
    (make_graph(ts_ms=-1), "ts_ms", "plausible"),
]


def validate(event: CatalogueEvent) -> CatalogueEvent:
    if isinstance(event, catalogue_pb2.PostEvent):
        return entity_codecs.validate_post_event(event)
    if isinstance(event, catalogue_pb2.UserEvent):
        return entity_codecs.validate_user_event(event)
    return entity_codecs.validate_graph_event(event)


def decode(payload: bytes, like: CatalogueEvent) -> CatalogueEvent:
    if isinstance(like, catalogue_pb2.PostEvent):
        return entity_codecs.decode_post_event(payload)
    if isinstance(like, catalogue_pb2.UserEvent):
        return entity_codecs.decode_user_event(payload)
    return entity_codecs.decode_graph_event(payload)


@pytest.mark.parametrize(("event", "field", "message"), PROTOBUF_CASES)
def test_malformed_protobuf_event_is_rejected_by_validate_and_decode(
    event: CatalogueEvent, field: str, message: str
) -> None:
    with pytest.raises(EventDecodeError, match=message) as raised:
        validate(event)
    assert raised.value.field == field
    with pytest.raises(EventDecodeError, match=message) as raised:
        decode(codecs.encode(event), event)
    assert raised.value.field == field


def test_too_many_topics_and_features_are_rejected() -> None:
    many_topics = make_post(topics=[f"t{i}" for i in range(64)])
    assert len(entity_codecs.validate_post_event(many_topics).topics) == 64
    many_topics.topics.append("t64")
    with pytest.raises(EventDecodeError, match="65 topics; a post has at most 64"):
        entity_codecs.validate_post_event(many_topics)
    many = features(**{f"f{i}": float(i) for i in range(256)})
    assert len(entity_codecs.validate_user_event(make_user(features=many)).features) == 256
    many["f256"] = catalogue_pb2.FeatureValue(number=1.0)
    with pytest.raises(EventDecodeError, match="257 features") as raised:
        entity_codecs.validate_user_event(make_user(features=many))
    assert raised.value.field == "features"


# Ids


ID_FIELDS = [
    ("post_id", post_json, entity_codecs.decode_post_event),
    ("creator_id", post_json, entity_codecs.decode_post_event),
    ("user_id", user_json, entity_codecs.decode_user_event),
    ("user_id", graph_json, entity_codecs.decode_graph_event),
    ("target_id", graph_json, entity_codecs.decode_graph_event),
]


@pytest.mark.parametrize(("name", "make", "decode_json"), ID_FIELDS)
def test_ids_of_256_characters_are_accepted_and_257_refused(
    name: str,
    make: Callable[..., bytes],
    decode_json: Callable[[bytes], CatalogueEvent],
) -> None:
    longest = "é" * entity_codecs.MAX_ID_LENGTH  # characters, not UTF-8 bytes
    event = decode_json(make(**{name: longest}))
    assert getattr(event, name) == longest
    assert decode_json(codecs.encode(event)) == event
    with pytest.raises(EventDecodeError, match="257 characters long") as raised:
        decode_json(make(**{name: longest + "x"}))
    assert raised.value.field == name


@pytest.mark.parametrize("unicode_id", ["пост-1", "投稿🎉", "a b", "p/1?x=ü", "١٢٣"])
def test_any_unicode_id_is_accepted(unicode_id: str) -> None:
    post = entity_codecs.decode_post_event(post_json(post_id=unicode_id, creator_id=unicode_id))
    assert post.post_id == unicode_id
    assert entity_codecs.decode_post_event(entity_codecs.encode_post_event_json(post)) == post
    key = entity_codecs.entity_key(post)
    assert key == unicode_id.encode("utf-8")
    entity_codecs.check_key(key, post.post_id, field="post_id")
    edge = entity_codecs.decode_graph_event(codecs.encode(make_graph(target_id=unicode_id)))
    assert edge.target_id == unicode_id


# Normalisation


def test_validate_returns_a_normalised_copy() -> None:
    original = make_post(language="PT-br", country="br")
    normalised = entity_codecs.validate_post_event(original)
    assert (normalised.language, normalised.country) == ("pt-br", "BR")
    assert (original.language, original.country) == ("PT-br", "br")
    assert normalised is not original
    user = entity_codecs.validate_user_event(make_user(language="ZH-Hant-TW", country="tw"))
    assert (user.language, user.country) == ("zh-hant-tw", "TW")
    edge = make_graph()
    assert entity_codecs.validate_graph_event(edge) == edge
    assert entity_codecs.validate_graph_event(edge) is not edge


def test_decoding_normalises_both_forms() -> None:
    from_json = entity_codecs.decode_post_event(post_json(language="EN", country="gb"))
    from_protobuf = entity_codecs.decode_post_event(
        codecs.encode(make_post(language="EN", country="gb"))
    )
    assert (from_json.language, from_json.country) == ("en", "GB")
    assert (from_protobuf.language, from_protobuf.country) == ("en", "GB")


# Keys


def test_check_key_accepts_a_missing_or_matching_key() -> None:
    entity_codecs.check_key(None, "p-1", field="post_id")
    entity_codecs.check_key(b"p-1", "p-1", field="post_id")


@pytest.mark.parametrize("key", [b"p-2", b"", b"P-1", b"\xff"])
def test_check_key_refuses_a_key_that_differs_from_the_id(key: bytes) -> None:
    with pytest.raises(EventDecodeError, match="differs from post_id='p-1'") as raised:
        entity_codecs.check_key(key, "p-1", field="post_id")
    assert raised.value.field == "post_id"


def test_entity_key_is_the_id_the_topic_is_keyed_by() -> None:
    assert entity_codecs.entity_key(make_post(post_id="p-7", creator_id="c-7")) == b"p-7"
    assert entity_codecs.entity_key(make_user(user_id="u-7")) == b"u-7"
    assert entity_codecs.entity_key(make_graph(user_id="u-8", target_id="c-1")) == b"u-8"


def test_error_messages_cut_huge_values_short() -> None:
    with pytest.raises(EventDecodeError) as raised:
        entity_codecs.check_key(b"k" * 10_000, "p-1", field="post_id")
    assert len(str(raised.value)) < 300


def test_age_bucket_names_follow_the_schema() -> None:
    assert len(entity_codecs.AGE_BUCKET_NAMES) == schema.AGE_BUCKETS
    for name in entity_codecs.AGE_BUCKET_NAMES:
        assert entity_codecs.validate_user_event(make_user(age_bucket=name)).age_bucket == name
