"""Entity codec tests: entity ids (length, unicode) and the Kafka record keys."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from feedrank.core import codecs, entity_codecs
from feedrank.core.codecs import EventDecodeError
from feedrank.core.entity_codecs import CatalogueEvent
from tests.unit.core.entity_events import (
    graph_json,
    make_graph,
    make_post,
    make_user,
    post_json,
    user_json,
)

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
