"""Event codecs: the one place that turns Kafka bytes into feedrank events and back.

Every component (explore, join, learners, deploy, tests) encodes and decodes through
here, with one exception: the Decision's encoder is :mod:`feedrank.core.decision_wire`,
which writes the bytes straight from the feature columns on Rank's hot path (decoding
a Decision is here, :func:`decode_decision`). Rewards arrive as protobuf or as JSON
(header ``content-type: application/json``, or auto-detected from a leading ``{`` or
``[``); both are validated by the same rules, and anything that breaks them raises
:class:`EventDecodeError` naming the field at fault.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias, TypeVar

from google.protobuf.message import DecodeError, Message

from feedrank.v1 import events_pb2

JSON_CONTENT_TYPE = "application/json"
PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
CONTENT_TYPE_HEADER = "content-type"

# Dead-letter headers naming where a rejected record came from and why.
DLQ_HEADER_TOPIC = "feedrank.dlq.source-topic"
DLQ_HEADER_PARTITION = "feedrank.dlq.source-partition"
DLQ_HEADER_OFFSET = "feedrank.dlq.source-offset"
DLQ_HEADER_ERROR = "feedrank.dlq.error"
DLQ_HEADER_STAGE = "feedrank.dlq.stage"

# Event times outside [2000-01-01, 2100-01-01) are treated as absurd.
MIN_EVENT_TIME_MS = 946_684_800_000
MAX_EVENT_TIME_MS = 4_102_444_800_000

RewardTypeValue: TypeAlias = events_pb2.RewardType.ValueType

REWARD_TYPES: dict[str, RewardTypeValue] = {
    name.removeprefix("REWARD_TYPE_").lower(): number
    for name, number in events_pb2.RewardType.items()
    if number != events_pb2.REWARD_TYPE_UNSPECIFIED
}
REWARD_TYPE_NAMES: dict[RewardTypeValue, str] = {
    number: name for name, number in REWARD_TYPES.items()
}
_REWARD_JSON_FIELDS = frozenset({"decision_id", "post_id", "user_id", "type", "value", "ts_ms"})

Headers = Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None] | None
EventT = TypeVar("EventT", bound=Message)


class EventDecodeError(ValueError):
    """A Kafka record that is not a valid feedrank event.

    ``field`` names the offending field when there is one, so the dead-letter entry
    says exactly what to fix.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def encode(event: Message) -> bytes:
    """Serialise any feedrank event as protobuf."""
    return event.SerializeToString(deterministic=True)


def decode(event_type: type[EventT], payload: bytes | None) -> EventT:
    """Parse protobuf bytes as ``event_type``; malformed bytes raise EventDecodeError."""
    if payload is None:
        raise EventDecodeError(f"empty record where a {event_type.__name__} was expected")
    event = event_type()
    try:
        event.ParseFromString(payload)
    except DecodeError as error:
        raise EventDecodeError(f"not a protobuf {event_type.__name__}: {error}") from error
    return event


def decode_decision(payload: bytes | None) -> events_pb2.Decision:
    decision = decode(events_pb2.Decision, payload)
    _require_text(decision.decision_id, "decision_id")
    _require_text(decision.user_id, "user_id")
    _require_event_time(decision.event_time_ms, "event_time_ms")
    for item in decision.items:
        _require_text(item.post_id, "items.post_id")
        if not (0.0 < item.propensity <= 1.0):
            raise EventDecodeError(
                f"propensity of {item.post_id!r} is {item.propensity}; it must be in (0, 1]",
                field="items.propensity",
            )
    return decision


