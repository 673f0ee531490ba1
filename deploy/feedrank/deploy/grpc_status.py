"""The one place that turns a DeployError into a gRPC status with details.

Field violations travel as a ``google.rpc.BadRequest`` in the rich status (readable
with ``grpc_status.rpc_status.from_call``) and are summarised in the status message.
"""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from feedrank.deploy.errors import DeployError


def to_rpc_status(error: DeployError) -> grpc.Status:
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


def abort(context: grpc.ServicerContext, error: DeployError) -> NoReturn:
    """End the call with the error's status; never returns."""
    context.abort_with_status(to_rpc_status(error))
    raise AssertionError("unreachable: abort_with_status raises")  # pragma: no cover


def code_name(code: grpc.StatusCode) -> str:
    """'OK', 'NOT_FOUND', … for metric labels."""
    return str(code_pb2.Code.Name(code.value[0]))
