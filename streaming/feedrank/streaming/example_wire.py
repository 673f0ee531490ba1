"""Labelled examples written straight from a decision's bytes, without protobuf objects.

The join writes one ``LabelledExample`` per shown item. Built through the protobuf
runtime, each example copies the decision's user features and the item's features (a
content embedding and a dozen map entries) into a new message, then serialises it again:
most of the join's time per item (``benchmarks/join_throughput.py``). Here the bytes of
the example are spliced from the decision's own bytes instead:

* the decision's header fields (decision id, user, event time, model version, arm,
  exploration policy, user features) are re-tagged once per decision;
* each shown item's fields (post id, position, score, propensity, features) are
  re-tagged once per item, their values copied verbatim;
* only the label (label time, reward, engaged, breakdown) is written per example.

A message's encoding followed by more fields of the same message parses as their merge,
so the concatenation parses to exactly the message
:func:`feedrank.core.labelled.labelled_example` builds, field presence included
(``tests/unit/streaming/test_example_wire.py`` checks it). Fields of the decision an
example does not carry (the exploration seed, the request context) and fields unknown
to this version are skipped.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_DOUBLE = struct.Struct("<d")

# Decision field -> LabelledExample field (events.proto): the header every example shares.
_HEADER_FIELDS = {1: 1, 2: 4, 3: 2, 4: 9, 5: 10, 6: 11, 8: 12}
_DECISION_ITEMS = 9
_DECISION_USER_ID, _DECISION_MODEL_VERSION, _DECISION_ARM = 3, 4, 5
_DECISION_TEXT = (_DECISION_USER_ID, _DECISION_MODEL_VERSION, _DECISION_ARM)
_DECISION_USER_FEATURES = 8
# ShownItem field -> LabelledExample field.
_ITEM_FIELDS = {1: 3, 2: 6, 3: 7, 4: 8, 5: 13}
_ITEM_POST_ID, _ITEM_FEATURES = 1, 5
# labelled_example always sets both feature messages: present, if empty.
_EMPTY_USER_FEATURES = bytes([12 << 3 | _LEN, 0])
_EMPTY_POST_FEATURES = bytes([13 << 3 | _LEN, 0])
# LabelledExample's label fields.
_LABEL_TIME, _REWARD, _ENGAGED, _BREAKDOWN = 5, 14, 15, 16
# RewardBreakdown's fields, by the join's breakdown names.
BREAKDOWN_FIELD_NUMBERS = {
    "views": 1,
    "likes": 2,
    "comments": 3,
    "shares": 4,
    "saves": 5,
    "dwell_seconds": 6,
    "hides": 7,
    "reports": 8,
    "blocks": 9,
}


class WireFormatError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    if at < len(data) and data[at] < 0x80:  # one byte: most tags and lengths
        return data[at], at + 1
    result, shift = 0, 0
    while True:
        if at >= len(data):
            raise WireFormatError("truncated varint")
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, at
        shift += 7
        if shift > 63:
            raise WireFormatError("varint longer than 10 bytes")


_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if value < 0:
        value += 1 << 64  # int64 as protobuf writes it: ten bytes, two's complement
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@functools.cache
def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _fields(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """``(field, wire type, value start, value end)`` of each top-level field; for a
    length-delimited field the value excludes its length prefix."""
    at, end = 0, len(data)
    while at < end:
        key, at = _read_varint(data, at)
        field, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            start = at
            _, at = _read_varint(data, at)
        elif wire_type == _I64:
            start, at = at, at + 8
        elif wire_type == _LEN:
            length, start = _read_varint(data, at)
            at = start + length
        elif wire_type == _I32:
            start, at = at, at + 4
        else:
            raise WireFormatError(f"unsupported wire type {wire_type} (field {field})")
        if at > end:
            raise WireFormatError(f"field {field} runs past the end of the message")
        yield field, wire_type, start, at


def _retagged(data: bytes, mapping: Mapping[int, int]) -> Iterator[tuple[int, bytes]]:
    """Each mapped field of ``data`` as ``(its field number, its bytes under the new tag)``."""
    for field, wire_type, start, end in _fields(data):
        target = mapping.get(field)
        if target is None:
            continue
        tag = _tag(target, wire_type)
        if wire_type == _LEN:
            yield field, tag + _varint(end - start) + data[start:end]
        else:
            yield field, tag + data[start:end]


@dataclass(frozen=True)
class DecisionExamples:
    """A decision's bytes, ready to label any of its shown items."""

    header: bytes
    items: Mapping[str, bytes]  # post id -> the item's re-tagged fields (its first showing)
    shown: tuple[str, ...]  # the shown post ids in feed order, repeats included
    user_id: str
    model_version: str
    arm: str

    @classmethod
    def from_decision_bytes(cls, payload: bytes) -> DecisionExamples:
        header = bytearray()
        items: dict[str, bytes] = {}
        shown: list[str] = []
        text: dict[int, str] = {}
        has_user_features = False
        for field, wire_type, start, end in _fields(payload):
            if field == _DECISION_ITEMS and wire_type == _LEN:
                item = payload[start:end]
                post_id, parts, has_features = "", bytearray(), False
                for item_field, piece in _retagged(item, _ITEM_FIELDS):
                    parts += piece
                    if item_field == _ITEM_POST_ID:
                        post_id = _text(piece)
                    has_features = has_features or item_field == _ITEM_FEATURES
                if not has_features:
                    parts += _EMPTY_POST_FEATURES
                items.setdefault(post_id, bytes(parts))
                shown.append(post_id)
            elif field in _HEADER_FIELDS:
                tag = _tag(_HEADER_FIELDS[field], wire_type)
                if wire_type == _LEN:
                    header += tag + _varint(end - start) + payload[start:end]
                else:
                    header += tag + payload[start:end]
                if field in _DECISION_TEXT:
                    text[field] = payload[start:end].decode("utf-8")
                has_user_features = has_user_features or field == _DECISION_USER_FEATURES
        if not has_user_features:
            header += _EMPTY_USER_FEATURES
        return cls(
            bytes(header),
            items,
            tuple(shown),
            user_id=text.get(_DECISION_USER_ID, ""),
            model_version=text.get(_DECISION_MODEL_VERSION, ""),
            arm=text.get(_DECISION_ARM, ""),
        )

    def example(
        self,
        post_id: str,
        *,
        label_time_ms: int,
        reward: float,
        breakdown: Mapping[str, float],
    ) -> bytes:
        """The ``LabelledExample`` of ``post_id`` labelled ``reward`` at ``label_time_ms``,
        with ``breakdown`` (the join's counts by name) as its ``RewardBreakdown``."""
        label = bytearray()
        if label_time_ms:
            label += _tag(_LABEL_TIME, _VARINT) + _varint(label_time_ms)
        if reward:
            label += _tag(_REWARD, _I64) + _DOUBLE.pack(reward)
        if reward > 0:
            label += _tag(_ENGAGED, _VARINT) + b"\x01"
        encoded = breakdown_bytes(breakdown)
        label += _tag(_BREAKDOWN, _LEN) + _varint(len(encoded)) + encoded
        return self.header + self.items[post_id] + bytes(label)


def breakdown_bytes(counts: Mapping[str, float]) -> bytes:
    """A ``RewardBreakdown`` from the join's counts (integers but dwell seconds)."""
    out = bytearray()
    for name, number in BREAKDOWN_FIELD_NUMBERS.items():
        value = counts.get(name)
        if not value:
            continue
        if name == "dwell_seconds":
            out += _tag(number, _I64) + _DOUBLE.pack(value)
        else:
            out += _tag(number, _VARINT) + _varint(int(value))
    return bytes(out)


def _text(piece: bytes) -> str:
    """The string value of a re-tagged length-delimited ``piece`` (tag, length, bytes)."""
    _, at = _read_varint(piece, 0)
    length, at = _read_varint(piece, at)
    return piece[at : at + length].decode("utf-8")
