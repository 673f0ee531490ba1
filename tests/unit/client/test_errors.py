"""gRPC status codes to the client's typed errors, in one place."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2, status_pb2

from feedrank.client import (
    DeadlineExceeded,
    FeedrankError,
    InvalidRequest,
    RankFailed,
    Unavailable,
)
from feedrank.client.errors import error_from_rpc
from feedrank.core.service_errors import FieldViolation, ServiceError, to_rpc_status
from tests.support.grpc_calls import FakeCall


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidRequest),
        (grpc.StatusCode.UNAVAILABLE, Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceeded),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, RankFailed),
        (grpc.StatusCode.INTERNAL, RankFailed),
        (grpc.StatusCode.UNKNOWN, RankFailed),
    ],
)
def test_each_status_code_maps_to_its_error(
    code: grpc.StatusCode, error_type: type[FeedrankError]
) -> None:
    error = error_from_rpc(FakeCall(code, "what went wrong"))
    assert type(error) is error_type
    assert isinstance(error, FeedrankError)
    assert error.code == code
    assert error.details == "what went wrong"
    assert code.name in str(error)


def test_invalid_argument_carries_the_field_violations() -> None:
    status = to_rpc_status_of(
        "invalid RankRequest: limit: must be >= 0",
        (FieldViolation("limit", "must be >= 0"), FieldViolation("user_id", "is empty")),
    )
    call = FakeCall(grpc.StatusCode.INVALID_ARGUMENT, status.details, status.trailing_metadata)
    error = error_from_rpc(call)
    assert isinstance(error, InvalidRequest)
    assert error.violations == {"limit": "must be >= 0", "user_id": "is empty"}
    assert "limit" in error.details


def test_a_status_without_bad_request_details_has_no_violations() -> None:
    packed = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="bad")
    trailing = (("grpc-status-details-bin", packed.SerializeToString()),)
    error = error_from_rpc(FakeCall(grpc.StatusCode.INVALID_ARGUMENT, "bad", trailing))
    assert isinstance(error, InvalidRequest)
    assert error.violations == {}


def test_an_rpc_error_that_is_not_a_call_is_rank_failed() -> None:
    error = error_from_rpc(grpc.RpcError("broken"))
    assert isinstance(error, RankFailed)
    assert error.code == grpc.StatusCode.UNKNOWN


class InvalidThing(ServiceError):
    status_code = grpc.StatusCode.INVALID_ARGUMENT


def to_rpc_status_of(message: str, violations: tuple[FieldViolation, ...]) -> grpc.Status:
    """What a feedrank server sends for an invalid request (BadRequest in the details)."""
    return to_rpc_status(InvalidThing(message, violations))
