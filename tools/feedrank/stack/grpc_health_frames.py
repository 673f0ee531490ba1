"""A ``grpc.health.v1.Health/Check`` call written out as raw HTTP/2 bytes, for HAProxy.

HAProxy 2.6 (Debian 12) can send an HTTP/2 health check (``http-check send … ver
HTTP/2``), but its request body is a string that stops at the first NUL byte, and
every gRPC message starts with NULs (its 5-byte length prefix): the check would send an
empty body, the server would answer a protocol error with HTTP 200, and the check
would pass whatever the service's health. So the balancer checks over a plain TCP
connection (``tcp-check``) with these bytes: the HTTP/2 connection preface, an empty
SETTINGS frame, one HEADERS frame (HPACK literals, no Huffman, no dynamic table) and
one DATA frame carrying the ``HealthCheckRequest``. It then waits for the call's end
(the HEADERS frame that ends stream 1: the trailers, or a trailers-only error) and
expects, in what came back, the gRPC message of a ``HealthCheckResponse`` SERVING.
NOT_SERVING or an unknown service (no message, a NOT_FOUND status) fail as soon as the
answer is in; no answer fails at HAProxy's ``timeout check``.
"""

from __future__ import annotations

from grpc_health.v1 import health_pb2

from feedrank.core.settings import LOOPBACK

HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check"
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _SETTINGS = 0x0, 0x1, 0x4
_END_STREAM, _END_HEADERS = 0x1, 0x4
_STREAM = 1  # the first stream a client opens
# HPACK static table (RFC 7541, appendix A): fully indexed fields and indexed names.
_METHOD_POST, _SCHEME_HTTP = 3, 6
_AUTHORITY, _PATH, _CONTENT_TYPE = 1, 4, 31


def health_check_request(service: str, authority: str = LOOPBACK) -> bytes:
    """The bytes a client sends to ask whether ``service`` is SERVING, as one write."""
    request = health_pb2.HealthCheckRequest(service=service).SerializeToString()
    header_block = b"".join(
        [
            _indexed(_METHOD_POST),
            _indexed(_SCHEME_HTTP),
            _literal_with_indexed_name(_PATH, HEALTH_CHECK_PATH),
            _literal_with_indexed_name(_AUTHORITY, authority),
            _literal_with_indexed_name(_CONTENT_TYPE, "application/grpc"),
            _literal_with_new_name("te", "trailers"),
        ]
    )
    return b"".join(
        [
            _PREFACE,
            _frame(_SETTINGS, 0, 0, b""),
            _frame(_HEADERS, _END_HEADERS, _STREAM, header_block),
            _frame(_DATA, _END_STREAM, _STREAM, grpc_message(request)),
        ]
    )


def serving_response_message() -> bytes:
    """The gRPC message (prefix and protobuf) of a ``HealthCheckResponse`` SERVING."""
    response = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
    return grpc_message(response.SerializeToString())


def call_end_marker() -> bytes:
    """The tail of the frame header that ends the call: HEADERS, END_STREAM and
    END_HEADERS, stream 1 (the length before it varies)."""
    return bytes([_HEADERS, _END_STREAM | _END_HEADERS]) + _STREAM.to_bytes(4, "big")


def grpc_message(payload: bytes) -> bytes:
    """A gRPC length-prefixed message: not compressed, 4-byte big-endian length."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    header = len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big")
    return header + payload


def _indexed(index: int) -> bytes:
    return _integer(index, prefix_bits=7, first_byte=0x80)


def _literal_with_indexed_name(name_index: int, value: str) -> bytes:
    """A literal header field without indexing whose name is in the static table."""
    return _integer(name_index, prefix_bits=4, first_byte=0x00) + _string(value)


def _literal_with_new_name(name: str, value: str) -> bytes:
    return b"\x00" + _string(name) + _string(value)


def _string(text: str) -> bytes:
    raw = text.encode("ascii")
    return _integer(len(raw), prefix_bits=7, first_byte=0x00) + raw  # no Huffman coding


def _integer(value: int, *, prefix_bits: int, first_byte: int) -> bytes:
    """An HPACK integer (RFC 7541, 5.1) in a ``prefix_bits`` prefix after ``first_byte``'s
    flag bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte | value])
    encoded = bytearray([first_byte | limit])
    value -= limit
    while value >= 0x80:
        encoded.append((value & 0x7F) | 0x80)
        value >>= 7
    encoded.append(value)
    return bytes(encoded)
