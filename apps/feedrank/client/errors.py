"""The client's errors: one base class, each failure a typed subclass.

``Ranking.Rank`` failures arrive as gRPC status codes; :func:`error_from_rpc` is the one
place that maps them (``INVALID_ARGUMENT`` → :class:`InvalidRequest`, ``UNAVAILABLE`` →
:class:`Unavailable`, ``DEADLINE_EXCEEDED`` → :class:`DeadlineExceeded`, anything else →
:class:`RankFailed`). Events are checked before they are produced (:class:`InvalidEvent`)
and deliveries are counted (:class:`DeliveryFailed`).

Example::

    from feedrank.client import InvalidRequest, RankingClient

    try:
        feed = client.rank("u42", limit=-1)
    except InvalidRequest as error:
        print(error.details, error.violations)  # {'limit': '...'}
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from feedrank.core.service_errors import call_violations

__all__ = [
    "DeadlineExceeded",
    "DeliveryFailed",
    "FeedrankError",
    "InvalidEvent",
    "InvalidRequest",
    "RankFailed",
    "Unavailable",
    "error_from_rpc",
]


class FeedrankError(Exception):
    """Base of every error the feedrank client raises.

    ``code`` is the gRPC status of a failed call, or None for an error found on this side
    (an invalid event, an undelivered record); ``details`` is the human-readable reason.
    """

    def __init__(self, details: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(f"{code.name}: {details}" if code is not None else details)
        self.code = code
        self.details = details


class InvalidRequest(FeedrankError):
    """The server refused the request (``INVALID_ARGUMENT``).

    ``details`` is the server's message; ``violations`` maps each field at fault (e.g.
    ``"limit"``, ``"context.language"``) to what is wrong with it, from the status's
    ``google.rpc.BadRequest`` detail when the server sent one.
    """

    def __init__(
        self,
        details: str,
        *,
        code: grpc.StatusCode | None = grpc.StatusCode.INVALID_ARGUMENT,
        violations: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(details, code=code)
        self.violations: dict[str, str] = dict(violations or {})


class Unavailable(FeedrankError):
    """The server cannot be reached or is not serving yet (``UNAVAILABLE``): retry later."""


class DeadlineExceeded(FeedrankError):
    """The call did not finish within its deadline (``DEADLINE_EXCEEDED``)."""


class RankFailed(FeedrankError):
    """Any other failed ``Rank`` call; ``code`` says which status the server answered."""


class InvalidEvent(FeedrankError, ValueError):
    """An event breaks its contract; it was not produced.

    ``field`` names the field at fault (``"post_id"``, ``"ts_ms"``, …) when there is
    one; ``message`` says what is wrong and what is accepted.
    """

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class DeliveryFailed(FeedrankError):
    """Some produced records were not acknowledged by Kafka.

    ``count`` is how many; ``first_error`` the first delivery error seen (librdkafka's
    text), so the cause is visible without a log.
    """

    def __init__(self, count: int, first_error: str) -> None:
        super().__init__(f"{count} record(s) not delivered; first error: {first_error}")
        self.count = count
        self.first_error = first_error


_ERROR_OF_CODE: dict[grpc.StatusCode, type[FeedrankError]] = {
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def error_from_rpc(error: grpc.RpcError) -> FeedrankError:
    """The typed error for a failed gRPC call (keeping its status code and details)."""
    if not isinstance(error, grpc.Call):
        return RankFailed(str(error) or type(error).__name__, code=grpc.StatusCode.UNKNOWN)
    code = error.code()
    details = error.details() or code.name
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidRequest(details, code=code, violations=field_violations(error))
    return _ERROR_OF_CODE.get(code, RankFailed)(details, code=code)


def field_violations(call: grpc.Call) -> dict[str, str]:
    """Field → description of the ``google.rpc.BadRequest`` details in a call's status."""
    return {item.field: item.description for item in call_violations(call)}
