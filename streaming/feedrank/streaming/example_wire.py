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

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from feedrank.core.protobuf_wire import (
    DOUBLE,
    I64,
    LEN,
    VARINT,
    fields,
    tag,
    varint,
)

# Decision field -> LabelledExample field (events.proto): the header every example shares.
_HEADER_FIELDS = {1: 1, 2: 4, 3: 2, 4: 9, 5: 10, 6: 11, 8: 12, 11: 18}
_DECISION_ITEMS = 9
_DECISION_USER_ID, _DECISION_MODEL_VERSION, _DECISION_ARM = 3, 4, 5
_DECISION_TEXT = (_DECISION_USER_ID, _DECISION_MODEL_VERSION, _DECISION_ARM)
_DECISION_USER_FEATURES = 8
# ShownItem field -> LabelledExample field.
_ITEM_FIELDS = {1: 3, 2: 6, 3: 7, 4: 8, 5: 13, 6: 17}
_ITEM_POST_ID, _ITEM_FEATURES = 1, 5
# labelled_example always sets both feature messages: present, if empty.
_EMPTY_USER_FEATURES = bytes([12 << 3 | LEN, 0])
_EMPTY_POST_FEATURES = bytes([13 << 3 | LEN, 0])
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


def _retagged(data: bytes, mapping: Mapping[int, int]) -> Iterator[tuple[int, bytes, bytes]]:
    """Each mapped field of ``data``: its number, its value's bytes, and the whole field
    under its new number (the value copied verbatim)."""
    for field, wire_type, start, end in fields(data):
        target = mapping.get(field)
        if target is None:
            continue
        value = data[start:end]
        key = tag(target, wire_type)
        yield field, value, key + varint(len(value)) + value if wire_type == LEN else key + value


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
        text: dict[int, str] = {}
        present: set[int] = set()
        for field, value, retagged in _retagged(payload, _HEADER_FIELDS):
            header += retagged
            present.add(field)
            if field in _DECISION_TEXT:
                text[field] = value.decode("utf-8")
        if _DECISION_USER_FEATURES not in present:
            header += _EMPTY_USER_FEATURES
        items: dict[str, bytes] = {}
        shown: list[str] = []
        for field, wire_type, start, end in fields(payload):
            if field == _DECISION_ITEMS and wire_type == LEN:
                post_id, item = _item(payload[start:end])
                items.setdefault(post_id, item)
                shown.append(post_id)
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
            label += tag(_LABEL_TIME, VARINT) + varint(label_time_ms)
        if reward:
            label += tag(_REWARD, I64) + DOUBLE.pack(reward)
        if reward > 0:
            label += tag(_ENGAGED, VARINT) + b"\x01"
        encoded = breakdown_bytes(breakdown)
        label += tag(_BREAKDOWN, LEN) + varint(len(encoded)) + encoded
        return self.header + self.items[post_id] + bytes(label)


def breakdown_bytes(counts: Mapping[str, float]) -> bytes:
    """A ``RewardBreakdown`` from the join's counts (integers but dwell seconds)."""
    out = bytearray()
    for name, number in BREAKDOWN_FIELD_NUMBERS.items():
        value = counts.get(name)
        if not value:
            continue
        if name == "dwell_seconds":
            out += tag(number, I64) + DOUBLE.pack(value)
        else:
            out += tag(number, VARINT) + varint(int(value))
    return bytes(out)


def _item(item: bytes) -> tuple[str, bytes]:
    """A ShownItem's post id, and its fields re-tagged as a LabelledExample's."""
    post_id, parts, has_features = "", bytearray(), False
    for field, value, retagged in _retagged(item, _ITEM_FIELDS):
        parts += retagged
        if field == _ITEM_POST_ID:
            post_id = value.decode("utf-8")
        has_features = has_features or field == _ITEM_FEATURES
    if not has_features:
        parts += _EMPTY_POST_FEATURES
    return post_id, bytes(parts)
