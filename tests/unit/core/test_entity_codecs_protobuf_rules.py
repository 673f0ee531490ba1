"""Entity codec tests: the rules a protobuf event must follow, and normalisation."""

from __future__ import annotations

import math

import pytest

from feedrank.core import codecs, entity_codecs
from feedrank.core import feature_schema as schema
from feedrank.core.codecs import EventDecodeError
from feedrank.core.entity_codecs import CatalogueEvent
from feedrank.v1 import catalogue_pb2
from tests.unit.core.entity_events import (
    DELETE,
    EMBEDDING,
    TS,
    features,
    make_graph,
    make_post,
    make_user,
    post_json,
)

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


def test_age_bucket_names_follow_the_schema() -> None:
    assert len(entity_codecs.AGE_BUCKET_NAMES) == schema.AGE_BUCKETS
    for name in entity_codecs.AGE_BUCKET_NAMES:
        assert entity_codecs.validate_user_event(make_user(age_bucket=name)).age_bucket == name
