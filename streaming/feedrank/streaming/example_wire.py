"""Labelled examples spliced from a decision's bytes, each part encoded once.

The join writes one ``LabelledExample`` per shown item. Built whole through the
protobuf runtime, each example would copy the decision's user features into a new
message and serialise them again, once per item. Here an example is the concatenation
of parts encoded once:

* the decision's header fields (decision id, user, event time, model version, arm,
  exploration policy, user features, feature names) are encoded once per decision;
* each shown item's fields (post id, position, score, propensity, features, catalogue
  version) are encoded once per item as a ``LabelledExample``'s, by the protobuf
  runtime's C code (about three times faster than walking the item's fields here);
* only the label (label time, reward, engaged, breakdown) is written per example.

Both encodings are the protobuf runtime's C code, from the decision it parsed once:
walking the decision's fields here to re-tag them cost more than the whole parse.

A message's encoding followed by more fields of the same message parses as their merge,
so the concatenation parses to exactly the message
:func:`feedrank.core.labelled.labelled_example` builds, field presence included
(``tests/unit/streaming/test_example_wire.py`` checks it). Fields of the decision an
example does not carry (the exploration seed, the request context) and fields unknown
to this version are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from feedrank.core.protobuf_wire import (
    DOUBLE,
    I64,
    LEN,
    VARINT,
    WireFormatError,
    tag,
    varint,
)
from feedrank.v1 import events_pb2

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
        try:  # parsed by the protobuf runtime's C code: ~3x a field walk in Python
            decision = events_pb2.Decision.FromString(payload)
        except DecodeError as error:
            raise WireFormatError(f"not a Decision: {error}") from error
        items: dict[str, bytes] = {}
        shown: list[str] = []
        for item in decision.items:
            post_id = item.post_id
            shown.append(post_id)
            if post_id not in items:
                items[post_id] = _item_fields(item)
        return cls(
            _header(decision),
            items,
            tuple(shown),
            user_id=decision.user_id,
            model_version=decision.model_version,
            arm=decision.arm,
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


def _header(decision: events_pb2.Decision) -> bytes:
    """The fields every example of ``decision`` shares, as a ``LabelledExample``'s.

    Encoded once per decision by the protobuf runtime; the user's features are always
    present, as ``labelled_example`` sets them.
    """
    header = events_pb2.LabelledExample(
        decision_id=decision.decision_id,
        user_id=decision.user_id,
        decision_time_ms=decision.event_time_ms,
        model_version=decision.model_version,
        arm=decision.arm,
        exploration_policy=decision.exploration_policy,
        user_features=decision.user_features,
        post_feature_names=decision.item_feature_names,
    )
    header.user_features.SetInParent()
    return header.SerializeToString()


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
