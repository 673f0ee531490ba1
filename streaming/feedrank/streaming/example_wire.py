"""Labelled examples spliced from a decision's bytes, each part encoded once.

The join writes one ``LabelledExample`` per shown item. Built whole through the
protobuf runtime, each example would copy the decision's user features into a new
message and serialise them again, once per item. Here an example is the concatenation
of parts encoded once:

* the decision's header fields (decision id, user, event time, model version, arm,
  exploration policy, user features, feature names) are re-tagged once per decision,
  their values copied verbatim;
* each shown item's fields (post id, position, score, propensity, features, catalogue
  version) are encoded once per item as a ``LabelledExample``'s, by the protobuf
  runtime's C code (about three times faster than walking the item's fields here);
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

from google.protobuf.message import DecodeError

from feedrank.core.protobuf_wire import (
    DOUBLE,
    I64,
    LEN,
    VARINT,
    WireFormatError,
    fields,
    tag,
    varint,
)
from feedrank.v1 import events_pb2

# Decision field -> LabelledExample field (events.proto): the header every example shares.
_HEADER_FIELDS = {1: 1, 2: 4, 3: 2, 4: 9, 5: 10, 6: 11, 8: 12, 11: 18}
_DECISION_USER_ID, _DECISION_MODEL_VERSION, _DECISION_ARM = 3, 4, 5
_DECISION_TEXT = (_DECISION_USER_ID, _DECISION_MODEL_VERSION, _DECISION_ARM)
_DECISION_USER_FEATURES = 8
# labelled_example always sets the user's feature message: present, if empty.
_EMPTY_USER_FEATURES = bytes([12 << 3 | LEN, 0])
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
        try:  # the items through the protobuf runtime's C parser: ~3x the field walk
            decision = events_pb2.Decision.FromString(payload)
        except DecodeError as error:
            raise WireFormatError(f"not a Decision: {error}") from error
        for item in decision.items:
            post_id = item.post_id
            shown.append(post_id)
            if post_id not in items:
                items[post_id] = _item_fields(item)
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
        return self.labelled(post_id, label_bytes(label_time_ms, reward, breakdown))

    def labelled(self, post_id: str, label: bytes) -> bytes:
        """The ``LabelledExample`` of ``post_id`` with ``label`` (:func:`label_bytes`):
        a window close labels most items alike, and encodes that label once."""
        return self.header + self.items[post_id] + label


def label_bytes(label_time_ms: int, reward: float, breakdown: Mapping[str, float]) -> bytes:
    """An example's label fields: label time, reward, engaged and the breakdown."""
    label = bytearray()
    if label_time_ms:
        label += tag(_LABEL_TIME, VARINT) + varint(label_time_ms)
    if reward:
        label += tag(_REWARD, I64) + DOUBLE.pack(reward)
    if reward > 0:
        label += tag(_ENGAGED, VARINT) + b"\x01"
    encoded = breakdown_bytes(breakdown)
    label += tag(_BREAKDOWN, LEN) + varint(len(encoded)) + encoded
    return bytes(label)


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


def _item_fields(item: events_pb2.ShownItem) -> bytes:
    """A shown item's fields as a ``LabelledExample``'s (its post features always
    present, as :func:`feedrank.core.labelled.labelled_example` sets them)."""
    return events_pb2.LabelledExample(
        post_id=item.post_id,
        position=item.position,
        score=item.score,
        propensity=item.propensity,
        post_features=item.features,
        catalogue_version=item.catalogue_version,
    ).SerializeToString()
