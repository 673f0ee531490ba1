"""Varints as protobuf writes them, whichever path (table or loop) writes them."""

from __future__ import annotations

import random

import pytest

from feedrank.core.protobuf_wire import read_varint, varint
from feedrank.v1 import events_pb2

EDGES = [0, 1, 127, 128, (1 << 14) - 1, 1 << 14, (1 << 28) - 1, 1 << 28, (1 << 42) - 1]
EDGES += [1 << 42, 946_684_800_000, 1_796_670_348_444, (1 << 63) - 1]


def protobuf_varint(value: int) -> bytes:
    """``value`` as the protobuf runtime writes an int64 (ShownItem.catalogue_version,
    field 6: its one tag byte, then the varint; proto3 leaves a 0 unwritten)."""
    if value == 0:
        return b"\x00"
    written = events_pb2.ShownItem(catalogue_version=value).SerializeToString()
    assert written[:1] == b"\x30"
    return written[1:]


@pytest.mark.parametrize("value", EDGES)
def test_a_varint_is_what_protobuf_writes_for_an_int64(value: int) -> None:
    assert varint(value) == protobuf_varint(value)
    assert read_varint(varint(value), 0) == (value, len(varint(value)))


def test_random_values_round_trip_through_both_paths() -> None:
    rng = random.Random(42)
    for bits in (7, 14, 21, 28, 35, 41, 42, 43, 56, 63):
        for _ in range(200):
            value = rng.randrange(1 << bits)
            assert varint(value) == protobuf_varint(value), value


def test_a_negative_value_takes_ten_bytes_as_int64_does() -> None:
    assert varint(-1) == protobuf_varint(-1)
    assert len(varint(-1)) == 10
