"""What the join keeps per pending decision: labels only, a few hundred bytes.

A decision waits up to the reward window (14 days by default) for its rewards; at
10,000 Rank calls a second that is 12 billion pending decisions. The join therefore
keeps only what labelling needs (``docs/streaming.md``, "State size"):

* where the decision is on the decisions topic (partition and offset): its features
  are re-read from the log when an example is written, not kept;
* its time, user, model version and arm (the keys and labels of what the join emits
  before it re-reads anything: attributed rewards, dead letters);
* a short hash of each shown post id (4 bytes, 8 when two of one decision collide),
  to tell which item a reward is for;
* which items are labelled (a bitmask) and each rewarded item's breakdown so far.

Rewards that come before their decision wait here (``early``), and a closed decision
shrinks to a tombstone (time and a flag) that tells late rewards from dangling ones.

The bytes are this module's own little format (a version byte, varints, length-prefixed
strings), not pickle or JSON: about 10 bytes plus 4 per shown item for the hashes.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import blake2b

from feedrank.core.protobuf_wire import read_varint, varint
from feedrank.streaming.example_wire import BREAKDOWN_FIELD_NUMBERS, breakdown_bytes
from feedrank.v1 import events_pb2

FORMAT_VERSION = 2  # version 1 was the JSON DecisionState with the whole decision
_CLOSED, _HAS_DECISION, _HAS_POSITION, _HAS_INLINE = 1, 2, 4, 8


class LabelStateError(ValueError):
    """Bytes that are not a label state of this format."""


def post_hashes(post_ids: Sequence[str]) -> tuple[int, bytes]:
    """The width (4 or 8) and the concatenated hashes of ``post_ids``.

    CRC-32 is enough to tell a decision's few dozen posts apart; when two distinct ids
    of one decision collide (about once in ten million decisions of 30 posts) the whole
    decision uses 8-byte BLAKE2b hashes instead.
    """
    short = [post_hash(post_id, 4) for post_id in post_ids]
    if len(set(short)) == len(set(post_ids)):
        return 4, b"".join(short)
    return 8, b"".join(post_hash(post_id, 8) for post_id in post_ids)


def post_hash(post_id: str, width: int) -> bytes:
    """``post_id``'s hash of ``width`` bytes: CRC-32 (4) or BLAKE2b (8)."""
    if width == 4:
        return zlib.crc32(post_id.encode()).to_bytes(4, "little")
    return blake2b(post_id.encode(), digest_size=8).digest()


@dataclass(frozen=True)
class LogPosition:
    """Where a decision is on the decisions topic."""

    partition: int
    offset: int


@dataclass
class LabelState:
    """One pending decision's labels (see the module docstring)."""

    decision_time_ms: int = 0
    has_decision: bool = False
    closed: bool = False
    position: LogPosition | None = None
    # The decision's bytes, only for states restored from the JSON format (version 1).
    inline: bytes | None = None
    user_id: str = ""
    model_version: str = ""
    arm: str = ""
    hash_width: int = 4
    hashes: bytes = b""
    labelled: int = 0  # bit i: the item at index i (its first showing) is labelled
    breakdowns: dict[int, dict[str, float]] = field(default_factory=dict)
    early: list[events_pb2.Reward] = field(default_factory=list)

    @property
    def shown(self) -> int:
        return len(self.hashes) // self.hash_width

    def item_index(self, post_id: str) -> int | None:
        """The index of the first showing of ``post_id``, or None when it was not shown."""
        wanted = post_hash(post_id, self.hash_width)
        width, hashes = self.hash_width, self.hashes
        at = hashes.find(wanted)
        while at >= 0 and at % width:
            at = hashes.find(wanted, at + 1)
        return None if at < 0 else at // width

    def first_showings(self) -> list[int]:
        """For each item, the index of the first item with the same post (one pass)."""
        width, hashes = self.hash_width, self.hashes
        first: dict[bytes, int] = {}
        return [
            first.setdefault(hashes[index * width : (index + 1) * width], index)
            for index in range(self.shown)
        ]

    def close(self) -> None:
        """Keep only what a tombstone needs: the window's time and the closed flag."""
        self.closed = True
        self.position, self.inline = None, None
        self.hashes, self.labelled, self.breakdowns = b"", 0, {}

    def to_bytes(self) -> bytes:
        flags = (
            (_CLOSED if self.closed else 0)
            | (_HAS_DECISION if self.has_decision else 0)
            | (_HAS_POSITION if self.position is not None else 0)
            | (_HAS_INLINE if self.inline is not None else 0)
        )
        out = bytearray((FORMAT_VERSION,))
        out += varint(flags) + varint(self.decision_time_ms)
        if self.position is not None:
            out += varint(self.position.partition) + varint(self.position.offset)
        if self.inline is not None:
            out += _blob(self.inline)
        for text in (self.user_id, self.model_version, self.arm):
            out += _blob(text.encode())
        out += bytes((self.hash_width,)) + _blob(self.hashes)
        out += _blob(self.labelled.to_bytes((self.labelled.bit_length() + 7) // 8, "little"))
        out += varint(len(self.breakdowns))
        for index, counts in self.breakdowns.items():
            out += varint(index) + _blob(breakdown_bytes(counts))
        out += varint(len(self.early))
        for reward in self.early:
            out += _blob(reward.SerializeToString())
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> LabelState:
        if not data or data[0] != FORMAT_VERSION:
            raise LabelStateError(f"not a label state of format {FORMAT_VERSION}")
        reader = _Reader(data, 1)
        flags = reader.varint()
        state = cls(
            decision_time_ms=reader.varint(),
            has_decision=bool(flags & _HAS_DECISION),
            closed=bool(flags & _CLOSED),
        )
        if flags & _HAS_POSITION:
            state.position = LogPosition(reader.varint(), reader.varint())
        if flags & _HAS_INLINE:
            state.inline = reader.blob()
        state.user_id = reader.blob().decode()
        state.model_version = reader.blob().decode()
        state.arm = reader.blob().decode()
        state.hash_width = reader.byte()
        state.hashes = reader.blob()
        state.labelled = int.from_bytes(reader.blob(), "little")
        for _ in range(reader.varint()):
            index = reader.varint()
            state.breakdowns[index] = breakdown_counts(reader.blob())
        for _ in range(reader.varint()):
            state.early.append(events_pb2.Reward.FromString(reader.blob()))
        return state


_BREAKDOWN_NAMES = {number: name for name, number in BREAKDOWN_FIELD_NUMBERS.items()}


def breakdown_counts(encoded: bytes) -> dict[str, float]:
    """The join's counts by name from a ``RewardBreakdown``'s bytes."""
    message = events_pb2.RewardBreakdown.FromString(encoded)
    return {
        _BREAKDOWN_NAMES[descriptor.number]: float(value)
        for descriptor, value in message.ListFields()
    }


def _blob(data: bytes) -> bytes:
    return varint(len(data)) + data


class _Reader:
    def __init__(self, data: bytes, at: int) -> None:
        self.data, self.at = data, at

    def varint(self) -> int:
        try:
            value, self.at = read_varint(self.data, self.at)
        except ValueError as error:
            raise LabelStateError(f"truncated label state: {error}") from error
        return value

    def byte(self) -> int:
        if self.at >= len(self.data):
            raise LabelStateError("truncated label state")
        self.at += 1
        return self.data[self.at - 1]

    def blob(self) -> bytes:
        length = self.varint()
        end = self.at + length
        if end > len(self.data):
            raise LabelStateError("truncated label state")
        value, self.at = self.data[self.at : end], end
        return value
