"""Every decoder of outside input, fuzzed (issue 20): raw garbage, mangled valid events
and arbitrary JSON. Each input is decoded or refused with the decoder's own error
(EventDecodeError for events, RowError for replay rows): never another exception, which
would crash a consumer or escape as UNKNOWN. The budget is bounded for CI
(``FUZZ_EXAMPLES`` each; raise it locally with ``FEEDRANK_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedrank.core import codecs, entity_codecs
from feedrank.core.codecs import EventDecodeError
from feedrank.learners.replay import columns
from feedrank.learners.replay.rows import FeatureColumns, RowError, parse_row
from feedrank.v1 import catalogue_pb2, events_pb2

FUZZ_EXAMPLES = int(os.environ.get("FEEDRANK_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same inputs on every CI run: a failure reproduces
    suppress_health_check=[HealthCheck.too_slow],
)
JSON = "application/json"

Decoder = Callable[[bytes | None, Any], object]
EVENT_DECODERS: dict[str, Decoder] = {
    "reward": codecs.decode_reward,
    "decision": lambda payload, headers: codecs.decode_decision(payload),
    "post": entity_codecs.decode_post_event,
    "user": entity_codecs.decode_user_event,
    "graph": entity_codecs.decode_graph_event,
}
VALID: dict[str, bytes] = {
    "reward": codecs.encode(
        events_pb2.Reward(
            decision_id="d1",
            post_id="p1",
            user_id="u1",
            type=codecs.REWARD_TYPES["like"],
            value=1.0,
            ts_ms=1764000000000,
        )
    ),
    "decision": codecs.encode(
        events_pb2.Decision(
            decision_id="d1",
            event_time_ms=1764000000000,
            user_id="u1",
            items=[events_pb2.ShownItem(post_id="p1", position=0, score=0.5, propensity=0.5)],
        )
    ),
    "post": codecs.encode(
        catalogue_pb2.PostEvent(post_id="p1", creator_id="c1", created_ms=1764000000000)
    ),
    "user": codecs.encode(catalogue_pb2.UserEvent(user_id="u1", ts_ms=1764000000000)),
    "graph": codecs.encode(catalogue_pb2.GraphEvent(user_id="u1", target_id="u2")),
}
JSON_KEYS = [
    "op",
    "post_id",
    "user_id",
    "target_id",
    "creator_id",
    "decision_id",
    "type",
    "value",
    "ts_ms",
    "created_ms",
    "language",
    "country",
    "age_bucket",
    "topics",
    "sensitive",
    "embedding",
    "features",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(JSON_KEYS) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=20,
)


def refused_or_decoded(decode: Decoder, payload: bytes | None, headers: Any = None) -> None:
    with contextlib.suppress(EventDecodeError):
        decode(payload, headers)


@pytest.mark.parametrize("kind", sorted(EVENT_DECODERS))
@FUZZ
@given(payload=st.binary(max_size=512))
def test_garbage_bytes_are_decoded_or_refused(kind: str, payload: bytes) -> None:
    refused_or_decoded(EVENT_DECODERS[kind], payload)
    refused_or_decoded(EVENT_DECODERS[kind], payload, [(codecs.CONTENT_TYPE_HEADER, JSON)])


@pytest.mark.parametrize("kind", sorted(EVENT_DECODERS))
@FUZZ
@given(data=st.data())
def test_mangled_valid_events_are_decoded_or_refused(kind: str, data: st.DataObject) -> None:
    payload = bytearray(VALID[kind])
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        at = data.draw(st.integers(min_value=0, max_value=len(payload) - 1))
        payload[at] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(payload)))
    refused_or_decoded(EVENT_DECODERS[kind], bytes(payload[:cut]))


@pytest.mark.parametrize("kind", sorted(EVENT_DECODERS))
@FUZZ
@given(document=json_values)
def test_arbitrary_json_is_decoded_or_refused(kind: str, document: object) -> None:
    payload = json.dumps(document, allow_nan=True).encode()
    refused_or_decoded(EVENT_DECODERS[kind], payload, [(codecs.CONTENT_TYPE_HEADER, JSON)])


cells = (
    st.none()
    | st.text(max_size=30)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.binary(max_size=10)
)
ROW_COLUMNS = [*sorted(columns.RESERVED), "item_age", "device"]
FEATURES = FeatureColumns(numeric=frozenset({"item_age"}), categorical=frozenset({"device"}))


@FUZZ
@given(record=st.dictionaries(st.sampled_from(ROW_COLUMNS), cells, max_size=len(ROW_COLUMNS)))
def test_replay_rows_are_parsed_or_refused(record: dict[str, object]) -> None:
    with contextlib.suppress(RowError):
        parse_row(2, record, FEATURES)
