"""What every feedrank gRPC service shares about errors and health.

Each service has one error base class (``ExploreError``, ``DeployError``) deriving from
:class:`ServiceError`; each subclass knows its gRPC status code. This module is the one
place that turns them into gRPC statuses: field violations travel as a
``google.rpc.BadRequest`` in the rich status (readable with
``grpc_status.rpc_status.from_call``) and are summarised in the status message; and
the one place that reads them back from a failed call (:func:`call_violations`, used by
the app client and the deploy client).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class ServiceError(Exception):
    """Base of the services' error types: a message, a status code, bad fields."""

    status_code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, violations: tuple[FieldViolation, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.violations = violations


def to_rpc_status(error: ServiceError) -> grpc.Status:
    code_number: int = error.status_code.value[0]
    status = status_pb2.Status(code=code_number, message=error.message)
    if error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=item.field, description=item.description
                )
                for item in error.violations
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad_request)
        status.details.append(detail)
    return rpc_status.to_status(status)


def abort(context: grpc.ServicerContext, error: ServiceError) -> NoReturn:
    """End the call with the error's status; never returns."""
    context.abort_with_status(to_rpc_status(error))
    raise AssertionError("unreachable: abort_with_status raises")  # pragma: no cover


def call_violations(error: grpc.RpcError | grpc.Call) -> tuple[FieldViolation, ...]:
    """The ``google.rpc.BadRequest`` field violations in a failed call's rich status.

    Empty when the error is not a call, carries no rich status, or carries one whose
    code disagrees with the call's (``rpc_status`` refuses those).
    """
    if not isinstance(error, grpc.Call):
        return ()
    try:
        status = rpc_status.from_call(error)
    except ValueError:
        return ()
    found: list[FieldViolation] = []
    for detail in status.details if status is not None else []:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found += [
                FieldViolation(item.field, item.description)
                for item in bad_request.field_violations
            ]
    return tuple(found)


def code_name(code: grpc.StatusCode) -> str:
    """'OK', 'INVALID_ARGUMENT', … for metric labels."""
    return str(code_pb2.Code.Name(code.value[0]))


def set_serving(health_servicer: health.HealthServicer, service: str, *, serving: bool) -> None:
    """Flip overall health and ``service``'s together."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", service):
        health_servicer.set(name, status)
