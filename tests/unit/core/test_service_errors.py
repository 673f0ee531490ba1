"""service_errors: the violations a server packs into a status are read back from the call."""

from __future__ import annotations

import grpc
from google.rpc import code_pb2, status_pb2

from feedrank.core.service_errors import (
    FieldViolation,
    ServiceError,
    call_violations,
    to_rpc_status,
)
from tests.support.grpc_calls import FakeCall


class InvalidThing(ServiceError):
    status_code = grpc.StatusCode.INVALID_ARGUMENT


def test_the_violations_a_server_sent_are_read_back_in_order() -> None:
    sent = (FieldViolation("limit", "must be >= 0"), FieldViolation("user_id", "is empty"))
    status = to_rpc_status(InvalidThing("invalid request", sent))
    call = FakeCall(grpc.StatusCode.INVALID_ARGUMENT, status.details, status.trailing_metadata)

    assert call_violations(call) == sent


def test_no_rich_status_a_plain_one_or_a_disagreeing_code_read_as_no_violations() -> None:
    plain = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="bad")
    trailing = (("grpc-status-details-bin", plain.SerializeToString()),)
    disagreeing = status_pb2.Status(code=code_pb2.NOT_FOUND, message="bad")
    other_code = (("grpc-status-details-bin", disagreeing.SerializeToString()),)

    assert call_violations(FakeCall(grpc.StatusCode.INVALID_ARGUMENT, "bad")) == ()
    assert call_violations(FakeCall(grpc.StatusCode.INVALID_ARGUMENT, "bad", trailing)) == ()
    assert call_violations(FakeCall(grpc.StatusCode.INVALID_ARGUMENT, "bad", other_code)) == ()
    assert call_violations(grpc.RpcError("not a call")) == ()
