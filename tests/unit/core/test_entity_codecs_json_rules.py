"""Entity codec tests: the rules a JSON post, user or graph event must follow."""

from __future__ import annotations

import pytest

from feedrank.core import entity_codecs
from feedrank.core.codecs import EventDecodeError
from tests.unit.core.entity_events import (
    DELETE,
    EMBEDDING,
    TS,
    graph_json,
    post_delete_json,
    post_json,
    user_json,
)

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