def header_value(headers: Headers, name: str) -> str | None:
    """The first value of header ``name`` (case-insensitive) as text, or None."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key.lower() == name.lower() and value is not None:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return None


def is_json_payload(payload: bytes, headers: Headers = None) -> bool:
    """JSON when the content-type header says so, else when the payload starts like JSON.

    A protobuf Reward never starts with '{' or '[': those bytes would open groups
    (a deprecated wire type) in fields 15 and 11, which Reward does not have.
    """
    content_type = header_value(headers, CONTENT_TYPE_HEADER)
    if content_type is not None:
        return content_type.split(";")[0].strip().lower() == JSON_CONTENT_TYPE
    return payload.lstrip()[:1] in (b"{", b"[")


def decode_reward(payload: bytes | None, headers: Headers = None) -> events_pb2.Reward:
    """Decode a reward from protobuf or JSON and validate it.

    ``value`` defaults to 1 (seconds for dwell). Raises EventDecodeError for bad JSON,
    unknown types, missing ids, negative or non-finite values and absurd timestamps.
    """
    if not payload:
        raise EventDecodeError("empty reward record")
    if is_json_payload(payload, headers):
        reward = _reward_from_json(payload)
    else:
        reward = decode(events_pb2.Reward, payload)
        if reward.type not in REWARD_TYPE_NAMES:
            raise EventDecodeError(
                f"unknown reward type {reward.type}; expected one of {sorted(REWARD_TYPES)}",
                field="type",
            )
    _validate_reward(reward)
    return reward


def reward_value(reward: events_pb2.Reward) -> float:
    """The reward's value with the contract's default of 1 applied."""
    return reward.value if reward.HasField("value") else 1.0


def encode_reward_json(reward: events_pb2.Reward) -> bytes:
    """The JSON form apps may produce (see MISSION.md)."""
    document = {
        "decision_id": reward.decision_id,
        "post_id": reward.post_id,
        "user_id": reward.user_id,
        "type": REWARD_TYPE_NAMES.get(reward.type, "unspecified"),
        "value": reward_value(reward),
        "ts_ms": reward.ts_ms,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def dead_letter_headers(
    topic: str, partition: int, offset: int, error: str, stage: str
) -> list[tuple[str, bytes]]:
    """Kafka headers naming the original record and the error, for ``feedrank.dlq``."""
    return [
        (DLQ_HEADER_TOPIC, topic.encode()),
        (DLQ_HEADER_PARTITION, str(partition).encode()),
        (DLQ_HEADER_OFFSET, str(offset).encode()),
        (DLQ_HEADER_ERROR, error.encode()),
        (DLQ_HEADER_STAGE, stage.encode()),
    ]


def load_json_object(payload: bytes, kind: str, accepted: frozenset[str]) -> dict[str, Any]:
    """A JSON event's object, refusing bad JSON, non-objects and fields not in ``accepted``."""
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EventDecodeError(f"{kind} is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise EventDecodeError(f"{kind} JSON must be an object, got {type(document).__name__}")
    unknown = sorted(set(document) - accepted)
    if unknown:
        raise EventDecodeError(
            f"unknown {kind} fields {unknown}; accepted are {sorted(accepted)}", field=unknown[0]
        )
    return document


def _reward_from_json(payload: bytes) -> events_pb2.Reward:
    document = load_json_object(payload, "reward", _REWARD_JSON_FIELDS)
    reward = events_pb2.Reward(
        decision_id=_json_text(document, "decision_id"),
        post_id=_json_text(document, "post_id"),
        user_id=_json_text(document, "user_id"),
        type=_json_reward_type(document.get("type")),
        ts_ms=_json_int(document, "ts_ms"),
    )
    if document.get("value") is not None:
        reward.value = _json_number(document["value"], "value")
    return reward


def _json_text(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if value is None:
        raise EventDecodeError(f"reward is missing {name!r}", field=name)
    if not isinstance(value, str):
        raise EventDecodeError(f"{name!r} must be a string, got {value!r}", field=name)
    return value


def _json_int(document: dict[str, Any], name: str) -> int:
    value = document.get(name)
    if value is None:
        raise EventDecodeError(f"reward is missing {name!r}", field=name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise EventDecodeError(f"{name!r} must be an integer (ms), got {value!r}", field=name)
    return value


def _json_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventDecodeError(f"{name!r} must be a number, got {value!r}", field=name)
    return float(value)


def _json_reward_type(value: Any) -> RewardTypeValue:
    if not isinstance(value, str) or value.lower() not in REWARD_TYPES:
        raise EventDecodeError(
            f"unknown reward type {value!r}; expected one of {sorted(REWARD_TYPES)}",
            field="type",
        )
    return REWARD_TYPES[value.lower()]


def _validate_reward(reward: events_pb2.Reward) -> None:
    for name in ("decision_id", "post_id", "user_id"):
        _require_text(getattr(reward, name), name)
    value = reward_value(reward)
    if not math.isfinite(value) or value < 0:
        raise EventDecodeError(
            f"reward value {value} must be finite and non-negative", field="value"
        )
    _require_event_time(reward.ts_ms, "ts_ms")


def _require_text(value: str, name: str) -> None:
    if not value.strip():
        raise EventDecodeError(f"{name!r} must be a non-empty string", field=name)


def _require_event_time(epoch_ms: int, name: str) -> None:
    if not (MIN_EVENT_TIME_MS <= epoch_ms < MAX_EVENT_TIME_MS):
        raise EventDecodeError(
            f"{name}={epoch_ms} is not a plausible event time "
            "(milliseconds since the epoch between 2000 and 2100)",
            field=name,
        )
