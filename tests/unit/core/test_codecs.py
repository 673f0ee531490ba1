from __future__ import annotations

import json
import math

import pytest

from feedrank.core import codecs
from feedrank.core.codecs import EventDecodeError
from feedrank.v1 import events_pb2

TS = 1_764_000_000_000
LIKE = events_pb2.REWARD_TYPE_LIKE
UNKNOWN_TYPE = events_pb2.RewardType.ValueType(99)


def reward_json(**fields: object) -> bytes:
    document: dict[str, object] = {
        "decision_id": "d-1",
        "post_id": "p-1",
        "user_id": "u-1",
        "type": "like",
        "value": 1.0,
        "ts_ms": TS,
    }
    document.update(fields)
    return json.dumps({k: v for k, v in document.items() if v is not ...}).encode()


def test_json_reward_decodes_every_field() -> None:
    reward = codecs.decode_reward(reward_json(type="dwell", value=12.5))
    assert reward.decision_id == "d-1"
    assert reward.post_id == "p-1"
    assert reward.user_id == "u-1"
    assert reward.type == events_pb2.REWARD_TYPE_DWELL
    assert codecs.reward_value(reward) == 12.5
    assert reward.ts_ms == TS


def test_json_reward_value_defaults_to_one() -> None:
    reward = codecs.decode_reward(reward_json(value=...))
    assert not reward.HasField("value")
    assert codecs.reward_value(reward) == 1.0


def test_protobuf_reward_decodes() -> None:
    original = events_pb2.Reward(
        decision_id="d-2", post_id="p-2", user_id="u-2", type=events_pb2.REWARD_TYPE_SHARE, ts_ms=TS
    )
    decoded = codecs.decode_reward(codecs.encode(original))
    assert decoded == original
    assert codecs.reward_value(decoded) == 1.0


def test_json_is_detected_from_the_content_type_header_or_the_payload() -> None:
    payload = b"  " + reward_json()
    assert codecs.is_json_payload(payload)
    assert codecs.is_json_payload(reward_json(), [("Content-Type", b"application/json")])
    assert not codecs.is_json_payload(reward_json(), {"content-type": "application/x-protobuf"})


def test_json_round_trip_through_encode_reward_json() -> None:
    original = codecs.decode_reward(reward_json(type="report", value=1.0))
    assert codecs.decode_reward(codecs.encode_reward_json(original)) == original


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[1, 2]", None, "must be an object"),
        (reward_json(type="love"), "type", "unknown reward type 'love'"),
        (reward_json(decision_id=...), "decision_id", "missing 'decision_id'"),
        (reward_json(post_id=""), "post_id", "non-empty"),
        (reward_json(user_id=7), "user_id", "must be a string"),
        (reward_json(value=-1), "value", "finite and non-negative"),
        (reward_json(value="1"), "value", "must be a number"),
        (reward_json(ts_ms=12), "ts_ms", "plausible event time"),
        (reward_json(ts_ms=1.5), "ts_ms", "must be an integer"),
        (reward_json(colour="red"), "colour", "unknown reward fields"),
    ],
)
def test_malformed_json_reward_is_rejected_with_a_clear_error(
    payload: bytes, field: str | None, message: str
) -> None:
    with pytest.raises(EventDecodeError, match=message) as raised:
        codecs.decode_reward(payload)
    assert raised.value.field == field


def test_non_finite_json_value_is_rejected() -> None:
    payload = reward_json().replace(b'"value": 1.0', b'"value": NaN')
    with pytest.raises(EventDecodeError, match="finite") as raised:
        codecs.decode_reward(payload)
    assert raised.value.field == "value"


@pytest.mark.parametrize(
    ("reward", "field"),
    [
        (events_pb2.Reward(post_id="p", user_id="u", type=LIKE, ts_ms=TS), "decision_id"),
        (
            events_pb2.Reward(
                decision_id="d",
                post_id="p",
                user_id="u",
                type=events_pb2.REWARD_TYPE_UNSPECIFIED,
                ts_ms=TS,
            ),
            "type",
        ),
        (
            events_pb2.Reward(
                decision_id="d", post_id="p", user_id="u", type=UNKNOWN_TYPE, ts_ms=TS
            ),
            "type",
        ),
        (
            events_pb2.Reward(
                decision_id="d", post_id="p", user_id="u", type=LIKE, ts_ms=TS, value=math.inf
            ),
            "value",
        ),
        (
            events_pb2.Reward(decision_id="d", post_id="p", user_id="u", type=LIKE, ts_ms=-5),
            "ts_ms",
        ),
    ],
)
def test_malformed_protobuf_reward_is_rejected(reward: events_pb2.Reward, field: str) -> None:
    with pytest.raises(EventDecodeError) as raised:
        codecs.decode_reward(codecs.encode(reward))
    assert raised.value.field == field


def test_garbage_bytes_are_not_a_reward() -> None:
    with pytest.raises(EventDecodeError, match="not a protobuf Reward"):
        codecs.decode_reward(b"\xff\xff\xff\xff")
    with pytest.raises(EventDecodeError, match="empty"):
        codecs.decode_reward(b"")


def make_decision() -> events_pb2.Decision:
    return events_pb2.Decision(
        decision_id="d-9",
        event_time_ms=TS,
        user_id="u-9",
        model_version="v1",
        arm="stable",
        exploration_policy=events_pb2.EXPLORATION_POLICY_EPSILON_GREEDY,
        exploration_seed=42,
        user_features=events_pb2.FeatureVector(numeric={"age_bucket": 3.0}),
        items=[
            events_pb2.ShownItem(post_id="p-1", position=0, score=0.9, propensity=0.95),
            events_pb2.ShownItem(post_id="p-2", position=1, score=0.4, propensity=0.05),
        ],
    )


def test_decision_round_trips() -> None:
    decision = make_decision()
    assert codecs.decode_decision(codecs.encode(decision)) == decision


def test_decision_with_impossible_propensity_is_rejected() -> None:
    decision = make_decision()
    decision.items[1].propensity = 0.0
    with pytest.raises(EventDecodeError, match="propensity") as raised:
        codecs.decode_decision(codecs.encode(decision))
    assert raised.value.field == "items.propensity"


def test_dead_letter_headers_name_the_source_and_error() -> None:
    headers = dict(codecs.dead_letter_headers("feedrank.rewards", 2, 41, "bad json", "intake"))
    assert headers[codecs.DLQ_HEADER_TOPIC] == b"feedrank.rewards"
    assert headers[codecs.DLQ_HEADER_PARTITION] == b"2"
    assert headers[codecs.DLQ_HEADER_OFFSET] == b"41"
    assert headers[codecs.DLQ_HEADER_ERROR] == b"bad json"
    assert headers[codecs.DLQ_HEADER_STAGE] == b"intake"
