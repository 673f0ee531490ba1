"""Protobuf's wire format by hand: varints, tags, length-delimited fields, field walks.

The hot paths that write protobuf bytes without message objects share these pieces:
:mod:`feedrank.core.decision_wire` (the Decision a Rank call logs) and
:mod:`feedrank.streaming.example_wire` (the labelled examples the join splices from a
decision's bytes). Everything else goes through the protobuf runtime (``core.codecs``).

Example::

    from feedrank.core.protobuf_wire import LEN, length_delimited, tag, varint

    item = length_delimited(1, b"post-7") + tag(2, VARINT) + varint(3)
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator

VARINT, I64, LEN, I32 = 0, 1, 2, 5  # wire types
DOUBLE = struct.Struct("<d")  # a double's eight bytes, little-endian


class WireFormatError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def _encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int32/int64 as protobuf writes them: ten bytes, two's complement
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = tuple(_encode_varint(value) for value in range(1 << 14))  # lengths, positions
# The low 14 bits of a larger value: two 7-bit groups, each saying more follow. Catalogue
# versions (millisecond times, 41 bits) are three table reads instead of a six-step loop:
# 13 against 31 us for a decision's 50.
_LOW_14_BITS = tuple(bytes(((low & 0x7F) | 0x80, (low >> 7) | 0x80)) for low in range(1 << 14))
_TABLED_BELOW = 1 << 42  # what two low parts and a small varint cover


def varint(value: int) -> bytes:
    """``value`` as a varint (a negative one as int64 does: ten bytes)."""
    if 0 <= value < len(_SMALL_VARINTS):
        return _SMALL_VARINTS[value]
    if 0 < value < _TABLED_BELOW:
        low, value = _LOW_14_BITS[value & 0x3FFF], value >> 14
        if value < len(_SMALL_VARINTS):
            return low + _SMALL_VARINTS[value]
        return low + _LOW_14_BITS[value & 0x3FFF] + _SMALL_VARINTS[value >> 14]
    return _encode_varint(value)


@functools.cache
def tag(field: int, wire_type: int) -> bytes:
    """The key that starts field number ``field`` of ``wire_type``."""
    return varint(field << 3 | wire_type)


def length_delimited(field: int, payload: bytes) -> bytes:
    """Field ``field`` holding ``payload`` (a string, bytes or an embedded message)."""
    return tag(field, LEN) + varint(len(payload)) + payload


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    """The varint at ``data[at]`` and the position after it."""
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


def fields(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """``(field, wire type, value start, value end)`` of each top-level field of a
    message; for a length-delimited field the value excludes its length prefix."""
    at, end = 0, len(data)
    while at < end:
        key, at = read_varint(data, at)
        field, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            start = at
            _, at = read_varint(data, at)
        elif wire_type == I64:
            start, at = at, at + 8
        elif wire_type == LEN:
            length, start = read_varint(data, at)
            at = start + length
        elif wire_type == I32:
            start, at = at, at + 4
        else:
            raise WireFormatError(f"unsupported wire type {wire_type} (field {field})")
        if at > end:
            raise WireFormatError(f"field {field} runs past the end of the message")
        yield field, wire_type, start, at
